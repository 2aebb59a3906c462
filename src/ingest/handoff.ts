/**
 * Dedupe, snapshots, staleness and the durable hand-off, in Redis (design.md steps 3–6).
 *
 * Per event, two scripts, each one round trip for a whole micro-batch of events:
 *
 * 1. READ (events with an entity only): is the id already seen (dedupe)? what is the entity's
 *    snapshot (previous) and its version and time?
 * 2. COMMIT (after matching, in process): if the snapshot's version is unchanged, atomically
 *    record the id, write the snapshot (replace, patch or delete), append the event, its
 *    `previous`, merged `data` and matched rule ids to the archive stream, and add one BullMQ run
 *    job per match (as BullMQ's addStandardJob adds one: config/runs.ts). A changed version means
 *    another event of the same entity committed in between: read and match again.
 *
 * COMMIT is the durable hand-off: the 2xx is sent only after it succeeded, and the event, its
 * archive entry and its runs are written together or not at all, so no crash loses or doubles a
 * run. (Until 2026-12-07 a dispatcher thread read committed events from a second stream and
 * added their jobs: a hop that cost a quarter of a core at 2,000 runs/s and 15–45 ms of p99.)
 * Snapshots are Redis hashes of JSON-encoded top-level fields, so a partial update (Autotask) is
 * a plain HSET of the fields it carries, with no JSON parsing inside Redis.
 *
 * Cost per event is what bounds a server thread's events/s, so both scripts work per chunk:
 * - Seen ids live in time-bucketed sets (`<prefix>:dd:<n>`, members `<tenant>:<id>`), each
 *   bucket half the dedupe window long. A chunk asks the current and the two previous buckets
 *   with one SMISMEMBER each and records its new ids with one SADD, instead of a key with a TTL
 *   per event (SET NX EX per event was 3–4 µs of Redis CPU; this is under 1). An id is therefore
 *   remembered for at least the window (7 days by default) and at most 1.5 times it, when its
 *   bucket expires.
 * - The chunk's outbox entries travel as one NDJSON argument, not one argument per event, and
 *   go to the archive with one XADD per chunk, as they came when all of them committed: a
 *   chunk's events share one stream entry (readArchive reads it). Per-event arguments cost ioredis and Redis about 2 µs an
 *   event each; a Lua table.concat of them as much again.
 */
import { hash, randomBytes } from 'node:crypto';
import { Command, type Redis } from 'ioredis';
import {
  type MatchedEnvelope,
  matchedEnvelope,
  plainMatchedEnvelope,
  RECEIVED_HEAD,
  receivedLine,
  receivedTail,
} from '../config/archive.js';
import {
  ADD_RUN_JOB_LUA,
  ADMIT_LUA,
  archiveStreamKey,
  encodeRunJob,
  loopEntity,
  loopKey,
  orderingTime,
  type RunEvent,
  type RunQueueKeys,
  runJobId,
  runQueueKeys,
  STREAM_MAXLEN,
} from '../config/runs.js';
import type { Engine } from '../engine/index.js';
import type { AdaptedEvent } from './connection.js';

/** Lua: which of the members any of the three dedupe buckets (KEYS b, b + 1, b + 2) holds. */
const SEEN = `
local function seen(members, b)
  local s0 = redis.call('SMISMEMBER', KEYS[b], unpack(members))
  local s1 = redis.call('SMISMEMBER', KEYS[b + 1], unpack(members))
  local s2 = redis.call('SMISMEMBER', KEYS[b + 2], unpack(members))
  local out = {}
  for i = 1, #members do out[i] = s0[i] == 1 or s1[i] == 1 or s2[i] == 1 end
  return out
end
`;

/**
 * READ for many events with an entity. KEYS: the three dedupe buckets, then the snapshot key per
 * event; ARGV: the dedupe member per event. Per event: {1} when seen, else {0, hash fields}.
 */
const READ = `${SEEN}
local dup = seen(ARGV, 1)
local out = {}
for e = 1, #ARGV do
  if dup[e] then out[e] = {1}
  else out[e] = {0, redis.call('HGETALL', KEYS[3 + e])} end
end
return out
`;

/**
 * COMMIT for many events. KEYS: the archive stream, the nine keys of the queue of runs (BullMQ's
 * addStandardJob), the three dedupe buckets (current first), the key holding the chunk's NDJSON
 * (when it is not an argument), the snapshot key of each event that has an entity, then one loop
 * breaker window per run to count. ARGV: when the current bucket expires (unix seconds), the
 * snapshot ttl, the kinds (one character per event), the chunk's outbox entries as NDJSON (or ''
 * when a key holds them), how many runs to count, now (ms); then per event its dedupe member
 * and, for events with an entity, expected version, event time, mode, stale, n and n field/value
 * pairs; then per run to count: its event's position in the chunk, window ms, max and job id;
 * then per job to add: its event's position, its run's position among those counted (0: not
 * counted), its head (encodeRunJob), the job's JSON data (a counted run's with `"loop":"ok"`), its
 * options (encodeRunJob), its job's key. Kinds: `p` plain (no entity), `s` with an entity. The
 * answer is one character per event: `o` ok, `d` duplicate, `r` retry (the snapshot changed since
 * READ).
 *
 * When every event commits (the usual case) the NDJSON goes to the archive as it came, one XADD;
 * otherwise the lines of the events that did not commit are cut out first. A chunk's NDJSON past
 * INLINE_ARCHIVE_BYTES is not an argument: the hand-off SETs it in a key of its own just before
 * (same connection, same write) and the archive entry names the key (`k`) and, when some events
 * did not commit, which did (`c`: this script's answer), for readArchive to read. Every byte
 * of a string a script sees costs Redis about 1 ns (its Lua hashes each string whole, measured
 * with perf: 15% of Redis's CPU on NDJSON batches), and a SET of the same bytes almost nothing. The runs of the
 * events that committed are counted by the loop breaker and their jobs added to the queue of runs
 * (`ADD_RUN_JOB_LUA`, as BullMQ's own script adds them) in this same script, first: an event is
 * never acknowledged without its runs, nor a run enqueued for an event that was not. A counted run's
 * job says `loop: ok` or `over` (the worker needs no round trip of its own).
 */
