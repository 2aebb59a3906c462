/**
 * The contract between the ingest and the workers: the BullMQ queue of runs and its job payload.
 * Both sides import it from here (design.md: ingest and workers share config, never each other).
 */
import { hash } from 'node:crypto';
import { type ConnectionOptions, Queue, QueueKeys } from 'bullmq';
import type { Redis } from 'ioredis';

export const RUN_QUEUE = 'signalbox-runs';

/**
 * Options every queue of runs gives its jobs (BullMQ `defaultJobOptions`). A run's own failures
 * are handled inside it (a step's onError); what the processor throws is the infrastructure
 * failing under it (Postgres unreachable when the worker reads the rule's version or the tenant's
 * settings, a Redis error): the job is tried again from its last checkpoint, after 1 s, 2 s, 4 s
 * … (12 attempts, about 68 minutes in all), rather than failed for good and its run lost.
 */
export const RUN_JOB_DEFAULTS = {
  attempts: 12,
  backoff: { type: 'exponential', delay: 1_000 },
} as const;

/** How many finished run jobs BullMQ keeps (`removeOnComplete`, `removeOnFail`). */
export const RUN_JOB_KEEP = { removeOnComplete: 10_000, removeOnFail: 50_000 } as const;

/**
 * The queue of runs, as everything that adds to it with BullMQ opens it (the workers' timers
 * and schedules, the admin plane): its jobs get RUN_JOB_DEFAULTS, and its 'error' events are taken
 * (without a listener BullMQ prints every failed reconnect while Redis is down; the callers
 * report the outage themselves).
 */
export function openRunQueue(connection: ConnectionOptions, prefix: string): Queue<RunJob> {
  const queue = new Queue<RunJob>(RUN_QUEUE, { connection, prefix, defaultJobOptions: RUN_JOB_DEFAULTS });
  queue.on('error', () => {});
  return queue;
}

/**
 * The approximate MAXLEN of the archive and history streams: a last guard, not a budget. Their
 * entries are batches (up to 256 events, a turn's run records), so Redis's memory fills long
 * before it (noeviction: then the ingest answers 503) and nothing is trimmed that a drain has not
 * written. At 1,000,000 (history's trim until 2026-12-07) a Postgres outage of about 20 minutes at
 * 2,000 runs/s would have trimmed run history that was never written.
 */
export const STREAM_MAXLEN = 10_000_000;

/**
 * The archive stream: every event the ingest accepted (JSON of its outbox entry in field `e`),
 * drained into the Postgres event archive by the workers (src/workers/archive.ts).
 */
export function archiveStreamKey(prefix: string): string {
  return `${prefix}:outbox`;
}

/** The run history stream, drained into Postgres (src/workers/history.ts). */
export function historyStreamKey(prefix: string): string {
  return `${prefix}:history`;
}

/** The debounce timers' key space; `<it>:fired` is the stream of timers that came due (timers.ts). */
export function timersKey(prefix: string): string {
  return `${prefix}:tm`;
}

/** An event as it travels in a run job (the envelope after snapshots, with when it arrived). */
export interface RunEvent {
  readonly id: string;
  readonly tenant?: string;
  readonly source: string;
  readonly type: string;
  readonly time?: string;
  readonly data: Record<string, unknown>;
  readonly previous?: Record<string, unknown> | null;
  readonly raw?: unknown;
  readonly self?: boolean;
  readonly receivedAt?: string;
}

/**
 * How far ahead of its arrival an event's time may be when events of one entity are ordered (the
 * ingest's staleness, debounce timers). A time further ahead is a PSA clock or data error (a
 * record dated 2099): taken as it stands, it would make every real event of that entity after it
 * "older" (stale and not matched, or unable to re-arm or cancel a timer) for as long as its state
 * lives. It counts as its arrival plus this instead.
 */
export const MAX_FUTURE_SKEW_MS = 5 * 60_000;

/**
 * The time that orders an event among its entity's: its own, at most MAX_FUTURE_SKEW_MS past its
 * arrival (`receivedMs`); NaN when it has no readable time.
 */
