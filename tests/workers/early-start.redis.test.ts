/**
 * Runs start when their job is fetched (worker.ts, EarlyStart), on a real BullMQ worker: every
 * job is processed exactly once, through the fetch path, and a run that throws still fails its
 * job through BullMQ, with no unhandled rejection.
 */
import { randomBytes } from 'node:crypto';
import { type Job, Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, expect, it } from 'vitest';
import type { RunJobData } from '../../src/workers/executor.js';
import { EarlyStart } from '../../src/workers/worker.js';

const prefix = `sbe${process.pid}${randomBytes(3).toString('hex')}`;
const redis = new Redis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6390', { maxRetriesPerRequest: null });

afterAll(async () => {
  const keys = await redis.keys(`${prefix}*`);
  if (keys.length > 0) await redis.del(...keys);
  await redis.quit();
});

it('starts each run once, when fetched, and lets BullMQ settle it', async () => {
  const queue = new Queue('runs', { connection: redis.duplicate(), prefix });
  const calls = new Map<string, number>();
  let unhandled = 0;
  const onUnhandled = () => unhandled++;
  process.on('unhandledRejection', onUnhandled);
  const early = new EarlyStart(async (job: Job<RunJobData>) => {
    calls.set(String(job.id), (calls.get(String(job.id)) ?? 0) + 1);
    await new Promise((r) => setTimeout(r, 5));
    if (job.data.ruleId === 'bad') throw new Error('step failed for good');
    return { ok: job.id };
  });
  // Jobs waiting before the worker starts: it fetches a run of them before processing any.
  const jobs = Array.from({ length: 40 }, (_, i) => ({
    name: 'run',
    data: { tenant: 't', ruleId: i === 7 ? 'bad' : 'r', event: { id: `e${i}` } } as unknown as RunJobData,
    opts: { jobId: `j${i}` },
  }));
  await queue.addBulk(jobs);
  const conn = redis.duplicate();
  const worker = new Worker<RunJobData>('runs', early.process, { connection: conn, prefix, concurrency: 10 });
  worker.on('active', early.fetched);
  worker.on('error', () => {});
  const end = Date.now() + 10_000;
  let counts = await queue.getJobCounts('completed', 'failed');
  while ((counts.completed ?? 0) + (counts.failed ?? 0) < 40 && Date.now() < end) {
    await new Promise((r) => setTimeout(r, 20));
    counts = await queue.getJobCounts('completed', 'failed');
  }
  await worker.close();
  await queue.close();
  conn.disconnect();
  process.off('unhandledRejection', onUnhandled);
  expect(counts).toEqual({ completed: 39, failed: 1 });
  expect([...calls.values()].every((n) => n === 1)).toBe(true);
  expect(calls.size).toBe(40);
  expect(early.early).toBe(40);
  expect(early.late).toBe(0);
  const reader = new Queue('runs', { connection: redis, prefix });
  expect((await reader.getJob('j7'))?.failedReason).toBe('step failed for good');
  expect((await reader.getJob('j3'))?.returnvalue).toEqual({ ok: 'j3' });
  expect(unhandled).toBe(0);
});