const COMMIT = `${SEEN}${ADMIT_LUA}${ADD_RUN_JOB_LUA}
local kinds = ARGV[3]
local n = #kinds
local members, at = {}, {}
local a = 7
for e = 1, n do
  members[e] = ARGV[a]
  at[e] = a
  local c = string.byte(kinds, e)
  if c == 112 then a = a + 1 else a = a + 6 + 2 * tonumber(ARGV[a + 5]) end
end
-- 1. Which events commit, before anything is written: new (not a duplicate, nor a repeat within
-- the chunk) and, with an entity, at the snapshot version they were matched against. A chunk's
-- earlier event of the same entity moves the version on (as its write below will).
-- The chunk's NDJSON in a key (ARGV[4] empty): it must be there; should this script fail, it goes.
local textKey = ARGV[4] == '' and KEYS[14] or nil
local function failed(why)
  if textKey then redis.call('DEL', textKey) end
  return redis.error_reply(why)
end
if textKey and redis.call('EXISTS', textKey) == 0 then
  return redis.error_reply('the chunk text ' .. textKey .. ' is not in Redis')
end
-- A full Redis (maxmemory under noeviction) refuses the chunk here, before anything is written.
-- Redis checks memory only until a script's first write of any kind: the loop breaker's
-- ZREMRANGEBYSCORE (which needs no memory) came first, and let every later write through, so
-- events that started runs were accepted into a full Redis without bound. SETRANGE of nothing
-- is such a check and changes nothing (KEYS[14]: the chunk's text, or a key never written).
local room = redis.pcall('SETRANGE', KEYS[14], 0, '')
if type(room) == 'table' and room.err then return failed(room.err) end
local dup = seen(members, 11)
local out, mine, sks, vers, current = {}, {}, {}, {}, {}
local k = 15
for e = 1, n do
  local a = at[e]
  local c = string.byte(kinds, e)
  local m = members[e]
  local r, sk
  if c ~= 112 then
    sk = KEYS[k]
    sks[e] = sk
    k = k + 1
  end
  if dup[e] or mine[m] then r = 'd'
  elseif not sk then r = 'o'
  else
    local v = current[sk] or redis.call('HGET', sk, '#v') or '0'
    if v ~= ARGV[a + 1] then r = 'r'
    else
      r = 'o'
      vers[e] = v
      local mode = ARGV[a + 3]
      if ARGV[a + 4] ~= '0' then current[sk] = v
      elseif mode == 'delete' then current[sk] = '0'
      elseif mode == 'replace' or mode == 'patch' then current[sk] = tostring(tonumber(v) + 1)
      else current[sk] = v end
    end
  end
  if r == 'o' then mine[m] = true end
  out[e] = r
end
-- 2. The loop breaker, for the runs of the events that commit: one window per rule and entity
-- (idempotent per run: counting a run again changes nothing).
local over = {}
for i = 1, tonumber(ARGV[5]) do
  if out[tonumber(ARGV[a])] == 'o' and admit(KEYS[k], ARGV[6], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]) == 0 then
    over[i] = true
  end
  k = k + 1
  a = a + 4
end
-- 3. Their runs, as BullMQ jobs, before this script writes anything of its own: a script that
-- fails is not undone, so should an add fail (a damaged queue key) the events stay new and a
-- retry adds what is missing (a job added already is not added twice: its id is derived). The
-- job hash an add that failed half way left behind goes, or the retry would take it for the job.
local queue = {KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[10]}
local jobKeys = {}
for j = a, #ARGV, 6 do
  if out[tonumber(ARGV[j])] == 'o' then jobKeys[#jobKeys + 1] = ARGV[j + 5] end
end
local blocked, absent = prepareRunJobs(queue, jobKeys)
if blocked then return failed(blocked) end
while a <= #ARGV do
  if out[tonumber(ARGV[a])] == 'o' then
    local counted = tonumber(ARGV[a + 1])
    local data = ARGV[a + 3]
    -- a counted run's data ends ,"loop":"ok"} (a new string costs a hash of every byte: only then)
    if counted ~= 0 and over[counted] then data = string.sub(data, 1, -6) .. '"over"}' end
    local err = addRunJob(queue, ARGV[a + 2], data, ARGV[a + 4], ARGV[a + 5], absent)
    if err then return failed(err) end
  end
  a = a + 6
end
-- 4. Snapshots, seen ids and the archive.
local added, nadd = {}, 0
for e = 1, n do
  if out[e] == 'o' then
    nadd = nadd + 1
    added[nadd] = members[e]
    local sk = sks[e]
    local a = at[e]
    if sk and ARGV[a + 4] == '0' then
      local mode = ARGV[a + 3]
      local f, nf = a + 6, tonumber(ARGV[a + 5])
      if mode == 'replace' or mode == 'delete' then redis.call('DEL', sk) end
      if mode == 'replace' or mode == 'patch' then
        -- in slices: Lua's C stack holds a few thousand values at most
        for i = f, f + 2 * nf - 1, 1000 do
          redis.call('HSET', sk, unpack(ARGV, i, math.min(i + 999, f + 2 * nf - 1)))
        end
        redis.call('HSET', sk, '#t', ARGV[a + 2], '#v', tostring(tonumber(vers[e]) + 1))
        redis.call('EXPIRE', sk, ARGV[2])
      end
    end
  end
end
if nadd > 0 then
  redis.call('SADD', KEYS[11], unpack(added))
  redis.call('EXPIREAT', KEYS[11], ARGV[1])
  if textKey then
    -- kept until the archive drain has written it (its TTL only reclaims a chunk never committed)
    redis.call('PERSIST', textKey)
    if nadd < n then
      redis.call('XADD', KEYS[1], 'MAXLEN', '~', '${STREAM_MAXLEN}', '*', 'k', textKey, 'c', table.concat(out))
    else
      redis.call('XADD', KEYS[1], 'MAXLEN', '~', '${STREAM_MAXLEN}', '*', 'k', textKey)
    end
  else
    local blob = ARGV[4]
    if nadd < n then
      -- the lines of the events that committed
      local parts, np, pos = {}, 0, 1
      for e = 1, n do
        local nl = string.find(blob, '\\n', pos, true) or (#blob + 1)
        if out[e] == 'o' then
          np = np + 1
          parts[np] = string.sub(blob, pos, nl - 1)
        end
        pos = nl + 1
      end
      blob = table.concat(parts, '\\n')
    end
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', '${STREAM_MAXLEN}', '*', 'e', blob)
  end
elseif textKey then
  redis.call('DEL', textKey)
end
return table.concat(out)
`;

