/**
 * Debounce timers (workflows.md): a match arms a timer per (rule, key), another match of the key
 * re-arms it, an event of the key that does not match cancels it, and when it expires the run
 * starts with the last matching event.
 *
 * A timing wheel in Redis with one-second slots, so that arming, re-arming and cancelling are O(1)
 * (a sorted set would be O(log n)):
 *   `tm:p`        hash  timer id → the run job to start (deflated JSON)
 *   `tm:due`      hash  timer id → due second
 *   `tm:t`        hash  timer id → time of the last event that armed or cancelled it (ordering)
 *   `tm:s:<sec>`  set   timer ids due in that second
 *   `tm:cursor`   the last second fired
 *   `tm:x:<hour>` set   timer ids cancelled in that hour (their `tm:t` entries: tombstones)
 *   `tm:xcursor`  the last hour whose tombstones were swept
 * A cancel leaves its time in `tm:t` (so an older event that arrives late neither re-arms nor
 * cancels); tombstones older than a day are swept by the firing script, a bounded number a tick.
 * Firing moves due timers atomically to the `tm:fired` stream; a consumer group turns its entries
 * into run jobs with ids derived from the timer, so a crash between the two repeats nothing.
 * Timers fire within about a second of their due time.
 */
import { hash } from 'node:crypto';
import { deflateRawSync, inflateRawSync } from 'node:zlib';
import type { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import {
  ADD_RUN_JOB_LUA,
  encodeRunJob,
  type RunJob,
  runJobId,
  runQueueKeys,
  timersKey,
} from '../config/runs.js';
import { RUN_STARTER_CLAIM, StreamConsumer, type StreamEntry } from '../config/streams.js';

/** KEYS: p, due, t. ARGV: id, due second, event time ms, payload, slot prefix. → 1 armed, 0 older event. */
const ARM = `
local t = redis.call('HGET', KEYS[3], ARGV[1])
if t and tonumber(t) > tonumber(ARGV[3]) then return 0 end
local old = redis.call('HGET', KEYS[2], ARGV[1])
if old then redis.call('SREM', ARGV[5] .. old, ARGV[1]) end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[4])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[3])
redis.call('SADD', ARGV[5] .. ARGV[2], ARGV[1])
return 1
`;

/**
 * KEYS: p, due, t. ARGV: id, event time ms, slot prefix, tombstone set of this hour. → 1
 * cancelled, 0 none or newer.
 */
const CANCEL = `
local t = redis.call('HGET', KEYS[3], ARGV[1])
if t and tonumber(t) > tonumber(ARGV[2]) then return 0 end
local old = redis.call('HGET', KEYS[2], ARGV[1])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
redis.call('SADD', ARGV[4], ARGV[1])
if not old then return 0 end
redis.call('SREM', ARGV[3] .. old, ARGV[1])
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
return 1
`;

/**
 * KEYS: p, due, t, cursor, fired, tombstone cursor. ARGV: now second, max timers, slot prefix,
 * tombstone set prefix, the last hour to sweep. → timers fired.
 */
const FIRE = `
local now = tonumber(ARGV[1])
local cur = tonumber(redis.call('GET', KEYS[4]) or (now - 1))
local left = tonumber(ARGV[2])
local fired = 0
local walked = 0
while cur < now and left > 0 and walked < 3600 do
  walked = walked + 1
  local slot = ARGV[3] .. (cur + 1)
  local ids = redis.call('SPOP', slot, left)
  for _, id in ipairs(ids) do
    local p = redis.call('HGET', KEYS[1], id)
    if p then redis.call('XADD', KEYS[5], '*', 'id', id, 'p', p) end
    redis.call('HDEL', KEYS[1], id)
    redis.call('HDEL', KEYS[2], id)
    redis.call('HDEL', KEYS[3], id)
    fired = fired + 1
    left = left - 1
  end
  if redis.call('SCARD', slot) == 0 then cur = cur + 1 end
end
redis.call('SET', KEYS[4], cur)
-- Tombstones of hours up to ARGV[5]: dropped unless the timer was armed again meanwhile.
local cutoff = tonumber(ARGV[5])
local xcur = tonumber(redis.call('GET', KEYS[6]) or cutoff)
local budget = tonumber(ARGV[2])
while xcur < cutoff and budget > 0 do
  local set = ARGV[4] .. (xcur + 1)
  local ids = redis.call('SPOP', set, budget)
  for _, id in ipairs(ids) do
    if redis.call('HEXISTS', KEYS[2], id) == 0 then
      local t = tonumber(redis.call('HGET', KEYS[3], id) or '0')
      if t < (cutoff + 1) * 3600000 then redis.call('HDEL', KEYS[3], id) end
    end
    budget = budget - 1
  end
  if redis.call('SCARD', set) == 0 then xcur = xcur + 1 end
end
redis.call('SET', KEYS[6], xcur)
return fired
`;

/**
 * Starts the runs of fired timers. KEYS: the fired stream, then the nine keys of the queue of runs
 * (runQueueKeys). ARGV: the consumer group, then per entry its id, `1` with a job to add (`0`: an
 * entry that did not decode, only acknowledged), its head (encodeRunJob), the job's data (JSON),
 * its options (encodeRunJob) and the job's key. → how many entries it handled.
 *
 * An entry that is no longer pending in the group was handled already, by a consumer that claimed
 * it from this one (slow, not dead): it adds nothing, even when that run completed and its job has
 * left Redis (derived job ids only make an add a no-op while the job is there). Otherwise the job
 * is added, then the entry acknowledged and deleted, all in this one script. A damaged key of the
 * queue (or of a job) stops it before anything is added (prepareRunJobs): the entries stay pending
 * and are read again.
 */
const START = `${ADD_RUN_JOB_LUA}
local queue = {KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[10]}
local jobKeys = {}
for a = 2, #ARGV, 6 do
  if ARGV[a + 1] == '1' then jobKeys[#jobKeys + 1] = ARGV[a + 5] end
end
local blocked, absent = prepareRunJobs(queue, jobKeys)
if blocked then return redis.error_reply(blocked) end
local handled = 0
for a = 2, #ARGV, 6 do
  local id = ARGV[a]
  if #redis.call('XPENDING', KEYS[1], ARGV[1], id, id, 1) > 0 then
    if ARGV[a + 1] == '1' then
      local failed = addRunJob(queue, ARGV[a + 2], ARGV[a + 3], ARGV[a + 4], ARGV[a + 5], absent)
      if failed then return redis.error_reply(failed) end
    end
    redis.call('XACK', KEYS[1], ARGV[1], id)
    redis.call('XDEL', KEYS[1], id)
    handled = handled + 1
  end
end
return handled
`;

/** The consumer group that turns fired timers into runs. */
const FIRED_GROUP = 'timers';

/** How long a cancel's tombstone is kept: events later than this out of order are not expected. */
const TOMBSTONE_HOURS = 24;

type StartRedis = Redis & {
  sbTimerStart(numKeys: number, ...a: Array<string | Buffer>): Promise<number>;
};

type TimerRedis = Redis & {
  sbTimerArm(...a: Array<string | Buffer | number>): Promise<number>;
  sbTimerCancel(...a: Array<string | number>): Promise<number>;
  sbTimerFire(...a: Array<string | number>): Promise<number>;
};

export class Timers {
  private readonly r: TimerRedis;
  private readonly k: {
    p: string;
    due: string;
    t: string;
    cursor: string;
    fired: string;
    slot: string;
    tomb: string;
    tombCursor: string;
  };
  private running = false;
  private ticking: Promise<void> | undefined;
  private reader: StreamConsumer | undefined;
  fired = 0;
  private tickError: Error | undefined;
  private onError: ((e: Error) => void) | undefined;
  private onDropped: ((e: Error) => void) | undefined;

  /** The last error of firing or enqueueing, for readiness and metrics. */
  get lastError(): Error | undefined {
    return this.tickError ?? this.reader?.lastError;
  }

  constructor(
    redis: Redis,
    prefix: string,
    private readonly now: () => number = Date.now,
  ) {
    if (!('sbTimerArm' in redis)) {
      redis.defineCommand('sbTimerArm', { lua: ARM, numberOfKeys: 3 });
      redis.defineCommand('sbTimerCancel', { lua: CANCEL, numberOfKeys: 3 });
      redis.defineCommand('sbTimerFire', { lua: FIRE, numberOfKeys: 6 });
    }
    this.r = redis as TimerRedis;
    const p = timersKey(prefix);
    this.k = {
      p: `${p}:p`,
      due: `${p}:due`,
      t: `${p}:t`,
      cursor: `${p}:cursor`,
      fired: `${p}:fired`,
      slot: `${p}:s:`,
      tomb: `${p}:x:`,
      tombCursor: `${p}:xcursor`,
    };
  }

  static id(tenant: string, ruleId: string, key: string): string {
    return hash('sha256', `${tenant}\u0000${ruleId}\u0000${key}`, 'base64url').slice(0, 24);
  }

  /** Arms or re-arms a timer; false when a newer event already armed or cancelled it. */
  async arm(id: string, dueMs: number, eventTime: number, job: RunJob): Promise<boolean> {
    const payload = deflateRawSync(JSON.stringify(job));
    const sec = Math.ceil(dueMs / 1000);
    return (
      (await this.r.sbTimerArm(this.k.p, this.k.due, this.k.t, id, sec, eventTime, payload, this.k.slot)) ===
      1
    );
  }

  async cancel(id: string, eventTime: number): Promise<boolean> {
    const hour = Math.floor(this.now() / 3600_000);
    return (
      (await this.r.sbTimerCancel(
        this.k.p,
        this.k.due,
        this.k.t,
        id,
        eventTime,
        this.k.slot,
        `${this.k.tomb}${hour}`,
      )) === 1
    );
  }

  /** How many timers are armed. */
  async size(): Promise<number> {
    return this.r.hlen(this.k.p);
  }

  /** Moves due timers to the fired stream (any process may call it; Redis runs it atomically). */
  async tick(max = 1000): Promise<number> {
    return this.r.sbTimerFire(
      this.k.p,
      this.k.due,
      this.k.t,
      this.k.cursor,
      this.k.fired,
      this.k.tombCursor,
      Math.floor(this.now() / 1000),
      max,
      this.k.slot,
      this.k.tomb,
      Math.floor(this.now() / 3600_000) - TOMBSTONE_HOURS,
    );
  }

  /**
   * Fires due timers every `everyMs` and turns fired timers into run jobs on `queue`, reading the
   * fired stream on `reader` (a connection of its own: the read blocks). `onError` is told of each
   * error firing or starting runs (a full Redis, a damaged key of the queue): they are tried
   * again, and without it nothing said why timers wait. `onDropped` is told of each fired entry
   * that does not decode: it is acknowledged without a run, not tried again.
   */
  async start(
    queue: Queue<RunJob>,
    reader: Redis,
    everyMs = 250,
    onError?: (e: Error) => void,
    onDropped?: (e: Error) => void,
  ): Promise<void> {
    this.onError = onError;
    this.onDropped = onDropped;
    this.reader = new StreamConsumer(
      reader,
      {
        key: this.k.fired,
        group: FIRED_GROUP,
        consumer: `t-${process.pid}`,
        deleteAcked: true,
        ...RUN_STARTER_CLAIM,
        ackedByHandler: true,
      },
      async (entries) => {
        try {
          await this.startRuns(queue, entries);
        } catch (e) {
          this.onError?.(e as Error);
          throw e;
        }
      },
    );
    await this.reader.start();
    this.running = true;
    this.ticking = this.tickLoop(everyMs);
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.ticking;
    await this.reader?.stop();
  }

  /** Kept for lastError and told (start's onError). */
  private failed(e: Error): void {
    this.tickError = e;
    this.onError?.(e);
  }

  private async tickLoop(everyMs: number): Promise<void> {
    while (this.running) {
      try {
        this.fired += await this.tick();
      } catch (e) {
        this.failed(e as Error);
      }
      await new Promise((r) => setTimeout(r, everyMs));
    }
  }

  /**
   * Fired timers become run jobs, with ids derived from the timer's event, each added in the same
   * script that acknowledges its entry (START: never added twice, not even after a slow reader's
   * entries were claimed and run). Read by the timers' own reader; public for the tests.
   */
  async startRuns(queue: Queue<RunJob>, entries: readonly StreamEntry[]): Promise<number> {
    const q = runQueueKeys(queue.opts.prefix ?? 'bull');
    const now = Date.now();
    const args: Array<string | Buffer> = [FIRED_GROUP];
    for (const e of entries) {
      // The payload is the run job's JSON (arm): parsed for its id, sent as it is for its data.
      let text = '';
      let job: RunJob | undefined;
      try {
        if (e.fields) {
          text = inflateRawSync(e.fields[3]!).toString('utf8');
          job = JSON.parse(text) as RunJob;
        }
      } catch (err) {
        // An entry that does not decode is acknowledged without a run: left pending, it would be
        // read again forever and hold up every timer behind it.
        this.tickError = new Error(`a fired debounce timer could not be read: ${(err as Error).message}`);
        this.onDropped?.(this.tickError);
      }
      if (!job) {
        args.push(e.id, '0', '', '', '', '');
        continue;
      }
      const jobId = runJobId(job.tenant, job.event.id, job.ruleId, 'debounced');
      const [head, opts] = encodeRunJob('run', jobId, now);
      args.push(e.id, '1', head, text, opts, q.jobPrefix + jobId);
    }
    // On the queue's own connection: the reader's blocks on its next read.
    const client = (await queue.backend.client) as unknown as StartRedis;
    if (typeof client.sbTimerStart !== 'function') client.defineCommand('sbTimerStart', { lua: START });
    return client.sbTimerStart(1 + q.keys.length, this.k.fired, ...q.keys, ...args);
  }
}
