/**
 * The consumer-group reader shared by the debounce timers and the drains, on real Redis:
 * acknowledgements sent with the next read still acknowledge, a linger gathers a trickle into
 * fewer batches, stop() does not wait out a linger, and entries whose acknowledgement failed are
 * read again.
 */
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, expect, it } from 'vitest';
import { openRunQueue, type RunJob } from '../../src/config/runs.js';
import { backlogGauges, StreamConsumer, type StreamEntry, streamGauges } from '../../src/config/streams.js';

const prefix = `sbs${process.pid}${randomBytes(3).toString('hex')}`;
const url = process.env.REDIS_URL ?? 'redis://127.0.0.1:6390';
const redis = new Redis(url, { maxRetriesPerRequest: 1 });

afterAll(async () => {
  const keys = await redis.keys(`${prefix}*`);
  if (keys.length > 0) await redis.del(...keys);
  await redis.quit();
});

const until = async (ok: () => boolean | Promise<boolean>, ms = 5_000): Promise<void> => {
  const end = Date.now() + ms;
  while (!(await ok())) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 10));
  }
};

const pendingCount = async (key: string, group: string): Promise<number> =>
  Number(((await redis.xpending(key, group)) as [number])[0]);

it('acknowledges (and deletes) what it handled, the acknowledgement riding with the next read', async () => {
  const key = `${prefix}:ack`;
  const seen: string[] = [];
  const c = new StreamConsumer(
    redis.duplicate(),
    { key, group: 'g', consumer: 'c1', blockMs: 20, deleteAcked: true },
    async (entries) => {
      for (const e of entries) seen.push(e.fields![1]!.toString());
    },
  );
  await c.start();
  for (let i = 0; i < 5; i++) await redis.xadd(key, '*', 'v', String(i));
  await until(() => seen.length === 5);
  // The last batch's XACK and XDEL are sent ahead of the next (blocking) read.
  await until(async () => (await pendingCount(key, 'g')) === 0 && (await redis.xlen(key)) === 0);
  await c.stop();
  expect(seen).toEqual(['0', '1', '2', '3', '4']);
  expect(c.lastError).toBeUndefined();
});

it('with a linger, a trickle is handled in fewer, larger batches, and stop() ends a linger at once', async () => {
  const key = `${prefix}:linger`;
  const batches: number[] = [];
  const c = new StreamConsumer(
    redis.duplicate(),
    { key, group: 'g', consumer: 'c1', blockMs: 20, lingerMs: 300 },
    async (entries) => {
      batches.push(entries.length);
    },
  );
  await c.start();
  // 20 entries, one every 15 ms (300 ms in all): without the linger, about one batch each.
  for (let i = 0; i < 20; i++) {
    await redis.xadd(key, '*', 'v', String(i));
    await new Promise((r) => setTimeout(r, 15));
  }
  await until(() => batches.reduce((a, b) => a + b, 0) === 20);
  expect(batches.length).toBeLessThanOrEqual(4);
  // Now lingering (the last read did not fill a batch): stop() does not wait the 300 ms out.
  const t = Date.now();
  await c.stop();
  expect(Date.now() - t).toBeLessThan(250);
  expect(await pendingCount(key, 'g')).toBe(0);
});

it('entries whose acknowledgement failed stay pending and are handled again', async () => {
  const key = `${prefix}:fail`;
  const conn = redis.duplicate();
  // A connection whose first XACK fails, as when Redis drops at that moment.
  let failures = 1;
  const flaky = new Proxy(conn, {
    get(target, prop, receiver) {
      if (prop === 'xack') {
        return (...args: Parameters<Redis['xack']>) => {
          if (failures-- > 0) return Promise.reject(new Error('connection lost'));
          return target.xack(...args);
        };
      }
      const v = Reflect.get(target, prop, receiver);
      return typeof v === 'function' ? v.bind(target) : v;
    },
  });
  const handled: string[] = [];
  const c = new StreamConsumer(flaky, { key, group: 'g', consumer: 'c1', blockMs: 20 }, async (entries) => {
    for (const e of entries as StreamEntry[]) handled.push(e.id);
  });
  await c.start();
  const id = (await redis.xadd(key, '*', 'v', 'x'))!;
  await until(() => handled.length >= 2);
  await until(async () => (await pendingCount(key, 'g')) === 0);
  await c.stop();
  conn.disconnect();
  // At least once: handled again after the failed acknowledgement, then acknowledged.
  expect(handled.slice(0, 2)).toEqual([id, id]);
  expect(c.lastError?.message).toBe('connection lost');
});

it('reports each stream backlog for /metrics: length, and pending and lag per group', async () => {
  const streams = [
    { name: 'archive', key: `${prefix}:g-archive` },
    { name: 'history', key: `${prefix}:g-history` },
    { name: 'timers', key: `${prefix}:g-none` }, // not made yet
  ];
  for (let i = 0; i < 5; i++) await redis.xadd(streams[0]!.key, '*', 'v', String(i));
  await redis.xgroup('CREATE', streams[0]!.key, 'archive', '0');
  // Two delivered and not acknowledged: pending 2, lag 3.
  await redis.xreadgroup('GROUP', 'archive', 'c1', 'COUNT', 2, 'STREAMS', streams[0]!.key, '>');
  await redis.xadd(streams[1]!.key, '*', 'v', 'x');
  const text = await streamGauges(redis, streams);
  expect(text).toContain('signalbox_stream_length{stream="archive"} 5');
  expect(text).toContain('signalbox_stream_pending{stream="archive",group="archive"} 2');
  expect(text).toContain('signalbox_stream_lag{stream="archive",group="archive"} 3');
  // A stream without a group has a length only; one not made yet counts 0.
  expect(text).toContain('signalbox_stream_length{stream="history"} 1');
  expect(text).not.toContain('stream="history",group');
  expect(text).toContain('signalbox_stream_length{stream="timers"} 0');
  expect(text).toMatch(/# TYPE signalbox_stream_length gauge/);
});

it('reports the run queue for /metrics: waiting, active and delayed runs', async () => {
  const q = `${prefix}q`;
  const conn = redis.duplicate();
  const queue = openRunQueue(conn, q);
  const job = (id: string) => ({ tenant: 'acme', ruleId: 'r', event: { id } }) as unknown as RunJob;
  await queue.add('run', job('a'), { jobId: 'a' });
  await queue.add('run', job('b'), { jobId: 'b' });
  await queue.add('run', job('c'), { jobId: 'c', priority: 5 });
  await queue.add('run', job('d'), { jobId: 'd', delay: 60_000 });
  const text = await backlogGauges(redis, q);
  expect(text).toContain('signalbox_runs{state="waiting"} 3');
  expect(text).toContain('signalbox_runs{state="active"} 0');
  expect(text).toContain('signalbox_runs{state="delayed"} 1');
  // The streams' gauges come with them.
  expect(text).toContain('signalbox_stream_length{stream="archive"} 0');
  expect(text).toMatch(/# TYPE signalbox_runs gauge\n/);
  await queue.obliterate({ force: true });
  await queue.close();
  conn.disconnect();
});