const COMMIT_SHA = hash('sha1', COMMIT, 'hex');

/** Events per script call: bounds how long one call holds Redis. */
const CHUNK = 256;

/**
 * A chunk's NDJSON up to this many bytes is a COMMIT argument; past it, a key of its own (see
 * COMMIT). Each way costs Redis about the same at 4–5 KB: a SET and PERSIST against 1 ns a byte.
 */
export const INLINE_ARCHIVE_BYTES = 8 * 1024;

/** How long a chunk's NDJSON key lives when its COMMIT never ran (the COMMIT that did persists it). */
const UNCOMMITTED_TEXT_TTL_SECONDS = 24 * 3600;

export type Outcome = 'accepted' | 'duplicate' | 'stale';

export interface HandoffResult {
  readonly id: string;
  readonly outcome: Outcome;
  readonly matches: readonly string[];
}

export interface HandoffOptions {
  /** Key prefix; tests use their own. */
  readonly prefix?: string;
  readonly dedupeTtlSeconds?: number;
  readonly snapshotTtlSeconds?: number;
  /** Match stale events anyway (sources.md: not matched by default). */
  readonly matchStale?: boolean;
  /** Attempts when another event of the same entity commits in between. */
  readonly maxRetries?: number;
  /** Micro-batches on their way to Redis at once (group commit); more wait and go together. */
  readonly maxInflight?: number;
  /** The clock of the dedupe buckets (tests). */
  readonly now?: () => number;
}

/** The events of one submit call: one promise for all of them. */
interface Group {
  readonly results: HandoffResult[];
  left: number;
  failed: boolean;
  readonly resolve: (r: HandoffResult[]) => void;
  readonly reject: (e: unknown) => void;
}

interface Pending {
  readonly ev: AdaptedEvent;
  /** The id in the dedupe buckets: `<tenant>:<id>`. */
  readonly member: string;
  /** The entity's snapshot key; null for events without an entity (nothing to read or write). */
  readonly snapshotKey: string | null;
  readonly receivedAt: string;
  /** receivedAt in ms. */
  readonly receivedMs: number;
  readonly group: Group;
  readonly index: number;
  attempts: number;
}

/**
 * An outbox entry of an event kept as received (receivedLine), as bytes: RECEIVED_HEAD, the
 * event's own bytes from its request, then the tail its request's events share.
 */
interface ReceivedEntry {
  readonly raw: Uint8Array;
  readonly tail: string;
  /** The tail's length in bytes. */
  readonly tailBytes: number;
}

