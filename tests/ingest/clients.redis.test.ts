/**
 * Slow and aborted clients: a client that stalls mid-body, or drops the connection mid-body, or
 * sends garbage, neither blocks other requests nor breaks the server.
 */
import { randomBytes } from 'node:crypto';
import { connect, type Socket } from 'node:net';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { readArchive } from '../../src/config/archive.js';
import { Engine } from '../../src/engine/index.js';
import { Handoff } from '../../src/ingest/handoff.js';
import { type IngestServer, startIngest } from '../../src/ingest/server.js';

const prefix = `sbc${process.pid}${randomBytes(3).toString('hex')}`;
let redis: Redis;
let server: IngestServer;

beforeAll(async () => {
  redis = new Redis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6390', { maxRetriesPerRequest: 1 });
  const engine = new Engine();
  server = await startIngest({
    connections: { get: () => undefined },
    apiKeys: { tenantOf: (k) => (k === 'k' ? 'acme' : undefined) },
    handoff: new Handoff(redis, () => engine, { prefix }),
    ready: async () => true,
    rate: { perSecond: 1e6, burst: 1e6 },
  });
});

afterAll(async () => {
  server?.close();
  const keys = await redis.keys(`${prefix}*`);
  if (keys.length > 0) await redis.del(...keys);
  await redis.quit();
});

function raw(text: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect(server.port, '127.0.0.1', () => {
      s.write(text);
      resolve(s);
    });
    s.on('error', reject);
  });
}

const event = (id: string) => JSON.stringify({ id, source: 'rmm', type: 'device.offline', data: {} });

async function good(id: string): Promise<number> {
  const r = await fetch(`http://127.0.0.1:${server.port}/v1/events`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: 'Bearer k' },
    body: event(id),
  });
  await r.arrayBuffer();
  return r.status;
}

it('serves others while clients stall or abort mid-body, and stays up', async () => {
  const head = (len: number) =>
    `POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k\r\nContent-Type: application/json\r\nContent-Length: ${len}\r\n\r\n`;
  // Ten clients announce 500 KB and send 10 bytes, then stall.
  const stalled = await Promise.all(Array.from({ length: 10 }, () => raw(`${head(500_000)}{"id":"x",`)));
  // Ten more send half a body and drop the connection.
  const dropped = await Promise.all(Array.from({ length: 10 }, () => raw(`${head(200)}{"id":"half"`)));
  for (const s of dropped) s.destroy();
  // And some send garbage.
  const garbage = await Promise.all(Array.from({ length: 5 }, () => raw('NOT HTTP AT ALL\r\n\r\n\0\0\0')));

  const statuses = await Promise.all(Array.from({ length: 50 }, (_, i) => good(`ok-${i}`)));
  expect(statuses.every((s) => s === 202)).toBe(true);

  for (const s of [...stalled, ...garbage]) s.destroy();
  await new Promise((r) => setTimeout(r, 100));
  expect(await good('after')).toBe(202);
  expect((await fetch(`http://127.0.0.1:${server.port}/healthz`)).status).toBe(200);
  // Nothing of the aborted bodies was taken.
  const archived = (await redis.xrange(`${prefix}:outbox`, '-', '+')) as Array<[string, string[]]>;
  expect(
    (
      await readArchive(
        redis,
        archived.map(([, f]) => f),
      )
    ).events.length,
  ).toBe(51);
});
