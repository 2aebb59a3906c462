/** The store conformance suite on a real Postgres server (deploy/local or DATABASE_URL). */
import { openPostgres } from '../../src/store/index.js';
import { storeConformance } from './conformance.js';

const url = process.env.DATABASE_URL ?? 'postgres://signalbox:signalbox@127.0.0.1:5433/signalbox';
const schema = `sb_test_${process.pid}_${Date.now().toString(36)}`;

storeConformance('postgres', async () => {
  const db = await openPostgres({ url, schema });
  const close = db.close.bind(db);
  // Leave nothing behind: drop the suite's schema when it closes.
  return Object.assign(db, {
    close: async () => {
      await db.exec(`drop schema ${schema} cascade`);
      await close();
    },
  });
});