interface Planned {
  readonly p: Pending;
  readonly result: HandoffResult;
  /** Its kind in COMMIT: p (no entity) or s. */
  readonly kind: string;
  /** Its outbox entry: its JSON text, or the bytes it is made of. */
  readonly json: string | ReceivedEntry;
  /** Its arguments after the chunk's NDJSON: the dedupe member, then the snapshot's. */
  readonly args: string[];
  /** The runs it starts that the loop breaker counts: window key, window ms, max, job id, rule. */
  readonly loops: ReadonlyArray<readonly [string, string, string, string, string]>;
  /** Its run jobs (matches, debounce cancellations). */
  readonly jobs: readonly PlannedJob[];
}

interface PlannedJob {
  /** Its hash's key (BullMQ's job prefix and its id). */
  readonly key: string;
  /** Its run's position (from 1) among the event's `loops`; 0 when not counted. */
  readonly counted: number;
  /** Its head and options (encodeRunJob). */
  readonly head: string;
  readonly opts: string;
  /** Its RunJob as JSON; a counted run's says `"loop":"ok"`, which COMMIT turns to `over` when so. */
  readonly data: string;
}

/** The connection with the two scripts defined on it (the constructor does). */
type ScriptRedis = Redis & {
  sbHandoffRead(numKeys: number, ...args: string[]): Promise<unknown>;
  sbHandoffCommit(numKeys: number, ...args: Array<string | Buffer>): Promise<unknown>;
};

/** A script call's outcome, as ioredis's Pipeline.exec gives each command's. */
type Settled = [Error | null, unknown];
const settled = (p: Promise<unknown>): Promise<Settled> =>
  p.then(
    (v): Settled => [null, v],
    (e: unknown): Settled => [e instanceof Error ? e : new Error(String(e)), undefined],
  );

/**
 * Sends the calls `send` makes as plain commands, in one socket write when there are several,
 * and settles each like Pipeline.exec. Not an ioredis Pipeline (nor MULTI, the same class):
 * a pipeline outlives every scavenge until the next full GC, and with it everything its commands
 * reference (arguments, replies). Its constructor defines a `length` getter with a fresh closure
 * on each instance, which V8 keeps in an old-space hidden class of that instance; a bare class
 * doing only that reproduces part of the effect. Measured (V8 11.3, --trace-gc-nvp): creating
 * pipelines alone, never executed, made 9–11% of allocation survive; at 5,000 events/s 9% of
 * the ingest's allocation survived each scavenge, scavenges took 7–12 ms and the p99 request →
 * 2xx was 10–15 ms. With plain commands 0.3% survives, scavenges take 1–2 ms, p99 3–5 ms.
 */
function together(redis: Redis, send: (r: ScriptRedis) => Array<Promise<unknown>>): Promise<Settled[]> {
  const socket = (redis as { stream?: { cork(): void; uncork(): void } }).stream;
  const cork = redis.status === 'ready' && socket !== undefined;
  if (cork) socket.cork();
  try {
    return Promise.all(send(redis as ScriptRedis).map(settled));
  } finally {
    if (cork) socket.uncork();
  }
}

/**
 * A command sent as the bytes packCommand made of it. ioredis encodes a command's arguments by
 * measuring each string three times and copying it twice more (MixedBuffers): for COMMIT's few
 * hundred arguments a chunk, packing them here took the ingest's CPU per event on NDJSON batches
 * from 8.4–8.8 to 7.2–7.6 µs (A/B at 60,000 events/s). A test checks the bytes against ioredis's.
 */
class PackedCommand extends Command {
  constructor(
    name: string,
    private readonly bytes: Buffer,
  ) {
    super(name, [], { replyEncoding: 'utf8' });
  }

  override toWritable(): Buffer {
    return this.bytes;
  }
}

/** A command in Redis's protocol (RESP): each argument measured once and written once. */
export function packCommand(parts: ReadonlyArray<string | Buffer>): Buffer {
  const n = parts.length;
  const lens = new Array<number>(n);
  let size = 1 + digits(n) + 2;
  for (let i = 0; i < n; i++) {
    const p = parts[i]!;
    const len = typeof p === 'string' ? Buffer.byteLength(p) : p.length;
    lens[i] = len;
    size += 1 + digits(len) + 2 + len + 2;
  }
  const buf = Buffer.allocUnsafe(size);
  buf[0] = 42; // *
  let o = decimal(buf, 1, n);
  buf[o++] = 13;
  buf[o++] = 10;
  for (let i = 0; i < n; i++) {
    const p = parts[i]!;
    // each header byte by hand: a write of `$<len>\r\n` as a string was a native call an argument
    buf[o++] = 36; // $
    o = decimal(buf, o, lens[i]!);
    buf[o++] = 13;
    buf[o++] = 10;
    o += typeof p === 'string' ? buf.write(p, o) : p.copy(buf, o);
    buf[o++] = 13;
    buf[o++] = 10;
  }
  return buf;
}

/** Writes n (≥ 0) in decimal at o; returns the offset after it. */
function decimal(buf: Buffer, o: number, n: number): number {
  const end = o + digits(n);
  for (let at = end - 1; at >= o; at--) {
    buf[at] = 48 + (n % 10);
    n = Math.floor(n / 10);
  }
  return end;
}

function digits(n: number): number {
  let d = 1;
  while (n >= 10) {
    n = Math.floor(n / 10);
    d++;
  }
  return d;
}

