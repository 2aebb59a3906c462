/**
 * The ingest server end to end on real Redis and BullMQ: every PSA fixture through HTTP, the
 * envelopes in the outbox (data, previous, changed() on the second event of each pair), the queued
 * runs, dedupe on a replayed body, 401s, SSRF refusal of a foreign key_url, and each bad-input
 * answer.
 */
import { createHash, createHmac, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { type OutboxEntry, readArchive } from '../../src/config/archive.js';
import { RUN_QUEUE } from '../../src/config/runs.js';
import { compileRuleSet, Engine } from '../../src/engine/index.js';
import type { Connection, PsaSource } from '../../src/ingest/connection.js';
import { Handoff } from '../../src/ingest/handoff.js';
import { type IngestServer, startIngest } from '../../src/ingest/server.js';
import { listenablePort, startRedisServer } from '../redis-server.js';

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6390';
const FIXTURES = new URL('../../examples/psa/', import.meta.url);
const fixture = (name: string) => readFileSync(new URL(name, FIXTURES));
const prefix = `sbt${process.pid}${randomBytes(3).toString('hex')}`;

const CONNECTIONS: Connection[] = [
  { tenant: 'acme', id: 'cw1', source: 'connectwise', connectwise: { signingKey: 'test-signing-key' } },
  { tenant: 'acme', id: 'cw-fetch', source: 'connectwise', connectwise: {} },
  { tenant: 'acme', id: 'at1', source: 'autotask', autotask: { secret: 'test-webhook-secret' } },
  {
    tenant: 'acme',
    id: 'halo1',
    source: 'halo',
    halo: { username: 'halo-webhook', password: 'test-basic-password' },
  },
  {
    tenant: 'bodies-h',
    id: 'halo2',
    source: 'halo',
    halo: { username: 'u', password: 'test-basic-password' },
  },
];

const RULES = [
  {
    id: 'cw-status',
    tenant: 'acme',
    source: 'connectwise',
    on: 'ticket.updated',
    when: 'changed(ticket.status) and ticket.status.name == "Waiting Customer"',
  },
  {
    id: 'at-complete',
    tenant: 'acme',
    source: 'autotask',
    on: 'ticket.updated',
    when: 'changed(ticket.status) and ticket.status == "5" and ticket.title == "Printer offline - 2nd floor"',
  },
  {
    id: 'halo-closed',
    tenant: 'acme',
    source: 'halo',
    on: 'ticket.updated',
    when: 'changed(ticket.status_id) and ticket.status_id == 9 and raw.event == "ticket status changed"',
  },
  { id: 'any-new', tenant: 'acme', source: '*', on: 'ticket.created' },
  { id: 'arch-hit', tenant: 'arch', source: 'app', on: 'thing.hit' },
  {
    id: 'rmm-offline',
    tenant: 'acme',
    source: 'rmm',
    on: 'device.offline',
    when: 'device.status == "offline"',
  },
];

let redis: Redis;
let queue: Queue;
let server: IngestServer;
let base: string;

async function post(path: string, body: Buffer | string, headers: Record<string, string> = {}) {
  const r = await fetch(`${base}${path}`, {
    method: 'POST',
    body,
    headers: { 'content-type': 'application/json', ...headers },
  });
  const text = await r.text();
  return { status: r.status, headers: r.headers, body: text ? JSON.parse(text) : null };
}

async function outbox(): Promise<OutboxEntry[]> {
  const entries = (await redis.xrange(`${prefix}:outbox`, '-', '+')) as Array<[string, string[]]>;
  return (
    await readArchive(
      redis,
      entries.map(([, f]) => f),
    )
  ).events;
}

async function waitFor<T>(f: () => Promise<T>, ok: (v: T) => boolean, ms = 5_000): Promise<T> {
  const until = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (ok(v) || Date.now() > until) return v;
    await new Promise((r) => setTimeout(r, 50));
  }
}

