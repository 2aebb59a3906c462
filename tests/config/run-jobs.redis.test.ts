/**
 * The run jobs the ingest's COMMIT and the timers' START add with a script of ours
 * (ADD_RUN_JOB_LUA) instead of BullMQ's addStandardJob: what they write is what BullMQ writes for
 * Queue.add with the queue of runs' options, key by key (so a BullMQ upgrade that changes it fails
 * here, not in production), a BullMQ worker runs them, and an add of an id already there changes
 * nothing.
 */
import { randomBytes } from 'node:crypto';
import { Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, expect, it } from 'vitest';
import {
  ADD_RUN_JOB_LUA,
  encodeRunJob,
  openRunQueue,
  RUN_JOB_KEEP,
  RUN_QUEUE,
  runQueueKeys,
} from '../../src/config/runs.js';

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6390';
const base = `sbrj${process.pid}${randomBytes(3).toString('hex')}`;
const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: null });

afterAll(async () => {
  const keys = await redis.keys(`${base}*`);
  if (keys.length > 0) await redis.del(...keys);
  redis.disconnect();
});

/** Adds run jobs with ADD_RUN_JOB_LUA's prepareRunJobs and addRunJob: per job its name, id, data and timestamp. */
const ADD = `${ADD_RUN_JOB_LUA}
local queue = {}
for i = 1, 9 do queue[i] = KEYS[i] end
local jobKeys = {}
for a = 1, #ARGV, 4 do jobKeys[#jobKeys + 1] = ARGV[a + 3] end
local blocked, absent = prepareRunJobs(queue, jobKeys)
if blocked then return redis.error_reply(blocked) end
for a = 1, #ARGV, 4 do
  local err = addRunJob(queue, ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], absent)
  if err then return redis.error_reply(err) end
end
return #ARGV / 4`;

async function ours(
  prefix: string,
  jobs: ReadonlyArray<{ name: string; id: string; data: unknown; at: number }>,
): Promise<unknown> {
  const q = runQueueKeys(prefix);
  const args: string[] = [];
  for (const j of jobs) {
    const [head, opts] = encodeRunJob(j.name, j.id, j.at);
    args.push(head, JSON.stringify(j.data), opts, q.jobPrefix + j.id);
  }
  return redis.eval(ADD, 9, ...q.keys, ...args);
}

/** Everything under a prefix, by key less the prefix: what a BullMQ worker could read. */
async function state(prefix: string): Promise<Record<string, unknown>> {
  const out: Record<string, unknown> = {};
  for (const key of (await redis.keys(`${prefix}:*`)).sort()) {
    const name = key.slice(prefix.length);
    const type = await redis.type(key);
    if (type === 'hash') {
      const h = await redis.hgetall(key);
      out[name] = { ...h, ...(h.opts ? { opts: JSON.parse(h.opts) } : {}) };
    } else if (type === 'list') out[name] = await redis.lrange(key, 0, -1);
    else if (type === 'zset') out[name] = await redis.zrange(key, '0', '-1', 'WITHSCORES');
    else if (type === 'string') out[name] = await redis.get(key);
    else out[name] = type;
  }
  return out;
}

it('writes what BullMQ writes for Queue.add with the queue of runs’ options, paused or not', async () => {
  for (const paused of [false, true]) {
    const theirs = `${base}b${paused ? 'p' : ''}`;
    const mine = `${base}o${paused ? 'p' : ''}`;
    const queue = openRunQueue(redis.duplicate(), theirs);
    const at = Date.now();
    const jobs = [
      {
        name: 'run',
        id: 'r-0123456789abcdef',
        data: { tenant: 'acme', ruleId: 'p1', event: { id: 'é"\n' } },
        at,
      },
      {
        name: 'cancel',
        id: 'r-fedcba9876543210',
        data: { tenant: 'acme', ruleId: 'p1', kind: 'cancel' },
        at,
      },
    ];
    try {
      if (paused) {
        await queue.pause();
        await redis.hset(`${mine}:${RUN_QUEUE}:meta`, 'paused', '1');
      }
      for (const j of jobs) await queue.add(j.name, j.data as never, { jobId: j.id, ...RUN_JOB_KEEP });
      expect(await ours(mine, jobs)).toBe(2);
      const b = await state(theirs);
      const o = await state(mine);
      // Left out on purpose: BullMQ's events stream (QueueEvents only), its job counter, and what
      // it keeps in the queue's meta besides `paused` (its version, the events stream's length:
      // its worker's scripts set that themselves).
      delete b[`:${RUN_QUEUE}:events`];
      delete b[`:${RUN_QUEUE}:id`];
      expect(b[`:${RUN_QUEUE}:meta`]).toMatchObject({ version: expect.stringMatching(/^bullmq:/) });
      expect(o[`:${RUN_QUEUE}:meta`]).toEqual(paused ? { paused: '1' } : undefined);
      delete b[`:${RUN_QUEUE}:meta`];
      delete o[`:${RUN_QUEUE}:meta`];
      // Each job's time: BullMQ's is its add's, ours the one given.
      for (const j of jobs) {
        const ob = o[`:${RUN_QUEUE}:${j.id}`] as Record<string, string>;
        const bb = b[`:${RUN_QUEUE}:${j.id}`] as Record<string, string>;
        expect(ob.timestamp).toBe(String(j.at));
        expect(Number(bb.timestamp)).toBeGreaterThanOrEqual(j.at);
        ob.timestamp = bb.timestamp = 'its time';
      }
      expect(o, paused ? 'paused' : 'running').toEqual(b);
      expect(Object.keys(o)).toContain(`:${RUN_QUEUE}:r-0123456789abcdef`);
      expect(Object.keys(o).includes(`:${RUN_QUEUE}:marker`)).toBe(!paused);
    } finally {
      await queue.close();
    }
  }
});

it('adds jobs a BullMQ worker runs, and an id already there again changes nothing', async () => {
  const prefix = `${base}w`;
  const jobs = [0, 1, 2].map((i) => ({
    name: 'run',
    id: `r-job${i}`,
    data: { tenant: 'acme', ruleId: `rule${i}` },
    at: Date.now(),
  }));
  expect(await ours(prefix, jobs)).toBe(3);
  const before = await state(prefix);
  expect(await ours(prefix, [{ ...jobs[0]!, data: { other: true }, at: 1 }])).toBe(1);
  expect(await state(prefix)).toEqual(before);
  const ran: unknown[] = [];
  const worker = new Worker(
    RUN_QUEUE,
    async (job) => {
      ran.push([job.id, job.name, job.data, job.opts.attempts, job.opts.backoff, job.opts.removeOnFail]);
    },
    { connection: redis.duplicate(), prefix },
  );
  try {
    const until = Date.now() + 5_000;
    while (ran.length < 3 && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
    await new Promise((r) => setTimeout(r, 100));
    const opts = [12, { type: 'exponential', delay: 1000 }, 50_000];
    expect(ran.sort()).toEqual([
      ['r-job0', 'run', { tenant: 'acme', ruleId: 'rule0' }, ...opts],
      ['r-job1', 'run', { tenant: 'acme', ruleId: 'rule1' }, ...opts],
      ['r-job2', 'run', { tenant: 'acme', ruleId: 'rule2' }, ...opts],
    ]);
  } finally {
    await worker.close();
  }
});
