/** A Postgres schema of a test's own on the local server (deploy/local or DATABASE_URL), dropped when the Db closes. */
import { type Db, openPostgres, type Queryable } from '../src/store/index.js';

export const PG_URL = process.env.DATABASE_URL ?? 'postgres://signalbox:signalbox@127.0.0.1:5433/signalbox';

export function testSchemaDb(name: string): () => Promise<Db> {
  const schema = `sb_${name}_${process.pid}_${Date.now().toString(36)}`;
  return async () => {
    const db = await openPostgres({ url: PG_URL, schema });
    const close = db.close.bind(db);
    return Object.assign(db, {
      close: async () => {
        await db.exec(`drop schema ${schema} cascade`);
        await close();
      },
    });
  };
}

/** Puts an envelope in the event archive (as the archive drain would), on its receivedAt's day. */
export async function archiveEvent(
  db: Queryable,
  e: { id: string; tenant: string; source: string; type: string; receivedAt: string; time?: string },
): Promise<void> {
  await db.query(
    `insert into events (tenant_id, id, received_on, received_at, source, type, time, envelope)
     values ($1, $2, $3, $4, $5, $6, $7, $8)`,
    [
      e.tenant,
      e.id,
      e.receivedAt.slice(0, 10),
      e.receivedAt,
      e.source,
      e.type,
      e.time ?? null,
      JSON.stringify(e),
    ],
  );
}