const META_TIME = '#t';
const META_VERSION = '#v';
const NO_HASH: string[] = [];
const NO_LOOPS: Planned['loops'] = [];
const NO_JOBS: readonly PlannedJob[] = [];

/**
 * The matched envelope of an event with an entity: its `data` merged with the entity's last
 * snapshot (`previous`) as its `merge` says. The same object shape as plainMatchedEnvelope's.
 */
function merged(ev: AdaptedEvent, snap: Record<string, unknown> | null, receivedAt: string): MatchedEnvelope {
  const previous = snap ?? ev.envelope.previous ?? null;
  let data: Record<string, unknown>;
  switch (ev.merge) {
    case 'patch':
      data = { ...(previous ?? {}), ...ev.envelope.data };
      break;
    case 'delete':
    case 'none':
      data = previous ? { ...previous, ...ev.envelope.data } : ev.envelope.data;
      break;
    default:
      data = ev.envelope.data;
  }
  return matchedEnvelope(ev.envelope, data, previous, receivedAt);
}

const HEAD = Buffer.from(RECEIVED_HEAD);

/**
 * A chunk's outbox entries as NDJSON bytes. An event kept as received is copied from its request
 * as it came: building its line as a string and encoding the chunk's joined lines again (as this
 * did until 2026-12-07) read every byte three times more, and was 7% of the ingest's CPU on NDJSON
 * batches (V8's profiler: the join and Buffer.from, 73% of commit's own time).
 */
function archiveText(chunk: readonly Planned[]): Buffer {
  let size = chunk.length - 1;
  for (let i = 0; i < chunk.length; i++) {
    const j = chunk[i]!.json;
    size += typeof j === 'string' ? Buffer.byteLength(j) : HEAD.length + j.raw.length + j.tailBytes;
  }
  const buf = Buffer.allocUnsafe(size);
  let o = 0;
  for (let i = 0; i < chunk.length; i++) {
    if (i > 0) buf[o++] = 10;
    const j = chunk[i]!.json;
    if (typeof j === 'string') o += buf.write(j, o);
    else {
      buf.set(HEAD, o);
      o += HEAD.length;
      buf.set(j.raw, o);
      o += j.raw.length;
      o += buf.write(j.tail, o);
    }
  }
  return buf;
}

function settle(p: Pending, r: HandoffResult): void {
  const g = p.group;
  if (g.failed) return;
  g.results[p.index] = r;
  if (--g.left === 0) g.resolve(g.results);
}

function fail(p: Pending, e: unknown): void {
  const g = p.group;
  if (g.failed) return;
  g.failed = true;
  g.reject(e);
}

export class Handoff {
  readonly prefix: string;
  /** Every committed event (the archive's first stop: replay, backtest, drained to Postgres). */
  readonly outboxKey: string;
  /** The queue of runs COMMIT adds jobs to. */
  private readonly runQueue: RunQueueKeys;
  /** Dedupe bucket length (half the window), seconds. */
  private readonly bucketSeconds: number;
  private readonly snapshotTtl: string;
  private readonly matchStale: boolean;
  private readonly maxRetries: number;
  private readonly now: () => number;
  private queue: Pending[] = [];
  private scheduled = false;
  /** Micro-batches between READ and the end of COMMIT. */
  private inflight = 0;
  private readonly maxInflight: number;
  /** Keys for chunks' NDJSON: this hand-off's own prefix, and a counter. */
  private readonly textKeys: string;
  /** COMMIT's key for a chunk's NDJSON when it is an argument instead: never written. */
  private readonly noTextKey: string;
  private textSeq = 0;
  /** The ISO form of the last receivedAt seen: a batch's events share it. */
  private isoAt = -1;
  private iso = '';
  /** The last receivedTail and its length in bytes. */
  private tailText = '';
  private tailBytes = 0;

  constructor(
    private readonly redis: Redis,
    private readonly engine: () => Engine,
    opts: HandoffOptions = {},
  ) {
    this.prefix = opts.prefix ?? 'sb';
    this.outboxKey = archiveStreamKey(this.prefix);
    this.textKeys = `${this.prefix}:ab:${randomBytes(6).toString('hex')}:`;
    this.noTextKey = `${this.prefix}:ab:-`;
    this.runQueue = runQueueKeys(this.prefix);
    this.bucketSeconds = Math.max(1, Math.ceil((opts.dedupeTtlSeconds ?? 7 * 24 * 3600) / 2));
    this.snapshotTtl = String(opts.snapshotTtlSeconds ?? 90 * 24 * 3600);
    this.matchStale = opts.matchStale ?? false;
    this.maxRetries = opts.maxRetries ?? 8;
    this.now = opts.now ?? Date.now;
    this.maxInflight = opts.maxInflight ?? 2;
    // defineCommand sends EVALSHA and falls back to EVAL on NOSCRIPT, so a restarted Redis (which
    // has lost its script cache) keeps working.
    // No fixed key count: the first argument says how many keys a call has.
    if (!('sbHandoffRead' in redis)) redis.defineCommand('sbHandoffRead', { lua: READ });
    if (!('sbHandoffCommit' in redis)) redis.defineCommand('sbHandoffCommit', { lua: COMMIT });
  }

