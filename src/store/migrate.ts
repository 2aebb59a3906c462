/**
 * Applies the migrations that a database lacks, each in its own transaction, under an advisory
 * lock so that two processes starting together do not both migrate.
 */
import type { Db } from './db.js';
import { MIGRATIONS, type Migration } from './migrations.js';

export async function migrate(db: Db, migrations: readonly Migration[] = MIGRATIONS): Promise<number[]> {
  await db.exec(`create table if not exists schema_migrations (
    version integer primary key,
    name text not null,
    applied_at timestamptz not null default now()
  )`);
  const applied: number[] = [];
  for (const m of migrations) {
    const done = await db.transaction(async (tx) => {
      await tx.query(`select pg_advisory_xact_lock(hashtext(current_schema() || '.signalbox_migrations'))`);
      const had = await tx.query('select 1 from schema_migrations where version = $1', [m.version]);
      if (had.rows.length > 0) return false;
      await tx.exec(m.sql);
      await tx.query('insert into schema_migrations (version, name) values ($1, $2)', [m.version, m.name]);
      return true;
    });
    if (done) applied.push(m.version);
  }
  return applied;
}