export function orderingTime(time: string | undefined, receivedMs: number): number {
  const t = Date.parse(time ?? '');
  return Number.isFinite(t) ? Math.min(t, receivedMs + MAX_FUTURE_SKEW_MS) : Number.NaN;
}

/**
 * The payload of a run job. `kind` says why it exists: a match (`match`, the default), a
 * debounce timer that fired (`debounced`), a schedule tick (`schedule`), a replay (`replay`),
 * or a non-matching event that cancels a debounce timer (`cancel`).
 */
export interface RunJob {
  readonly tenant: string;
  readonly ruleId: string;
  readonly event: RunEvent;
  readonly kind?: 'match' | 'debounced' | 'schedule' | 'replay' | 'cancel';
  /** The Redis key of the entity's snapshot (guards read the latest one). */
  readonly snapshot?: string;
  /** The rule version to run (replays and timers pin it; a match takes the active one). */
  readonly version?: number;
  /**
   * The loop breaker's verdict when the ingest already counted this run, in the same COMMIT
   * that accepted the event: `ok` (run it) or `over` (record it as skipped). Absent, the worker
   * counts it itself (replays, debounce timers, jobs of older versions).
   */
  readonly loop?: 'ok' | 'over';
}

/**
 * The loop breaker's sliding window as a Lua function (workflows.md): the runs of a rule for an
 * entity within `window` ms, one sorted-set member per run (its job id, so counting a run twice
 * changes nothing). Returns 1 when the run may go (and counts it), 0 when `max` are already in
 * the window. Used by the ingest's COMMIT and by the worker's own check, so both count alike.
 */
export const ADMIT_LUA = `
local function admit(key, now, window, max, member)
  -- counted already (ZADD NX adds nothing): it may go. Otherwise counted first, and taken back
  -- when the window holds more than max with it (four calls where a look first took five).
  if redis.call('ZADD', key, 'NX', now, member) == 0 then return 1 end
  redis.call('ZREMRANGEBYSCORE', key, '-inf', tonumber(now) - tonumber(window))
  if redis.call('ZCARD', key) > tonumber(max) then
    redis.call('ZREM', key, member)
    return 0
  end
  redis.call('PEXPIRE', key, window)
  return 1
end
`;

/** What the loop breaker counts a run against: the rule and the event's entity. */
export function loopEntity(event: RunEvent): string {
  return `${event.source}:${event.type.split('.')[0]}:${String(event.data?.id ?? event.id)}`;
}

/** The Redis key of a sliding window (loop breaker, throttle) of a rule for a key (hashed). */
export function windowKey(
  prefix: string,
  kind: 'loop' | 'throttle',
  tenant: string,
  ruleId: string,
  key: string,
): string {
  const h = hash('sha256', `\u0000\u0000${key}`, 'base64url').slice(0, 24);
  return `${prefix}:${kind}:{${tenant}}:${ruleId}:${h}`;
}

/** The Redis key of a loop breaker window: one per rule and entity. */
export function loopKey(prefix: string, tenant: string, ruleId: string, entity: string): string {
  return windowKey(prefix, 'loop', tenant, ruleId, entity);
}

export function runJobId(tenant: string, eventId: string, ruleId: string, kind = 'match'): string {
  // BullMQ ids must not be integers and are safest without separators: a hash of the triple.
  const what = kind === 'match' ? '' : `\u0000${kind}`;
  return `r-${hash('sha256', `${tenant}\u0000${eventId}\u0000${ruleId}${what}`, 'hex').slice(0, 40)}`;
}

