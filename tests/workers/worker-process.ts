/**
 * A worker in its own process, for tests that need two of them or one to kill (SIGKILL).
 * Configured by environment; prints "ready" once it takes jobs.
 */
import { openPostgres, SecretBox } from '../../src/store/index.js';
import { startWorker } from '../../src/workers/worker.js';

const env = process.env;
const db = await openPostgres({ url: env.SB_TEST_PG!, schema: env.SB_TEST_SCHEMA! });
const w = await startWorker({
  redisUrl: env.SB_TEST_REDIS!,
  prefix: env.SB_TEST_PREFIX!,
  db,
  secrets: SecretBox.fromText(env.SB_TEST_KEY!),
  retryBaseMs: 50,
  lockDurationMs: Number(env.SB_TEST_LOCK_MS ?? 2000),
  stalledIntervalMs: Number(env.SB_TEST_LOCK_MS ?? 2000),
  timerEveryMs: 50,
  concurrency: Number(env.SB_TEST_CONCURRENCY ?? 20),
});
process.stdout.write('ready\n');
process.once('SIGTERM', () => {
  void w
    .close()
    .then(() => db.close())
    .then(() => process.exit(0));
});
