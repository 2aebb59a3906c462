/**
 * The PSA adapters on the PSA fixtures (examples/psa: copies of the shared fixtures, byte for byte as the PSAs send them, with their
 * signatures): verification on the raw bytes, and the envelopes sources.md specifies.
 */
import { createHash, createHmac } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkEnvelope } from '../../src/engine/index.js';
import { autotask } from '../../src/ingest/adapters/autotask.js';
import { connectwise } from '../../src/ingest/adapters/connectwise.js';
import { halo } from '../../src/ingest/adapters/halo.js';
import {
  type AdaptedEvent,
  AdapterError,
  type Connection,
  type HookRequest,
} from '../../src/ingest/connection.js';
import { KeyFetcher } from '../../src/ingest/keys.js';

const FIXTURES = new URL('../../examples/psa/', import.meta.url);
const fixture = (name: string) => readFileSync(new URL(name, FIXTURES));
const RECEIVED = Date.parse('2026-06-10T00:00:00Z');

function req(
  body: Buffer | string,
  headers: Record<string, string> = {},
  rest = '',
  query = '',
): HookRequest {
  return {
    body: Buffer.isBuffer(body) ? body : Buffer.from(body),
    headers,
    rest,
    query,
    receivedAt: RECEIVED,
  };
}

const cwSign = (key: string, body: Buffer | string) =>
  createHmac('sha256', createHash('sha256').update(key).digest()).update(body).digest('base64');
const atSign = (secret: string, body: Buffer | string) =>
  `sha1=${createHmac('sha1', secret).update(body).digest('base64')}`;

async function status(p: Promise<unknown> | (() => unknown)): Promise<number | string> {
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (e) {
    return e instanceof AdapterError ? e.status : String(e);
  }
  return 'ok';
}

function valid(events: AdaptedEvent[]): void {
  for (const e of events) expect(checkEnvelope(e.envelope)).toMatchObject({ ok: true });
}