  /** Hands one event off: submitAll of one. */
  async submit(ev: AdaptedEvent, receivedAt = Date.now()): Promise<HandoffResult> {
    return (await this.submitAll([ev], receivedAt))[0]!;
  }

  /**
   * Hands events off; resolves, with one result per event in order, once Redis has committed
   * them (or found them duplicates), and rejects when it could not. Events submitted in the same
   * turn of the event loop share round trips (micro-batching).
   */
  submitAll(events: readonly AdaptedEvent[], receivedAt = Date.now()): Promise<HandoffResult[]> {
    if (events.length === 0) return Promise.resolve([]);
    return new Promise((resolve, reject) => {
      const group: Group = {
        results: new Array(events.length),
        left: events.length,
        failed: false,
        resolve,
        reject,
      };
      if (receivedAt !== this.isoAt) {
        this.isoAt = receivedAt;
        this.iso = new Date(receivedAt).toISOString();
      }
      const iso = this.iso;
      for (let i = 0; i < events.length; i++) {
        const ev = events[i]!;
        const e = ev.envelope;
        this.queue.push({
          ev,
          member: `${e.tenant}:${e.id}`,
          snapshotKey:
            ev.merge === 'none' && ev.entityId === ''
              ? null
              : `${this.prefix}:s:${e.tenant}:${e.source}:${ev.entity}:${ev.entityId}`,
          receivedAt: iso,
          receivedMs: receivedAt,
          group,
          index: i,
          attempts: 0,
        });
      }
      this.schedule();
    });
  }

  /**
   * Group commit: a micro-batch leaves at the next turn of the event loop unless maxInflight
   * batches are already on their way to Redis; then the events wait for one of them to come
   * back, and leave together. Under light load an event goes at once; under heavy load the
   * batches grow instead of the round trips, which cost a socket write each (measured: a quarter
   * of the ingest's CPU at one event per request with a batch per turn).
   */
  private schedule(): void {
    if (this.scheduled || this.inflight >= this.maxInflight || this.queue.length === 0) return;
    this.scheduled = true;
    setImmediate(() => void this.flush());
  }

  private async flush(): Promise<void> {
    this.scheduled = false;
    const batch = this.queue;
    this.queue = [];
    if (batch.length === 0) return;
    this.inflight++;
    try {
      await this.run(batch);
    } catch (e) {
      for (const p of batch) fail(p, e);
    } finally {
      this.inflight--;
      this.schedule();
    }
  }

  /** The dedupe buckets to ask now (current first), and when the current one expires. */
  private buckets(now = this.now()): { keys: [string, string, string]; expireAt: string } {
    const L = this.bucketSeconds;
    const n = Math.floor(now / 1000 / L);
    const key = (i: number) => `${this.prefix}:dd:${i}`;
    // An id of bucket n is asked about until bucket n + 2 ends: keep it that long.
    return { keys: [key(n), key(n - 1), key(n - 2)], expireAt: String((n + 3) * L) };
  }

  private async run(batch: Pending[]): Promise<void> {
    const buckets = this.buckets();
    // READ, one script call per chunk, for the events with an entity only. Events without one
    // (generic sources) have no snapshot to read: COMMIT's own bucket check tells a duplicate.
    const reading: Pending[] = [];
    for (const p of batch) if (p.snapshotKey !== null) reading.push(p);
    const snapshots = new Map<Pending, string[]>();
    if (reading.length > 0) {
      const res = await together(this.redis, (r) => {
        const calls: Array<Promise<unknown>> = [];
        for (let i = 0; i < reading.length; i += CHUNK) {
          const keys: string[] = [...buckets.keys];
          const members: string[] = [];
          for (const p of reading.slice(i, i + CHUNK)) {
            keys.push(p.snapshotKey!);
            members.push(p.member);
          }
          calls.push(r.sbHandoffRead(keys.length, ...keys, ...members));
        }
        return calls;
      });
      for (let c = 0; c < res.length; c++) {
        const [err, out] = res[c]!;
        const end = Math.min(reading.length, (c + 1) * CHUNK);
        for (let j = c * CHUNK; j < end; j++) {
          const p = reading[j]!;
          const r = err ? undefined : (out as Array<[number, string[]?]>)[j - c * CHUNK];
          if (r === undefined) fail(p, err ?? new Error('no READ answer'));
          else if (r[0] === 1) settle(p, { id: p.ev.envelope.id, outcome: 'duplicate', matches: [] });
          else snapshots.set(p, r[1] ?? NO_HASH);
        }
      }
    }
    // Match in process, then COMMIT, one script call per chunk, each sent as soon as it is
    // planned: Redis runs a chunk while this thread plans the next, and a chunk's events are
    // answered when its own call returns. Planning a whole micro-batch before sending any of it
    // left Redis idle meanwhile: NDJSON batches of 100 went from 67k to 80–87k events/s (A/B,
    // same hour), with the machine busy 190% of 200% instead of 145%.
    const commits: Array<Promise<void>> = [];
    const again: Pending[] = [];
    let chunk: Planned[] = [];
    for (const p of batch) {
      if (p.group.failed) continue;
      const hash = p.snapshotKey === null ? NO_HASH : snapshots.get(p);
      if (hash === undefined) continue; // a duplicate, or failed
      // An event that cannot be planned (the ingest checks what it can first) fails its own
      // request, not the others that share this micro-batch.
      try {
        chunk.push(this.plan(p, hash));
      } catch (e) {
        fail(p, e);
        continue;
      }
      if (chunk.length === CHUNK) {
        commits.push(this.commit(chunk, buckets, again));
        chunk = [];
      }
    }
    if (chunk.length > 0) commits.push(this.commit(chunk, buckets, again));
    await Promise.all(commits);
    if (again.length > 0) await this.run(again);
  }

