/**
 * The run jobs the ingest's COMMIT adds with BullMQ's own script (BULLMQ_ADD_JOB_LUA): the
 * arguments it sends are the ones BullMQ itself sends for Queue.add with the queue of runs'
 * defaults (so a BullMQ upgrade that changes them fails here, not in production), and a BullMQ
 * worker runs such jobs.
 */
import { randomBytes } from 'node:crypto';
import { decode } from '@msgpack/msgpack';
import { Job, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, expect, it } from 'vitest';
import {
  BULLMQ_ADD_JOB_LUA,
  encodeRunJob,
  openRunQueue,
  RUN_JOB_KEEP,
  RUN_QUEUE,
  runQueueKeys,
} from '../../src/config/runs.js';

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6390';
const prefix = `sbrj${process.pid}${randomBytes(3).toString('hex')}`;
const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: null });

afterAll(async () => {
  const keys = await redis.keys(`${prefix}:*`);
  if (keys.length > 0) await redis.del(...keys);
  redis.disconnect();
});

it('sends the keys and arguments BullMQ sends for Queue.add with the queue of runs’ defaults', async () => {
  const queue = openRunQueue(redis.duplicate(), prefix);
  try {
    for (const [name, jobId] of [
      ['run', 'r-0123456789abcdef'],
      ['cancel', 'r-fedcba9876543210'],
    ] as const) {
      // What BullMQ would send: its own arguments, caught instead of sent.
      let sent: unknown[] = [];
      const catcher = {
        runCommand: (command: string, args: unknown[]) => {
          expect(command).toMatch(/^addStandardJob:/);
          sent = args;
          return Promise.resolve(jobId);
        },
      };
      const job = new Job(
        queue,
        name,
        { x: 1 },
        { ...queue.defaultJobOptions, jobId, ...RUN_JOB_KEEP },
        jobId,
      );
      await queue.backend.addJobToTransaction(catcher as never, job.asJSON(), jobId);
      const q = runQueueKeys(prefix);
      const bullArgs = decode(sent[9] as Uint8Array) as unknown[];
      const [args, opts] = encodeRunJob(q, name, jobId, bullArgs[3] as number);
      expect(sent.slice(0, 9)).toEqual(q.keys);
      expect(decode(args)).toEqual(bullArgs);
      expect(decode(opts)).toEqual(decode(sent[11] as Uint8Array));
    }
  } finally {
    await queue.close();
  }
});

it('adds jobs a BullMQ worker runs, from a script of ours', async () => {
  const q = runQueueKeys(prefix);
  const lua = `${BULLMQ_ADD_JOB_LUA}
local queue = {}
for i = 1, 9 do queue[i] = KEYS[i] end
for a = 1, #ARGV, 3 do bullmqAddJob(queue, {ARGV[a], ARGV[a + 1], ARGV[a + 2]}) end
return #ARGV / 3`;
  const args: Array<string | Buffer> = [];
  for (let i = 0; i < 3; i++) {
    const [a, o] = encodeRunJob(q, 'run', `r-job${i}`, Date.now());
    args.push(a, JSON.stringify({ tenant: 'acme', ruleId: `rule${i}` }), o);
  }
  expect(await redis.eval(lua, 9, ...q.keys, ...args)).toBe(3);
  // The same id again changes nothing (BullMQ's duplicate check).
  expect(await redis.eval(lua, 9, ...q.keys, ...args.slice(0, 3))).toBe(1);
  const ran: unknown[] = [];
  const worker = new Worker(
    RUN_QUEUE,
    async (job) => {
      ran.push([job.id, job.name, job.data, job.opts.attempts]);
    },
    { connection: redis.duplicate(), prefix },
  );
  try {
    const until = Date.now() + 5_000;
    while (ran.length < 3 && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
    await new Promise((r) => setTimeout(r, 100));
    expect(ran.sort()).toEqual([
      ['r-job0', 'run', { tenant: 'acme', ruleId: 'rule0' }, 12],
      ['r-job1', 'run', { tenant: 'acme', ruleId: 'rule1' }, 12],
      ['r-job2', 'run', { tenant: 'acme', ruleId: 'rule2' }, 12],
    ]);
  } finally {
    await worker.close();
  }
});