describe('ConnectWise', () => {
  const conn: Connection = {
    tenant: 'acme',
    id: 'cw-main',
    source: 'connectwise',
    connectwise: { signingKey: 'test-signing-key' },
    selfActors: ['signalbox-api'],
  };
  const keys = new KeyFetcher();

  it('verifies the fixture signatures and makes the envelopes', async () => {
    const body = fixture('connectwise.ticket.created.json');
    const [e] = await connectwise(
      conn,
      req(body, { 'x-content-signature': '86oTs+FzhRHo8YZd9uSkz03rwrtxGXbpBSzyjGgkuqE=' }),
      keys,
    );
    expect(e).toMatchObject({
      envelope: {
        id: 'connectwise:5b0c1f0e-7a1d-4c8b-9a43-2f6b8d0e9c11',
        tenant: 'acme',
        source: 'connectwise',
        type: 'ticket.created',
        time: '2026-06-09T21:58:02.000Z',
        data: {
          id: 48213,
          status: { id: 16, name: 'New' },
          company: { identifier: 'ContosoLtd' },
          recordType: 'ServiceTicket',
        },
        self: false,
      },
      entity: 'ticket',
      entityId: '48213',
      merge: 'replace',
      actor: 'jdoe',
    });
    const upd = fixture('connectwise.ticket.updated.json');
    const [u] = await connectwise(
      conn,
      req(upd, { 'x-content-signature': '5DRPR5A+QFSCwZHtOLGUG9TxVzwHrBVXfg1snExfOtM=' }),
      keys,
    );
    expect(u).toMatchObject({
      envelope: {
        type: 'ticket.updated',
        time: '2026-06-09T22:14:37.000Z',
        data: { status: { id: 20, name: 'Waiting Customer' } },
      },
      actor: 'asmith',
    });
    valid([e!, u!]);
  });

  it('refuses a wrong, missing or stale signature (401)', async () => {
    const body = fixture('connectwise.ticket.created.json');
    const good = '86oTs+FzhRHo8YZd9uSkz03rwrtxGXbpBSzyjGgkuqE=';
    expect(await status(connectwise(conn, req(body, {}), keys))).toBe(401);
    expect(
      await status(connectwise(conn, req(body, { 'x-content-signature': cwSign('wrong-key', body) }), keys)),
    ).toBe(401);
    const tampered = Buffer.from(body.toString().replace('Printer offline', 'Printer offlinE'));
    expect(await status(connectwise(conn, req(tampered, { 'x-content-signature': good }), keys))).toBe(401);
    // Re-serialised JSON (same content, other bytes) does not verify: only the raw bytes count.
    const reserialised = Buffer.from(JSON.stringify(JSON.parse(body.toString()), null, 1));
    expect(await status(connectwise(conn, req(reserialised, { 'x-content-signature': good }), keys))).toBe(
      401,
    );
  });

  it('matches body keys case-insensitively', async () => {
    const lower = JSON.stringify(
      Object.fromEntries(
        Object.entries(JSON.parse(fixture('connectwise.ticket.created.json').toString())).map(([k, v]) => [
          k.toLowerCase(),
          v,
        ]),
      ),
    );
    const [e] = await connectwise(
      conn,
      req(lower, { 'x-content-signature': cwSign('test-signing-key', lower) }),
      keys,
    );
    expect(e!.envelope.type).toBe('ticket.created');
  });

  it('marks events by Signalbox’s own member as self, and handles deletes without an entity', async () => {
    const body = JSON.stringify({
      Action: 'deleted',
      Type: 'ticket',
      ID: 7,
      MemberId: 'signalbox-api',
      Entity: null,
    });
    const [e] = await connectwise(
      conn,
      req(body, { 'x-content-signature': cwSign('test-signing-key', body) }),
      keys,
    );
    expect(e).toMatchObject({
      envelope: {
        id: 'connectwise:ticket:7:',
        type: 'ticket.deleted',
        data: { id: 7 },
        self: true,
        time: new Date(RECEIVED).toISOString(),
      },
      merge: 'delete',
    });
    valid([e!]);
  });

  it('answers malformed callbacks with 400 or 422', async () => {
    const sign = (b: string) => ({ 'x-content-signature': cwSign('test-signing-key', b) });
    expect(await status(connectwise(conn, req('{not json', sign('{not json')), keys))).toBe(400);
    for (const b of [
      '{"Action":"frobbed","Type":"ticket","ID":1,"Entity":"{}"}',
      '{"Action":"added","ID":1,"Entity":"{}"}',
      '{"Action":"added","Type":"ticket","ID":1,"Entity":"{bad"}',
      '{"Action":"added","Type":"ticket","ID":1}',
    ]) {
      expect(await status(connectwise(conn, req(b, sign(b)), keys)), b).toBe(422);
    }
  });

  describe('signing keys from key_url', () => {
    let server: Server;
    let origin: string;
    const hits: string[] = [];
    let endlessSent = 0;
    let endlessClosed = false;
    beforeAll(async () => {
      server = createServer((rq, rs) => {
        hits.push(rq.url!);
        if (rq.url!.startsWith('/redirect')) {
          rs.writeHead(302, { location: 'http://169.254.169.254/latest/meta-data/' }).end();
        } else if (rq.url!.startsWith('/slow')) {
          // A small answer that trickles past the fetcher's timeout.
          rs.writeHead(200, { 'content-type': 'application/json' });
          rs.write('{"signing_key":');
          setTimeout(() => rs.end('"fetched-key"}'), 1_000);
        } else if (rq.url!.startsWith('/endless')) {
          // An answer that never ends: the fetcher must stop reading at its cap.
          rs.writeHead(200, { 'content-type': 'application/json' });
          const chunk = Buffer.alloc(64 * 1024, 0x20);
          const more = () => {
            while (!rs.destroyed && rs.write(chunk)) endlessSent += chunk.length;
            if (!rs.destroyed) rs.once('drain', more);
          };
          rs.on('close', () => (endlessClosed = true));
          more();
        } else {
          rs.writeHead(200, { 'content-type': 'application/json' }).end(
            JSON.stringify({ signing_key: 'fetched-key' }),
          );
        }
      });
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    });
    afterAll(() => new Promise<void>((r) => server.close(() => r())));

    const withKeyUrl = (keyUrl: string) =>
      JSON.stringify({
        ...JSON.parse(fixture('connectwise.ticket.created.json').toString()),
        Metadata: { key_url: keyUrl },
      });

    it('fetches the key from the connection’s configured origin and caches it', async () => {
      const c: Connection = { ...conn, connectwise: { keyOrigin: origin } };
      const fetcher = new KeyFetcher();
      const body = withKeyUrl(`${origin}/key?id=1`);
      for (let i = 0; i < 3; i++) {
        const [e] = await connectwise(
          c,
          req(body, { 'x-content-signature': cwSign('fetched-key', body) }),
          fetcher,
        );
        expect(e!.envelope.type).toBe('ticket.created');
      }
      expect(hits.filter((h) => h === '/key?id=1')).toHaveLength(1);
    });

    it('refuses a key_url outside the allow-list without fetching it (SSRF)', async () => {
      const before = hits.length;
      for (const url of [
        `${origin}/key`,
        'http://169.254.169.254/latest/meta-data/',
        'https://evil.example/key',
        'https://api-na.myconnectwise.net.evil.example/key',
        'file:///etc/passwd',
        'https://user:pw@api-na.myconnectwise.net/key',
      ]) {
        const body = withKeyUrl(url);
        const s = await status(
          connectwise(
            { ...conn, connectwise: {} },
            req(body, { 'x-content-signature': cwSign('fetched-key', body) }),
            new KeyFetcher(),
          ),
        );
        expect(s, url).toBe(401);
      }
      expect(hits.length).toBe(before);
      expect(KeyFetcher.allowed('https://api-eu.myconnectwise.net/v4_6_release/key')).toBe(true);
      expect(KeyFetcher.allowed('https://sandbox-au.myconnectwise.net/x')).toBe(true);
      expect(KeyFetcher.allowed('http://api-na.myconnectwise.net/x')).toBe(false);
      // A stored keyOrigin that is not a URL allows nothing extra (it used to throw on every webhook).
      expect(KeyFetcher.allowed('https://cw.example.com/key', 'cw.example.com')).toBe(false);
      expect(KeyFetcher.allowed('https://api-eu.myconnectwise.net/key', 'not a url')).toBe(true);
    });

    /** The answer to a callback whose key_url is `path` on the connection's configured origin. */
    const statusWithKeyAt = (path: string, fetcher = new KeyFetcher()) => {
      const c: Connection = { ...conn, connectwise: { keyOrigin: origin } };
      const body = withKeyUrl(`${origin}${path}`);
      return status(
        connectwise(c, req(body, { 'x-content-signature': cwSign('fetched-key', body) }), fetcher),
      );
    };

    it('stops reading a key_url answer past 16 KB and drops the connection', async () => {
      expect(await statusWithKeyAt('/endless')).toBe(401);
      for (let i = 0; i < 100 && !endlessClosed; i++) await new Promise((r) => setTimeout(r, 10));
      expect(endlessClosed).toBe(true);
      expect(endlessSent).toBeLessThan(16 * 1024 * 1024);
    });

    it('refuses (401) a key_url answer that does not finish within the timeout', async () => {
      expect(await statusWithKeyAt('/slow', new KeyFetcher({ timeoutMs: 200 }))).toBe(401);
    });

    it('does not follow redirects from the key URL', async () => {
      expect(await statusWithKeyAt('/redirect')).toBe(401);
      expect(hits).toContain('/redirect');
    });
  });
});

