/**
 * The worker's history records are sent without waiting for Redis's answer (ordered: the job
 * completes on the same connection, after them). A record Redis refuses (a full Redis, a
 * connection lost mid-write) is sent again until it is taken, and the refusal is told.
 */
import type { Redis } from 'ioredis';
import { expect, it } from 'vitest';
import { HistoryLog } from '../../src/workers/history.js';
import { eventually, runRecord } from './harness.js';

it('sends again what Redis refused, and tells the refusal', async () => {
  const taken: string[] = [];
  let refusals = 2;
  const fake = {
    xadd: (...args: Array<string | number>) => {
      if (refusals-- > 0)
        return Promise.reject(new Error("OOM command not allowed when used memory > 'maxmemory'."));
      taken.push(String(args[args.length - 1]));
      return Promise.resolve('1-0');
    },
  } as unknown as Redis;
  const told: string[] = [];
  const log = new HistoryLog(fake, 'sbt', true, { onError: (e) => told.push(e.message), retryMs: 10 });
  const run = runRecord('run-refused');
  // ordered: resolved once sent, without waiting for Redis
  await log.record(run);
  await eventually('taken on a later try', async () => taken.length === 1);
  expect(JSON.parse(taken[0]!)).toMatchObject({ id: 'run-refused', status: 'completed' });
  expect(told).toHaveLength(2);
  expect(told[0]).toMatch(/^OOM/);
  expect(log.lastError?.message).toMatch(/^OOM/);
});
