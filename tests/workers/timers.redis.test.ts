/**
 * The debounce wheel's tombstones: a cancel records its time (so a late, older event neither
 * re-arms nor cancels), and tombstones older than a day are swept by the firing script, unless
 * the timer was armed again meanwhile. Without the sweep, every key ever cancelled ("ticket closed"
 * for a "no update for 7 days" rule) would stay in Redis forever. And the start of fired timers'
 * runs: a damaged entry skipped, each run started exactly once whether the reader dies after adding
 * its jobs, stalls while another claims its entries, or meets a queue it cannot add to.
 */
import { randomBytes } from 'node:crypto';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, expect, it } from 'vitest';
import { RUN_QUEUE, type RunJob, runJobId } from '../../src/config/runs.js';
import { Timers } from '../../src/workers/timers.js';
import { eventually, REDIS_URL } from './harness.js';

const redis = new Redis(REDIS_URL);
const prefix = `tmt${randomBytes(4).toString('hex')}`;
afterAll(async () => {
  const keys = await redis.keys(`${prefix}*`);
  if (keys.length > 0) await redis.del(...keys);
  redis.disconnect();
});

const HOUR = 3600_000;
const job = (id: string): RunJob => ({
  tenant: 'acme',
  ruleId: 'stale',
  event: { id, source: 'halo', type: 'ticket.updated', data: { id } },
  kind: 'debounced',
  version: 1,
});

it('sweeps cancel tombstones after a day, but not those of timers armed again', async () => {
  let now = Date.parse('2026-11-20T10:15:00Z');
  const timers = new Timers(redis, prefix, () => now);
  const [a, b, c] = ['a', 'b', 'c'].map((k) => Timers.id('acme', 'stale', k)) as [string, string, string];
  const t = `${prefix}:tm:t`;
  // a: cancelled with no timer; b: armed then cancelled; c: cancelled, then armed again for 7 days.
  expect(await timers.cancel(a, now)).toBe(false);
  expect(await timers.arm(b, now + 7 * 24 * HOUR, now, job('b'))).toBe(true);
  expect(await timers.cancel(b, now + 1)).toBe(true);
  expect(await timers.cancel(c, now)).toBe(false);
  expect(await timers.arm(c, now + 7 * 24 * HOUR, now + 2, job('c'))).toBe(true);
  expect((await redis.hkeys(t)).sort()).toEqual([a, b, c].sort());
  // An older event that arrives late does not re-arm a cancelled key.
  expect(await timers.arm(a, now + HOUR, now - 1000, job('a'))).toBe(false);
  // Within the day nothing is swept.
  now += 23 * HOUR;
  await timers.tick();
  expect((await redis.hkeys(t)).sort()).toEqual([a, b, c].sort());
  // After it, the tombstones of a and b go; c is armed, so its ordering time stays.
  now += 2 * HOUR;
  await timers.tick();
  expect(await redis.hkeys(t)).toEqual([c]);
  expect(await timers.size()).toBe(1);
  expect(await redis.exists(`${prefix}:tm:x:${Math.floor(Date.parse('2026-11-20T10:15:00Z') / HOUR)}`)).toBe(
    0,
  );
});

it('skips a fired entry that does not decode, and turns the ones after it into runs', async () => {
  let now = Date.parse('2026-11-20T10:15:00Z');
  // A key space of its own (the wheel's cursor is past this test's clock after the test above).
  const p2 = `${prefix}-fired`;
  const timers = new Timers(redis, p2, () => now);
  const queue = new Queue(RUN_QUEUE, { connection: redis.duplicate(), prefix: p2 });
  // A damaged entry first, then a timer that came due.
  await redis.xadd(`${p2}:tm:fired`, '*', 'id', 'broken', 'p', 'not deflated JSON');
  await timers.tick(); // the wheel's cursor starts here
  const id = Timers.id('acme', 'stale', 'k1');
  expect(await timers.arm(id, now + 1000, now, job('e-after-broken'))).toBe(true);
  now += 2000;
  expect(await timers.tick()).toBe(1);
  const reader = redis.duplicate();
  const told: Error[] = [];
  const dropped: Error[] = [];
  await timers.start(
    queue,
    reader,
    100,
    (e) => told.push(e),
    (e) => dropped.push(e),
  );
  const jobId = runJobId('acme', 'e-after-broken', 'stale', 'debounced');
  await eventually('the run job of the timer after the damaged entry', async () =>
    (await queue.getJob(jobId)) ? true : undefined,
  );
  expect(timers.lastError?.message).toMatch(/^a fired debounce timer could not be read: /);
  // told to the worker as dropped (it says so at most once a minute), not as an error that is
  // tried again: the entry is acknowledged without a run
  expect(dropped).toHaveLength(1);
  expect(dropped[0]!.message).toMatch(/^a fired debounce timer could not be read: /);
  expect(told).toEqual([]);
  await timers.stop();
  await queue.close();
  reader.disconnect();
});

