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
import type { Engine, Envelope } from '../engine/index.js';
import type { AdaptedEvent } from './connection.js';

const READ = `
if redis.call('EXISTS', KEYS[1]) == 1 then return {1} end
return {0, redis.call('HGETALL', KEYS[2])}
`;

const COMMIT = `
local v = redis.call('HGET', KEYS[2], '#v') or '0'
if v ~= ARGV[2] then return 'retry' end
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then return 'dup' end
if ARGV[5] == '0' then
  local mode = ARGV[4]
  if mode == 'replace' or mode == 'delete' then redis.call('DEL', KEYS[2]) end
  if mode == 'replace' or mode == 'patch' then
    local n = tonumber(ARGV[8])
    for i = 0, n - 1 do redis.call('HSET', KEYS[2], ARGV[9 + 2 * i], ARGV[10 + 2 * i]) end
    redis.call('HSET', KEYS[2], '#t', ARGV[3], '#v', tostring(tonumber(v) + 1))
    redis.call('EXPIRE', KEYS[2], ARGV[7])
  end
end
redis.call('XADD', KEYS[3], 'MAXLEN', '~', '10000000', '*', 'e', ARGV[6])
return 'ok'
`;

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
  readonly receivedAt: number;
  readonly resolve: (r: HandoffResult) => void;
  readonly reject: (e: unknown) => void;
  attempts: number;
}

type ScriptPipeline = ReturnType<Redis['pipeline']> & {
  sbHandoffRead(...args: string[]): ScriptPipeline;
  sbHandoffCommit(...args: string[]): ScriptPipeline;
};

const META_TIME = '#t';
const META_VERSION = '#v';

export class Handoff {
  readonly prefix: string;
  readonly outboxKey: string;
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
    this.outboxKey = `${this.prefix}:outbox`;
    this.dedupeTtl = opts.dedupeTtlSeconds ?? 7 * 24 * 3600;
    this.snapshotTtl = opts.snapshotTtlSeconds ?? 90 * 24 * 3600;
    this.matchStale = opts.matchStale ?? false;
    this.maxRetries = opts.maxRetries ?? 8;
    // defineCommand sends EVALSHA and falls back to EVAL on NOSCRIPT, so a restarted Redis (which
    // has lost its script cache) keeps working.
    if (!('sbHandoffRead' in redis)) {
      redis.defineCommand('sbHandoffRead', { numberOfKeys: 2, lua: READ });
      redis.defineCommand('sbHandoffCommit', { numberOfKeys: 3, lua: COMMIT });
    }
  }

  /**
   * Hands an event off; resolves once Redis has committed it (or found it a duplicate). Events
   * submitted in the same turn of the event loop share round trips (micro-batching).
   */
  submit(ev: AdaptedEvent, receivedAt = Date.now()): Promise<HandoffResult> {
    return new Promise((resolve, reject) => {
      this.queue.push({ ev, receivedAt, resolve, reject, attempts: 0 });
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
    const read = this.redis.pipeline() as ScriptPipeline;
    for (const p of batch) read.sbHandoffRead(...this.keys(p.ev));
    const reads = await read.exec();
    const commit = this.redis.pipeline() as ScriptPipeline;
    const planned: Array<{ p: Pending; result: HandoffResult } | null> = [];
    batch.forEach((p, i) => {
      const [err, res] = reads![i]!;
      if (err) {
        p.reject(err);
        planned.push(null);
        return;
      }
      const r = res as [number, string[]?];
      if (r[0] === 1) {
        p.resolve({ id: p.ev.envelope.id, outcome: 'duplicate', matches: [] });
        planned.push(null);
        return;
      }
      const { entry, args } = this.plan(p, r[1] ?? []);
      const [dedupe, snap] = this.keys(p.ev);
      commit.sbHandoffCommit(dedupe, snap, this.outboxKey, ...args);
      planned.push({ p, result: { id: p.ev.envelope.id, outcome: entry.outcome, matches: entry.rules } });
    });
    if (commit.length === 0) return;
    const commits = await commit.exec();
    let k = 0;
    const again: Pending[] = [];
    for (const pl of planned) {
      if (pl === null) continue;
      const [err, res] = commits![k++]!;
      if (err) pl.p.reject(err);
      else if (res === 'ok') pl.p.resolve(pl.result);
      else if (res === 'dup') pl.p.resolve({ id: pl.result.id, outcome: 'duplicate', matches: [] });
      else if (++pl.p.attempts > this.maxRetries)
        pl.p.reject(new Error(`gave up after ${this.maxRetries} conflicting updates of one entity`));
      else again.push(pl.p);
    }
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
    const rules = stale && !this.matchStale ? [] : this.engine().match(envelope);
    const entry: OutboxEntry = { envelope, outcome: stale ? 'stale' : 'accepted', rules };
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
      String(fields.length / 2),
      ...fields,
    ];
    return { entry, args };
  }
}
