/**
 * `signalbox worker`: runs workflows from the run queue (src/workers).
 *
 *   signalbox worker [--concurrency 50] [--fetchers 2]
 *
 * Redis: REDIS_URL (or deploy/local's). The store: DATABASE_URL (a worker process needs a
 * Postgres server: the embedded database belongs to one process, so with it `signalbox serve`
 * runs the workers itself). SIGNALBOX_SECRET_KEY decrypts connection secrets; SIGNALBOX_SMTP_URL
 * and SIGNALBOX_MAIL_FROM serve `email` steps without a connection.
 */
import type { Db } from '../store/index.js';
import { DEFAULT_FETCHERS, RedisPolicyError, type RunningWorker, startWorker } from '../workers/worker.js';
import { arg, type CommandIo, unknownOption } from './args.js';
import {
  checkRedis,
  commandEnv,
  envProblem,
  exitIfLingering,
  openStore,
  StartupError,
  secretBox,
} from './env.js';

/** Starts the workers of this process from the environment (serve uses it too). */
export function workerFromEnv(
  env: Record<string, string | undefined>,
  db: Db,
  concurrency?: number,
  fetchers?: number,
): Promise<RunningWorker> {
  return startWorker({
    redisUrl: env.REDIS_URL!,
    prefix: env.SIGNALBOX_REDIS_PREFIX || 'sb',
    db,
    secrets: secretBox(env),
    smtpUrl: env.SIGNALBOX_SMTP_URL,
    // SIGNALBOX_ARCHIVE_DAYS: how many days of events the archive keeps (default 30).
    ...(Number(env.SIGNALBOX_ARCHIVE_DAYS) > 0
      ? { archiveRetentionDays: Number(env.SIGNALBOX_ARCHIVE_DAYS) }
      : {}),
    // SIGNALBOX_HISTORY_DAYS: how many days of run history Postgres keeps (default 90).
    ...(Number(env.SIGNALBOX_HISTORY_DAYS) > 0
      ? { historyRetentionDays: Number(env.SIGNALBOX_HISTORY_DAYS) }
      : {}),
    defaultFrom: env.SIGNALBOX_MAIL_FROM,
    ...(concurrency !== undefined ? { concurrency } : {}),
    ...(fetchers !== undefined ? { fetchers } : {}),
    onRedis: (up, e) =>
      process.stderr.write(
        up
          ? 'signalbox workers: Redis is reachable again\n'
          : `signalbox workers: Redis is unreachable (${e?.message ?? 'error'}); runs wait until it is back\n`,
      ),
    onQueueError: (e) =>
      process.stderr.write(
        `signalbox workers: the run queue answered an error (${e.message}); runs wait and are tried again${
          e.message.startsWith('OOM') ? ': Redis is full' : ''
        }\n`,
      ),
    onDropped: (what, n, e) =>
      process.stderr.write(
        what === 'fired timer'
          ? `signalbox workers: ${n} fired debounce timer${n === 1 ? '' : 's'} could not be read (${e.message}); dropped without a run, the others start theirs (at most one such line a minute)\n`
          : `signalbox workers: Postgres refused ${n} ${what}${n === 1 ? '' : 's'} (${e.message}); dropped, the rest is written (at most one such line a minute)\n`,
      ),
    onStore: (up, e) =>
      process.stderr.write(
        up
          ? 'signalbox workers: Postgres is reachable again; the waiting history and events are being written\n'
          : `signalbox workers: Postgres is unreachable (${e?.message ?? 'error'}); run history and archived events wait in Redis\n`,
      ),
  });
}

export async function runWorker(argv: readonly string[], io: CommandIo): Promise<number> {
  const unknown = unknownOption(argv, ['concurrency', 'fetchers']);
  if (unknown) {
    io.stderr.write(`signalbox worker: unknown option --${unknown}\n`);
    return 2;
  }
  const concurrency = Number(arg(argv, 'concurrency') ?? 50);
  if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 1000) {
    io.stderr.write('signalbox worker: --concurrency must be a whole number from 1 to 1000\n');
    return 2;
  }
  const fetchers = Number(arg(argv, 'fetchers') ?? Math.min(DEFAULT_FETCHERS, concurrency));
  if (!Number.isInteger(fetchers) || fetchers < 1 || fetchers > concurrency) {
    io.stderr.write('signalbox worker: --fetchers must be a whole number from 1 to the concurrency\n');
    return 2;
  }
  const env = commandEnv();
  const bad = envProblem(env);
  if (bad) {
    io.stderr.write(`signalbox worker: ${bad}\n`);
    return 2;
  }
  if (!env.REDIS_URL) {
    io.stderr.write(
      'signalbox worker: no Redis: set REDIS_URL, or run `bash deploy/local/up.sh` to start a local one\n',
    );
    return 2;
  }
  if (!env.DATABASE_URL) {
    io.stderr.write(
      'signalbox worker: set DATABASE_URL (a separate worker process needs Postgres; with the embedded database, `signalbox serve` runs the workers)\n',
    );
    return 2;
  }
  await checkRedis(env.REDIS_URL);
  const db = await openStore(env);
  let w: RunningWorker;
  try {
    w = await workerFromEnv(env, db, concurrency, fetchers);
  } catch (e) {
    await db.close();
    throw e instanceof RedisPolicyError ? new StartupError(e.message) : e;
  }
  io.stdout.write(
    `signalbox worker: running (pid ${process.pid}, concurrency ${concurrency}, ${fetchers} fetch loop${fetchers === 1 ? '' : 's'})\n`,
  );
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  io.stdout.write('signalbox worker: finishing active runs\n');
  await w.close();
  await db.close();
  exitIfLingering();
  return 0;
}