it('acknowledges fired timers with their run jobs: a reader dying after adding them leaves nothing to run again', async () => {
  let now = Date.parse('2026-11-20T10:15:00Z');
  const p3 = `${prefix}-ack`;
  const timers = new Timers(redis, p3, () => now);
  const queue = new Queue(RUN_QUEUE, { connection: redis.duplicate(), prefix: p3 });
  await timers.tick(); // the wheel's cursor starts here
  for (const k of ['k1', 'k2'])
    expect(await timers.arm(Timers.id('acme', 'stale', k), now + 1000, now, job(k))).toBe(true);
  now += 2000;
  expect(await timers.tick()).toBe(2);
  // The reading connection dies as soon as it has read the fired entries: anything it would send
  // afterwards (a separate XACK) never reaches Redis, as when the process is killed.
  const reader = redis.duplicate();
  const read = reader.xreadgroupBuffer.bind(reader);
  (reader as { xreadgroupBuffer: unknown }).xreadgroupBuffer = async (...args: unknown[]) => {
    const got = await (read as (...a: unknown[]) => Promise<Array<[Buffer, unknown[]]> | null>)(...args);
    if ((got?.[0]?.[1]?.length ?? 0) > 0) reader.disconnect();
    return got;
  };
  await timers.start(queue, reader, 100);
  const ids = ['k1', 'k2'].map((k) => runJobId('acme', k, 'stale', 'debounced'));
  await eventually('the run jobs of the fired timers', async () =>
    (await Promise.all(ids.map((id) => queue.getJob(id)))).every(Boolean) ? true : undefined,
  );
  await timers.stop();
  // The runs completed and their jobs left Redis (removeOnComplete keeps the last 10,000).
  for (const id of ids) expect(await queue.remove(id)).toBe(1);
  // The worker comes back (the same consumer name) and reads its pending entries first.
  const again = new Timers(redis, p3, () => now);
  const reader2 = redis.duplicate();
  await again.start(queue, reader2, 100);
  await new Promise((r) => setTimeout(r, 300));
  await again.stop();
  expect(await Promise.all(ids.map((id) => queue.getJob(id)))).toEqual([undefined, undefined]);
  expect(((await redis.xpending(`${p3}:tm:fired`, 'timers')) as [number])[0]).toBe(0);
  await queue.close();
  reader2.disconnect();
});

/**
 * A wheel under `p` with one timer for event `eventId` fired into its stream, and that stream's
 * entries read by `consumer` of the timers' group (pending for it, not yet started).
 */
async function firedAndRead(p: string, eventId: string, consumer: string) {
  let now = Date.parse('2026-11-20T10:15:00Z');
  const timers = new Timers(redis, p, () => now);
  const queue = new Queue(RUN_QUEUE, { connection: redis.duplicate(), prefix: p });
  await timers.tick(); // the wheel's cursor starts here
  expect(await timers.arm(Timers.id('acme', 'stale', 'k1'), now + 1000, now, job(eventId))).toBe(true);
  now += 2000;
  expect(await timers.tick()).toBe(1);
  const fired = `${p}:tm:fired`;
  await redis.xgroup('CREATE', fired, 'timers', '0', 'MKSTREAM');
  const got = (await redis.xreadgroupBuffer('GROUP', 'timers', consumer, 'STREAMS', fired, '>')) as Array<
    [Buffer, Array<[Buffer, Buffer[]]>]
  >;
  const entries = got[0]![1].map(([id, fields]) => ({ id: id.toString(), fields }));
  expect(entries.length).toBe(1);
  return { timers, queue, fired, entries };
}

it('a slow reader whose fired timers were claimed and run starts nothing when it wakes, even after the run job left Redis', async () => {
  // A reader takes the entry, then stalls (a paused process, a long GC)...
  const { timers, queue, fired, entries: stale } = await firedAndRead(`${prefix}-slow`, 'slow-1', 'slow');
  // ...another worker claims it (XAUTOCLAIM after RUN_STARTER_CLAIM's idle time) and starts its run.
  const claimed = (await redis.callBuffer('XCLAIM', fired, 'timers', 'other', '0', stale[0]!.id)) as Array<
    [Buffer, Buffer[]]
  >;
  expect(
    await timers.startRuns(
      queue,
      claimed.map(([id, fields]) => ({ id: id.toString(), fields })),
    ),
  ).toBe(1);
  const jobId = runJobId('acme', 'slow-1', 'stale', 'debounced');
  const started = await queue.getJob(jobId);
  expect(started?.data.event.id).toBe('slow-1');
  expect(started?.name).toBe('run');
  // The run completes and its job leaves Redis (removeOnComplete keeps the last 10,000).
  expect(await queue.remove(jobId)).toBe(1);
  // The slow reader wakes with its copy of the entry: no second run.
  expect(await timers.startRuns(queue, stale)).toBe(0);
  expect(await queue.getJob(jobId)).toBeUndefined();
  expect(((await redis.xpending(fired, 'timers')) as [number])[0]).toBe(0);
  await queue.close();
});

it('leaves a fired timer pending, with no half-made job, when its run job cannot be added; a retry starts it once', async () => {
  const p5 = `${prefix}-damaged`;
  const { timers, queue, fired, entries } = await firedAndRead(p5, 'damaged-1', 'me');
  // A damaged queue: its wait list is a string, so BullMQ's add fails half way.
  const wait = `${p5}:${RUN_QUEUE}:wait`;
  await redis.set(wait, 'not a list');
  await expect(timers.startRuns(queue, entries)).rejects.toThrow(/a run job could not be added/);
  const jobId = runJobId('acme', 'damaged-1', 'stale', 'debounced');
  expect(await redis.exists(`${p5}:${RUN_QUEUE}:${jobId}`)).toBe(0);
  expect(((await redis.xpending(fired, 'timers')) as [number])[0]).toBe(1);
  // Repaired, the entry is read again and its run starts once.
  await redis.del(wait);
  expect(await timers.startRuns(queue, entries)).toBe(1);
  expect((await queue.getJob(jobId))?.data.event.id).toBe('damaged-1');
  expect(((await redis.xpending(fired, 'timers')) as [number])[0]).toBe(0);
  await queue.close();
});
