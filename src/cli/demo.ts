/**
 * `signalbox demo`: Signalbox end to end with its embedded defaults, in one command. It brings up
 * Redis (and the local Postgres) with deploy/local/up.sh when REDIS_URL is not set, applies
 * examples/demo-rules.yaml, starts the ingest server with example connections, posts the example
 * PSA webhooks (examples/psa) through HTTP, and shows what was accepted, what matched, and the
 * run jobs that were queued. Then it stops, leaving the rules and runs in place.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import type { Connection, PsaSource } from '../ingest/connection.js';
import { Dispatcher, RUN_QUEUE, type RunJob } from '../ingest/dispatch.js';
import { Handoff } from '../ingest/handoff.js';
import { LiveRules } from '../ingest/live-rules.js';
import { startIngest } from '../ingest/server.js';
import { type Db, migrate, RuleStore } from '../store/index.js';
import { startWorker } from '../workers/worker.js';
import { commandEnv, openCommandDb, secretBox } from './env.js';
import { runRules } from './rules.js';

const CONNECTIONS: Connection[] = [
  { tenant: 'demo', id: 'cw', source: 'connectwise', connectwise: { signingKey: 'test-signing-key' } },
  { tenant: 'demo', id: 'at', source: 'autotask', autotask: { secret: 'test-webhook-secret' } },
  {
    tenant: 'demo',
    id: 'halo',
    source: 'halo',
    halo: { username: 'halo-webhook', password: 'test-basic-password' },
  },
];

const HALO_AUTH = { authorization: 'Basic aGFsby13ZWJob29rOnRlc3QtYmFzaWMtcGFzc3dvcmQ=' };
const POSTS: Array<[string, string, Record<string, string>]> = [
  [
    'connectwise/cw/48213',
    'connectwise.ticket.created.json',
    { 'x-content-signature': '86oTs+FzhRHo8YZd9uSkz03rwrtxGXbpBSzyjGgkuqE=' },
  ],
  [
    'connectwise/cw/48213',
    'connectwise.ticket.updated.json',
    { 'x-content-signature': '5DRPR5A+QFSCwZHtOLGUG9TxVzwHrBVXfg1snExfOtM=' },
  ],
  [
    'autotask/at',
    'autotask.ticket.created.json',
    { 'x-hook-signature': 'sha1=GNVxsB2wTl/TbVhw1v9UdiESMm4=' },
  ],
  [
    'autotask/at',
    'autotask.ticket.updated.json',
    { 'x-hook-signature': 'sha1=5tlvfR4R/O4ffPO+ZmJ4WfcPbsY=' },
  ],
  ['halo/halo', 'halo.ticket.created.json', HALO_AUTH],
  ['halo/halo', 'halo.ticket.updated.json', HALO_AUTH],
];

interface RunView {
  id: string;
  status: string;
  steps: Array<{ type: string; status: string; output: unknown }>;
}

/** Waits until the runs are finished in the history (or the time is up); returns those that are. */
async function waitForRuns(db: Db, ids: string[], ms: number): Promise<RunView[]> {
  const until = Date.now() + ms;
  for (;;) {
    const r = await db.query<{ id: string; status: string }>(
      "select id, status from runs where id = any($1) and status in ('completed', 'failed', 'skipped', 'throttled', 'cancelled')",
      [ids],
    );
    if (r.rows.length >= ids.length || Date.now() > until) {
      const out: RunView[] = [];
      for (const id of ids) {
        const run = r.rows.find((x) => x.id === id);
        if (!run) continue;
        const s = await db.query<{ type: string; status: string; output: unknown }>(
          'select type, status, output from steps where run_id = $1 order by idx',
          [id],
        );
        out.push({ ...run, steps: s.rows });
      }
      return out;
    }
    await new Promise((res) => setTimeout(res, 100));
  }
}