  /**
   * COMMITs one chunk of planned events and settles each of them, or puts it in `again` when
   * another event of its entity committed since READ.
   */
  private async commit(
    chunk: readonly Planned[],
    buckets: { keys: readonly string[]; expireAt: string },
    again: Pending[],
  ): Promise<void> {
    const keys: string[] = [this.outboxKey, ...this.runQueue.keys, ...buckets.keys, ''];
    const args: Array<string | Buffer> = [buckets.expireAt, this.snapshotTtl, '', '', '', String(this.now())];
    let kinds = '';
    const loopKeys: string[] = [];
    const loopArgs: string[] = [];
    const jobArgs: Array<string | Buffer> = [];
    for (let j = 0; j < chunk.length; j++) {
      const pl = chunk[j]!;
      kinds += pl.kind;
      if (pl.p.snapshotKey !== null) keys.push(pl.p.snapshotKey);
      for (const a of pl.args) args.push(a);
      const position = String(j + 1);
      // The chunk's count of runs to count before this event's.
      const before = loopKeys.length;
      for (const [key, windowMs, max, jobId] of pl.loops) {
        loopKeys.push(key);
        loopArgs.push(position, windowMs, max, jobId);
      }
      for (const job of pl.jobs) {
        jobArgs.push(
          position,
          String(job.counted === 0 ? 0 : before + job.counted),
          job.head,
          job.data,
          job.opts,
          job.key,
        );
      }
    }
    args[2] = kinds;
    // As bytes: its size in bytes decides where it goes, and the SET and packCommand take it as is.
    const text = archiveText(chunk);
    const inline = text.length <= INLINE_ARCHIVE_BYTES;
    const textKey = inline ? this.noTextKey : `${this.textKeys}${++this.textSeq}`;
    keys[13] = textKey;
    args[3] = inline ? text : '';
    args[4] = String(loopKeys.length);
    for (const k of loopKeys) keys.push(k);
    for (const a of loopArgs) args.push(a);
    for (const a of jobArgs) args.push(a);
    // EVALSHA as packed bytes; should Redis not have the script (restarted), ioredis's own
    // command for it sends EVAL, which loads it.
    const packed = packCommand(['evalsha', COMMIT_SHA, String(keys.length), ...keys, ...args]);
    const commit = (r: ScriptRedis) =>
      (r.sendCommand(new PackedCommand('evalsha', packed)) as Promise<unknown>).catch((e: unknown) =>
        String((e as Error).message).startsWith('NOSCRIPT')
          ? r.sbHandoffCommit(keys.length, ...keys, ...args)
          : Promise.reject(e),
      );
    const [err, out] = inline
      ? await settled(commit(this.redis as ScriptRedis))
      : (
          await together(this.redis, (r) => [
            r.set(textKey, text, 'EX', UNCOMMITTED_TEXT_TTL_SECONDS),
            commit(r),
          ])
        )[1]!;
    for (let j = 0; j < chunk.length; j++) {
      const pl = chunk[j]!;
      const res = err ? undefined : (out as string)[j];
      if (res === 'o') settle(pl.p, pl.result);
      else if (res === 'd') settle(pl.p, { id: pl.result.id, outcome: 'duplicate', matches: [] });
      else if (res === 'r') {
        if (++pl.p.attempts > this.maxRetries)
          fail(pl.p, new Error(`gave up after ${this.maxRetries} conflicting updates of one entity`));
        else again.push(pl.p);
      } else fail(pl.p, err ?? new Error(`unexpected COMMIT answer ${String(res)}`));
    }
  }

