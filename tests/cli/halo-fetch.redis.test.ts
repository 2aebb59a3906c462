/**
 * Halo "event information only" webhooks (sources.md) through the real `serve`: the entity comes
 * from the event name, and the record is fetched from the Halo API with the connection's
 * credentials (made through the admin API), so rules see the whole ticket; when it cannot be
 * fetched the event goes on with `data = {id}`. With `--threads 2` too: the extra thread asks the
 * main thread, which holds the PSA clients.
 */
import type { ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { readArchive } from '../../src/config/archive.js';
import { FakePsa, HALO } from '../workers/fakes/psa.js';
import { serveEnv, spawnServe } from './serve-env.js';

const ended: Array<() => Promise<void>> = [];

afterAll(async () => {
  for (const end of ended) await end();
});

/** A POST on a connection of its own (threads share the port: the kernel spreads connections). */
function post(
  url: string,
  headers: Record<string, string>,
  body: string,
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: 'POST', agent: false, headers }, (res) => {
      let text = '';
      res.on('data', (d) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode!, body: text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

it.each([1, 2])(
  'fetches the record of an event-information-only payload from the Halo API (%i thread(s))',
  {
    timeout: 60_000,
  },
  async (threads) => {
    const { dir, env, cleanup } = serveEnv(`halofetch${threads}`);
    const psa = await new FakePsa().start();
    let child: ChildProcess | undefined;
    ended.push(async () => {
      child?.kill('SIGKILL');
      await psa.close();
      await cleanup();
    });
    // Threads share a fixed port (serve refuses port 0 with --threads).
    const port = threads === 1 ? 0 : 20_000 + (process.pid % 10_000);
    const served = await spawnServe(
      [
        '--port',
        String(port),
        '--admin-port',
        '0',
        '--grpc-port',
        '0',
        '--no-worker',
        '--threads',
        String(threads),
      ],
      { env, cwd: dir },
    );
    child = served.child;
    const { ingest } = served;
    const admin = served.admin!;
    const key = readFileSync(join(dir, 'var', 'admin.key'), 'utf8').trim();
    const api = (method: string, path: string, body: unknown) =>
      fetch(`${admin}${path}`, {
        method,
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
    // The fake Halo API is on loopback: the tenant allows private networks for it.
    expect((await api('PUT', '/v1/settings', { settings: { allowPrivateNetworks: true } })).status).toBe(200);
    expect(
      (
        await api('PUT', '/v1/connections/halo', {
          kind: 'halo',
          settings: {
            apiUrl: `${psa.url}/halo/api`,
            authUrl: `${psa.url}/halo/auth`,
            tenant: HALO.tenant,
            clientId: HALO.clientId,
            webhookUsername: 'hook',
          },
          secret: { clientSecret: HALO.clientSecret, webhookPassword: 'pw' },
        })
      ).status,
    ).toBe(200);
    const hook = async (body: unknown) => {
      for (let i = 0; ; i++) {
        const r = await post(
          `${ingest}/v1/hooks/halo/default.halo`,
          {
            'content-type': 'application/json',
            authorization: `Basic ${Buffer.from('hook:pw').toString('base64')}`,
          },
          JSON.stringify(body),
        );
        // 404 until every thread has the connection made through the admin API.
        if (r.status !== 404 || i > 50)
          return { status: r.status, body: JSON.parse(r.body) as Record<string, any> };
        await new Promise((res) => setTimeout(res, 100));
      }
    };
    const info = (id: string, objectId: number) => ({
      id,
      webhook_id: 'w-1',
      event: 'ticket status changed',
      message: `The status has been changed for Ticket ID: ${objectId}.`,
      object_id: objectId,
      agent_id: 3,
      timestamp: '2026-11-02T09:30:00.0000000Z',
    });
    const a = await hook(info('d-1', 4242));
    expect([a.status, a.body]).toEqual([202, expect.anything()]);
    expect(a.body.accepted).toBe(1);
    const b = await hook(info('d-2', 900_001)); // not found in Halo: goes on with {id}
    expect(b.status).toBe(202);
    const c = await hook(info('d-3', 800_001)); // a record nested too deep: as if not found
    expect(c.status).toBe(202);
    // More, each on a connection of its own: with two threads, some land on the extra one (all
    // on one thread: 1 in 2^8).
    for (let i = 0; i < 8; i++) expect((await hook(info(`m-${i}`, 4242))).status).toBe(202);

    // The archive (drained by the workers of another process: here, read the Redis stream).
    const { Redis } = await import('ioredis');
    const redis = new Redis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6390');
    const entries = (await redis.xrange(`${env.SIGNALBOX_REDIS_PREFIX}:outbox`, '-', '+')) as Array<
      [string, string[]]
    >;
    const { events } = await readArchive(
      redis,
      entries.map(([, f]) => f),
    );
    redis.disconnect();
    const envs = events.map((e) => e.envelope as Record<string, any>);
    const first = envs.find((e) => e.id === 'halo:d-1')!;
    const second = envs.find((e) => e.id === 'halo:d-2')!;
    expect(first.type).toBe('ticket.updated');
    expect(first.data).toEqual({
      id: 4242,
      summary: 'Fetched from the Halo API',
      status_id: 21,
      priority_id: 1,
      client_name: 'Contoso Ltd',
    });
    expect(second.type).toBe('ticket.updated');
    expect(second.data).toEqual({ id: 900_001 });
    expect(envs.find((e) => e.id === 'halo:d-3')?.data).toEqual({ id: 800_001 });
    for (let i = 0; i < 8; i++)
      expect(envs.find((e) => e.id === `halo:m-${i}`)?.data).toEqual(
        expect.objectContaining({ status_id: 21 }),
      );
    expect(psa.calls.filter((c) => c.path.startsWith('/halo/api/Tickets/')).map((c) => c.path)).toEqual([
      '/halo/api/Tickets/4242',
      '/halo/api/Tickets/900001',
      '/halo/api/Tickets/800001',
      ...Array.from({ length: 8 }, () => '/halo/api/Tickets/4242'),
    ]);
    if (threads === 1) {
      // (Each thread counts its own; with one, the counts are the whole.)
      const metrics = await (await fetch(`${ingest}/metrics`)).text();
      expect(metrics).toContain('signalbox_ingest_records_fetched_total{outcome="fetched",source="halo"} 9');
      expect(metrics).toContain(
        'signalbox_ingest_records_fetched_total{outcome="not-fetched",source="halo"} 2',
      );
      // The backlogs: no worker drains the archive here, so its entries wait in Redis.
      expect(metrics).toMatch(/signalbox_stream_length\{stream="archive"\} [1-9]/);
      expect(metrics).toMatch(/signalbox_stream_length\{stream="history"\} 0/);
    }
  },
);