export async function runDemo(io: {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
}): Promise<number> {
  const say = (s: string) => io.stdout.write(`${s}\n`);
  if (!existsSync('examples/demo-rules.yaml')) {
    io.stderr.write('signalbox demo: run it from the repository root (examples/ is needed)\n');
    return 2;
  }
  let env = commandEnv();
  if (!env.REDIS_URL) {
    say('· no REDIS_URL: bringing up local services (deploy/local/up.sh)');
    const up = spawnSync('bash', ['deploy/local/up.sh'], { stdio: 'inherit' });
    if (up.status !== 0) {
      io.stderr.write(
        'signalbox demo: could not bring up Redis; set REDIS_URL to a Redis you run (maxmemory-policy noeviction)\n',
      );
      return 2;
    }
    env = commandEnv();
  }
  say('· applying examples/demo-rules.yaml to tenant "demo"');
  if ((await runRules(['apply', '-f', 'examples/demo-rules.yaml', '--tenant', 'demo'], io)) !== 0) return 2;

  const redis = new Redis(env.REDIS_URL!, { maxRetriesPerRequest: 1 });
  redis.on('error', () => {});
  const prefix = `demo${Date.now().toString(36)}`;
  const db = await openCommandDb(env);
  await migrate(db);
  const live = new LiveRules(new RuleStore(db));
  const stopLive = await live.start();
  const handoff = new Handoff(redis, () => live.engine, { prefix });
  // Connections given to BullMQ and the dispatcher are ours to close (BullMQ closes only its own).
  const queueRedis = redis.duplicate();
  const dispatchRedis = redis.duplicate();
  const queue = new Queue(RUN_QUEUE, { connection: queueRedis, prefix });
  const dispatcher = new Dispatcher(dispatchRedis, handoff.dispatchKey, queue, { blockMs: 50 });
  await dispatcher.start();
  const byKey = new Map(CONNECTIONS.map((c) => [`${c.source}/${c.id}`, c]));
  const server = await startIngest({
    connections: { get: (s: PsaSource, id: string) => byKey.get(`${s}/${id}`) },
    apiKeys: { tenantOf: () => undefined },
    handoff,
    ready: async () => true,
  });
  say(`· ingest listening on http://127.0.0.1:${server.port} with ${live.engine.size} active rules`);
  let failed = 0;
  for (const [path, file, headers] of POSTS) {
    const r = await fetch(`http://127.0.0.1:${server.port}/v1/hooks/${path}`, {
      method: 'POST',
      body: readFileSync(`examples/psa/${file}`),
      headers: { 'content-type': 'application/json', ...headers },
    });
    const body = (await r.json()) as {
      accepted?: number;
      duplicates?: number;
      results?: Array<{ rules: string[] }>;
      error?: string;
    };
    if (r.status !== 202) failed++;
    const rules = body.results?.flatMap((x) => x.rules) ?? [];
    say(
      `  POST /v1/hooks/${path.padEnd(22)} ${file.padEnd(33)} → ${r.status} ${body.error ?? `${body.accepted} accepted${body.duplicates ? `, ${body.duplicates} duplicate` : ''}; matched: ${rules.join(', ') || '–'}`}`,
    );
  }
  const until = Date.now() + 5_000;
  let jobs = await queue.getJobs(['wait']);
  while (jobs.length < 8 && Date.now() < until) {
    await new Promise((r) => setTimeout(r, 100));
    jobs = await queue.getJobs(['wait']);
  }
  say(`· ${jobs.length} runs queued for the workers (BullMQ queue "${RUN_QUEUE}", prefix "${prefix}"):`);
  const runIds = new Map<string, string>();
  for (const j of jobs.sort((a, b) => (a.timestamp ?? 0) - (b.timestamp ?? 0))) {
    const d = j.data as RunJob;
    runIds.set(String(j.id), `${d.ruleId} ← ${d.event.type} ${d.event.id}`);
    say(`  ${d.ruleId.padEnd(20)} ← ${d.event.type} ${d.event.id}`);
  }
  // The workers (src/workers) run them: steps, templates, history in the database.
  const worker = await startWorker({
    redisUrl: env.REDIS_URL!,
    prefix,
    db,
    secrets: secretBox(env),
    concurrency: 10,
  });
  const ids = [...runIds.keys()];
  const runs = await waitForRuns(db, ids, 10_000);
  say(`· the workers ran them (history in ${db.kind === 'pglite' ? 'var/db' : 'Postgres'}):`);
  for (const r of runs) {
    const outputs = r.steps.map(
      (s) => `${s.type} ${s.status}${s.output ? ` ${JSON.stringify(s.output)}` : ''}`,
    );
    say(
      `  ${r.status.padEnd(9)} ${runIds.get(r.id)}${outputs.length ? `\n      ${outputs.join('\n      ')}` : ''}`,
    );
  }
  if (runs.length < ids.length) {
    failed++;
    io.stderr.write(`signalbox demo: only ${runs.length} of ${ids.length} runs finished in time\n`);
  }
  await worker.close();
  server.close();
  await dispatcher.stop();
  await queue.obliterate({ force: true }).catch(() => {});
  await queue.close();
  const keys = await redis.keys(`${prefix}:*`);
  if (keys.length > 0) await redis.del(...keys);
  for (const r of [redis, queueRedis, dispatchRedis]) r.disconnect();
  await stopLive();
  await db.close();
  return failed === 0 ? 0 : 1;
}
