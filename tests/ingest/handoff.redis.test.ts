/**
 * The hand-off's chunked scripts on real Redis: one NDJSON stream entry per chunk (with the lines
 * of events that did not commit cut out), dedupe by time-bucketed sets (within a batch, across batches, across buckets, and
 * how long an id is remembered), plain events mixed with entity events in one chunk, the run jobs
 * COMMIT adds to the BullMQ queue (for committed events only), and the loop breaker counted there.
 */
import { randomBytes } from 'node:crypto';
import { Queue } from 'bullmq';
import { Command, Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, expect, it, vi } from 'vitest';
import { readArchive } from '../../src/config/archive.js';
import { loopKey, RUN_QUEUE, type RunJob, runJobId } from '../../src/config/runs.js';
import { compileRuleSet, Engine } from '../../src/engine/index.js';
import type { AdaptedEvent } from '../../src/ingest/connection.js';
import { Handoff, INLINE_ARCHIVE_BYTES, packCommand } from '../../src/ingest/handoff.js';

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6390';
let redis: Redis;
const prefixes: string[] = [];

/** The run jobs waiting in a hand-off's queue: [event id, rule id, kind or loop verdict], sorted. */
async function queued(prefix: string): Promise<string[][]> {
  const queue = new Queue<RunJob>(RUN_QUEUE, { connection: redis.duplicate(), prefix });
  try {
    const jobs = await queue.getJobs(['wait']);
    for (const j of jobs)
      expect(j.id).toBe(
        runJobId('acme', j.data.event.id, j.data.ruleId, j.name === 'cancel' ? 'cancel' : 'match'),
      );
    return jobs
      .map((j) => [j.data.event.id, j.data.ruleId, j.data.kind ?? j.data.loop ?? '-'])
      .sort((a, b) => a.join().localeCompare(b.join()));
  } finally {
    await queue.close();
  }
}

function prefix(): string {
  const p = `sbh${process.pid}${randomBytes(3).toString('hex')}`;
  prefixes.push(p);
  return p;
}

const { rules } = compileRuleSet([
  { id: 'hot', tenant: 'acme', source: 'rmm', on: 'device.offline', when: 'device.site == "HQ"' },
  { id: 'ticket-p1', tenant: 'acme', source: 'psa', on: 'ticket.updated', when: 'ticket.priority == 1' },
  {
    id: 'looping',
    tenant: 'acme',
    source: 'app',
    on: 'thing.changed',
    loop: { max: 2, within: '10m' },
    actions: [{ type: 'log' }],
  },
  {
    id: 'settling',
    tenant: 'acme',
    source: 'app',
    on: 'thing.changed',
    debounce: { for: '5m', key: '{{ data.id }}' },
    actions: [{ type: 'log' }],
  },
]);
const engine = new Engine(rules);

/** Bytes of padding in the events of `plain` and `ticket`: past INLINE_ARCHIVE_BYTES a chunk, its
 * NDJSON goes in a key of its own. Tests of both ways set it. */
let pad = 0;
const padding = () => (pad > 0 ? { note: 'x'.repeat(pad) } : {});

function plain(id: string, site = 'Branch'): AdaptedEvent {
  return {
    envelope: {
      id,
      tenant: 'acme',
      source: 'rmm' as never,
      type: 'device.offline',
      time: '2026-11-20T10:00:00.000Z',
      data: { id: `dev-${id}`, site, ...padding() },
      raw: null,
      self: false,
    },
    entity: '',
    entityId: '',
    merge: 'none',
    actor: null,
  };
}

function ticket(id: string, entityId: string, data: Record<string, unknown>, time: string): AdaptedEvent {
  return {
    envelope: {
      id,
      tenant: 'acme',
      source: 'psa' as never,
      type: 'ticket.updated',
      time,
      data: { ...data, ...padding() },
      raw: null,
      self: false,
    },
    entity: 'ticket',
    entityId,
    merge: 'patch',
    actor: null,
  };
}

/** The keys holding chunks' NDJSON under a prefix, and their TTLs. */
async function texts(prefix: string): Promise<number[]> {
  const keys = await redis.keys(`${prefix}:ab:*`);
  return Promise.all(keys.map((k) => redis.ttl(k)));
}