/**
 * A run job added the way BullMQ's addStandardJob (of the pinned BullMQ, 6.7.0) adds a job for
 * Queue.add with the queue of runs' options, as a Lua function for scripts that add run jobs in the
 * same atomic step as their own writes: the ingest's COMMIT records an event and enqueues its runs
 * at once, so no event is acknowledged without its runs and no run is enqueued twice.
 * `runJobAdd(queue, head, data, opts, jobKey)`: `queue` the nine keys of `runQueueKeys`, `head`
 * and `opts` from `encodeRunJob`, `data` the job's JSON; `runJobsWake(queue)`, once for a script's
 * adds.
 *
 * What they write is what BullMQ's script writes for such a job: the job hash (name, data, opts,
 * timestamp, delay 0, priority 0), its id pushed on the wait list, and the marker that wakes a
 * worker unless the queue is paused or at its global concurrency. The marker is one member (`0`)
 * whichever job set it, and what decides it (the queue's meta, its active count) does not change
 * with a script's adds, so a script sets it once, before its adds, rather than once a job.
 * tests/config/run-jobs.redis.test.ts compares the two, key by key, so a BullMQ upgrade that
 * changes them fails there. Left out: the `added` and `waiting` entries of BullMQ's events stream
 * (only QueueEvents listeners read them; Signalbox has none) and the job counter (for generated
 * ids; run job ids are derived). BullMQ's script, run inside COMMIT, cost Redis about 30 µs a job
 * (msgpack decoding, cjson, two stream entries, 25 closures made a call); this costs a third of
 * that: Redis CPU per event of NDJSON batches went from 6.6 to 4.6 µs (A/B, the best of 3 rounds,
 * twice).
 */
const RUN_JOB_ADD_LUA = `
local function runJobAdd(queue, head, data, opts, jobKey)
  local sep = string.find(head, ':', 1, true)
  -- the job id is what follows the job prefix, the wait key less 'wait'
  local jobId = string.sub(jobKey, #queue[1] - 3)
  redis.call('HSET', jobKey, 'name', string.sub(head, 1, sep - 1), 'data', data, 'opts', opts,
    'timestamp', string.sub(head, sep + 1), 'delay', '0', 'priority', '0')
  redis.call('LPUSH', queue[1], jobId)
end
local function runJobsWake(queue)
  local meta = redis.call('HMGET', queue[3], 'paused', 'concurrency')
  local maxed = meta[1] or (meta[2] and redis.call('LLEN', queue[7]) >= tonumber(meta[2]))
  if not maxed then redis.call('ZADD', queue[9], 0, '0') end
end
`;

/**
 * RUN_JOB_ADD_LUA and two functions for the scripts that add run jobs with their own writes
 * (the ingest's COMMIT, the timers' START), which call them before writing anything of their own:
 * a Redis script that fails is not undone.
 * - `prepareRunJobs(queue, jobKeys)`, before a script's adds: nil when every add can go through,
 *   else why not: a key of the queue, or a job's key, that holds another type than BullMQ's (a
 *   damaged key). Checked for all of a call's jobs first, when there are several, so that a failure
 *   leaves none of them added: one added and then completed and dropped (removeOnComplete) before
 *   the sender's retry would run twice. Then, with any job to add, it sets the marker that wakes a
 *   worker (runJobsWake), once for the script; when that fails nothing has been written. Its
 *   second value: the job keys it found empty (`absent`, for addRunJob).
 * - `addRunJob(queue, head, data, opts, jobKey, absent)`: adds a run job (runJobAdd) unless its
 *   key holds one already (not asked again when prepareRunJobs found it empty), and returns nil,
 *   or, when the add fails all the same, deletes the job hash it may have half made (a retry would
 *   take it for the job) and returns the error's text.
 */