describe('Autotask', () => {
  const conn: Connection = {
    tenant: 'acme',
    id: 'at-main',
    source: 'autotask',
    autotask: { secret: 'test-webhook-secret' },
    selfActors: ['30691785'],
  };

  it('verifies the fixture signatures and makes the envelopes', () => {
    const [c] = autotask(
      conn,
      req(fixture('autotask.ticket.created.json'), {
        'x-hook-signature': 'sha1=GNVxsB2wTl/TbVhw1v9UdiESMm4=',
      }),
    );
    expect(c).toMatchObject({
      envelope: {
        id: 'autotask:a1da62a4-2c49-40a8-8183-69994ce5b3eb:1',
        type: 'ticket.created',
        time: '2026-06-09T21:58:02.000Z',
        data: {
          id: 351181,
          ticketNumber: 'T20260609.0042',
          title: 'Printer offline - 2nd floor',
          status: '1',
          priority: '2',
          companyID: '29683516',
          queueID: '29682833',
        },
        self: false,
      },
      entity: 'ticket',
      entityId: '351181',
      merge: 'replace',
      actor: '30691780',
    });
    const [u] = autotask(
      conn,
      req(fixture('autotask.ticket.updated.json'), {
        'x-hook-signature': 'sha1=5tlvfR4R/O4ffPO+ZmJ4WfcPbsY=',
      }),
    );
    expect(u).toMatchObject({
      envelope: {
        id: 'autotask:a1da62a4-2c49-40a8-8183-69994ce5b3eb:2',
        type: 'ticket.updated',
        data: { id: 351181, status: '5', ticketNumber: 'T20260609.0042' },
        self: true,
      },
      merge: 'patch',
    });
    expect(Object.keys(u!.envelope.data).sort()).toEqual(['id', 'status', 'ticketNumber']);
    valid([c!, u!]);
  });

  it("reads an EventTime without a zone as UTC, whatever the server's time zone", () => {
    const tz = process.env.TZ;
    process.env.TZ = 'America/New_York';
    try {
      const body = fixture('autotask.ticket.updated.json')
        .toString()
        .replace('"2026-06-09T22:14:37Z"', '"2026-06-09T22:14:37"');
      const [u] = autotask(conn, req(body, { 'x-hook-signature': atSign('test-webhook-secret', body) }));
      expect(u!.envelope.time).toBe('2026-06-09T22:14:37.000Z');
    } finally {
      if (tz === undefined) delete process.env.TZ;
      else process.env.TZ = tz;
    }
  });

  it('refuses wrong or missing signatures (401)', async () => {
    const body = fixture('autotask.ticket.created.json');
    expect(await status(() => autotask(conn, req(body, {})))).toBe(401);
    expect(await status(() => autotask(conn, req(body, { 'x-hook-signature': atSign('other', body) })))).toBe(
      401,
    );
    expect(
      await status(() => autotask(conn, req(body, { 'x-hook-signature': 'GNVxsB2wTl/TbVhw1v9UdiESMm4=' }))),
    ).toBe(401);
  });

  it('verifies .NET-escaped bytes as received, accepts PersonId, and maps entity names', () => {
    const body =
      '{"Action":"Create","Guid":"g-1","EntityType":"Account","Id":5,"Fields":{"CompanyName":"A \\u0026 B"},"EventTime":"2026-06-09T21:58:02Z","SequenceNumber":3,"PersonId":42}';
    const [e] = autotask(conn, req(body, { 'x-hook-signature': atSign('test-webhook-secret', body) }));
    expect(e).toMatchObject({
      envelope: { type: 'company.created', data: { companyName: 'A & B', id: 5 } },
      actor: '42',
    });
    const ci = body.replace('Account', 'InstalledProduct');
    expect(
      autotask(conn, req(ci, { 'x-hook-signature': atSign('test-webhook-secret', ci) }))[0]!.envelope.type,
    ).toBe('configuration_item.created');
  });

  it('honours Deactivated only with a valid signature', async () => {
    const body = '{"Action":"Deactivated","Guid":"g-9","EntityType":"Ticket","SequenceNumber":7}';
    expect(await status(() => autotask(conn, req(body, { 'x-hook-signature': atSign('nope', body) })))).toBe(
      401,
    );
    const [e] = autotask(conn, req(body, { 'x-hook-signature': atSign('test-webhook-secret', body) }));
    expect(e!.envelope).toMatchObject({ type: 'webhook.deactivated', id: 'autotask:g-9:7' });
    valid([e!]);
  });
});

