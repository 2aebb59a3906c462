/**
 * Dedupe, snapshots, staleness and the durable hand-off, in Redis (design.md steps 3–6).
 *
 * Per event, two scripts, each one round trip for a whole micro-batch of events:
 *
 * 1. READ: is the id already seen (dedupe)? what is the entity's snapshot (previous) and its
 *    version and time?
 * 2. COMMIT (after matching, in process): if the snapshot's version is unchanged, atomically set
 *    the dedupe key, write the snapshot (replace, patch or delete) and append the event, its
 *    `previous`, merged `data` and matched rule ids to the outbox stream. A changed version means
 *    another event of the same entity committed in between: read and match again.
 *
 * The outbox stream is the durable hand-off (and the event archive's first stop): the 2xx is sent
 * only after COMMIT succeeded, and the dispatcher (dispatch.ts) turns outbox entries into BullMQ
 * run jobs with deterministic ids, so a crash between the two never loses or doubles a run.
 * Snapshots are Redis hashes of JSON-encoded top-level fields, so a partial update (Autotask) is
 * a plain HSET of the fields it carries, with no JSON parsing inside Redis.
 */
import type { Redis } from 'ioredis';
import { archiveStreamKey } from '../config/runs.js';
import type { Engine, Envelope } from '../engine/index.js';
import type { AdaptedEvent } from './connection.js';

/** READ for many events: KEYS = dedupe, snapshot per event. Per event: {1} or {0, hash fields}. */
const READ = `
local out = {}
for e = 1, #KEYS / 2 do
  if redis.call('EXISTS', KEYS[2 * e - 1]) == 1 then out[e] = {1}
  else out[e] = {0, redis.call('HGETALL', KEYS[2 * e])} end
end
return out
`;

/**
 * COMMIT for many events: KEYS = dedupe, snapshot per event, then the archive and the dispatch
 * streams. Per event, ARGV holds ttl, expected version, event time, mode, stale, outbox entry,
 * snapshot ttl, matched (1/0), n, then n field/value pairs. Every event goes to the archive;
 * events with matches go to the dispatch stream too, in the same script (so the dispatcher reads
 * only the few events that start runs). Per event the answer is 'ok', 'dup' or 'retry'.
 */
const COMMIT = `
local out = {}
local archive, dispatch = KEYS[#KEYS - 1], KEYS[#KEYS]
local a = 1
for e = 1, (#KEYS - 2) / 2 do
  local dk, sk = KEYS[2 * e - 1], KEYS[2 * e]
  local n = tonumber(ARGV[a + 8])
  local f = a + 9
  local v = redis.call('HGET', sk, '#v') or '0'
  if v ~= ARGV[a + 1] then out[e] = 'retry'
  elseif not redis.call('SET', dk, '1', 'NX', 'EX', ARGV[a]) then out[e] = 'dup'
  else
    if ARGV[a + 4] == '0' then
      local mode = ARGV[a + 3]
      if mode == 'replace' or mode == 'delete' then redis.call('DEL', sk) end
      if mode == 'replace' or mode == 'patch' then
        for i = 0, n - 1 do redis.call('HSET', sk, ARGV[f + 2 * i], ARGV[f + 2 * i + 1]) end
        redis.call('HSET', sk, '#t', ARGV[a + 2], '#v', tostring(tonumber(v) + 1))
        redis.call('EXPIRE', sk, ARGV[a + 6])
      end
    end
    redis.call('XADD', archive, 'MAXLEN', '~', '10000000', '*', 'e', ARGV[a + 5])
    if ARGV[a + 7] == '1' then redis.call('XADD', dispatch, '*', 'e', ARGV[a + 5]) end
    out[e] = 'ok'
  end
  a = f + 2 * n
end
return out
`;

/** Events per script call: bounds how long one call holds Redis. */
const CHUNK = 256;

export type Outcome = 'accepted' | 'duplicate' | 'stale';

export interface HandoffResult {
  readonly id: string;
  readonly outcome: Outcome;
  readonly matches: readonly string[];
}

/** What the outbox holds for each event (JSON). */
export interface OutboxEntry {
  readonly envelope: Envelope & { previous: Record<string, unknown> | null; receivedAt: string };
  readonly outcome: Exclude<Outcome, 'duplicate'>;
  readonly rules: readonly string[];
  /** Debounced rules that admitted the event without matching it (their timers are cancelled). */
  readonly cancel?: readonly string[];
  /** The entity's snapshot key (guards in workers read the latest snapshot). */
  readonly snapshot?: string;
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
}