export const ADD_RUN_JOB_LUA = `${RUN_JOB_ADD_LUA}
-- the types of runQueueKeys' nine keys: wait, paused, meta, id, completed, delayed, active, events, marker
local RUN_QUEUE_TYPES = {'list', 'list', 'hash', 'string', 'zset', 'zset', 'list', 'stream', 'zset'}
local function runJobError(err)
  return 'a run job could not be added: ' .. tostring(type(err) == 'table' and err.err or err)
end
local function prepareRunJobs(queue, jobKeys)
  local absent = {}
  if #jobKeys == 0 then return nil, absent end
  -- one add alone leaves nothing behind when it fails (addRunJob)
  if #jobKeys > 1 then
    for i = 1, 9 do
      local t = redis.call('TYPE', queue[i]).ok
      if t ~= 'none' and t ~= RUN_QUEUE_TYPES[i] then
        return 'a run job could not be added: ' .. queue[i] .. ' holds a ' .. t .. ', not a ' .. RUN_QUEUE_TYPES[i]
      end
    end
    for _, k in ipairs(jobKeys) do
      local t = redis.call('TYPE', k).ok
      if t == 'none' then absent[k] = true
      elseif t ~= 'hash' then
        return 'a run job could not be added: ' .. k .. ' holds a ' .. t .. ', not a hash'
      end
    end
  end
  local ok, err = pcall(runJobsWake, queue)
  if not ok then return runJobError(err) end
  return nil, absent
end
local function addRunJob(queue, head, data, opts, jobKey, absent)
  -- a job already there is left as it is (BullMQ's add of a known id adds nothing either)
  if absent and absent[jobKey] then absent[jobKey] = nil
  elseif redis.call('EXISTS', jobKey) == 1 then return nil end
  local ok, err = pcall(runJobAdd, queue, head, data, opts, jobKey)
  if ok then return nil end
  redis.call('DEL', jobKey)
  return runJobError(err)
end
`;

/** The queue of runs under a key prefix, as BullMQ's addStandardJob addresses it. */
export interface RunQueueKeys {
  /** wait, paused, meta, id, completed, delayed, active, events, marker (addStandardJob's order). */
  readonly keys: readonly string[];
  /** What a job id is appended to for its hash (`<prefix>:signalbox-runs:`). */
  readonly jobPrefix: string;
}

/**
 * Prometheus gauges of the run queue, read at scrape time: runs waiting to be taken by a worker,
 * being run, and delayed (a retry's backoff, a `delay` step, a rate budget's wait). A waiting
 * count that keeps growing is workers that cannot keep up; Redis does not say how old they are.
 */
export async function runQueueGauges(redis: Redis, prefix: string): Promise<string> {
  const k = new QueueKeys(prefix).getKeys(RUN_QUEUE);
  const res =
    (await redis
      .pipeline()
      .llen(k.wait!)
      .llen(k.paused!)
      .zcard(k.prioritized!)
      .llen(k.active!)
      .zcard(k.delayed!)
      .exec()) ?? [];
  const n = (i: number): number => (res[i]?.[0] ? 0 : Number(res[i]?.[1] ?? 0));
  return [
    '# HELP signalbox_runs Runs in the run queue by state: waiting for a worker, active, delayed',
    '# TYPE signalbox_runs gauge',
    `signalbox_runs{state="waiting"} ${n(0) + n(1) + n(2)}`,
    `signalbox_runs{state="active"} ${n(3)}`,
    `signalbox_runs{state="delayed"} ${n(4)}`,
    '',
  ].join('\n');
}

export function runQueueKeys(prefix: string): RunQueueKeys {
  const k = new QueueKeys(prefix).getKeys(RUN_QUEUE);
  return {
    keys: [k.wait!, k.paused!, k.meta!, k.id!, k.completed!, k.delayed!, k.active!, k.events!, k.marker!],
    jobPrefix: k['']!,
  };
}

/** A run job's stored options around its id: the queue's defaults, then what it keeps (BullMQ's). */
const OPTS_BEFORE_ID = `${JSON.stringify({ ...RUN_JOB_DEFAULTS, jobId: '' }).slice(0, -3)}`;
const OPTS_AFTER_ID = `,${JSON.stringify(RUN_JOB_KEEP).slice(1)}`;

/**
 * What runJobAdd takes for a run job (`name` run or cancel) besides its data and key: its head
 * (`<name>:<timestamp ms>`) and its options as BullMQ stores them for Queue.add with the queue's
 * defaults (RUN_JOB_DEFAULTS, RUN_JOB_KEEP) and the job id.
 */
export function encodeRunJob(name: string, jobId: string, timestamp: number): [head: string, opts: string] {
  return [`${name}:${Math.floor(timestamp)}`, `${OPTS_BEFORE_ID}${JSON.stringify(jobId)}${OPTS_AFTER_ID}`];
}
