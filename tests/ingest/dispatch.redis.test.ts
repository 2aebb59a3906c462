/**
 * The dispatcher on real Redis and BullMQ: one job per matched rule with deterministic ids;
 * entries whose jobs could not be added (Redis failing at that moment) are dispatched again; an
 * entry is acknowledged with its jobs, so a dispatcher that dies never leaves one to be run twice.
 */
import { randomBytes } from 'node:crypto';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, expect, it } from 'vitest';
import { Dispatcher, RUN_QUEUE, runJobId } from '../../src/ingest/dispatch.js';

const prefix = `sbd${process.pid}${randomBytes(3).toString('hex')}`;
const redis = new Redis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6390', { maxRetriesPerRequest: 1 });
const queue = new Queue(RUN_QUEUE, { connection: redis.duplicate(), prefix });

afterAll(async () => {
  await queue.obliterate({ force: true }).catch(() => {});
  await queue.close();
  const keys = await redis.keys(`${prefix}*`);
  if (keys.length > 0) await redis.del(...keys);
  await redis.quit();
});

it('re-dispatches entries whose jobs failed to be added, and never adds a job twice', async () => {
  const stream = `${prefix}:dispatch`;
  const entry = (id: string, rules: string[]) =>
    JSON.stringify({
      envelope: { id, tenant: 'acme', source: 'rmm', type: 'device.offline', data: {} },
      outcome: 'accepted',
      rules,
    });
  // A queue whose first transaction fails, as when Redis drops at that moment.
  let failures = 1;
  const backend = new Proxy(queue.backend, {
    get(target, prop, receiver) {
      if (prop === 'client' && failures-- > 0) return Promise.reject(new Error('connection lost'));
      const v = Reflect.get(target, prop, receiver);
      return typeof v === 'function' ? v.bind(target) : v;
    },
  });
  const flaky = new Proxy(queue, {
    get(target, prop, receiver) {
      return prop === 'backend' ? backend : Reflect.get(target, prop, receiver);
    },
  });
  const d = new Dispatcher(redis.duplicate(), stream, flaky, { blockMs: 20 });
  await d.start();
  await redis.xadd(stream, '*', 'e', entry('e1', ['a', 'b']));
  await redis.xadd(stream, '*', 'e', entry('e2', ['a']));
  const until = Date.now() + 5_000;
  while ((await queue.getJobCounts('wait')).wait < 3 && Date.now() < until)
    await new Promise((r) => setTimeout(r, 20));
  // The same entry delivered again (a restart before XACK) adds nothing new.
  await redis.xadd(stream, '*', 'e', entry('e1', ['a', 'b']));
  await new Promise((r) => setTimeout(r, 200));
  await d.stop();
  expect(d.lastError?.message).toBe('connection lost');
  const jobs = await queue.getJobs(['wait']);
  expect(jobs.map((j) => j.id).sort()).toEqual(
    [runJobId('acme', 'e1', 'a'), runJobId('acme', 'e1', 'b'), runJobId('acme', 'e2', 'a')].sort(),
  );
  const pending = (await redis.xpending(stream, 'dispatch')) as [number, ...unknown[]];
  expect(pending[0]).toBe(0);
});

it('turns debounce cancellations into cancel jobs and passes the snapshot key to runs', async () => {
  const stream = `${prefix}:dispatch2`;
  const d = new Dispatcher(redis.duplicate(), stream, queue, { blockMs: 20 });
  await d.start();
  await redis.xadd(
    stream,
    '*',
    'e',
    JSON.stringify({
      envelope: { id: 'c1', tenant: 'acme', source: 'rmm', type: 'device.online', data: {} },
      outcome: 'accepted',
      rules: ['notify'],
      cancel: ['offline-15m'],
      snapshot: 'sb:s:acme:rmm:device:d1',
    }),
  );
  const until = Date.now() + 5_000;
  let cancel = await queue.getJob(runJobId('acme', 'c1', 'offline-15m', 'cancel'));
  while (!cancel && Date.now() < until) {
    await new Promise((r) => setTimeout(r, 20));
    cancel = await queue.getJob(runJobId('acme', 'c1', 'offline-15m', 'cancel'));
  }
  await d.stop();
  expect(cancel?.data).toMatchObject({ tenant: 'acme', ruleId: 'offline-15m', kind: 'cancel' });
  const run = await queue.getJob(runJobId('acme', 'c1', 'notify'));
  expect(run?.data).toMatchObject({ ruleId: 'notify', snapshot: 'sb:s:acme:rmm:device:d1' });
});

it('acknowledges an entry with its jobs: a dispatcher dying after adding them leaves nothing to run again', async () => {
  const stream = `${prefix}:dispatch3`;
  const entry = (id: string) =>
    JSON.stringify({
      envelope: { id, tenant: 'acme', source: 'rmm', type: 'device.offline', data: {} },
      outcome: 'accepted',
      rules: ['page'],
    });
  await redis.xadd(stream, '*', 'e', entry('k1'));
  await redis.xadd(stream, '*', 'e', entry('k2'));
  // The dispatcher's reading connection dies as soon as it has read the entries: anything it
  // would send afterwards (a separate XACK) never reaches Redis, as when the process is killed.
  const reader = redis.duplicate();
  const read = reader.xreadgroupBuffer.bind(reader);
  (reader as { xreadgroupBuffer: unknown }).xreadgroupBuffer = async (...args: unknown[]) => {
    const got = await (read as (...a: unknown[]) => Promise<unknown[] | null>)(...args);
    if (got && String(got).includes('k1')) reader.disconnect();
    return got;
  };
  const a = new Dispatcher(reader, stream, queue, { blockMs: 20, consumer: 'c-crash' });
  await a.start();
  const ids = [runJobId('acme', 'k1', 'page'), runJobId('acme', 'k2', 'page')];
  const until = Date.now() + 5_000;
  while ((await Promise.all(ids.map((id) => queue.getJob(id)))).some((j) => !j) && Date.now() < until)
    await new Promise((r) => setTimeout(r, 20));
  await a.stop();
  // The runs completed and their jobs left Redis (removeOnComplete keeps the last 10,000).
  for (const id of ids) expect(await queue.remove(id)).toBe(1);
  // The process comes back under the same name and reads its pending entries first.
  const b = new Dispatcher(redis.duplicate(), stream, queue, { blockMs: 20, consumer: 'c-crash' });
  await b.start();
  await new Promise((r) => setTimeout(r, 300));
  await b.stop();
  expect(await Promise.all(ids.map((id) => queue.getJob(id)))).toEqual([undefined, undefined]);
  const pending = (await redis.xpending(stream, 'dispatch')) as [number, ...unknown[]];
  expect(pending[0]).toBe(0);
});