beforeAll(async () => {
  redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
  const { rules, errors } = compileRuleSet(RULES);
  expect(errors).toEqual([]);
  const engine = new Engine(rules);
  const handoff = new Handoff(redis, () => engine, { prefix });
  queue = new Queue(RUN_QUEUE, { connection: redis.duplicate(), prefix });
  const byKey = new Map(CONNECTIONS.map((c) => [`${c.source}/${c.id}`, c]));
  server = await startIngest({
    connections: { get: (s: PsaSource, id: string) => byKey.get(`${s}/${id}`) },
    apiKeys: {
      tenantOf: (k) =>
        k === 'generic-key'
          ? 'acme'
          : k === 'deep-key'
            ? 'deep'
            : k === 'archive-key'
              ? 'arch'
              : k.startsWith('body-key-')
                ? `bodies-${k.slice(9)}`
                : undefined,
    },
    handoff,
    ready: async () => (await redis.ping()) === 'PONG',
    maxBodyBytes: 64 * 1024,
    rate: { perSecond: 5, burst: 10 },
  });
  base = `http://127.0.0.1:${server.port}`;
});

afterAll(async () => {
  server?.close();
  await queue?.obliterate({ force: true }).catch(() => {});
  await queue?.close();
  const keys = await redis.keys(`${prefix}*`);
  if (keys.length > 0) await redis.del(...keys);
  await redis.quit();
});

describe('PSA webhooks through the server', () => {
  it('ConnectWise: created then updated; previous and changed() on the second', async () => {
    const a = await post('/v1/hooks/connectwise/cw1/48213', fixture('connectwise.ticket.created.json'), {
      'x-content-signature': '86oTs+FzhRHo8YZd9uSkz03rwrtxGXbpBSzyjGgkuqE=',
    });
    expect(a.status).toBe(202);
    expect(a.body).toMatchObject({
      accepted: 1,
      matched: 1,
      results: [{ id: 'connectwise:5b0c1f0e-7a1d-4c8b-9a43-2f6b8d0e9c11', rules: ['any-new'] }],
    });
    const b = await post('/v1/hooks/connectwise/cw1/48213?x=1', fixture('connectwise.ticket.updated.json'), {
      'x-content-signature': '5DRPR5A+QFSCwZHtOLGUG9TxVzwHrBVXfg1snExfOtM=',
    });
    expect(b.status).toBe(202);
    expect(b.body.results[0].rules).toEqual(['cw-status']);
    const [, second] = (await outbox()).filter((e) => e.envelope.source === 'connectwise');
    expect(second!.envelope.previous).toMatchObject({ id: 48213, status: { id: 16, name: 'New' } });
    expect(second!.envelope.data).toMatchObject({ id: 48213, status: { id: 20, name: 'Waiting Customer' } });
  });

  it('Autotask: the partial update is merged over the snapshot', async () => {
    expect(
      (
        await post('/v1/hooks/autotask/at1', fixture('autotask.ticket.created.json'), {
          'x-hook-signature': 'sha1=GNVxsB2wTl/TbVhw1v9UdiESMm4=',
        })
      ).status,
    ).toBe(202);
    const b = await post('/v1/hooks/autotask/at1', fixture('autotask.ticket.updated.json'), {
      'x-hook-signature': 'sha1=5tlvfR4R/O4ffPO+ZmJ4WfcPbsY=',
    });
    expect(b.body.results[0].rules).toEqual(['at-complete']);
    const [, second] = (await outbox()).filter((e) => e.envelope.source === 'autotask');
    expect(second!.envelope.previous).toMatchObject({
      status: '1',
      title: 'Printer offline - 2nd floor',
      companyID: '29683516',
    });
    expect(second!.envelope.data).toMatchObject({
      id: 351181,
      status: '5',
      title: 'Printer offline - 2nd floor',
      priority: '2',
      companyID: '29683516',
    });
  });

  it('Halo: Basic auth, raw.event, and the status change', async () => {
    const auth = { authorization: 'Basic aGFsby13ZWJob29rOnRlc3QtYmFzaWMtcGFzc3dvcmQ=' };
    expect(
      (await post('/v1/hooks/halo/halo1', fixture('halo.ticket.created.json'), auth)).body.results[0].rules,
    ).toEqual(['any-new']);
    const b = await post('/v1/hooks/halo/halo1', fixture('halo.ticket.updated.json'), auth);
    expect(b.body.results[0].rules).toEqual(['halo-closed']);
    const [, second] = (await outbox()).filter((e) => e.envelope.source === 'halo');
    expect(second!.envelope.previous).toMatchObject({ status_id: 1 });
  });

  it('queues one run per match, and none twice', async () => {
    const counts = await waitFor(
      () => queue.getJobCounts('wait', 'active', 'delayed', 'completed', 'failed'),
      (c) => c.wait === 6,
    );
    expect(counts.wait).toBe(6);
    const jobs = await queue.getJobs(['wait']);
    expect(jobs.map((j) => j.data.ruleId).sort()).toEqual([
      'any-new',
      'any-new',
      'any-new',
      'at-complete',
      'cw-status',
      'halo-closed',
    ]);
    expect(jobs.find((j) => j.data.ruleId === 'cw-status')!.data.event.previous.status.name).toBe('New');
  });

  it('acknowledges a replayed body as a duplicate and neither matches nor queues it again', async () => {
    const before = (await outbox()).length;
    const r = await post('/v1/hooks/connectwise/cw1', fixture('connectwise.ticket.updated.json'), {
      'x-content-signature': '5DRPR5A+QFSCwZHtOLGUG9TxVzwHrBVXfg1snExfOtM=',
    });
    expect(r.status).toBe(202);
    expect(r.body).toMatchObject({ accepted: 0, duplicates: 1, matched: 0 });
    expect((await outbox()).length).toBe(before);
    await new Promise((res) => setTimeout(res, 200));
    expect((await queue.getJobCounts('wait')).wait).toBe(6);
  });

  it('answers a wrong signature or password with 401 and stores nothing', async () => {
    const before = (await outbox()).length;
    const cw = fixture('connectwise.ticket.created.json');
    expect((await post('/v1/hooks/connectwise/cw1', cw, { 'x-content-signature': 'AAAA' })).status).toBe(401);
    expect(
      (
        await post('/v1/hooks/autotask/at1', fixture('autotask.ticket.created.json'), {
          'x-hook-signature': 'sha1=AAAA',
        })
      ).status,
    ).toBe(401);
    const bad = { authorization: `Basic ${Buffer.from('halo-webhook:nope').toString('base64')}` };
    const r = await post('/v1/hooks/halo/halo1', fixture('halo.ticket.created.json'), bad);
    expect(r.status).toBe(401);
    expect(r.body.error).toMatch(/credentials/);
    expect((await outbox()).length).toBe(before);
  });

  it('refuses to fetch a signing key from a foreign key_url (SSRF)', async () => {
    const body = JSON.stringify({
      ...JSON.parse(fixture('connectwise.ticket.created.json').toString()),
      MessageId: 'ssrf-1',
      Metadata: { key_url: 'http://169.254.169.254/latest/meta-data/iam' },
    });
    const sig = createHmac('sha256', createHash('sha256').update('k').digest()).update(body).digest('base64');
    const r = await post('/v1/hooks/connectwise/cw-fetch', body, { 'x-content-signature': sig });
    expect(r.status).toBe(401);
    expect(r.body.error).toMatch(/not a ConnectWise host/);
  });
});

