/**
 * Kill Redis (SIGKILL) in the middle of a load: while it is down the server answers 503 and keeps
 * serving; after it returns (appendonly on), no acknowledged event is missing from the archive
 * (the outbox) and every match of every acknowledged event is queued exactly once.
 */
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, expect, it } from 'vitest';
import { readArchive } from '../../src/config/archive.js';
import { RUN_QUEUE, runJobId } from '../../src/config/runs.js';
import { compileRuleSet, Engine } from '../../src/engine/index.js';
import { Handoff } from '../../src/ingest/handoff.js';
import { startIngest } from '../../src/ingest/server.js';
import { freePort, startRedisServer } from '../redis-server.js';

let port = 0;
const dir = mkdtempSync(join(tmpdir(), 'sb-redis-'));
let redisProcess: ChildProcess | undefined;

/** Redis with appendonly (the condition), on the same port and data each time. */
async function startRedis(): Promise<void> {
  port ||= await freePort();
  redisProcess = await startRedisServer(port, [
    '--dir',
    dir,
    '--appendonly',
    'yes',
    '--appendfsync',
    'everysec',
    '--maxmemory-policy',
    'noeviction',
  ]);
}

function client(): Redis {
  const r = new Redis({ port, maxRetriesPerRequest: 1, retryStrategy: () => 100 });
  r.on('error', () => {});
  return r;
}

afterAll(() => {
  redisProcess?.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

it('loses no acknowledged event when Redis is killed mid-load', { timeout: 120_000 }, async () => {
  await startRedis();
  const redis = client();
  const { rules } = compileRuleSet([{ id: 'offline', tenant: 'acme', source: 'rmm', on: 'device.offline' }]);
  const engine = new Engine(rules);
  const handoff = new Handoff(redis, () => engine, { prefix: 'dur' });
  const queue = new Queue(RUN_QUEUE, { connection: client(), prefix: 'dur' });
  queue.on('error', () => {}); // expected while Redis is down
  const server = await startIngest({
    connections: { get: () => undefined },
    apiKeys: { tenantOf: (k) => (k === 'k' ? 'acme' : undefined) },
    handoff,
    ready: async () => true,
    rate: { perSecond: 1e9, burst: 1e9 },
  });
  const send = async (id: string): Promise<number> => {
    try {
      const r = await fetch(`http://127.0.0.1:${server.port}/v1/events`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: 'Bearer k' },
        body: JSON.stringify({ id, source: 'rmm', type: 'device.offline', data: { device: id } }),
      });
      await r.arrayBuffer();
      return r.status;
    } catch {
      return 0;
    }
  };

  const N = 600;
  const ids = Array.from({ length: N }, (_, i) => `ev-${i}`);
  const status = new Map<string, number>();
  let outageStatuses: number[] = [];
  for (let i = 0; i < N; i += 8) {
    if (i === 200) {
      redisProcess!.kill('SIGKILL');
      await new Promise((r) => redisProcess!.once('exit', r));
    }
    if (i === 400) await startRedis();
    const chunk = ids.slice(i, i + 8);
    const got = await Promise.all(chunk.map(send));
    chunk.forEach((id, k) => {
      status.set(id, got[k]!);
    });
    if (i >= 200 && i < 400) outageStatuses = outageStatuses.concat(got);
  }
  // While Redis was down: 503s, and the server kept answering.
  expect(outageStatuses.filter((s) => s === 503).length).toBeGreaterThan(150);
  expect(outageStatuses.every((s) => s === 503 || s === 202)).toBe(true);
  const acknowledged = ids.filter((id) => status.get(id) === 202);
  expect(acknowledged.length).toBeGreaterThanOrEqual(400);

  // The senders retry what was not acknowledged, as PSAs do after a 503.
  for (const id of ids.filter((id) => status.get(id) !== 202)) expect(await send(id)).toBe(202);

  // Every event is in the archive exactly once, and one run per event is queued, none twice.
  const entries = (await redis.xrange(handoff.outboxKey, '-', '+')) as Array<[string, string[]]>;
  const archived = (
    await readArchive(
      redis,
      entries.map(([, f]) => f),
    )
  ).events.map((e) => e.envelope.id);
  expect(new Set(archived).size).toBe(archived.length);
  expect([...archived].sort()).toEqual([...ids].sort());
  // Queued by the same COMMIT that archived them: nothing left to wait for.
  expect((await queue.getJobCounts('wait')).wait).toBe(N);
  const jobs = await queue.getJobs(['wait'], 0, N);
  expect(new Set(jobs.map((j) => j.id)).size).toBe(N);
  expect(jobs.map((j) => j.id).sort()).toEqual(ids.map((id) => runJobId('acme', id, 'offline')).sort());

  server.close();
  await queue.close();
  redis.disconnect();
});