/** The archive written as arguments (`e`) or in keys (`k`), per stream entry; `c` when partial. */
async function ways(key: string): Promise<string[]> {
  const entries = (await redis.xrange(key, '-', '+')) as Array<[string, string[]]>;
  return entries.map(([, f]) => f.filter((_, i) => i % 2 === 0).join('+'));
}

async function outbox(key: string) {
  const entries = (await redis.xrange(key, '-', '+')) as Array<[string, string[]]>;
  return {
    entries,
    events: (
      await readArchive(
        redis,
        entries.map(([, f]) => f),
      )
    ).events,
  };
}

beforeAll(() => {
  redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
});

afterEach(() => {
  pad = 0;
});

afterAll(async () => {
  for (const p of prefixes) {
    const keys = await redis.keys(`${p}:*`);
    if (keys.length > 0) await redis.del(...keys);
  }
  redis.disconnect();
});

it('commits a batch larger than a chunk as one stream entry per chunk, in order', async () => {
  const h = new Handoff(redis, () => engine, { prefix: prefix() });
  const events = Array.from({ length: 600 }, (_, i) => plain(`e${i}`, i % 10 === 0 ? 'HQ' : 'Branch'));
  const results = await h.submitAll(events);
  expect(results.map((r) => r.outcome)).toEqual(events.map(() => 'accepted'));
  expect(results.filter((r) => r.matches.length > 0).map((r) => r.id)).toEqual(
    events.filter((_, i) => i % 10 === 0).map((e) => e.envelope.id),
  );
  const { entries, events: archived } = await outbox(h.outboxKey);
  expect(entries.length).toBe(3); // 256 + 256 + 88
  expect(archived.map((e) => e.envelope.id)).toEqual(events.map((e) => e.envelope.id));
  // One run job per match, added by COMMIT itself, counted by the loop breaker.
  expect(await queued(h.prefix)).toEqual(
    events
      .filter((_, i) => i % 10 === 0)
      .map((e) => [e.envelope.id, 'hot', 'ok'])
      .sort((a, b) => a.join().localeCompare(b.join())),
  );
});

it('sends its script calls as plain commands, with no ioredis Pipeline, each COMMIT chunk as soon as it is planned', async () => {
  // ioredis's Pipeline gives each instance a hidden class of its own (a `length` getter defined
  // per instance), which keeps the pipeline and all it references alive through every scavenge
  // until a full GC: at 5,000 events/s that was 9% of the ingest's allocation surviving, and
  // scavenges of 7-12 ms in the request latency. MULTI builds the same object.
  const own = new Redis(REDIS_URL);
  await own.ping();
  try {
    // Records, as each event is matched, how many socket writes have left so far.
    const writesAtMatch: number[] = [];
    const watched = Object.assign(Object.create(engine) as Engine, {
      match: (e: Parameters<Engine['match']>[0]) => {
        writesAtMatch.push(write.mock.calls.length + writev.mock.calls.length);
        return engine.match(e);
      },
    });
    const h = new Handoff(own, () => watched, { prefix: prefix() });
    const pipeline = vi.spyOn(own, 'pipeline');
    const multi = vi.spyOn(own, 'multi');
    const socket = (own as unknown as { stream: { _write: unknown; _writev: unknown } }).stream;
    const write = vi.spyOn(socket as { _write: (...a: unknown[]) => void }, '_write');
    const writev = vi.spyOn(socket as { _writev: (...a: unknown[]) => void }, '_writev');
    const events = Array.from({ length: 600 }, (_, i) => plain(`w${i}`, i % 10 === 0 ? 'HQ' : 'Branch'));
    const results = await h.submitAll(events);
    expect(results.map((r) => r.outcome)).toEqual(events.map(() => 'accepted'));
    expect(pipeline).not.toHaveBeenCalled();
    expect(multi).not.toHaveBeenCalled();
    // Three COMMIT calls (256 + 256 + 88 events), each on the socket before the next chunk is
    // matched: Redis runs one chunk while the next is planned.
    expect(writesAtMatch.length).toBe(600);
    expect([
      writesAtMatch[0],
      writesAtMatch[255],
      writesAtMatch[256],
      writesAtMatch[511],
      writesAtMatch[512],
    ]).toEqual([0, 0, 1, 1, 2]);
    expect(write.mock.calls.length + writev.mock.calls.length).toBe(3);
    expect((await outbox(h.outboxKey)).events.length).toBe(600);
  } finally {
    own.disconnect();
  }
});