describe('bad input', () => {
  it('413 before reading a body over the limit', async () => {
    const r = await post('/v1/hooks/autotask/at1', Buffer.alloc(70 * 1024, 32), {
      'x-hook-signature': 'sha1=x',
    });
    expect(r.status).toBe(413);
  });
  it('415 for a wrong content type', async () => {
    const r = await post('/v1/hooks/autotask/at1', 'a=b', {
      'content-type': 'application/x-www-form-urlencoded',
    });
    expect(r.status).toBe(415);
  });
  it('400 with the parser’s reason for malformed JSON (after a valid signature)', async () => {
    const body = '{"Action": "Create", oops}';
    const sig = `sha1=${createHmac('sha1', 'test-webhook-secret').update(body).digest('base64')}`;
    const r = await post('/v1/hooks/autotask/at1', body, { 'x-hook-signature': sig });
    expect(r.status).toBe(400);
    expect(r.body.error).toMatch(/^malformed JSON: /);
  });
  it('404 for an unknown connection, source or route', async () => {
    expect((await post('/v1/hooks/halo/nope', '{}')).status).toBe(404);
    expect((await post('/v1/hooks/jira/cw1', '{}')).status).toBe(404);
    expect((await fetch(`${base}/v2/whatever`)).status).toBe(404);
  });
  it('405 with Allow for a known path and another method; HEAD for the health probes', async () => {
    for (const [method, path, allow] of [
      ['GET', '/v1/events', 'POST'],
      ['PUT', '/v1/hooks/halo/halo1', 'POST'],
      ['GET', '/v1/hooks/halo/halo1/secret', 'POST'],
      ['POST', '/healthz', 'GET, HEAD'],
      ['DELETE', '/metrics', 'GET'],
    ] as const) {
      const r = await fetch(`${base}${path}`, { method });
      expect([method, path, r.status, r.headers.get('allow')]).toEqual([method, path, 405, allow]);
      expect(((await r.json()) as { error: string }).error).toBe(`method ${method} not allowed: ${allow}`);
    }
    const head = await fetch(`${base}/healthz`, { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(await head.text()).toBe('');
    expect((await fetch(`${base}/readyz`, { method: 'HEAD' })).status).toBe(200);
  });
  it('generic events: API key, per-item errors, NDJSON, rate limit with Retry-After', async () => {
    expect((await post('/v1/events', '{}')).status).toBe(401);
    expect((await post('/v1/events', '{}', { authorization: 'Bearer wrong' })).status).toBe(401);
    const ev = (id: string) => ({
      id,
      source: 'rmm',
      type: 'device.offline',
      data: { status: 'offline', name: 'srv-1' },
    });
    const batch = [
      ev('g1'),
      { id: 'bad', source: 'rmm' },
      { ...ev('g2'), tenant: 'other' },
      { ...ev('g3'), source: 'halo' },
    ];
    const r = await post('/v1/events', JSON.stringify(batch), { authorization: 'Bearer generic-key' });
    expect(r.status).toBe(202);
    expect(r.body).toMatchObject({
      accepted: 1,
      matched: 1,
      results: [{ id: 'g1', rules: ['rmm-offline'] }],
    });
    expect(r.body.errors.map((e: { index: number }) => e.index)).toEqual([1, 2, 3]);
    const nd = `${JSON.stringify(ev('n1'))}\n\n \t\r\n{oops\n${JSON.stringify(ev('n2'))}\r\n`;
    const n = await post('/v1/events', nd, {
      authorization: 'Bearer generic-key',
      'content-type': 'application/x-ndjson',
    });
    expect(n.body).toMatchObject({ accepted: 2, errors: [{ index: 3 }] });
    expect((await post('/v1/events', '[1, 2]', { authorization: 'Bearer generic-key' })).status).toBe(400);
    const many = JSON.stringify(Array.from({ length: 20 }, (_, i) => ev(`burst-${i}`)));
    const limited = await post('/v1/events', many, { authorization: 'Bearer generic-key' });
    expect(limited.status).toBe(429);
    expect(Number(limited.headers.get('retry-after'))).toBeGreaterThan(0);
  });

  it('archives a generic event that starts no run as the text it came as, and reads it back as its envelope', async () => {
    const nd = [
      '{"id":"a1","source":"app","type":"thing.done","data":{"x":1,"nested":{"y":[1,"two",null]}}}',
      // spaces, a CRLF end, the key's own tenant, previous, raw (non-ASCII, U+2028) and self
      '{ "id" : "a2", "tenant":"arch", "source":"app","type":"thing.done","time":"2026-11-20T10:00:00Z","data":{"x":2},"previous":{"x":1,"old":true},"raw":{"orig":"\u00e9é\u2028"},"self":true }\r',
      '{"id":"a3","source":"app","type":"thing.hit","data":{"x":3}}',
    ].join('\n');
    const auth = { authorization: 'Bearer archive-key' };
    const a = await post('/v1/events', nd, { ...auth, 'content-type': 'application/x-ndjson' });
    expect(a.body).toMatchObject({ accepted: 3, matched: 1, results: [{ id: 'a3', rules: ['arch-hit'] }] });
    const one = '{"id":"a4","source":"app","type":"thing.done","data":{"k":"v"}}';
    expect((await post('/v1/events', one, auth)).status).toBe(202);
    const pretty = JSON.stringify({ id: 'a5', source: 'app', type: 'thing.done', data: { k: 'w' } }, null, 2);
    expect((await post('/v1/events', pretty, auth)).status).toBe(202);
    const array = JSON.stringify([{ id: 'a6', source: 'app', type: 'thing.done', data: { k: 'z' } }]);
    expect((await post('/v1/events', array, auth)).status).toBe(202);
    // ASCII only: each event's line is copied from the body's bytes (CRLF ends and a blank line)
    const a7 = '{"id":"a7", "source":"app","type":"thing.done","data":{"k":"crlf \\u00e9"}} ';
    const a8 = '{"id":"a8","source":"app","type":"thing.done","data":{"k":[1,2]}}';
    const ascii = `${a7}\r\n\r\n${a8}\r\n`;
    const b = await post('/v1/events', ascii, { ...auth, 'content-type': 'application/x-ndjson' });
    expect(b.body).toMatchObject({ accepted: 2 });

    const entries = (await redis.xrange(`${prefix}:outbox`, '-', '+')) as Array<[string, string[]]>;
    const lines = entries.flatMap(([, f]) => f[1]!.split('\n')).filter((l) => l.includes('"tenant":"arch"'));
    const form = (id: string) => {
      const l = lines.find((x) => x.includes(`"${id}"`))!;
      return l.startsWith('{"in":') ? 'as received' : l.startsWith('{"envelope":') ? 'envelope' : l;
    };
    // One line of JSON that starts no run: kept as it came (CRLF cut). A run needs the envelope.
    expect(['a1', 'a2', 'a3', 'a4', 'a5', 'a6', 'a7', 'a8'].map(form)).toEqual([
      'as received',
      'as received',
      'envelope',
      'as received',
      'envelope',
      'envelope',
      'as received',
      'as received',
    ]);
    expect(lines.some((l) => l.startsWith(`{"in":${nd.split('\n')[1]!.slice(0, -1)},`))).toBe(true);
    for (const [id, text] of [
      ['a4', one],
      ['a7', a7],
      ['a8', a8],
    ] as const) {
      const l = lines.find((x) => x.includes(`"${id}"`))!;
      expect(l).toMatch(/^\{"in":/);
      expect(l.slice(6, 6 + text.length)).toBe(text);
      expect(l.slice(6 + text.length)).toMatch(
        /^,"tenant":"arch","receivedAt":"[^"]+","outcome":"accepted","rules":\[\]\}$/,
      );
    }

    const archived = new Map(
      (await outbox()).filter((e) => e.envelope.tenant === 'arch').map((e) => [e.envelope.id, e]),
    );
    const at = (id: string) => archived.get(id)!.envelope.receivedAt;
    const envelope = (id: string, e: Record<string, unknown>) => ({
      id,
      tenant: 'arch',
      source: 'app',
      type: 'thing.done',
      time: at(id),
      raw: null,
      self: false,
      previous: null,
      receivedAt: at(id),
      ...e,
    });
    expect(Number.isNaN(Date.parse(at('a1')))).toBe(false);
    expect(archived.get('a1')).toEqual({
      envelope: envelope('a1', { data: { x: 1, nested: { y: [1, 'two', null] } } }),
      outcome: 'accepted',
      rules: [],
    });
    expect(archived.get('a2')?.envelope).toEqual(
      envelope('a2', {
        time: '2026-11-20T10:00:00Z',
        data: { x: 2, old: true },
        previous: { x: 1, old: true },
        raw: { orig: 'éé\u2028' },
        self: true,
      }),
    );
    expect(archived.get('a3')).toEqual({
      envelope: envelope('a3', { type: 'thing.hit', data: { x: 3 } }),
      outcome: 'accepted',
      rules: ['arch-hit'],
    });
    expect(archived.get('a4')?.envelope).toEqual(envelope('a4', { data: { k: 'v' } }));
    expect(archived.get('a5')?.envelope).toEqual(envelope('a5', { data: { k: 'w' } }));
    expect(archived.get('a6')?.envelope).toEqual(envelope('a6', { data: { k: 'z' } }));
    expect(archived.get('a7')).toEqual({
      envelope: envelope('a7', { data: { k: 'crlf é' } }),
      outcome: 'accepted',
      rules: [],
    });
    expect(archived.get('a8')?.envelope).toEqual(envelope('a8', { data: { k: [1, 2] } }));
  });

  it('an event nested too deeply or with an id too long to store fails alone, not the events with it', async () => {
    const deep = (id: string) =>
      `{"id":"${id}","source":"rmm","type":"device.offline","data":${'{"a":'.repeat(9_000)}1${'}'.repeat(9_000)}}`;
    const ok = (id: string) =>
      JSON.stringify({ id, source: 'rmm', type: 'device.offline', data: { status: 'offline' } });
    const auth = { authorization: 'Bearer deep-key' };
    // Sent together, so that they share the hand-off's micro-batch.
    const [one, batch, other] = await Promise.all([
      post('/v1/events', deep('deep-1'), auth),
      post(
        '/v1/events',
        `[${ok('deep-ok-1')},${deep('deep-2')},${ok('deep-ok-2')},${ok('x'.repeat(513))}]`,
        auth,
      ),
      post('/v1/events', ok('deep-ok-3'), auth),
    ]);
    expect(one.status).toBe(400);
    expect(one.body.errors[0].error).toMatch(/"data" is nested too deeply/);
    expect(batch.status).toBe(202);
    expect(batch.body).toMatchObject({ accepted: 2, errors: [{ index: 1 }, { index: 3 }] });
    expect(batch.body.errors[0].error).toMatch(/nested too deeply/);
    expect(batch.body.errors[1].error).toBe('"id" is longer than 512 characters');
    expect(other.status).toBe(202);
    expect(other.body).toMatchObject({ accepted: 1 });
    const ids = (await outbox()).map((e) => e.envelope.id);
    expect(ids).toEqual(expect.arrayContaining(['deep-ok-1', 'deep-ok-2', 'deep-ok-3']));
    expect(ids).not.toContain('deep-1');
    expect(ids).not.toContain('deep-2');
  });
});

describe('operations', () => {
  it('healthz, readyz and metrics', async () => {
    expect(await (await fetch(`${base}/healthz`)).json()).toMatchObject({ status: 'ok', native: true });
    expect((await fetch(`${base}/readyz`)).status).toBe(200);
    const text = await (await fetch(`${base}/metrics`)).text();
    expect(text).toMatch(/signalbox_ingest_events_total\{outcome="accepted",source="connectwise"\} 2/);
    expect(text).toMatch(/signalbox_ingest_events_total\{outcome="duplicate",source="connectwise"\} 1/);
    expect(text).toMatch(/signalbox_ingest_rejected_total\{reason="unauthorized"\} \d+/);
    expect(text).toMatch(/signalbox_ingest_handoff_seconds_count \d+/);
  });

  it('answers 503 when Redis cannot take the event, and keeps serving', async () => {
    const dead = new Redis('redis://127.0.0.1:1', {
      maxRetriesPerRequest: 0,
      enableOfflineQueue: false,
      lazyConnect: true,
      retryStrategy: () => null,
    });
    dead.on('error', () => {});
    const engine = new Engine();
    const s = await startIngest({
      connections: { get: () => CONNECTIONS[2] },
      apiKeys: { tenantOf: () => undefined },
      handoff: new Handoff(dead, () => engine, { prefix }),
      ready: async () => false,
    });
    try {
      const r = await fetch(`http://127.0.0.1:${s.port}/v1/hooks/autotask/at1`, {
        method: 'POST',
        body: fixture('autotask.ticket.created.json'),
        headers: {
          'content-type': 'application/json',
          'x-hook-signature': 'sha1=GNVxsB2wTl/TbVhw1v9UdiESMm4=',
        },
      });
      expect(r.status).toBe(503);
      expect(r.headers.get('retry-after')).toBe('5');
      expect((await fetch(`http://127.0.0.1:${s.port}/readyz`)).status).toBe(503);
      expect((await fetch(`http://127.0.0.1:${s.port}/healthz`)).status).toBe(200);
    } finally {
      s.close();
      dead.disconnect();
    }
  });
});

describe('Redis refusing the events', () => {
  it('answers 503 and tells the operator why, at most once a minute: a full Redis', async () => {
    const port = await listenablePort();
    const child = await startRedisServer(port);
    const redis = new Redis(port, '127.0.0.1', { maxRetriesPerRequest: 1 });
    const told: Array<string | null> = [];
    // offline devices start runs (the loop breaker's writes come first in COMMIT), others none
    const { rules } = compileRuleSet([
      { id: 'offline', tenant: 'acme', source: '*', on: ['device.offline'], actions: [{ type: 'log' }] },
    ]);
    const engine = new Engine(rules);
    const s = await startIngest({
      connections: { get: () => undefined },
      apiKeys: { tenantOf: (k) => (k === 'full-key' ? 'acme' : undefined) },
      handoff: new Handoff(redis, () => engine, { prefix }),
      ready: async () => true,
      onUnavailable: (why) => told.push(why),
    });
    try {
      const send = (id: string, type = 'device.offline') =>
        fetch(`http://127.0.0.1:${s.port}/v1/events`, {
          method: 'POST',
          body: JSON.stringify({ id, source: 'rmm', type, data: {} }),
          headers: { 'content-type': 'application/json', authorization: 'Bearer full-key' },
        });
      expect((await send('before')).status).toBe(202);
      // noeviction and no room left: Redis must refuse every event, before writing anything
      await redis.config('SET', 'maxmemory', '1');
      const keys = await redis.dbsize();
      for (const [id, type] of [
        ['full-1', 'device.offline'],
        ['full-2', 'device.offline'],
        ['full-3', 'device.online'],
      ]) {
        const r = await send(id!, type);
        expect(r.status).toBe(503);
        expect(await r.json()).toEqual({ error: 'the event store is unavailable; retry later' });
      }
      expect(await redis.dbsize()).toBe(keys);
      expect(await redis.xlen(`${prefix}:outbox`)).toBe(1);
      expect(told).toHaveLength(1);
      expect(told[0]).toMatch(/^OOM command not allowed .* Redis is full: \/metrics shows what waits in it/);
      await redis.config('SET', 'maxmemory', '0');
      expect((await send('after')).status).toBe(202);
      expect(await redis.xlen(`${prefix}:outbox`)).toBe(2);
      // the end of the outage is told once, and the next outage at once (not a minute later)
      expect(told.slice(1)).toEqual([null]);
      expect((await send('after-2')).status).toBe(202);
      expect(told).toHaveLength(2);
      await redis.config('SET', 'maxmemory', '1');
      expect((await send('full-4')).status).toBe(503);
      expect(told).toHaveLength(3);
      expect(told[2]).toMatch(/^OOM command not allowed/);
      await redis.config('SET', 'maxmemory', '0');
    } finally {
      await s.close();
      redis.disconnect();
      child.kill('SIGKILL');
    }
  });
});

describe('bodies: charset, byte order mark, content coding', () => {
  // a key (a tenant, with its own rate budget) per test
  let auth: { authorization: string };
  let tests = 0;
  beforeEach(() => {
    auth = { authorization: `Bearer body-key-${++tests}` };
  });
  const ev = (id: string, data: Record<string, unknown> = { k: 1 }) =>
    JSON.stringify({ id, source: 'app', type: 'thing.done', data });
  const archived = async (id: string) =>
    (await outbox()).find((e) => e.envelope.tenant.startsWith('bodies-') && e.envelope.id === id)?.envelope;
  const halo = (id: string, summary: string) =>
    JSON.stringify({
      ...JSON.parse(fixture('halo.ticket.created.json').toString()),
      id,
      ticket: { id: 777, summary },
    });
  const haloAuth = { authorization: `Basic ${Buffer.from('u:test-basic-password').toString('base64')}` };
  const BOM = Buffer.from([0xef, 0xbb, 0xbf]);

  it('reads gzip, deflate (zlib or raw) and br bodies on /v1/events, NDJSON included', async () => {
    const { gzipSync, deflateSync, deflateRawSync, brotliCompressSync } = await import('node:zlib');
    const nd = `${ev('z1')}\n${ev('z2')}\n`;
    const gz = await post('/v1/events', gzipSync(nd), {
      ...auth,
      'content-type': 'application/x-ndjson',
      'content-encoding': 'gzip',
    });
    expect(gz.status).toBe(202);
    expect(gz.body.accepted).toBe(2);
    for (const [id, coding, pack] of [
      ['z3', 'deflate', deflateSync],
      ['z4', 'deflate', deflateRawSync],
      ['z5', 'br', brotliCompressSync],
      ['z6', 'x-gzip', gzipSync],
    ] as const) {
      const r = await post('/v1/events', pack(ev(id)), { ...auth, 'content-encoding': coding });
      expect([id, r.status, r.body.accepted]).toEqual([id, 202, 1]);
    }
    expect(await archived('z2')).toMatchObject({ id: 'z2', data: { k: 1 } });
    expect(await archived('z5')).toMatchObject({ id: 'z5', data: { k: 1 } });
  });

  it('413 for a body over the limit once decompressed, 400 for one that does not decompress, 415 for other codings', async () => {
    const { gzipSync } = await import('node:zlib');
    // 200 KiB of spaces inside the JSON: a few hundred bytes sent, over the 64 KiB limit read
    const bomb = gzipSync(Buffer.from(`{"id":"bomb",${' '.repeat(200 * 1024)}"source":"app"}`));
    expect(bomb.length).toBeLessThan(1024);
    const big = await post('/v1/events', bomb, { ...auth, 'content-encoding': 'gzip' });
    expect(big.status).toBe(413);
    expect(big.body.error).toMatch(/once decompressed/);
    const broken = await post('/v1/events', Buffer.from('not gzip at all'), {
      ...auth,
      'content-encoding': 'gzip',
    });
    expect(broken.status).toBe(400);
    expect(broken.body.error).toMatch(/^the body is not valid gzip/);
    for (const coding of ['compress', 'zstd', 'gzip, br']) {
      const r = await post('/v1/events', ev('never'), { ...auth, 'content-encoding': coding });
      expect([coding, r.status]).toEqual([coding, 415]);
      expect(r.body.error).toMatch(/is not supported/);
    }
    // a webhook is verified on the bytes as sent: no coding
    const hook = await post('/v1/hooks/halo/halo2', gzipSync(halo('h-gz', 'x')), {
      ...haloAuth,
      'content-encoding': 'gzip',
    });
    expect(hook.status).toBe(415);
    expect(hook.body.error).toMatch(/uncompressed/);
    expect(await archived('never')).toBeUndefined();
  });

  it('ignores a UTF-8 byte order mark, on /v1/events and on webhooks', async () => {
    const one = await post('/v1/events', Buffer.concat([BOM, Buffer.from(ev('bom1'))]), auth);
    expect(one.status).toBe(202);
    const nd = await post('/v1/events', Buffer.concat([BOM, Buffer.from(`${ev('bom2')}\n${ev('bom3')}`)]), {
      ...auth,
      'content-type': 'application/x-ndjson',
    });
    expect(nd.body).toMatchObject({ accepted: 2 });
    expect(nd.body.errors).toBeUndefined();
    const hook = await post(
      '/v1/hooks/halo/halo2',
      Buffer.concat([BOM, Buffer.from(halo('h-bom', 'BOM'))]),
      haloAuth,
    );
    expect(hook.status).toBe(202);
    expect(await archived('bom2')).toMatchObject({ id: 'bom2' });
  });

  it('decodes the charset Content-Type names, and refuses one it has no decoder for', async () => {
    const latin1 = Buffer.from(ev('cs1', { name: 'Müller' }), 'latin1');
    expect(latin1.includes(0xfc)).toBe(true);
    const r = await post('/v1/events', latin1, {
      ...auth,
      'content-type': 'application/json; charset=ISO-8859-1',
    });
    expect(r.status).toBe(202);
    expect((await archived('cs1'))?.data).toEqual({ name: 'Müller' });
    const quoted = await post('/v1/events', Buffer.from(ev('cs2', { name: 'Ærø' }), 'utf8'), {
      ...auth,
      'content-type': 'application/json;charset="utf-8"',
    });
    expect(quoted.status).toBe(202);
    expect((await archived('cs2'))?.data).toEqual({ name: 'Ærø' });
    const hook = await post(
      '/v1/hooks/halo/halo2',
      Buffer.from(halo('h-cs', 'Drucker im 2. Stock – kaputt?'), 'utf16le'),
      {
        ...haloAuth,
        'content-type': 'application/json; charset=utf-16le',
      },
    );
    expect(hook.status).toBe(202);
    expect((await archived(hook.body.results?.[0]?.id ?? 'halo:h-cs'))?.data).toMatchObject({
      summary: 'Drucker im 2. Stock – kaputt?',
    });
    const unknown = await post('/v1/events', ev('cs3'), {
      ...auth,
      'content-type': 'application/json; charset=klingon',
    });
    expect(unknown.status).toBe(415);
    expect(unknown.body.error).toMatch(/charset "klingon" is not supported/);
    expect(await archived('cs3')).toBeUndefined();
  });

  it('refuses bytes that are not UTF-8 on /v1/events, with their offset: the body, or only their NDJSON line', async () => {
    const head = '{"id":"u1","source":"app","type":"thing.done","data":{"name":"M';
    const bad = Buffer.concat([Buffer.from(head), Buffer.from([0xfc]), Buffer.from('ller"}}')]);
    const one = await post('/v1/events', bad, auth);
    expect(one.status).toBe(400);
    expect(one.body.error).toBe(
      `not valid UTF-8 at byte ${head.length} of the body: send UTF-8, or name the charset in Content-Type`,
    );
    const nd = Buffer.concat([Buffer.from(`${ev('u2')}\n`), bad, Buffer.from(`\n${ev('u3')}\n`)]);
    const r = await post('/v1/events', nd, { ...auth, 'content-type': 'application/x-ndjson' });
    expect(r.status).toBe(202);
    expect(r.body).toMatchObject({
      accepted: 2,
      errors: [
        {
          index: 1,
          error: `not valid UTF-8 at byte ${head.length} of the line: send UTF-8, or name the charset in Content-Type`,
        },
      ],
    });
    expect(await archived('u1')).toBeUndefined();
    expect(await archived('u3')).toMatchObject({ id: 'u3' });
  });
});
