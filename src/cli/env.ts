/** Environment for the commands: var/local.env (written by deploy/local/up.sh) under the real one. */
import { existsSync, readFileSync } from 'node:fs';
import { type Db, openDb, openPostgres } from '../store/index.js';

export function commandEnv(): Record<string, string | undefined> {
  const out: Record<string, string | undefined> = {};
  if (existsSync('var/local.env')) {
    for (const line of readFileSync('var/local.env', 'utf8').split('\n')) {
      const m = /^([A-Z_]+)=(.*)$/.exec(line.trim());
      if (m) out[m[1]!] = m[2]!;
    }
  }
  return { ...out, ...process.env };
}

/** The rule store's database: DATABASE_URL (in SIGNALBOX_DB_SCHEMA when set), else embedded. */
export function openCommandDb(env = commandEnv()): Promise<Db> {
  if (env.DATABASE_URL && env.SIGNALBOX_DB_SCHEMA)
    return openPostgres({ url: env.DATABASE_URL, schema: env.SIGNALBOX_DB_SCHEMA });
  return openDb({ DATABASE_URL: env.DATABASE_URL });
}
