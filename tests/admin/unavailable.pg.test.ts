/**
 * The admin API while its store is down: Postgres stops answering (here a TCP proxy in front of it
 * is cut), and every call answers `unavailable` (HTTP 503 with Retry-After, gRPC UNAVAILABLE),
 * which clients retry, not `internal`; once the server is back the same calls succeed, with no
 * restart. The same for Redis, for the calls that queue runs: they answer at once, not when Redis
 * is back, and while Redis is full.
 */
import { randomBytes } from 'node:crypto';
import { type AddressInfo, connect, createServer, type Server, type Socket } from 'node:net';
import { status as GrpcStatus } from '@grpc/grpc-js';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { type AdminPlane, startAdminPlane } from '../../src/cli/admin.js';
import { type Db, migrate, openPostgres, SecretBox } from '../../src/store/index.js';
import { PG_URL } from '../pg-schema.js';
import { freePort, startRedisServer } from '../redis-server.js';
import { AdminClient } from './client.js';
import { rule } from './conformance.js';

const target = new URL(PG_URL);
const schema = `sb_unavail_${process.pid}_${Date.now().toString(36)}`;
let proxy: Server | undefined;
const sockets = new Set<Socket>();
let proxyPort = 0;
let db: Db;
let plane: AdminPlane;
let client: AdminClient;
let key: string;
/** What the operator's log was told. */
const outages: string[] = [];

/** Forwards proxyPort to the real Postgres; `cut` drops every connection and stops listening. */
function openProxy(port: number): Promise<void> {
  proxy = createServer((inbound) => {
    const outbound = connect(Number(target.port || 5432), target.hostname);
    for (const s of [inbound, outbound]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => {});
    }
    inbound.pipe(outbound).pipe(inbound);
  });
  return new Promise((resolve) =>
    proxy!.listen(port, '127.0.0.1', () => {
      proxyPort = (proxy!.address() as AddressInfo).port;
      resolve();
    }),
  );
}

function cut(): Promise<void> {
  for (const s of sockets) s.destroy();
  return new Promise((resolve) => proxy!.close(() => resolve()));
}

beforeAll(async () => {
  await openProxy(0);
  const via = new URL(PG_URL);
  via.port = String(proxyPort);
  db = await openPostgres({ url: via.toString(), schema });
  await migrate(db);
  plane = await startAdminPlane({
    db,
    secrets: new SecretBox(randomBytes(32)),
    onOutage: (reason) => outages.push(reason),
  });
  key = (await plane.keys.create('acme', 'admin', 'k', 'test')).key;
  client = new AdminClient(plane.http.port, plane.grpc.port);
});

afterAll(async () => {
  client?.close();
  await plane?.close();
  await db?.exec(`drop schema if exists ${schema} cascade`).catch(() => {});
  await db?.close();
  await cut().catch(() => {});
});

it('answers unavailable while Postgres is down, and serves again once it is back', async () => {
  for (const t of ['http', 'grpc'] as const) {
    const ok = await client.call(t, key, 'ListRules', {});
    expect(ok.ok, t).toBe(true);
  }
  await cut();
  for (const t of ['http', 'grpc'] as const) {
    for (const [op, input] of [
      ['ListRules', {}],
      ['GetRule', { id: 'nothing' }],
    ] as const) {
      const r = await client.call(t, key, op, input);
      expect(r, `${t} ${op}`).toMatchObject({
        ok: false,
        code: 'unavailable',
        message: 'the rule store is unreachable; try again shortly',
        status: t === 'http' ? 503 : GrpcStatus.UNAVAILABLE,
      });
    }
  }
  const res = await fetch(`http://127.0.0.1:${plane.http.port}/v1/rules`, {
    headers: { authorization: `Bearer ${key}` },
  });
  expect(res.status).toBe(503);
  expect(res.headers.get('retry-after')).toBe('5');
  // Five refused calls, one line for the operator, with the reason the answers leave out.
  expect(outages).toHaveLength(1);
  expect(outages[0]).toMatch(
    /^the rule store is unreachable \(.*(ECONNRESET|ECONNREFUSED|Connection terminated).*\)$/,
  );
  // A bad key is still found out once the store is back: nothing was cached as valid meanwhile.
  await openProxy(proxyPort);
  for (const t of ['http', 'grpc'] as const) {
    const r = await client.call(t, key, 'ListRules', {});
    expect(r.ok, t).toBe(true);
    const bad = await client.call(t, 'sbk_wrong', 'ListRules', {});
    expect(bad).toMatchObject({ ok: false, code: 'unauthenticated' });
  }
});

it('answers unavailable, not hanging, while Redis is down for calls that queue runs', {
  timeout: 60_000,
}, async () => {
  const port = await freePort();
  const start = () => startRedisServer(port);
  let server = await start();
  const redis = new Redis(port, '127.0.0.1', { maxRetriesPerRequest: 1 });
  redis.on('error', () => {});
  const queued = await startAdminPlane({
    db,
    secrets: new SecretBox(randomBytes(32)),
    redis,
    prefix: 'unavail',
  });
  const c = new AdminClient(queued.http.port, queued.grpc.port);
  /** TriggerRule over HTTP and gRPC answers `unavailable` with this message. */
  const refusedOverBoth = async (message: string) => {
    for (const t of ['http', 'grpc'] as const) {
      const r = await c.call(t, key, 'TriggerRule', { id: 'p1' });
      expect(r, t).toMatchObject({ ok: false, code: 'unavailable', message });
    }
  };
  try {
    expect(await c.call('http', key, 'CreateRule', { document: rule('p1') })).toMatchObject({ ok: true });
    expect(await c.call('http', key, 'ActivateRule', { id: 'p1' })).toMatchObject({ ok: true });
    const first = await c.call('http', key, 'TriggerRule', { id: 'p1' });
    expect(first, JSON.stringify(first)).toMatchObject({ ok: true });
    // Redis full (maxmemory under noeviction): the same answer, until it has room
    const admin = new Redis(port, '127.0.0.1', { maxRetriesPerRequest: 1 });
    await admin.config('SET', 'maxmemory', '1');
    await refusedOverBoth('the run queue (Redis) is full; try again shortly');
    await admin.config('SET', 'maxmemory', '0');
    admin.disconnect();
    const gone = new Promise((r) => server.once('exit', r));
    server.kill('SIGKILL');
    await gone;
    await refusedOverBoth('the run queue (Redis) is unreachable; try again shortly');
    server = await start();
    // ioredis reconnects with backoff: the first call after Redis returns may still find it down.
    let back: Awaited<ReturnType<AdminClient['call']>> | undefined;
    for (let i = 0; i < 100 && !back?.ok; i++) {
      back = await c.call('http', key, 'TriggerRule', { id: 'p1' });
      if (!back.ok) await new Promise((r) => setTimeout(r, 100));
    }
    expect(back).toMatchObject({ ok: true });
  } finally {
    c.close();
    await queued.close();
    redis.disconnect();
    server.kill('SIGKILL');
  }
});
