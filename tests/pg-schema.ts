/** A Postgres schema of a test's own on the local server (deploy/local or DATABASE_URL), dropped when the Db closes. */
import { type Db, openPostgres } from '../src/store/index.js';

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
