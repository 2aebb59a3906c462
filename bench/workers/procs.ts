/**
 * The worker processes of the worker benchmark (workers.bench.ts drives them), one per process:
 *
 *   raw <redisUrl> <prefix> <n>                      a BullMQ worker with a no-op processor: the ceiling
 *   signalbox <redisUrl> <prefix> <n> <pg> <schema>  Signalbox's worker (startWorker), history drain included
 *
 * Both use concurrency 50 and count completed jobs; when n are done they print one JSON line:
 * the time from the first job started to the n-th completed (and, for signalbox, until the
 * history of all n runs is in Postgres).
 */
import { randomBytes } from 'node:crypto';
import { Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { RUN_QUEUE } from '../../src/config/runs.js';
import { openPostgres, SecretBox } from '../../src/store/index.js';
import { startWorker } from '../../src/workers/worker.js';
import { commCpuSeconds, completedRuns, stealSeconds } from '../env.js';

const [mode, redisUrl, prefix, nText, pgUrl, schema] = process.argv.slice(2);
const n = Number(nText);
const CONCURRENCY = 50;

let first = 0;
let done = 0;
/** CPU seconds of this process, Redis and Postgres when the first job started. */
let cpu0 = { self: 0, redis: 0, postgres: 0, steal: 0 };
const cpuNow = () => {
  const u = process.cpuUsage();
  return {
    self: (u.user + u.system) / 1e6,
    redis: commCpuSeconds('redis-server'),
    postgres: commCpuSeconds('postgres'),
    steal: stealSeconds(),
  };
};
/** The share of a core each took from the first job started to now (on 2 cores, 200% is all). */
const cpuShare = (now: number) => {
  const c = cpuNow();
  const pct = (k: keyof typeof c) => Math.round(((c[k] - cpu0[k]) / ((now - first) / 1000)) * 100);
  return {
    workerPct: pct('self'),
    redisPct: pct('redis'),
    postgresPct: pct('postgres'),
    // what the hypervisor took of the 2 cores meanwhile
    stealPct: pct('steal'),
  };
};
const finished = new Promise<number>((resolve) => {
  (globalThis as { onDone?: () => void }).onDone = () => {
    if (++done === n) resolve(performance.now());
  };
});
const onActive = () => {
  if (first === 0) {
    cpu0 = cpuNow();
    first = performance.now();
  }
};
const onDone = (globalThis as unknown as { onDone: () => void }).onDone;

if (mode === 'raw') {
  const connection = new Redis(redisUrl!, { maxRetriesPerRequest: null });
  const w = new Worker(RUN_QUEUE, async () => {}, { connection, prefix, concurrency: CONCURRENCY });
  w.on('active', onActive);
  w.on('completed', onDone);
  const end = await finished;
  console.log(JSON.stringify({ mode, jobs: n, ms: end - first, cpuShare: cpuShare(end) }));
  await w.close();
  connection.disconnect();
} else {
  const db = await openPostgres({ url: pgUrl!, schema: schema! });
  const drainHistory = process.env.SB_BENCH_DRAIN !== '0';
  // The runs table keeps earlier rounds' runs (workers.bench.ts says why): count this run's.
  const before = await completedRuns(db);
  const w = await startWorker({
    redisUrl: redisUrl!,
    prefix: prefix!,
    db,
    secrets: new SecretBox(randomBytes(32)),
    concurrency: CONCURRENCY,
    drainHistory,
    // Listeners first: jobs are waiting, and the first runs would finish before they were attached.
    autorun: false,
  });
  for (const worker of w.workers) {
    worker.on('active', onActive);
    worker.on('completed', onDone);
    void worker.run();
  }
  const end = await finished;
  const share = cpuShare(end);
  for (; drainHistory; ) {
    if ((await completedRuns(db)) - before >= n) break;
    await new Promise((r) => setTimeout(r, 10));
  }
  const historyEnd = performance.now();
  console.log(
    JSON.stringify({ mode, jobs: n, ms: end - first, historyMs: historyEnd - first, cpuShare: share }),
  );
  await w.close();
  await db.close();
}
process.exit(0);