it('fails an event it cannot plan with its own submit only, not the others of the micro-batch', async () => {
  const h = new Handoff(redis, () => engine, { prefix: prefix() });
  // Past what JSON.stringify can write (the ingest refuses such events first: checkEnvelope).
  let deep: Record<string, unknown> = { v: 1 };
  for (let i = 0; i < 20_000; i++) deep = { a: deep };
  const bad = plain('bad');
  (bad.envelope as { data: Record<string, unknown> }).data = deep;
  // Submitted in the same turn: one micro-batch.
  const [a, b, c] = await Promise.allSettled([
    h.submitAll([plain('ok-1')]),
    h.submitAll([bad]),
    h.submitAll([plain('ok-2'), plain('ok-3')]),
  ]);
  expect(a.status).toBe('fulfilled');
  expect(b.status).toBe('rejected');
  expect(c.status).toBe('fulfilled');
  const { events: archived } = await outbox(h.outboxKey);
  expect(archived.map((e) => e.envelope.id)).toEqual(['ok-1', 'ok-2', 'ok-3']);
});

const BOTH_WAYS = [
  { way: 'as an argument', bytes: 0 },
  { way: 'in a key of its own', bytes: INLINE_ARCHIVE_BYTES / 4 },
];

it.each(BOTH_WAYS)(
  'answers duplicates within a batch, across batches and among entity events, and archives each id once (the chunk $way)',
  async ({ bytes }) => {
    pad = bytes;
    const h = new Handoff(redis, () => engine, { prefix: prefix() });
    expect((await h.submit(plain('seen-before'))).outcome).toBe('accepted');
    const batch = [
      plain('a'),
      plain('seen-before'),
      plain('a', 'HQ'), // same id again in the same batch: the first wins, it does not match
      ticket('t1', '42', { id: 42, priority: 3 }, '2026-11-20T10:00:00.000Z'),
      ticket('t1', '42', { id: 42, priority: 1 }, '2026-11-20T10:01:00.000Z'),
      plain('b'),
      plain('c', 'HQ'),
    ];
    const results = await h.submitAll(batch);
    expect(results.map((r) => [r.id, r.outcome])).toEqual([
      ['a', 'accepted'],
      ['seen-before', 'duplicate'],
      ['a', 'duplicate'],
      ['t1', 'accepted'],
      ['t1', 'duplicate'],
      ['b', 'accepted'],
      ['c', 'accepted'],
    ]);
    expect(results.every((r) => r.outcome === 'accepted' || r.matches.length === 0)).toBe(true);
    expect(results[6]!.matches).toEqual(['hot']);
    const { events } = await outbox(h.outboxKey);
    expect(events.map((e) => e.envelope.id)).toEqual(['seen-before', 'a', 't1', 'b', 'c']);
    // Of the two events that matched, only the one that committed has its run queued.
    expect(await queued(h.prefix)).toEqual([['c', 'hot', 'ok']]);
    // The snapshot was written once, by the first t1.
    expect(await redis.hget(`${h.prefix}:s:acme:psa:ticket:42`, 'k:priority')).toBe('3');
    // Replaying the whole batch later: all duplicates, nothing archived again.
    const again = await h.submitAll(batch);
    expect(again.map((r) => r.outcome)).toEqual(batch.map(() => 'duplicate'));
    expect((await outbox(h.outboxKey)).events.length).toBe(5);
    // The chunk with duplicates names which of its events committed; the one of none has no entry
    // and leaves no key. A key that holds committed events has no TTL: it lasts until drained.
    expect(await ways(h.outboxKey)).toEqual(bytes === 0 ? ['e', 'e'] : ['e', 'k+c']);
    expect(await texts(h.prefix)).toEqual(bytes === 0 ? [] : [-1]);
  },
);

