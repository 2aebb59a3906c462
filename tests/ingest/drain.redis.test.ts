/**
 * Closing the ingest server drains it: requests in flight are answered once committed, a request
 * that comes on a connection already open meanwhile is answered too, each with Connection: close,
 * no new connection is taken, and close resolves (every connection closed) without waiting for
 * idle keep-alive clients to go away.
 */
import { randomBytes } from 'node:crypto';
import { connect, type Socket } from 'node:net';
import { Redis } from 'ioredis';
import { afterAll, expect, it } from 'vitest';
import { Engine } from '../../src/engine/index.js';
import type { AdaptedEvent } from '../../src/ingest/connection.js';
import { Handoff, type HandoffResult } from '../../src/ingest/handoff.js';
import { startIngest } from '../../src/ingest/server.js';

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6390';
const prefix = `sbdrain${process.pid}${randomBytes(3).toString('hex')}`;
const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });

afterAll(async () => {
  const keys = await redis.keys(`${prefix}*`);
  if (keys.length > 0) await redis.del(...keys);
  redis.disconnect();
});

/** A hand-off whose commits wait for `open()`: requests stay in flight until then. */
class GatedHandoff extends Handoff {
  private gate = Promise.resolve();
  private release = (): void => {};
  submitted = 0;
  /** Holds the commits that come from now on. */
  hold(): void {
    this.gate = new Promise((r) => {
      this.release = r;
    });
  }
  open(): void {
    this.release();
  }
  override async submitAll(events: readonly AdaptedEvent[], receivedAt?: number): Promise<HandoffResult[]> {
    this.submitted++;
    await this.gate;
    return super.submitAll(events, receivedAt);
  }
}

/** One keep-alive HTTP/1.1 connection: send a request, read one response (status, headers). */
function client(port: number): Promise<{
  socket: Socket;
  send: (id: string) => void;
  next: () => Promise<{ status: number; head: string; body: string }>;
  closed: Promise<void>;
}> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let buf = '';
    const waiting: Array<() => void> = [];
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => {
      buf += d;
      waiting.shift()?.();
    });
    const closed = new Promise<void>((r) => socket.once('close', () => r()));
    socket.once('error', reject);
    socket.once('connect', () =>
      resolve({
        socket,
        closed,
        send: (id) => {
          const body = JSON.stringify({ id, source: 'rmm', type: 'device.offline', data: {} });
          socket.write(
            `POST /v1/events HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\nauthorization: Bearer k\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
          );
        },
        next: async () => {
          for (;;) {
            const end = buf.indexOf('\r\n\r\n');
            if (end >= 0) {
              const head = buf.slice(0, end);
              const length = Number(/content-length: (\d+)/i.exec(head)?.[1] ?? 0);
              if (buf.length >= end + 4 + length) {
                const body = buf.slice(end + 4, end + 4 + length);
                buf = buf.slice(end + 4 + length);
                return { status: Number(/^HTTP\/1\.1 (\d+)/.exec(head)?.[1]), head, body };
              }
            }
            await new Promise<void>((r) => waiting.push(r));
          }
        },
      }),
    );
  });
}

it('answers what is in flight and what comes on open connections, then closes them all', async () => {
  const handoff = new GatedHandoff(redis, () => new Engine(), { prefix });
  const server = await startIngest({
    connections: { get: () => undefined },
    apiKeys: { tenantOf: (k) => (k === 'k' ? 'acme' : undefined) },
    handoff,
    ready: async () => true,
  });
  const busy = await client(server.port);
  const later = await client(server.port);
  const idle = await client(server.port);
  // A request answered before the close keeps its connection.
  idle.send('drain-0');
  const before = await idle.next();
  expect(before.status, JSON.stringify(before)).toBe(202);
  expect(before.head).not.toMatch(/connection: close/i);
  // One request in flight, held at its commit.
  handoff.hold();
  busy.send('drain-1');
  while (handoff.submitted < 2) await new Promise((r) => setTimeout(r, 5));
  const closing = server.close();
  let closedAll = false;
  void closing.then(() => (closedAll = true));
  // No new connection is taken.
  await expect(client(server.port)).rejects.toMatchObject({ code: 'ECONNREFUSED' });
  // A request on a connection already open is still taken, and waits for its commit too.
  later.send('drain-2');
  while (handoff.submitted < 3) await new Promise((r) => setTimeout(r, 5));
  expect(closedAll).toBe(false);
  handoff.open();
  for (const c of [busy, later]) {
    const r = await c.next();
    expect(r.status).toBe(202);
    expect(JSON.parse(r.body)).toMatchObject({ accepted: 1 });
    expect(r.head).toMatch(/connection: close/i);
  }
  await closing;
  // Every connection is closed, the idle keep-alive one included.
  await Promise.all([busy.closed, later.closed, idle.closed]);
  // The answered events were committed.
  const seen = await redis.keys(`${prefix}*`);
  expect(seen.length).toBeGreaterThan(0);
});
