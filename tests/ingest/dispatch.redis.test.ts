/**
 * The dispatcher on real Redis and BullMQ: one job per matched rule with deterministic ids, and
 * entries whose jobs could not be added (Redis failing at that moment) are dispatched again.
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
  // A queue whose first addBulk fails, as when Redis drops at that moment.
  let failures = 1;
  const flaky = new Proxy(queue, {
    get(target, prop, receiver) {
      if (prop === 'addBulk') {
        return (jobs: Parameters<Queue['addBulk']>[0]) => {
          if (failures-- > 0) return Promise.reject(new Error('connection lost'));
          return target.addBulk(jobs);
        };
      }
      return Reflect.get(target, prop, receiver);
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