describe('HaloPSA', () => {
  const auth = { authorization: 'Basic aGFsby13ZWJob29rOnRlc3QtYmFzaWMtcGFzc3dvcmQ=' };
  const conn: Connection = {
    tenant: 'acme',
    id: 'halo-main',
    source: 'halo',
    halo: { username: 'halo-webhook', password: 'test-basic-password' },
    selfActors: ['99'],
  };

  it('checks Basic auth and makes the envelopes', () => {
    const { events, errors } = halo(conn, req(fixture('halo.ticket.created.json'), auth));
    expect(errors).toEqual([]);
    expect(events[0]).toMatchObject({
      envelope: {
        id: 'halo:3f1c3e9e-0c1d-4e34-9a55-6d2f2b7a9f10',
        type: 'ticket.created',
        time: '2026-06-09T21:58:03.123Z',
        data: { id: 4242, status_id: 1 },
        raw: { event: 'new ticket logged' },
      },
      entity: 'ticket',
      entityId: '4242',
      merge: 'replace',
      actor: '3',
    });
    const u = halo(conn, req(fixture('halo.ticket.updated.json'), auth)).events[0]!;
    expect(u.envelope).toMatchObject({
      type: 'ticket.updated',
      time: '2026-06-09T22:14:38.789Z',
      data: { status_id: 9, hasbeenclosed: true },
    });
    valid([events[0]!, u]);
  });

  it('refuses wrong credentials (401)', async () => {
    const body = fixture('halo.ticket.created.json');
    const headers: Array<Record<string, string>> = [
      {},
      { authorization: `Basic ${Buffer.from('halo-webhook:wrong').toString('base64')}` },
      { authorization: `Basic ${Buffer.from('other:test-basic-password').toString('base64')}` },
      { authorization: 'Bearer x' },
    ];
    for (const h of headers) {
      expect(await status(() => halo(conn, req(body, h)))).toBe(401);
    }
  });

  it('accepts a URL secret in the path or the query', async () => {
    const c: Connection = { ...conn, halo: { urlSecret: 's3cr3t-value' } };
    const body = fixture('halo.ticket.created.json');
    expect(halo(c, req(body, {}, '/s3cr3t-value')).events).toHaveLength(1);
    expect(halo(c, req(body, {}, '', 'secret=s3cr3t-value')).events).toHaveLength(1);
    expect(await status(() => halo(c, req(body, {}, '/guess')))).toBe(401);
  });

  it('takes batches, reporting bad items by index, and event-information-only payloads', () => {
    const created = JSON.parse(fixture('halo.ticket.created.json').toString());
    const infoOnly = {
      id: 'd-2',
      event: 'ticket updated',
      object_id: 4243,
      agent_id: 99,
      timestamp: '2026-06-09T22:00:00.0000000Z',
    };
    const body = JSON.stringify([created, 'junk', infoOnly, { event: 'x' }]);
    const { events, errors } = halo(conn, req(body, auth));
    expect(events.map((e) => e.envelope.id)).toEqual([
      'halo:3f1c3e9e-0c1d-4e34-9a55-6d2f2b7a9f10',
      'halo:d-2',
    ]);
    expect(events[1]).toMatchObject({
      envelope: { type: 'ticket.updated', data: { id: 4243 }, self: true }, // the entity named by the event
      merge: 'none',
      entityId: '4243',
    });
    expect(errors.map((e) => e.index)).toEqual([1, 3]);
    valid(events);
  });
});
