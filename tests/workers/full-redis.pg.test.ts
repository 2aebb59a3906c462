/**
 * Redis full (maxmemory under noeviction) under a running worker: BullMQ's scripts are refused,
 * the worker says why at most once a minute (onQueueError), the run waits, and it runs once
 * Redis has room again. A Redis of its own: the test changes its maxmemory.
 */
import type { ChildProcess } from 'node:child_process';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { openRunQueue, runJobId } from '../../src/config/runs.js';
import { listenablePort, startRedisServer } from '../redis-server.js';
import { event, eventually, type Harness, harness } from './harness.js';

let h: Harness;
let child: ChildProcess;
let redis: Redis;
let url: string;

beforeAll(async () => {
  const port = await listenablePort();
  child = await startRedisServer(port, ['--maxmemory-policy', 'noeviction']);
  url = `redis://127.0.0.1:${port}`;
  redis = new Redis(url, { maxRetriesPerRequest: null });
  h = await harness('fullredis');
});

afterAll(async () => {
  await h?.close();
  redis?.disconnect();
  child?.kill('SIGKILL');
});

it('says once why the run queue fails when Redis is full, and runs the run when it has room', async () => {
  await h.rule({ id: 'when-full', actions: [{ type: 'log', with: { message: 'ran' } }] });
  const told: string[] = [];
  const w = await h.start({ redisUrl: url, autorun: false, onQueueError: (e) => told.push(e.message) });
  const queue = openRunQueue(redis.duplicate(), h.prefix);
  const e = event('e-full');
  const id = runJobId('acme', e.id, 'when-full');
  await queue.add('run', { tenant: 'acme', ruleId: 'when-full', event: e }, { jobId: id });
  await redis.config('SET', 'maxmemory', '1');
  for (const worker of w.workers) void worker.run();
  await eventually('the worker to say why', () => told.length > 0);
  expect(told[0]).toMatch(/^OOM command not allowed/);
  // BullMQ tries again and again meanwhile: said once a minute, not each time
  await new Promise((r) => setTimeout(r, 1_500));
  expect(told).toHaveLength(1);
  expect(await h.run(id)).toBeUndefined();
  await redis.config('SET', 'maxmemory', '0');
  expect((await h.waitRun(id)).status).toBe('completed');
  await queue.close();
});
