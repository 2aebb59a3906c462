/**
 * A worker process's parts, wired: the BullMQ worker running the executor, the debounce timers,
 * the schedules of scheduled rules, and the history drain to Postgres. `signalbox worker` calls
 * startWorker; tests and benchmarks do too.
 */
import { type Job, type Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { AtMostEvery } from '../config/log-limit.js';
import { archiveStreamKey, openRunQueue, RUN_QUEUE, type RunJob } from '../config/runs.js';
import { OutageWatch } from '../config/streams.js';
import {
  ConnectionStore,
  type Db,
  isConnectionError,
  RuleStore,
  type SecretBox,
  tenantSettings,
} from '../store/index.js';
import { actionLibrary } from './actions.js';
import { ArchiveDrain } from './archive.js';
import { Budgets } from './budget.js';
import { storeConnections } from './context.js';
import { Executor, type RunJobData } from './executor.js';
import { HistoryDrain, HistoryLog } from './history.js';
import { PsaClients } from './psa.js';
import { RuleCache } from './rules.js';
import { Timers } from './timers.js';

export interface WorkerOptions {
  readonly redisUrl: string;
  /** Key prefix of the queue, timers, budgets and history (the ingest's SIGNALBOX_REDIS_PREFIX). */
  readonly prefix?: string;
  readonly db: Db;
  readonly secrets: SecretBox;
  readonly concurrency?: number;
  readonly smtpUrl?: string | undefined;
  readonly defaultFrom?: string | undefined;
  /** How long a job's lock lasts without renewal: a killed worker's runs resume after it. */
  readonly lockDurationMs?: number;
  readonly stalledIntervalMs?: number;
  readonly retryBaseMs?: number;
  readonly timerEveryMs?: number;
  /** Write the history stream to Postgres from this process (default true). */
  readonly drainHistory?: boolean;
  /** Write the ingest's event archive stream to Postgres from this process (default: as drainHistory). */
  readonly drainArchive?: boolean;
  /** Days the event archive keeps (default 30). */
  readonly archiveRetentionDays?: number;
  /** Days of run history kept (default 90: HISTORY_DAYS). */
  readonly historyRetentionDays?: number;
  readonly now?: () => number;
  readonly random?: () => number;
  /** Start taking jobs at once (default true); else call `run()` on each of `workers` (benchmarks attach listeners first). */
  readonly autorun?: boolean;
  /** BullMQ workers (fetch loops) in this process, sharing `concurrency` (DEFAULT_FETCHERS). */
  readonly fetchers?: number;
  /** Told when Redis becomes unreachable (with the first error) and when it is back: once each. */
  readonly onRedis?: (up: boolean, error?: Error) => void;
  /**
   * Told, at most once a minute, of an error the run queue's scripts answered while Redis is
   * reachable: Redis out of memory (maxmemory under noeviction), a damaged key. BullMQ tries
   * again; the runs wait meanwhile, and without this nothing said why.
   */
  readonly onQueueError?: (error: Error) => void;
  /**
   * Told when the drains find Postgres unreachable (with the first error) and when they write
   * again: once each. Meanwhile run history and archived events wait in Redis.
   */
  readonly onStore?: (up: boolean, error?: Error) => void;
  /**
   * Told, at most once a minute per kind, of what was dropped so that the rest goes on: run
   * records or archived events the drains dropped because Postgres refused them (a value it cannot
   * store, a record that is not JSON), fired debounce timers that could not be read (a damaged
   * entry: no run starts for it). How many since the last time, and the latest error; without
   * this nothing said so.
   */
  readonly onDropped?: (what: DroppedKind, count: number, error: Error) => void;
}

/** What is dropped (WorkerOptions.onDropped). */
export type DroppedKind = 'run record' | 'archived event' | 'fired timer';

export interface RunningWorker {
  /** The fetch loops (WorkerOptions.fetchers). */
  readonly workers: ReadonlyArray<Worker<RunJobData>>;
  readonly queue: Queue<RunJob>;
  readonly timers: Timers;
  readonly drain: HistoryDrain | undefined;
  readonly archive: ArchiveDrain | undefined;
  readonly rules: RuleCache;
  /**
   * Stops taking runs and lets the active ones finish, for up to `graceMs` (CLOSE_GRACE_MS), or
   * not at all while Redis is unreachable; then drops its connections.
   */
  close(graceMs?: number): Promise<void>;
}

export class RedisPolicyError extends Error {
  override readonly name = 'RedisPolicyError';
}

/** The oldest Redis Signalbox runs on: SMISMEMBER (the ingest's dedupe) and BullMQ need 6.2. */
const MIN_REDIS = [6, 2] as const;

/**
 * What Signalbox needs of its Redis, checked before anything starts, from INFO (which managed
 * Redis services answer; several refuse or rename CONFIG, asked only where INFO does not say):
 * - design.md: it must not evict (`maxmemory-policy noeviction`), or queued runs and timers could
 *   vanish;
 * - version 6.2 or later: an older one refused the ingest's every COMMIT (unknown SMISMEMBER);
 * - not a cluster node: a COMMIT writes keys of many hash slots at once (CROSSSLOT);
 * - not a read-only replica: every write would fail (READONLY).
 * Each of these used to start, then answer every event 503.
 */
export async function checkRedisServer(redis: Redis): Promise<void> {
  const info = await redis.info();
  const field = (name: string) => new RegExp(`^${name}:(\\S+)`, 'm').exec(info)?.[1];
  const version = field('redis_version');
  if (version !== undefined) {
    const [major = 0, minor = 0] = version.split('.').map(Number);
    if (major < MIN_REDIS[0] || (major === MIN_REDIS[0] && minor < MIN_REDIS[1]))
      throw new RedisPolicyError(`Redis ${MIN_REDIS.join('.')} or later is needed (this one is ${version})`);
  }
  if (field('cluster_enabled') === '1')
    throw new RedisPolicyError(
      'Redis Cluster is not supported: a hand-off writes keys of many hash slots at once; use a standalone Redis (a primary, with replicas for failover)',
    );
  if (field('role') === 'slave' && field('slave_read_only') !== '0')
    throw new RedisPolicyError(
      `REDIS_URL names a read-only replica (of ${field('master_host') ?? '?'}:${field('master_port') ?? '?'}): point it at the primary`,
    );
  const policy =
    field('maxmemory_policy') ?? ((await redis.config('GET', 'maxmemory-policy')) as [string, string])[1];
  if (policy !== 'noeviction') {
    throw new RedisPolicyError(
      `Redis must run with maxmemory-policy noeviction (it has ${policy}): queued runs and timers could be evicted`,
    );
  }
}

const SETTINGS_TTL_MS = 30_000;

/**
 * How long close() lets active runs finish before dropping its connections: under Kubernetes's
 * default 30 s between SIGTERM and SIGKILL.
 */
export const CLOSE_GRACE_MS = 25_000;

/**
 * A BullMQ worker fetches one job per round trip; on a busy machine one fetch loop fell behind a
 * steady stream of short runs with slots free (worker bench, 2,000 events/s end to end: queued →
 * taken p50 11 ms with one loop, 4–5 ms with two; accepted → first step p50 18 → 9–11 ms, p99
 * 73–79 → 57–65 ms; three or four loops did no better than two).
 */
export const DEFAULT_FETCHERS = 2;

type Processor = (job: Job<RunJobData>, token?: string) => Promise<unknown>;

/**
 * Starts a run when its job is fetched, not when BullMQ's worker gets round to it. The worker
 * fetches jobs one round trip at a time, up to its concurrency, before its loop hands the first
 * of them to the processor: under load a fetched run waited there 30–40 ms (p99, the worker
 * benchmark's taken → first step). The run now starts on the worker's `active` event (the job
 * holds its lock from the fetch) and the processor, called later for the same job, returns that
 * run's promise. A job BullMQ fails without processing (a deferred failure) is not started.
 */
export class EarlyStart {
  private readonly started = new WeakMap<Job<RunJobData>, Promise<unknown>>();
  /** Runs started on fetch, and runs BullMQ handed over without a fetch event (for tests). */
  early = 0;
  late = 0;

  constructor(private readonly run: Processor) {}

  readonly fetched = (job: Job<RunJobData>): void => {
    if (job.deferredFailure || job.token === undefined) return;
    const p = this.run(job, job.token);
    // BullMQ handles the outcome when it calls the processor; until then the promise is ours.
    p.catch(() => {});
    this.started.set(job, p);
    this.early++;
  };

  readonly process: Processor = (job, token) => {
    const p = this.started.get(job);
    if (p === undefined) {
      this.late++;
      return this.run(job, token);
    }
    this.started.delete(job);
    return p;
  };
}

/** How ioredis and Node word a Redis that cannot be reached (or went away mid-command). */
const REDIS_UNREACHABLE =
  /ECONNREFUSED|ECONNRESET|ETIMEDOUT|EHOSTUNREACH|ENOTFOUND|EPIPE|EAI_AGAIN|Connection is closed|max retries per request|Stream isn't writeable/;

export async function startWorker(o: WorkerOptions): Promise<RunningWorker> {
  const prefix = o.prefix ?? 'sb';
  const redis = new Redis(o.redisUrl, { maxRetriesPerRequest: null });
  // Every connection takes its 'error' events: without a listener ioredis prints each failed
  // reconnect while Redis is down (18 stack traces in 4 s from one worker). The outage is told
  // once, when it starts and when it ends (onRedis); the parts go on when Redis is back.
  let redisDown = false;
  let onDown: (() => void) | undefined;
  const watch = (c: Redis): Redis => {
    c.on('error', (e: Error) => {
      if (redisDown) return;
      redisDown = true;
      o.onRedis?.(false, e);
      onDown?.();
    });
    c.on('ready', () => {
      if (!redisDown) return;
      redisDown = false;
      o.onRedis?.(true);
    });
    return c;
  };
  watch(redis);
  try {
    await checkRedisServer(redis);
  } catch (e) {
    redis.disconnect();
    throw e;
  }
  const now = o.now ?? Date.now;
  const rules = new RuleCache(new RuleStore(o.db));
  await rules.start();
  const store = new ConnectionStore(o.db, o.secrets);
  const connections = storeConnections(store);
  const budgets = new Budgets(redis, prefix, now);
  const psa = new PsaClients(connections, budgets, now);
  const settingsCache = new Map<string, { at: number; value: { allowPrivateNetworks: boolean } }>();
  const timers = new Timers(redis, prefix, now);
  const actions = actionLibrary({ connections, psa, smtpUrl: o.smtpUrl, defaultFrom: o.defaultFrom });
  const tenant = async (t: string) => {
    const hit = settingsCache.get(t);
    if (hit && now() - hit.at < SETTINGS_TTL_MS) return hit.value;
    const s = await tenantSettings(o.db, t);
    const value = { allowPrivateNetworks: s.allowPrivateNetworks === true };
    settingsCache.set(t, { at: now(), value });
    return value;
  };
  const duplicate = (): Redis => watch(redis.duplicate());
  const queueErrorLog = new AtMostEvery(60_000);
  const queueError = (e: unknown): void => {
    const error = e instanceof Error ? e : new Error(String(e));
    // Redis unreachable is told by onRedis, once
    if (redisDown || REDIS_UNREACHABLE.test(error.message) || !queueErrorLog.due()) return;
    o.onQueueError?.(error);
  };
  const queueRedis = duplicate();
  const queue = openRunQueue(queueRedis, prefix);
  // Fetch loops: BullMQ workers of this process, the concurrency split between them (fetchers).
  const fetchers = Math.max(1, Math.min(o.fetchers ?? DEFAULT_FETCHERS, o.concurrency ?? 50));
  const concurrency = o.concurrency ?? 50;
  const loops = Array.from({ length: fetchers }, (_, i) => {
    // Connections given to BullMQ are ours to close (it closes only those it makes).
    const connection = duplicate();
    // History records go on the connection its jobs complete on, so they need not wait for
    // Redis's answer (history.ts: ordered).
    const history = new HistoryLog(connection, prefix, true, { onError: queueError });
    const executor = new Executor({
      redis,
      prefix,
      rules,
      history,
      timers,
      actions,
      tenant,
      now,
      ...(o.random ? { random: o.random } : {}),
      ...(o.retryBaseMs !== undefined ? { retryBaseMs: o.retryBaseMs } : {}),
    });
    const early = new EarlyStart(executor.process);
    const worker = new Worker<RunJobData>(RUN_QUEUE, early.process, {
      connection,
      prefix,
      concurrency: Math.floor(concurrency / fetchers) + (i < concurrency % fetchers ? 1 : 0),
      lockDuration: o.lockDurationMs ?? 30_000,
      stalledInterval: o.stalledIntervalMs ?? 30_000,
      // A run stalled by a crashing worker is recovered, not failed, a few times over.
      maxStalledCount: 10,
      autorun: o.autorun ?? true,
    });
    worker.on('error', queueError);
    worker.on('active', early.fetched);
    return { worker, history, connection };
  });
  const workers = loops.map((l) => l.worker);
  const dropped = (what: DroppedKind): ((e: Error) => void) | undefined => {
    if (!o.onDropped) return undefined;
    const say = new AtMostEvery(60_000, now);
    let count = 0;
    return (e) => {
      count++;
      if (!say.due()) return;
      o.onDropped!(what, count, e);
      count = 0;
    };
  };
  const timerRedis = duplicate();
  // Timers that cannot fire or start their runs (a full Redis) are told like the run queue's errors.
  await timers.start(queue, timerRedis, o.timerEveryMs ?? 250, queueError, dropped('fired timer'));

  // Scheduled rules: one BullMQ job scheduler per rule, following rule changes.
  const syncSchedule = async (tenant: string, id: string): Promise<void> => {
    const schedulerId = `schedule:${tenant}:${id}`;
    const r = await rules.current(tenant, id).catch(() => undefined);
    const s = r?.rule.workflow.schedule;
    if (!s) {
      await queue.removeJobScheduler(schedulerId).catch(() => {});
      return;
    }
    await queue.upsertJobScheduler(
      schedulerId,
      { pattern: s.cron, tz: s.tz },
      {
        name: 'schedule',
        data: {
          tenant,
          ruleId: id,
          kind: 'schedule',
          event: {
            id: `tick-${id}`,
            tenant,
            source: 'signalbox',
            type: 'schedule.tick',
            data: { cron: s.cron, tz: s.tz },
          },
        },
        opts: { removeOnComplete: 1000, removeOnFail: 5000 },
      },
    );
  };
  // A change arrives as a notification: a schedule that cannot be saved now (Redis failing) is
  // tried again after 1 s, 2 s, 4 s … (six times), not left to reject unhandled, which would end
  // the process.
  let stopped = false;
  const syncSoon = (tenant: string, id: string, attempt = 0): void => {
    syncSchedule(tenant, id).catch(() => {
      if (stopped || attempt >= 6) return;
      setTimeout(() => syncSoon(tenant, id, attempt + 1), 1_000 * 2 ** attempt).unref();
    });
  };
  rules.onChange = (tenant, id) => syncSoon(tenant, id);
  for (const r of rules.activeIds()) await syncSchedule(r.tenant, r.id);

  // One watch for both drains: one outage, told once.
  const storeWatch = o.onStore ? new OutageWatch(o.onStore, isConnectionError) : undefined;
  let drain: HistoryDrain | undefined;
  const drainRedis = duplicate();
  if (o.drainHistory !== false) {
    drain = new HistoryDrain(drainRedis, loops[0]!.history.key, o.db, {
      ...(storeWatch ? { watch: storeWatch } : {}),
      onDropped: dropped('run record'),
      ...(o.historyRetentionDays !== undefined ? { retentionDays: o.historyRetentionDays } : {}),
    });
    await drain.start();
  }
  // The event archive: the ingest's stream into Postgres (with the history drain, by default).
  let archive: ArchiveDrain | undefined;
  const archiveRedis = duplicate();
  if (o.drainArchive ?? o.drainHistory !== false) {
    archive = new ArchiveDrain(archiveRedis, archiveStreamKey(prefix), o.db, {
      ...(o.archiveRetentionDays !== undefined ? { retentionDays: o.archiveRetentionDays } : {}),
      ...(storeWatch ? { watch: storeWatch } : {}),
      onDropped: dropped('archived event'),
    });
    await archive.start();
  }

  const clients = [
    redis,
    queueRedis,
    timerRedis,
    drainRedis,
    archiveRedis,
    ...loops.map((l) => l.connection),
  ];
  let closing: Promise<void> | undefined;
  const close = (graceMs = CLOSE_GRACE_MS): Promise<void> =>
    (closing ??= (async () => {
      stopped = true;
      // Graceful: stop taking jobs and let the active ones finish (BullMQ waits for them).
      const rest = async (): Promise<void> => {
        await timers.stop();
        await drain?.stop();
        await archive?.stop();
        await rules.stop();
        await queue.close();
      };
      const graceful = (async () => {
        await Promise.all(workers.map((w) => w.close()));
        await rest();
      })();
      graceful.catch(() => {});
      // Without Redis nothing can finish (every step's end is written there) and BullMQ's close
      // waits for it for ever: past the grace, or at once while Redis is down, the connections are
      // dropped. A run cut short is taken again by another worker once its lock expires, and
      // repeats its in-flight step with the same idempotency key.
      let timer: NodeJS.Timeout | undefined;
      const forced = new Promise<boolean>((resolve) => {
        if (redisDown) resolve(true);
        onDown = () => resolve(true);
        timer = setTimeout(() => resolve(true), graceMs);
      });
      const cut = await Promise.race([graceful.then(() => false), forced]);
      clearTimeout(timer);
      if (cut) {
        for (const w of workers) w.close(true).catch(() => {});
        for (const c of clients) c.disconnect();
        // The parts after the workers are stopped too (their loops would go on retrying).
        await Promise.race([
          Promise.allSettled([graceful, rest()]),
          new Promise((r) => setTimeout(r, 1_000).unref()),
        ]);
      }
      for (const c of clients) c.disconnect();
    })());
  return { workers, queue, timers, drain, archive, rules, close };
}
