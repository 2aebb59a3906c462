/**
 * Worker benchmarks (issue 4's targets), each beside a baseline measured in the same run:
 *
 * 1. throughput: runs of one `log` step through Signalbox's worker vs jobs through a raw BullMQ
 *    worker with a no-op processor, same Redis, same payloads, one worker process each;
 * 2. latency: event accepted by the ingest → first step started, at a fixed 2,000 events/s, end
 *    to end through the real commands (`signalbox serve --no-worker`, `signalbox worker`), in
 *    SB_BENCH_E2E_ROUNDS runs (5 by default): the median run's, every run's p99 beside it;
 * 3. debounce timers: Redis memory for 100,000 armed timers, and re-arming at 1k vs 100k armed.
 *
 *   npm run bench:workers      (needs deploy/local's Redis and Postgres: npm run services:up)
 *
 * Writes bench/results/workers.json.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import autocannon from 'autocannon';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { build } from '../../scripts/build-lib.mjs';
import { RUN_QUEUE, type RunJob } from '../../src/config/runs.js';
import { migrate, openPostgres, RuleStore } from '../../src/store/index.js';
import { Timers } from '../../src/workers/timers.js';
import { cliNodeFlags, commCpuSeconds, completedRuns, pidCpuSeconds, runInfo, stealSeconds } from '../env.js';
import { paced } from '../paced.js';

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6390';
const PG_URL = process.env.DATABASE_URL ?? 'postgres://signalbox:signalbox@127.0.0.1:5433/signalbox';
// Jobs per throughput run: 50,000 (5-8 s each). With 20,000 (2-3 s) a run was mostly the worker's
// first seconds (JIT warm-up, Signalbox's code colder than a no-op's) and a short slow spell of
// the VM decided it: the median round's ratio was 58% with 20,000 and 66% with 50,000 on the same
// code within the hour.
const JOBS = Number(process.env.SB_BENCH_JOBS ?? 50_000);
const RATE = Number(process.env.SB_BENCH_RATE ?? 2_000);
const SECONDS = Number(process.env.SB_BENCH_SECONDS ?? 10);
const WARM_SECONDS = 2;
const TIMERS = 100_000;
// The worker process's concurrency in the end-to-end measure (signalbox worker's default: 50).
const E2E_CONCURRENCY = Number(process.env.SB_BENCH_E2E_CONCURRENCY ?? 50);
// SB_BENCH_PROF=DIR: CPU profiles of serve and the worker in DIR (for exploring).
const prof = process.env.SB_BENCH_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.SB_BENCH_PROF}`] : [];

const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: null });
const tag = `wb${process.pid}`;

function deviceEvent(i: number): RunJob['event'] {
  return {
    id: `ev-${i}`,
    tenant: 'bench',
    source: 'rmm',
    type: 'device.offline',
    time: new Date().toISOString(),
    receivedAt: new Date().toISOString(),
    data: {
      id: `dev-${i}`,
      name: `SRV-${i}`,
      client_id: 42,
      site: 'HQ',
      status: 'offline',
      os: 'Windows Server 2022',
      last_seen: new Date().toISOString(),
      ip: '10.0.0.12',
    },
  };
}

async function clean(prefix: string): Promise<void> {
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 5000);
    cursor = next;
    if (keys.length > 0) await redis.del(...keys);
  } while (cursor !== '0');
}

function waitLine(child: ChildProcess, pattern: RegExp): Promise<string> {
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const line = out.split('\n').find((l) => pattern.test(l));
      if (line) resolve(line);
    });
    child.once('exit', (c) => reject(new Error(`exited with ${c}: ${out}`)));
  });
}

// ---------------------------------------------------------------- 1. throughput
const procs = await build('bench/workers/procs.ts', 'var/bench/worker-procs.mjs');

/** Throughput runs so far: each run's job ids (and so its run ids) are its own. */
let throughputCalls = 0;
async function throughput(
  mode: 'raw' | 'signalbox',
  schema: string,
  drain = true,
): Promise<{ jobsPerSec: number; historyPerSec?: number; cpuShare: Record<string, number> }> {
  const prefix = `${tag}-${mode}-${drain ? 'd' : 'n'}`;
  const call = ++throughputCalls;
  await clean(prefix);
  const queue = new Queue<RunJob>(RUN_QUEUE, { connection: redis.duplicate(), prefix });
  for (let i = 0; i < JOBS; i += 1000) {
    await queue.addBulk(
      Array.from({ length: Math.min(1000, JOBS - i) }, (_, j) => ({
        name: 'run',
        // As the ingest makes them: its COMMIT already counted the run for the loop
        // breaker (loop: 'ok'), so the worker makes no round trip for it.
        data: { tenant: 'bench', ruleId: 'bench-log', event: deviceEvent(i + j), loop: 'ok' },
        opts: { jobId: `j${call}-${i + j}`, removeOnComplete: 10_000, removeOnFail: 50_000 },
      })),
    );
  }
  const child = spawn(
    process.execPath,
    [...cliNodeFlags(), ...prof, procs, mode, REDIS_URL, prefix, String(JOBS), PG_URL, schema],
    {
      stdio: ['ignore', 'pipe', 'inherit'],
      env: { ...process.env, SB_BENCH_DRAIN: drain ? '1' : '0' },
    },
  );
  const r = JSON.parse(await waitLine(child, /^\{/)) as {
    ms: number;
    historyMs?: number;
    cpuShare: Record<string, number>;
  };
  await new Promise((res) => child.once('exit', res));
  await queue.close();
  await clean(prefix);
  return {
    jobsPerSec: Math.round((JOBS / r.ms) * 1000),
    ...(r.historyMs ? { historyPerSec: Math.round((JOBS / r.historyMs) * 1000) } : {}),
    // The share of a core the worker process, Redis and Postgres took while the jobs ran.
    cpuShare: r.cpuShare,
  };
}

const schema = `sb_bench_${tag}`;
const db = await openPostgres({ url: PG_URL, schema });
await migrate(db);
const store = new RuleStore(db);
await store.ensureTenant('bench');
await store.save(
  'bench',
  {
    id: 'bench-log',
    source: '*',
    on: 'device.offline',
    actions: [{ type: 'log', with: { device: '{{ device.name }}' } }],
  },
  { actor: 'bench', status: 'active' },
);
// SB_BENCH_ONLY=e2e: only the end-to-end part, not written to results (for exploring).
const only = process.env.SB_BENCH_ONLY;
if (only === 'e2e') {
  console.log('e2e', JSON.stringify(await endToEnd('paced')));
  if (process.env.SB_BENCH_BURSTS === '1')
    console.log('e2e bursts', JSON.stringify(await endToEnd('autocannon')));
  await db.query(`drop schema "${schema}" cascade`);
  process.exit(0);
}
// Warm-up (discarded), then the measured rounds: raw, Signalbox, Signalbox without the drain, in
// turn. On this shared 2-core VM one raw BullMQ worker's rate ranged 9,400–13,400 jobs/s within a
// minute, so each round's ratio is taken against the raw run beside it, and the target is the
// median round's (every round is reported, and the best of each for comparison).
const ROUNDS = Number(process.env.SB_BENCH_ROUNDS ?? 5);
// The runs table is not emptied between rounds, nor before the end-to-end runs. Truncated, it
// could be analyzed by autovacuum while (nearly) empty; the worker's connection then plans the
// steps → runs foreign key check (one per step written) as a sequential scan, and keeps that plan
// while the round writes 50,000 runs: every check reads the whole table. That made some rounds'
// Postgres take 76–87% of a core while writing 1,000–1,500 runs/s against 8,000–10,000 in
// the others (2 of 5 rounds in one run on 2026-12-07, the second of 3 in each of three runs), and
// their ratio ~50%. A table with history (as in production) keeps an index scan.
await throughput('raw', schema);
const raw: number[] = [];
const sbx: Array<{ jobsPerSec: number; historyPerSec?: number }> = [];
const sbxNoDrain: number[] = [];
const cpu: Record<string, Array<Record<string, number>>> = {
  raw: [],
  signalbox: [],
  signalboxWithoutDrain: [],
};
for (let round = 0; round < ROUNDS; round++) {
  const r = await throughput('raw', schema);
  raw.push(r.jobsPerSec);
  cpu.raw!.push(r.cpuShare);
  const { cpuShare, ...s } = await throughput('signalbox', schema);
  sbx.push(s);
  cpu.signalbox!.push(cpuShare);
  // The same worker with the history drain left to another process (not running here).
  const n = await throughput('signalbox', schema, false);
  sbxNoDrain.push(n.jobsPerSec);
  cpu.signalboxWithoutDrain!.push(n.cpuShare);
}
const best = (xs: number[]) => Math.max(...xs);
const ratios = sbx.map((s, i) => +(s.jobsPerSec / raw[i]!).toFixed(3));
const ratiosWithoutDrain = sbxNoDrain.map((s, i) => +(s / raw[i]!).toFixed(3));
/** The index of the median of xs (an odd count: the middle one). */
const medianAt = (xs: number[]) => [...xs.keys()].sort((a, b) => xs[a]! - xs[b]!)[Math.floor(xs.length / 2)]!;
const m = medianAt(ratios);
const mn = medianAt(ratiosWithoutDrain);
const throughputResult = {
  jobs: JOBS,
  concurrency: 50,
  rounds: ROUNDS,
  // The median round: its raw rate, Signalbox's, and their ratio (the target's measure).
  rawBullmqJobsPerSec: raw[m]!,
  signalboxRunsPerSec: sbx[m]!.jobsPerSec,
  signalboxHistoryRunsPerSec: sbx[m]!.historyPerSec ?? 0,
  ratio: ratios[m]!,
  ratios,
  signalboxWithoutDrainRunsPerSec: sbxNoDrain[mn]!,
  rawBesideWithoutDrain: raw[mn]!,
  ratioWithoutDrain: ratiosWithoutDrain[mn]!,
  ratiosWithoutDrain,
  best: {
    raw: best(raw),
    signalbox: best(sbx.map((s) => s.jobsPerSec)),
    ratio: +(best(sbx.map((s) => s.jobsPerSec)) / best(raw)).toFixed(3),
  },
  perRound: { raw, signalbox: sbx, signalboxWithoutDrain: sbxNoDrain },
  cpuShare: cpu,
};
console.log('throughput', JSON.stringify(throughputResult));
// SB_BENCH_ONLY=throughput: only the throughput part, not written to results (for exploring).
if (only === 'throughput') {
  await db.query(`drop schema "${schema}" cascade`);
  process.exit(0);
}

// ---------------------------------------------------------------- 2. latency, end to end
async function settle(): Promise<void> {
  await db.query('truncate audit_log');
  await db.query('checkpoint').catch(() => {}); // needs a superuser or pg_checkpoint: best effort
  await db.query('vacuum analyze runs, steps, audit_log, events');
  await new Promise((r) => setTimeout(r, 2_000));
}

/** End-to-end runs so far: each run's event ids are its own (`e2e<n>-`), the runs table is shared. */
let e2eCalls = 0;
async function endToEnd(sender: 'paced' | 'autocannon'): Promise<Record<string, unknown>> {
  const prefix = `${tag}-e2e`;
  const call = ++e2eCalls;
  await clean(prefix);
  const before = await completedRuns(db);
  mkdirSync('var/bench', { recursive: true });
  writeFileSync(
    'var/bench/e2e-connections.json',
    JSON.stringify({ connections: [], apiKeys: [{ tenant: 'bench', key: 'bench-key-0123456789' }] }),
  );
  const env = {
    ...process.env,
    REDIS_URL,
    DATABASE_URL: PG_URL,
    SIGNALBOX_DB_SCHEMA: schema,
    SIGNALBOX_REDIS_PREFIX: prefix,
    SIGNALBOX_SECRET_KEY: randomBytes(32).toString('hex'),
    // Above the offered rate: the default per-tenant limit (1,000/s) would refuse part of the load.
    SIGNALBOX_TENANT_RATE: String(RATE * 2),
  };
  const port = 31_000 + (process.pid % 1000);
  const serve = spawn(
    process.execPath,
    [
      ...cliNodeFlags(),
      ...prof,
      'bin/signalbox.js',
      'serve',
      '--no-worker',
      '--no-admin',
      '--port',
      String(port),
      '--connections',
      'var/bench/e2e-connections.json',
    ],
    { env, stdio: ['ignore', 'pipe', 'inherit'] },
  );
  await waitLine(serve, /listening/);
  const worker = spawn(
    process.execPath,
    [...cliNodeFlags(), ...prof, 'bin/signalbox.js', 'worker', '--concurrency', String(E2E_CONCURRENCY)],
    {
      env,
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  await waitLine(worker, /running/);
  let seq = 0;
  let idPrefix = `warm${call}`;
  const next = () => {
    const e = deviceEvent(seq++);
    return JSON.stringify({ ...e, tenant: undefined, receivedAt: undefined, id: `${idPrefix}-${seq}` });
  };
  // A warm-up at the same rate, left out of every number: the processes' first seconds (JIT,
  // connections opening, caches filling) are not the steady state the target is about.
  const warm = await paced(port, RATE, WARM_SECONDS, next);
  idPrefix = `e2e${call}`;
  // What share of a core each part took during the measured seconds (on 2 cores, 200% is all).
  const cpuNow = () => {
    const u = process.cpuUsage();
    return {
      wall: performance.now() / 1000,
      serve: pidCpuSeconds(serve.pid!),
      worker: pidCpuSeconds(worker.pid!),
      redis: commCpuSeconds('redis-server'),
      postgres: commCpuSeconds('postgres'),
      sender: (u.user + u.system) / 1e6,
      // what the hypervisor took of the 2 cores (env.ts)
      steal: stealSeconds(),
    };
  };
  const cpu0 = cpuNow();
  const load =
    sender === 'paced'
      ? await paced(port, RATE, SECONDS, next)
      : await new Promise<autocannon.Result>((resolve, reject) =>
          autocannon(
            {
              url: `http://127.0.0.1:${port}/v1/events`,
              connections: 16,
              duration: SECONDS,
              overallRate: RATE,
              requests: [
                {
                  method: 'POST',
                  setupRequest: (req) => {
                    return {
                      ...req,
                      body: next(),
                      headers: {
                        'content-type': 'application/json',
                        authorization: 'Bearer bench-key-0123456789',
                      },
                    };
                  },
                },
              ],
            },
            (err, res) => (err ? reject(err) : resolve(res)),
          ),
        );
  const cpu1 = cpuNow();
  const cpuShare = Object.fromEntries(
    (['serve', 'worker', 'redis', 'postgres', 'sender', 'steal'] as const).map((k) => [
      `${k}Pct`,
      Math.round(((cpu1[k] - cpu0[k]) / (cpu1.wall - cpu0.wall)) * 100),
    ]),
  );
  const accepted = load['2xx'];
  const until = Date.now() + 60_000;
  let finished = 0;
  while (Date.now() < until) {
    finished = (await completedRuns(db)) - before;
    if (finished >= accepted + warm['2xx']) break;
    await new Promise((r) => setTimeout(r, 200));
  }
  // Accepted (the event's receivedAt, the run's created_at) → first step started, per measured run.
  const firstStep = `select r.created_at, extract(epoch from (s.started_at - r.created_at)) * 1000 as ms
    from runs r join steps s on s.run_id = r.id and s.idx = 0 where r.event_id like 'e2e${call}-%'`;
  const q = await db.query<{ p50: number; p99: number; max: number; n: string }>(
    `select percentile_cont(0.5) within group (order by ms) as p50, percentile_cont(0.99) within group (order by ms) as p99,
            max(ms) as max, count(*) as n
     from (${firstStep}) x`,
  );
  if (only === 'e2e') {
    // Exploring: the tail second by second (is it steady, or a few bad moments?).
    const s = await db.query<{ sec: number; n: string; p50: number; p99: number; max: number }>(
      `select floor(extract(epoch from r.created_at))::bigint % 1000 as sec, count(*) as n,
              percentile_cont(0.5) within group (order by ms) as p50, percentile_cont(0.99) within group (order by ms) as p99, max(ms) as max
       from (${firstStep}) r group by 1 order by 1`,
    );
    console.log(
      s.rows
        .map(
          (r) =>
            `${r.sec}: n=${r.n} p50=${Math.round(r.p50)} p99=${Math.round(r.p99)} max=${Math.round(r.max)}`,
        )
        .join('\n'),
    );
    // When in the second the slow runs (over 30 ms) were accepted, per second: a stall at the same
    // phase every second is a timer somewhere.
    const slow = await db.query<{ sec: number; at: number[] }>(
      `select floor(extract(epoch from created_at))::bigint % 1000 as sec,
              array_agg((extract(milliseconds from created_at)::numeric % 1000)::int order by created_at) as at
       from (${firstStep}) r where ms > 30 group by 1 order by 1`,
    );
    console.log(slow.rows.map((r) => `${r.sec}: ${r.at.join(' ')}`).join('\n'));
  }
  // Where the time goes, from BullMQ's own stamps: received → job added (the ingest's COMMIT),
  // added → taken by the worker (queue wait).
  const q2 = new Queue<RunJob>(RUN_QUEUE, { connection: redis.duplicate(), prefix });
  const jobs = (await q2.getJobs(['completed'], 0, -1)).filter((j) =>
    j.data.event.id.startsWith(`e2e${call}-`),
  );
  await q2.close();
  const med = (xs: number[]) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? null;
  const p99 = (xs: number[]) => xs.sort((a, b) => a - b)[Math.floor(xs.length * 0.99)] ?? null;
  const toAdd = jobs.map((j) => j.timestamp - Date.parse(j.data.event.receivedAt ?? ''));
  const toTake = jobs.map((j) => (j.processedOn ?? 0) - j.timestamp);
  // Taken by the worker → its first step started (the run's own work before the step).
  const started = new Map(
    (
      await db.query<{ id: string; at: Date }>(
        'select run_id as id, started_at as at from steps where idx = 0',
      )
    ).rows.map((r) => [r.id, new Date(r.at).getTime()]),
  );
  const toStep = jobs.flatMap((j) => {
    const at = started.get(String(j.id));
    return at === undefined || !j.processedOn ? [] : [at - j.processedOn];
  });
  // Taken → the job completed (the whole run and BullMQ's completion). Its tail next to queued →
  // taken's tells whether jobs wait for free slots or the machine is slow for everything at once.
  const toDone = jobs.flatMap((j) => (j.finishedOn && j.processedOn ? [j.finishedOn - j.processedOn] : []));
  const parts = {
    receivedToQueuedMs: { p50: med(toAdd), p99: p99(toAdd) },
    queuedToTakenMs: { p50: med(toTake), p99: p99(toTake) },
    takenToFirstStepMs: { p50: med(toStep), p99: p99(toStep) },
    takenToCompletedMs: { p50: med(toDone), p99: p99(toDone) },
  };
  serve.kill('SIGTERM');
  worker.kill('SIGTERM');
  await Promise.all([serve, worker].map((c) => new Promise((r) => c.once('exit', r))));
  await clean(prefix);
  const row = q.rows[0]!;
  return {
    sender,
    offeredEventsPerSec: RATE,
    seconds: SECONDS,
    warmUpSeconds: WARM_SECONDS,
    acceptedEventsPerSec: Math.round(accepted / SECONDS),
    non2xx: load.non2xx,
    runs: Number(row.n),
    acceptedToFirstStepMs: {
      p50: +Number(row.p50).toFixed(2),
      p99: +Number(row.p99).toFixed(2),
      max: +Number(row.max).toFixed(2),
    },
    requestLatencyMs: { p50: load.latency.p50, p99: load.latency.p99 },
    sampled: jobs.length,
    ...parts,
    cpuShare,
  };
}
// The throughput part wrote 250,000 runs (kept in the table): before each end-to-end run
// Postgres writes out and settles (checkpoint, vacuum) so that its background work is not charged
// to the latency part.
// The end-to-end target is the median of E2E_ROUNDS runs (every run's p99 reported beside it), as
// the other targets are medians of rounds: one 10 s run's tail is decided by the VM's slowest
// moments (today's single runs on the same code: 13, 14, 16, 18, 21 and 30 ms; the 30 ms one
// had one second at 38).
const E2E_ROUNDS = Number(process.env.SB_BENCH_E2E_ROUNDS ?? 5);
const e2eRuns: Array<Record<string, unknown>> = [];
for (let round = 0; round < E2E_ROUNDS; round++) {
  await settle();
  const r = await endToEnd('paced');
  console.log('e2e', round + 1, JSON.stringify(r));
  e2eRuns.push(r);
}
const e2eP99 = (r: Record<string, unknown>) => (r.acceptedToFirstStepMs as { p99: number }).p99;
const e2eP99s = e2eRuns.map(e2eP99);
const e2e = { ...e2eRuns[medianAt(e2eP99s)]!, rounds: E2E_ROUNDS, p99Rounds: e2eP99s };
console.log('e2e', JSON.stringify(e2e));
await settle();
const e2eBursts = await endToEnd('autocannon');
console.log('e2e (autocannon, bursts)', JSON.stringify(e2eBursts));

// ---------------------------------------------------------------- 3. debounce timers
async function memory(): Promise<number> {
  const info = await redis.info('memory');
  return Number(/used_memory:(\d+)/.exec(info)![1]);
}
const tprefix = `${tag}-timers`;
await clean(tprefix);
const timers = new Timers(redis, tprefix);
const job = (i: number): RunJob => ({
  tenant: 'bench',
  ruleId: 'offline-15m',
  event: deviceEvent(i),
  kind: 'debounced',
  version: 1,
});
const due = Date.now() + 3600_000;
const before = await memory();
async function armMany(from: number, to: number): Promise<void> {
  const BATCH = 500;
  for (let i = from; i < to; i += BATCH) {
    await Promise.all(
      Array.from({ length: Math.min(BATCH, to - i) }, (_, j) =>
        timers.arm(
          Timers.id('bench', 'offline-15m', `dev-${i + j}`),
          due + ((i + j) % 900) * 1000,
          Date.now(),
          job(i + j),
        ),
      ),
    );
  }
}
async function rearmRate(armed: number): Promise<number> {
  const N = 10_000;
  const t0 = performance.now();
  const BATCH = 500;
  for (let i = 0; i < N; i += BATCH) {
    await Promise.all(
      Array.from({ length: BATCH }, (_, j) => {
        const k = (i + j) % armed;
        return timers.arm(
          Timers.id('bench', 'offline-15m', `dev-${k}`),
          due + 5000 + ((i + j) % 900) * 1000,
          Date.now(),
          job(k),
        );
      }),
    );
  }
  return Math.round((N / (performance.now() - t0)) * 1000);
}
await armMany(0, 1000);
const rearmAt1k = await rearmRate(1000);
await armMany(1000, TIMERS);
const after = await memory();
const rearmAt100k = await rearmRate(TIMERS);
const armed = await timers.size();
await clean(tprefix);
const debounce = {
  timers: armed,
  redisBytes: after - before,
  redisMB: +((after - before) / 2 ** 20).toFixed(1),
  bytesPerTimer: Math.round((after - before) / armed),
  rearmsPerSecAt1k: rearmAt1k,
  rearmsPerSecAt100k: rearmAt100k,
  rearmCostRatio100kVs1k: +(rearmAt1k / rearmAt100k).toFixed(2),
};
console.log('debounce', JSON.stringify(debounce));

await db.query(`drop schema "${schema}" cascade`);
await db.close();
redis.disconnect();
const out = {
  run: runInfo(),
  nodeFlags: cliNodeFlags(),
  command: 'npm run bench:workers',
  throughput: throughputResult,
  endToEnd: e2e,
  endToEndBursts: e2eBursts,
  debounce,
};
writeFileSync('bench/results/workers.json', `${JSON.stringify(out, null, 2)}\n`);
console.log('wrote bench/results/workers.json');
process.exit(0);
