/**
 * The dispatcher thread of `signalbox serve`: it turns dispatch-stream entries into run jobs, and
 * when the thread dies it is started again, and what was committed meanwhile still becomes runs.
 */
import { randomBytes } from 'node:crypto';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, expect, it } from 'vitest';
import { startDispatchThread } from '../../src/cli/dispatch-thread.js';
import { RUN_QUEUE, runJobId } from '../../src/config/runs.js';

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6390';
const prefix = `sbdt${process.pid}${randomBytes(3).toString('hex')}`;
const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
const queue = new Queue(RUN_QUEUE, { connection: redis.duplicate(), prefix });
const streamKey = `${prefix}:dispatch`;

afterAll(async () => {
  await queue.obliterate({ force: true }).catch(() => {});
  await queue.close();
  const keys = await redis.keys(`${prefix}:*`);
  if (keys.length > 0) await redis.del(...keys);
  redis.disconnect();
});

/** A dispatch-stream entry as the ingest's COMMIT writes it (NDJSON of outbox entries). */
async function commit(ids: string[]): Promise<void> {
  const lines = ids.map((id) =>
    JSON.stringify({
      envelope: {
        id,
        tenant: 'acme',
        source: 'rmm',
        type: 'device.offline',
        data: { id: 'd1' },
        previous: null,
      },
      outcome: 'accepted',
      rules: ['r1'],
    }),
  );
  await redis.xadd(streamKey, '*', 'e', lines.join('\n'), 'l', '');
}

async function job(id: string): Promise<boolean> {
  for (let i = 0; i < 150; i++) {
    if (await queue.getJob(runJobId('acme', id, 'r1'))) return true;
    await new Promise((r) => setTimeout(r, 20));
  }
  return false;
}

it('queues the runs of committed events, and is started again when its thread dies', async () => {
  const restarts: string[] = [];
  const t = await startDispatchThread(
    new URL('./fixtures/dispatch-entry.mjs', import.meta.url),
    { redisUrl: REDIS_URL, prefix, streamKey },
    { restartDelayMs: 50, onRestart: (why) => restarts.push(why) },
  );
  try {
    await commit(['e1', 'e2']);
    expect(await job('e1')).toBe(true);
    expect(await job('e2')).toBe(true);
    const first = t.thread;
    await first.terminate();
    // Committed while no dispatcher runs: queued by the next one.
    await commit(['e3']);
    expect(await job('e3')).toBe(true);
    expect(t.restarts).toBe(1);
    expect(restarts).toHaveLength(1);
    expect(t.thread).not.toBe(first);
    const data = (await queue.getJob(runJobId('acme', 'e3', 'r1')))!.data;
    expect(data).toMatchObject({ tenant: 'acme', ruleId: 'r1', loop: 'ok', event: { id: 'e3' } });
  } finally {
    await t.stop();
  }
});