  /** Merges the snapshot, decides staleness, matches, and builds the COMMIT arguments. */
  private plan(p: Pending, hash: readonly string[]): Planned {
    const ev = p.ev;
    let version = '0';
    let snapTime = -1;
    const snap: Record<string, unknown> = {};
    for (let i = 0; i + 1 < hash.length; i += 2) {
      const f = hash[i]!;
      const v = hash[i + 1]!;
      if (f === META_VERSION) version = v;
      else if (f === META_TIME) snapTime = Number(v);
      else if (f.startsWith('k:')) snap[f.slice(2)] = JSON.parse(v);
    }
    const hasSnap = version !== '0';
    // Ordered by the event's time, but never by more than MAX_FUTURE_SKEW_MS past its arrival.
    // Only an event with an entity has a snapshot to be stale against and a time to record.
    const ordered = p.snapshotKey === null ? Number.NaN : orderingTime(ev.envelope.time, p.receivedMs);
    const timed = Number.isFinite(ordered);
    const eventTime = timed ? ordered : p.receivedMs;
    const stale = hasSnap && timed && snapTime > eventTime;
    const envelope =
      p.snapshotKey === null
        ? plainMatchedEnvelope(ev.envelope, p.receivedAt)
        : merged(ev, hasSnap ? snap : null, p.receivedAt);
    const engine = this.engine();
    const rules = stale && !this.matchStale ? [] : engine.match(envelope);
    const cancel = stale ? [] : engine.cancels(envelope, rules);
    const outcome = stale ? 'stale' : 'accepted';
    const runs = rules.length > 0 || cancel.length > 0;
    // An event with no snapshot and no run is archived as it came, when it came as one line of
    // JSON (config/archive.ts): its envelope follows from it, and serializing it again was the
    // largest single cost of the ingest on NDJSON batches.
    let envJson = '';
    let json: string | ReceivedEntry;
    if (!runs && p.snapshotKey === null && ev.line !== undefined) {
      if (typeof ev.line === 'string') json = receivedLine(ev.line, envelope.tenant, p.receivedAt, outcome);
      else {
        const tail = receivedTail(envelope.tenant, p.receivedAt, outcome);
        if (tail !== this.tailText) {
          this.tailText = tail;
          this.tailBytes = Buffer.byteLength(tail);
        }
        json = { raw: ev.line, tail, tailBytes: this.tailBytes };
      }
    } else {
      envJson = JSON.stringify(envelope);
      json = `{"envelope":${envJson},"outcome":"${outcome}","rules":${JSON.stringify(rules)}}`;
    }
    const result: HandoffResult = { id: ev.envelope.id, outcome, matches: rules };
    const loops = rules.length > 0 ? this.loops(engine, envelope, rules) : NO_LOOPS;
    const jobs = runs ? this.jobs(envelope, envJson, rules, cancel, loops, p.snapshotKey) : NO_JOBS;
    if (p.snapshotKey === null) return { p, result, kind: 'p', json, args: [p.member], loops, jobs };
    const args = [p.member, version, String(eventTime), ev.merge, stale ? '1' : '0', '0'];
    if (ev.merge === 'replace' || ev.merge === 'patch') {
      let n = 0;
      for (const k in ev.envelope.data) {
        args.push(`k:${k}`, JSON.stringify(ev.envelope.data[k]) ?? 'null');
        n++;
      }
      args[5] = String(n);
    }
    return { p, result, kind: 's', json, args, loops, jobs };
  }

  /**
   * The run jobs of a committed event (RunJob in config/runs.ts, built as JSON around the
   * envelope's, which is serialized once): one per matched rule, and one `cancel` per debounced
   * rule that admitted the event without matching it (its timer for the key ends). Workers' guards
   * read the entity's latest snapshot under `snapshot`.
   */
  private jobs(
    envelope: RunEvent & { tenant: string },
    envJson: string,
    rules: readonly string[],
    cancel: readonly string[],
    loops: Planned['loops'],
    snapshotKey: string | null,
  ): PlannedJob[] {
    const tenant = envelope.tenant;
    const now = this.now();
    const t = JSON.stringify(tenant);
    const snapshot = JSON.stringify(snapshotKey ?? `${this.prefix}:s:none`);
    const out: PlannedJob[] = [];
    let l = 0;
    for (const ruleId of rules) {
      // `loops` holds the counted runs in the order of `rules`, with their job ids.
      let counted = 0;
      let jobId: string;
      if (l < loops.length && loops[l]![4] === ruleId) {
        jobId = loops[l]![3];
        counted = ++l;
      } else jobId = runJobId(tenant, envelope.id, ruleId);
      const [head, opts] = encodeRunJob('run', jobId, now);
      const data = `{"tenant":${t},"ruleId":${JSON.stringify(ruleId)},"snapshot":${snapshot},"event":${envJson}${counted === 0 ? '}' : ',"loop":"ok"}'}`;
      out.push({ key: this.runQueue.jobPrefix + jobId, counted, head, opts, data });
    }
    for (const ruleId of cancel) {
      const id = runJobId(tenant, envelope.id, ruleId, 'cancel');
      const [head, opts] = encodeRunJob('cancel', id, now);
      const data = `{"tenant":${t},"ruleId":${JSON.stringify(ruleId)},"kind":"cancel","event":${envJson}}`;
      out.push({ key: this.runQueue.jobPrefix + id, counted: 0, head, opts, data });
    }
    return out;
  }

  /**
   * The loop breaker windows of an event's runs (workflows.md), counted by COMMIT. A debounced
   * rule's match arms a timer rather than starting a run: its run is counted when the timer fires.
   */
  private loops(
    engine: Engine,
    envelope: RunEvent & { tenant: string },
    rules: readonly string[],
  ): Planned['loops'] {
    const index = engine.current;
    const out: Array<readonly [string, string, string, string, string]> = [];
    let entity: string | undefined;
    for (const id of rules) {
      const w = index.rule(envelope.tenant, id)?.workflow;
      if (!w || w.debounce) continue;
      entity ??= loopEntity(envelope);
      out.push([
        loopKey(this.prefix, envelope.tenant, id, entity),
        String(w.loop.windowMs),
        String(w.loop.max),
        runJobId(envelope.tenant, envelope.id, id),
        id,
      ]);
    }
    return out;
  }
}
