/**
 * Test harness for workers: a Postgres schema and a Redis prefix of their own, rules saved through
 * the store, a worker started in this process, and waits on run history in Postgres.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import type { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll } from 'vitest';
import { openRunQueue, type RunEvent, type RunJob, runJobId } from '../../src/config/runs.js';
import {
  ConnectionStore,
  type Db,
  migrate,
  openPostgres,
  RuleStore,
  SecretBox,
  setTenantSettings,
} from '../../src/store/index.js';
import type { RunRecord } from '../../src/workers/history.js';
import { type RunningWorker, startWorker, type WorkerOptions } from '../../src/workers/worker.js';
import { testSchemaDb } from '../pg-schema.js';

export const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6390';

/**
 * For tests of the drains alone: a migrated schema of the test's own with tenant acme, and Redis,
 * made before the file's tests and closed after them (read them inside a test).
 */
export function drainStores(name: string): { readonly db: Db; readonly redis: Redis } {
  const out = {} as { db: Db; redis: Redis };
  beforeAll(async () => {
    out.db = await testSchemaDb(name)();
    await migrate(out.db);
    await setTenantSettings(out.db, 'acme', {});
    out.redis = new Redis(REDIS_URL);
  });
  afterAll(async () => {
    out.redis?.disconnect();
    await out.db?.close();
  });
  return out;
}
const PG_URL = process.env.DATABASE_URL ?? 'postgres://signalbox:signalbox@127.0.0.1:5433/signalbox';

export interface Harness {
  readonly db: Db;
  readonly schema: string;
  readonly prefix: string;
  readonly redis: Redis;
  readonly rules: RuleStore;
  readonly connections: ConnectionStore;
  readonly secrets: SecretBox;
  readonly queue: Queue<RunJob>;
  worker: RunningWorker | undefined;
  start(o?: Partial<WorkerOptions>): Promise<RunningWorker>;
  rule(doc: Record<string, unknown>, tenant?: string): Promise<void>;
  enqueue(ruleId: string, event: RunEvent, extra?: Partial<RunJob>): Promise<string>;
  run(id: string): Promise<RunRow | undefined>;
  steps(id: string): Promise<StepRow[]>;
  waitRun(id: string, statuses?: string[], ms?: number): Promise<RunRow>;
  /** Starts a worker in a child process (same Redis prefix and schema); resolves when it is ready. */
  spawn(env?: Record<string, string>): Promise<ChildProcess>;
  close(): Promise<void>;
}

export interface RunRow {
  id: string;
  rule_id: string;
  rule_version: number;
  status: string;
  reason: string | null;
  error: unknown;
}

export interface StepRow {
  idx: number;
  type: string;
  status: string;
  attempts: number;
  output: unknown;
  error: { code?: string; message?: string } | null;
}

export const FINAL = ['completed', 'failed', 'skipped', 'throttled', 'cancelled'];

export async function eventually<T>(
  what: string,
  f: () => Promise<T | undefined | false> | T | undefined | false,
  ms = 20_000,
): Promise<T> {
  const until = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v !== undefined && v !== false) return v as T;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

export async function harness(name: string): Promise<Harness> {
  const id = `${name}_${process.pid}_${randomBytes(3).toString('hex')}`;
  const schema = `sb_${id}`;
  const prefix = `sbt-${id}`;
  const db = await openPostgres({ url: PG_URL, schema });
  await migrate(db);
  const rules = new RuleStore(db);
  const keyHex = randomBytes(32).toString('hex');
  const secrets = SecretBox.fromText(keyHex);
  const children: ChildProcess[] = [];
  const connections = new ConnectionStore(db, secrets);
  for (const t of ['acme', 'strict']) await rules.ensureTenant(t);
  // Test receivers listen on loopback: acme allows private networks, strict does not.
  await setTenantSettings(db, 'acme', { allowPrivateNetworks: true });
  const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: null });
  const queue = openRunQueue(redis.duplicate(), prefix);
  const h: Harness = {
    db,
    schema,
    prefix,
    redis,
    rules,
    connections,
    secrets,
    queue,
    worker: undefined,
    async start(o = {}) {
      h.worker = await startWorker({
        redisUrl: REDIS_URL,
        prefix,
        db,
        secrets,
        retryBaseMs: 50,
        lockDurationMs: 5000,
        stalledIntervalMs: 1000,
        timerEveryMs: 50,
        ...o,
      });
      return h.worker;
    },
    async rule(doc, tenant = 'acme') {
      await rules.save(tenant, { source: '*', ...doc }, { actor: 'test', status: 'active' });
    },
    async enqueue(ruleId, event, extra = {}) {
      const tenant = extra.tenant ?? event.tenant ?? 'acme';
      const jobId = runJobId(tenant, event.id, ruleId, extra.kind ?? 'match');
      await queue.add('run', { tenant, ruleId, event: { tenant, ...event }, ...extra }, { jobId });
      return jobId;
    },
    async run(id) {
      const r = await db.query<RunRow>(
        'select id, rule_id, rule_version, status, reason, error from runs where id = $1',
        [id],
      );
      return r.rows[0];
    },
    async steps(id) {
      const r = await db.query<StepRow>(
        'select idx, type, status, attempts, output, error from steps where run_id = $1 order by idx',
        [id],
      );
      return r.rows;
    },
    async waitRun(id, statuses = FINAL, ms = 20_000) {
      return eventually(
        `run ${id} in ${statuses.join('/')}`,
        async () => {
          const r = await h.run(id);
          return r && statuses.includes(r.status) ? r : undefined;
        },
        ms,
      );
    },
    spawn(extra = {}) {
      const child = spawn(
        process.execPath,
        ['--import', 'tsx', new URL('./worker-process.ts', import.meta.url).pathname],
        {
          env: {
            ...process.env,
            SB_TEST_REDIS: REDIS_URL,
            SB_TEST_PREFIX: prefix,
            SB_TEST_PG: PG_URL,
            SB_TEST_SCHEMA: schema,
            SB_TEST_KEY: keyHex,
            ...extra,
          },
          stdio: ['ignore', 'pipe', 'inherit'],
        },
      );
      children.push(child);
      return new Promise((resolve, reject) => {
        child.stdout!.on('data', (b: Buffer) => {
          if (b.toString().includes('ready')) resolve(child);
        });
        child.once('exit', (code) => reject(new Error(`worker process exited with ${code}`)));
      });
    },
    async close() {
      for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
      await h.worker?.close();
      await queue.close();
      let cursor = '0';
      do {
        const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
        cursor = next;
        if (keys.length > 0) await redis.del(...keys);
      } while (cursor !== '0');
      redis.disconnect();
      await db.query(`drop schema if exists "${schema}" cascade`);
      await db.close();
    },
  };
  return h;
}

export function event(id: string, data: Record<string, unknown> = {}, type = 'ticket.updated'): RunEvent {
  return {
    id,
    tenant: 'acme',
    source: 'halo',
    type,
    time: new Date().toISOString(),
    data: { id: 42, summary: 'Printer down', ...data },
  };
}

/** A completed run's history record (tenant acme, rule r1, no steps), as HistoryLog writes them, with `over`. */
export function runRecord(id: string, over: Partial<RunRecord> = {}): RunRecord {
  const now = Date.now();
  return {
    id,
    tenant: 'acme',
    ruleId: 'r1',
    version: 1,
    eventId: `e-${id}`,
    rev: 1,
    status: 'completed',
    reason: null,
    createdAt: now,
    startedAt: now,
    finishedAt: now,
    error: null,
    steps: [],
    ...over,
  };
}