interface Pending {
  readonly ev: AdaptedEvent;
  /** Dedupe and snapshot keys, built once. */
  readonly keys: [string, string];
  readonly receivedAt: number;
  readonly resolve: (r: HandoffResult) => void;
  readonly reject: (e: unknown) => void;
  attempts: number;
}

type ScriptPipeline = ReturnType<Redis['pipeline']> & {
  sbHandoffRead(numKeys: number, ...args: string[]): ScriptPipeline;
  sbHandoffCommit(numKeys: number, ...args: string[]): ScriptPipeline;
};

const META_TIME = '#t';
const META_VERSION = '#v';

export class Handoff {
  readonly prefix: string;
  /** Every committed event (the archive's first stop: replay, backtest, drained to Postgres). */
  readonly outboxKey: string;
  /** Committed events with matches: what the dispatcher turns into run jobs. */
  readonly dispatchKey: string;
  private readonly dedupeTtl: number;
  private readonly snapshotTtl: number;
  private readonly matchStale: boolean;
  private readonly maxRetries: number;
  private queue: Pending[] = [];
  private scheduled = false;

  constructor(
    private readonly redis: Redis,
    private readonly engine: () => Engine,
    opts: HandoffOptions = {},
  ) {
    this.prefix = opts.prefix ?? 'sb';
    this.outboxKey = archiveStreamKey(this.prefix);
    this.dispatchKey = `${this.prefix}:dispatch`;
    this.dedupeTtl = opts.dedupeTtlSeconds ?? 7 * 24 * 3600;
    this.snapshotTtl = opts.snapshotTtlSeconds ?? 90 * 24 * 3600;
    this.matchStale = opts.matchStale ?? false;
    this.maxRetries = opts.maxRetries ?? 8;
    // defineCommand sends EVALSHA and falls back to EVAL on NOSCRIPT, so a restarted Redis (which
    // has lost its script cache) keeps working.
    if (!('sbHandoffRead' in redis)) {
      // No fixed key count: the first argument says how many keys a call has.
      redis.defineCommand('sbHandoffRead', { lua: READ });
      redis.defineCommand('sbHandoffCommit', { lua: COMMIT });
    }
  }