it('mixes plain and entity events in one chunk: snapshots, previous and matches per entity', async () => {
  const h = new Handoff(redis, () => engine, { prefix: prefix() });
  const results = await h.submitAll([
    ticket('u1', '7', { id: 7, priority: 3, summary: 'disk' }, '2026-11-20T10:00:00.000Z'),
    plain('p1', 'HQ'),
    ticket('u2', '7', { id: 7, priority: 1 }, '2026-11-20T10:02:00.000Z'),
    ticket('u3', '8', { id: 8, priority: 1 }, '2026-11-20T10:00:00.000Z'),
  ]);
  expect(results.map((r) => [r.id, r.outcome, r.matches])).toEqual([
    ['u1', 'accepted', []],
    ['p1', 'accepted', ['hot']],
    ['u2', 'accepted', ['ticket-p1']],
    ['u3', 'accepted', ['ticket-p1']],
  ]);
  const { events } = await outbox(h.outboxKey);
  const u2 = events.find((e) => e.envelope.id === 'u2')!;
  // u2 lost the race with u1 in the same chunk, was read again and merged over u1's snapshot.
  expect(u2.envelope.previous).toEqual({ id: 7, priority: 3, summary: 'disk' });
  expect(u2.envelope.data).toEqual({ id: 7, priority: 1, summary: 'disk' });
  expect(events.map((e) => e.envelope.id).sort()).toEqual(['p1', 'u1', 'u2', 'u3']);
});

it("an event dated far ahead of its arrival cannot make the entity's next events stale", async () => {
  const h = new Handoff(redis, () => engine, { prefix: prefix() });
  const at = Date.parse('2026-11-20T10:00:00.000Z');
  // A record dated 2099 (a PSA clock or data error), then real updates of the same ticket.
  const [bogus] = await h.submitAll(
    [ticket('f1', '9', { id: 9, priority: 3 }, '2099-01-01T00:00:00.000Z')],
    at,
  );
  expect(bogus!.outcome).toBe('accepted');
  // Within the skew allowed (5 minutes after the bogus one arrived) a real event is still older.
  const [early] = await h.submitAll(
    [ticket('f2', '9', { id: 9, priority: 2 }, '2026-11-20T10:01:00.000Z')],
    at + 60_000,
  );
  expect(early!.outcome).toBe('stale');
  // After it, real events are ordered by their own times again, and match.
  const [next] = await h.submitAll(
    [ticket('f3', '9', { id: 9, priority: 1 }, '2026-11-20T10:06:00.000Z')],
    at + 360_000,
  );
  expect([next!.outcome, next!.matches]).toEqual(['accepted', ['ticket-p1']]);
  // A clock a little ahead (under the skew) still orders as before: an older event is stale.
  const [ahead] = await h.submitAll(
    [ticket('g1', '10', { id: 10, priority: 3 }, '2026-11-20T10:02:00.000Z')],
    at,
  );
  const [older] = await h.submitAll(
    [ticket('g2', '10', { id: 10, priority: 1 }, '2026-11-20T10:01:00.000Z')],
    at + 10_000,
  );
  expect([ahead!.outcome, older!.outcome]).toEqual(['accepted', 'stale']);
});

it('remembers an id for at least the dedupe window and drops it after its bucket expires', async () => {
  let now = 0;
  const windowS = 20; // buckets of 10 s
  const h = new Handoff(redis, () => engine, { prefix: prefix(), dedupeTtlSeconds: windowS, now: () => now });
  const n = Math.floor(Date.now() / 10_000);
  // Seen at the very end of bucket n.
  now = n * 10_000 + 9_999;
  expect((await h.submit(plain('x'))).outcome).toBe('accepted');
  const bucket = `${h.prefix}:dd:${n}`;
  expect(await redis.sismember(bucket, 'acme:x')).toBe(1);
  // The bucket expires when it is no longer asked: at the end of bucket n + 2.
  expect(Number(await redis.call('EXPIRETIME', bucket))).toBe((n + 3) * 10);
  // A full window later (20 s and a little less) it is still a duplicate...
  now = (n + 2) * 10_000 + 9_999;
  expect((await h.submit(plain('x'))).outcome).toBe('duplicate');
  // ...and once bucket n is no longer asked, it is new again.
  now = (n + 3) * 10_000;
  expect((await h.submit(plain('x'))).outcome).toBe('accepted');
});