  /**
   * Hands an event off; resolves once Redis has committed it (or found it a duplicate). Events
   * submitted in the same turn of the event loop share round trips (micro-batching).
   */
  submit(ev: AdaptedEvent, receivedAt = Date.now()): Promise<HandoffResult> {
    return new Promise((resolve, reject) => {
      this.queue.push({ ev, keys: this.keys(ev), receivedAt, resolve, reject, attempts: 0 });
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => void this.flush());
      }
    });
  }

  private keys(ev: AdaptedEvent): [string, string] {
    const e = ev.envelope;
    const dedupe = `${this.prefix}:d:${e.tenant}:${e.id}`;
    const snap =
      ev.merge === 'none' && ev.entityId === ''
        ? `${this.prefix}:s:none`
        : `${this.prefix}:s:${e.tenant}:${e.source}:${ev.entity}:${ev.entityId}`;
    return [dedupe, snap];
  }

  private async flush(): Promise<void> {
    this.scheduled = false;
    const batch = this.queue;
    this.queue = [];
    if (batch.length === 0) return;
    try {
      await this.run(batch);
    } catch (e) {
      for (const p of batch) p.reject(e);
    }
  }

  private async run(batch: Pending[]): Promise<void> {
    // READ, one script call per chunk of events. Events without an entity (generic sources) have
    // no snapshot to read: they skip it, and COMMIT's SET NX alone tells a duplicate.
    const needsRead = batch.filter((p) => !(p.ev.merge === 'none' && p.ev.entityId === ''));
    const reading = new Set(needsRead);
    const read = this.redis.pipeline() as ScriptPipeline;
    for (let i = 0; i < needsRead.length; i += CHUNK) {
      const keys = needsRead.slice(i, i + CHUNK).flatMap((p) => p.keys);
      read.sbHandoffRead(keys.length, ...keys);
    }
    const snapshots = new Map<Pending, [number, string[]?]>();
    if (needsRead.length > 0) {
      const res = (await read.exec())!;
      let k = 0;
      for (const [err, out] of res) {
        const chunk = needsRead.slice(k, k + CHUNK);
        k += CHUNK;
        for (let j = 0; j < chunk.length; j++) {
          if (err) chunk[j]!.reject(err);
          else snapshots.set(chunk[j]!, (out as Array<[number, string[]?]>)[j]!);
        }
      }
    }
    // Match in process, then COMMIT, one script call per chunk.
    const planned: Array<{ p: Pending; result: HandoffResult; keys: [string, string]; args: string[] }> = [];
    for (const p of batch) {
      const r = reading.has(p) ? snapshots.get(p) : ([0, []] as [number, string[]]);
      if (r === undefined) continue; // its READ failed: already rejected
      if (r[0] === 1) {
        p.resolve({ id: p.ev.envelope.id, outcome: 'duplicate', matches: [] });
        continue;
      }
      const { entry, args } = this.plan(p, r[1] ?? []);
      planned.push({
        p,
        result: { id: p.ev.envelope.id, outcome: entry.outcome, matches: entry.rules },
        keys: p.keys,
        args,
      });
    }
    if (planned.length === 0) return;
    const commit = this.redis.pipeline() as ScriptPipeline;
    for (let i = 0; i < planned.length; i += CHUNK) {
      const chunk = planned.slice(i, i + CHUNK);
      const keys = [...chunk.flatMap((c) => c.keys), this.outboxKey, this.dispatchKey];
      commit.sbHandoffCommit(keys.length, ...keys, ...chunk.flatMap((c) => c.args));
    }
    const commits = (await commit.exec())!;
    const again: Pending[] = [];
    commits.forEach(([err, out], ci) => {
      const chunk = planned.slice(ci * CHUNK, ci * CHUNK + CHUNK);
      chunk.forEach((pl, j) => {
        const res = err ? undefined : (out as string[])[j];
        if (err) pl.p.reject(err);
        else if (res === 'ok') pl.p.resolve(pl.result);
        else if (res === 'dup') pl.p.resolve({ id: pl.result.id, outcome: 'duplicate', matches: [] });
        else if (++pl.p.attempts > this.maxRetries)
          pl.p.reject(new Error(`gave up after ${this.maxRetries} conflicting updates of one entity`));
        else again.push(pl.p);
      });
    });
    if (again.length > 0) await this.run(again);
  }

  /** Merges the snapshot, decides staleness, matches, and builds the COMMIT arguments. */
  private plan(p: Pending, hash: string[]): { entry: OutboxEntry; args: string[] } {
    const ev = p.ev;
    const snap: Record<string, unknown> = {};
    let version = '0';
    let snapTime = -1;
    for (let i = 0; i + 1 < hash.length; i += 2) {
      const f = hash[i]!;
      const v = hash[i + 1]!;
      if (f === META_VERSION) version = v;
      else if (f === META_TIME) snapTime = Number(v);
      else if (f.startsWith('k:')) snap[f.slice(2)] = JSON.parse(v);
    }
    const hasSnap = version !== '0';
    const previous = hasSnap ? snap : (ev.envelope.previous ?? null);
    const eventTime = Date.parse(ev.envelope.time);
    const stale = hasSnap && snapTime > eventTime;
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
    const envelope = { ...ev.envelope, data, previous, receivedAt: new Date(p.receivedAt).toISOString() };
    const engine = this.engine();
    const rules = stale && !this.matchStale ? [] : engine.match(envelope);
    const cancel = stale ? [] : engine.cancels(envelope, rules);
    const outcome = stale ? 'stale' : 'accepted';
    // Only events the workers will see carry what they need (the snapshot key, timers to cancel).
    const entry: OutboxEntry =
      rules.length > 0 || cancel.length > 0
        ? { envelope, outcome, rules, ...(cancel.length > 0 ? { cancel } : {}), snapshot: p.keys[1] }
        : { envelope, outcome, rules };
    const fields: string[] = [];
    if (ev.merge === 'replace' || ev.merge === 'patch') {
      for (const [k, v] of Object.entries(ev.envelope.data)) fields.push(`k:${k}`, JSON.stringify(v));
    }
    const args = [
      String(this.dedupeTtl),
      version,
      String(Number.isFinite(eventTime) ? eventTime : p.receivedAt),
      ev.merge,
      stale ? '1' : '0',
      JSON.stringify(entry),
      String(this.snapshotTtl),
      rules.length > 0 || cancel.length > 0 ? '1' : '0',
      String(fields.length / 2),
      ...fields,
    ];
    return { entry, args };
  }
}