it('counts runs for the loop breaker in COMMIT and marks each counted job ok or over', async () => {
  const h = new Handoff(redis, () => engine, { prefix: prefix() });
  const thing = (id: string, thingId: number): AdaptedEvent => ({
    ...plain(id),
    envelope: { ...plain(id).envelope, source: 'app' as never, type: 'thing.changed', data: { id: thingId } },
  });
  // Three events of thing 7 in one chunk, one of thing 8, and a replay of the first.
  const results = await h.submitAll([
    thing('a1', 7),
    thing('a2', 7),
    thing('a3', 7),
    thing('b1', 8),
    thing('a1', 7),
  ]);
  expect(results.map((r) => [r.outcome, r.matches])).toEqual([
    ['accepted', ['looping', 'settling']],
    ['accepted', ['looping', 'settling']],
    ['accepted', ['looping', 'settling']],
    ['accepted', ['looping', 'settling']],
    ['duplicate', []],
  ]);
  expect(await queued(h.prefix)).toEqual([
    ['a1', 'looping', 'ok'],
    // The debounced rule's matches arm timers: not counted, and their jobs say nothing of it.
    ['a1', 'settling', '-'],
    ['a2', 'looping', 'ok'],
    ['a2', 'settling', '-'],
    ['a3', 'looping', 'over'],
    ['a3', 'settling', '-'],
    ['b1', 'looping', 'ok'],
    ['b1', 'settling', '-'],
  ]);
  expect(await redis.keys(`${h.prefix}:loop:*settling*`)).toEqual([]);
  // The same window as the worker's own check (one key per rule and entity), holding the two.
  const window = loopKey(h.prefix, 'acme', 'looping', 'app:thing:7');
  expect((await redis.zrange(window, '0', '-1')).sort()).toEqual(
    [runJobId('acme', 'a1', 'looping'), runJobId('acme', 'a2', 'looping')].sort(),
  );
  expect(await redis.pttl(window)).toBeGreaterThan(9 * 60_000);
});

it('queues each run as the RunJob workers read: the envelope as archived, the snapshot key, cancellations', async () => {
  const { rules: own } = compileRuleSet([
    { id: 'p1', tenant: 'acme', source: 'psa', on: 'ticket.updated', when: 'ticket.priority == 1' },
    {
      id: 'quiet',
      tenant: 'acme',
      source: 'psa',
      on: 'ticket.updated',
      when: 'ticket.priority == 3',
      debounce: { for: '7d', key: '{{ data.id }}' },
      actions: [{ type: 'log' }],
    },
  ]);
  const own_ = new Engine(own);
  const h = new Handoff(redis, () => own_, { prefix: prefix() });
  const [r] = await h.submitAll([ticket('v1', '5', { id: 5, priority: 1 }, '2026-11-20T10:00:00.000Z')]);
  expect(r!.matches).toEqual(['p1']);
  const { events } = await outbox(h.outboxKey);
  const queue = new Queue<RunJob>(RUN_QUEUE, { connection: redis.duplicate(), prefix: h.prefix });
  try {
    const run = await queue.getJob(runJobId('acme', 'v1', 'p1'));
    expect(run?.name).toBe('run');
    expect(run?.data).toEqual({
      tenant: 'acme',
      ruleId: 'p1',
      snapshot: `${h.prefix}:s:acme:psa:ticket:5`,
      event: events[0]!.envelope,
      loop: 'ok',
    });
    // As Queue.add with the queue of runs' defaults would have made it.
    expect(run?.opts).toMatchObject({
      attempts: 12,
      backoff: { type: 'exponential', delay: 1000 },
      removeOnComplete: 10_000,
      removeOnFail: 50_000,
    });
    // The debounced rule admitted the event without matching it: its timer for the key ends.
    const cancel = await queue.getJob(runJobId('acme', 'v1', 'quiet', 'cancel'));
    expect(cancel?.name).toBe('cancel');
    expect(cancel?.data).toEqual({
      tenant: 'acme',
      ruleId: 'quiet',
      kind: 'cancel',
      event: events[0]!.envelope,
    });
    expect((await queue.getJobCounts('wait')).wait).toBe(2);
  } finally {
    await queue.close();
  }
});

it.each(BOTH_WAYS)(
  'adds the runs before writing anything else: when an add fails, the event stays new and a retry queues its run (the chunk $way)',
  async ({ bytes }) => {
    pad = bytes * 4;
    const h = new Handoff(redis, () => engine, { prefix: prefix() });
    // A damaged queue key (a string where BullMQ keeps its wait list): BullMQ's add fails.
    const wait = `${h.prefix}:${RUN_QUEUE}:wait`;
    await redis.set(wait, 'not a list');
    const [failed] = await Promise.allSettled([h.submit(plain('z1', 'HQ'))]);
    expect(failed.status).toBe('rejected');
    expect(String((failed as PromiseRejectedResult).reason)).toMatch(/run job could not be added/);
    // Nothing of the event was written: not seen, not archived.
    expect((await outbox(h.outboxKey)).events).toEqual([]);
    expect(await redis.keys(`${h.prefix}:dd:*`)).toEqual([]);
    expect(await texts(h.prefix)).toEqual([]);
    // Repaired, the sender's retry is a new event, and its run is queued.
    await redis.del(wait);
    const again = await h.submit(plain('z1', 'HQ'));
    expect([again.outcome, again.matches]).toEqual(['accepted', ['hot']]);
    expect(await queued(h.prefix)).toEqual([['z1', 'hot', 'ok']]);
    expect(await ways(h.outboxKey)).toEqual([bytes === 0 ? 'e' : 'k']);
  },
);

it('adds none of the runs of a chunk when one of them cannot be added, so that a retry never runs one twice', async () => {
  const h = new Handoff(redis, () => engine, { prefix: prefix() });
  // The second event's job key holds a string (damaged): its add would fail after the first's.
  const damaged = `${h.prefix}:${RUN_QUEUE}:${runJobId('acme', 'y2', 'hot')}`;
  await redis.set(damaged, 'not a hash');
  const [failed] = await Promise.allSettled([h.submitAll([plain('y1', 'HQ'), plain('y2', 'HQ')])]);
  expect(failed.status).toBe('rejected');
  expect(String((failed as PromiseRejectedResult).reason)).toMatch(/run job could not be added/);
  // Not even the first event's run was queued (completed and dropped before the retry, it would
  // have been queued again); nothing was archived or marked seen.
  expect(await queued(h.prefix)).toEqual([]);
  expect(await redis.exists(`${h.prefix}:${RUN_QUEUE}:${runJobId('acme', 'y1', 'hot')}`)).toBe(0);
  expect((await outbox(h.outboxKey)).events).toEqual([]);
  // Repaired, the retry queues both runs, once each.
  await redis.del(damaged);
  const again = await h.submitAll([plain('y1', 'HQ'), plain('y2', 'HQ')]);
  expect(again.map((r) => r.outcome)).toEqual(['accepted', 'accepted']);
  expect(await queued(h.prefix)).toEqual([
    ['y1', 'hot', 'ok'],
    ['y2', 'hot', 'ok'],
  ]);
});

it('packs COMMIT as ioredis itself would write it, byte for byte', () => {
  const parts = [
    'evalsha',
    'f'.repeat(40),
    '2',
    'k:é',
    '',
    Buffer.from([0, 1, 2, 255]),
    'x'.repeat(300),
    '€ 😀',
    'y'.repeat(10_000),
    '9',
    'ten',
    'eleven',
  ];
  const theirs = new Command('evalsha', parts.slice(1)).toWritable({});
  expect(packCommand(parts).equals(Buffer.isBuffer(theirs) ? theirs : Buffer.from(theirs))).toBe(true);
});

it('loads COMMIT again when Redis has lost its scripts (a restart), and goes on', async () => {
  const own = new Redis(REDIS_URL);
  try {
    const h = new Handoff(own, () => engine, { prefix: prefix() });
    expect((await h.submit(plain('before', 'HQ'))).outcome).toBe('accepted');
    await own.script('FLUSH');
    // NOSCRIPT for the packed EVALSHA: ioredis's own command sends EVAL, which loads it again.
    expect((await h.submit(plain('after', 'HQ'))).outcome).toBe('accepted');
    expect((await h.submit(plain('again', 'HQ'))).outcome).toBe('accepted');
    expect((await outbox(h.outboxKey)).events.map((e) => e.envelope.id)).toEqual([
      'before',
      'after',
      'again',
    ]);
    expect(await queued(h.prefix)).toEqual([
      ['after', 'hot', 'ok'],
      ['again', 'hot', 'ok'],
      ['before', 'hot', 'ok'],
    ]);
  } finally {
    own.disconnect();
  }
});
