/**
 * PSA actions against fake ConnectWise, Autotask and HaloPSA APIs (fakes/psa.ts): auth flows,
 * token and zone caching, 401 → new token, 429 → the step waits (not an attempt), 5xx retried,
 * and a Halo budget held across two worker processes sharing Redis.
 */
import type { ChildProcess } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PsaAccess } from '../../src/workers/psa-access.js';
import { AT, CW, FakePsa, HALO } from './fakes/psa.js';
import { event, type Harness, harness } from './harness.js';

let psa: FakePsa;
let h: Harness;

beforeAll(async () => {
  psa = await new FakePsa().start();
  h = await harness('psa');
  const put = (
    id: string,
    kind: 'connectwise' | 'autotask' | 'halo',
    settings: Record<string, unknown>,
    secret: Record<string, string>,
  ) => h.connections.put('acme', { id, kind, settings, secret }, 'test');
  await put(
    'cw',
    'connectwise',
    { apiUrl: `${psa.url}/cw/v4_6_release/apis/3.0`, companyId: CW.company, clientId: CW.clientId },
    {
      publicKey: CW.publicKey,
      privateKey: CW.privateKey,
    },
  );
  await put(
    'at',
    'autotask',
    { username: AT.username, zoneLookupUrl: `${psa.url}/at/zoneInformation` },
    {
      secret: AT.secret,
      integrationCode: AT.integrationCode,
    },
  );
  await put(
    'halo',
    'halo',
    {
      apiUrl: `${psa.url}/halo/api`,
      authUrl: `${psa.url}/halo/auth`,
      tenant: HALO.tenant,
      clientId: HALO.clientId,
    },
    {
      clientSecret: HALO.clientSecret,
    },
  );
  await put(
    'halo-small',
    'halo',
    {
      apiUrl: `${psa.url}/halo/api`,
      authUrl: `${psa.url}/halo/auth`,
      tenant: HALO.tenant,
      clientId: HALO.clientId,
      rateLimit: { max: 5, windowMs: 2000 },
    },
    { clientSecret: HALO.clientSecret },
  );
  await put(
    'halo-bad',
    'halo',
    {
      apiUrl: `${psa.url}/halo/api`,
      authUrl: `${psa.url}/halo/auth`,
      tenant: HALO.tenant,
      clientId: HALO.clientId,
    },
    {
      clientSecret: 'wrong',
    },
  );
  await h.start();
});
afterAll(async () => {
  await h?.close();
  await psa?.close();
});

const ticketFlow = (conn: string) => [
  {
    id: 't',
    type: 'psa.ticket.create',
    connection: conn,
    with: { summary: '{{ ticket.summary }}', priority: 1 },
  },
  {
    type: 'psa.ticket.update',
    connection: conn,
    with: { id: '{{ steps.t.output.id }}', status: 'In Progress' },
  },
  {
    type: 'psa.note.add',
    connection: conn,
    with: { ticket_id: '{{ steps.t.output.id }}', text: 'Opened by Signalbox' },
  },
];

describe('the three PSAs', () => {
  it('ConnectWise: Basic company+public:private and clientId; JSON Patch updates', async () => {
    await h.rule({ id: 'cw-flow', actions: ticketFlow('cw') });
    const id = await h.enqueue('cw-flow', event('cw1'));
    expect((await h.waitRun(id)).status).toBe('completed');
    const calls = psa.calls.filter((c) => c.psa === 'connectwise');
    expect(calls.map((c) => `${c.method} ${c.path.replace(/\d+/g, 'N')}`)).toEqual([
      'POST /cw/vN_N_release/apis/N.N/service/tickets',
      'PATCH /cw/vN_N_release/apis/N.N/service/tickets/N',
      'POST /cw/vN_N_release/apis/N.N/service/tickets/N/notes',
    ]);
    expect(calls[1]!.body).toEqual([{ op: 'replace', path: 'status', value: 'In Progress' }]);
    expect(calls.map((c) => c.idempotencyKey)).toEqual([`${id}:0`, `${id}:1`, `${id}:2`]);
    const steps = await h.steps(id);
    expect((steps[0]!.output as { id: number }).id).toBeGreaterThanOrEqual(1000);
  });

  it('Autotask: the zone is looked up once and cached; the three headers are sent', async () => {
    await h.rule({ id: 'at-flow', actions: ticketFlow('at') });
    const a = await h.enqueue('at-flow', event('at1'));
    const b = await h.enqueue('at-flow', event('at2', { id: 7 }));
    expect((await h.waitRun(a)).status).toBe('completed');
    expect((await h.waitRun(b)).status).toBe('completed');
    expect(psa.zoneLookups).toBe(1);
    const calls = psa.calls.filter((c) => c.psa === 'autotask');
    expect(calls).toHaveLength(6);
    expect(calls.find((c) => c.method === 'PATCH')!.body).toMatchObject({ status: 'In Progress' });
  });

  it('Halo: one token for many calls; a revoked token is replaced after the 401', async () => {
    await h.rule({ id: 'halo-flow', actions: ticketFlow('halo') });
    const before = psa.tokenRequests.length;
    const a = await h.enqueue('halo-flow', event('h1'));
    expect((await h.waitRun(a)).status).toBe('completed');
    expect(psa.tokenRequests.length - before).toBe(1);
    psa.revokeTokens();
    const b = await h.enqueue('halo-flow', event('h2'));
    expect((await h.waitRun(b)).status).toBe('completed');
    expect(psa.tokenRequests.length - before).toBe(2);
    const notes = psa.calls.filter((c) => c.psa === 'halo' && c.path === '/halo/api/Actions');
    expect(notes.at(-1)!.body).toEqual([
      { ticket_id: expect.any(Number), note: 'Opened by Signalbox', outcome: 'Note', hiddenfromuser: false },
    ]);
  });

  it('wrong credentials fail the step at once (no retries)', async () => {
    await h.rule({
      id: 'halo-bad',
      onError: 'retry',
      actions: [{ type: 'psa.ticket.create', connection: 'halo-bad', with: { summary: 'x' } }],
    });
    const id = await h.enqueue('halo-bad', event('hb'));
    await h.waitRun(id);
    expect((await h.steps(id)).map((s) => [s.status, s.attempts, s.error?.code])).toEqual([
      ['failed', 1, 'HTTP_401'],
    ]);
  });

  it('429 with Retry-After: the step waits without failing or counting an attempt', async () => {
    psa.failNext.set('/service/tickets', [{ status: 429, retryAfter: '1' }]);
    await h.rule({
      id: 'cw-429',
      actions: [{ type: 'psa.ticket.create', connection: 'cw', with: { summary: 'x' } }],
    });
    const started = Date.now();
    const id = await h.enqueue('cw-429', event('c429'));
    expect((await h.waitRun(id)).status).toBe('completed');
    expect(Date.now() - started).toBeGreaterThanOrEqual(900);
    expect((await h.steps(id)).map((s) => [s.status, s.attempts])).toEqual([['completed', 1]]);
  });

  it('5xx is retried under onError retry', async () => {
    psa.failNext.set('/V1.0/Tickets', [{ status: 503 }, { status: 500 }]);
    await h.rule({
      id: 'at-5xx',
      onError: 'retry',
      actions: [{ type: 'psa.ticket.create', connection: 'at', with: { title: 'x' } }],
    });
    const id = await h.enqueue('at-5xx', event('a5'));
    expect((await h.waitRun(id)).status).toBe('completed');
    expect((await h.steps(id)).map((s) => s.attempts)).toEqual([3]);
  });
});

describe('connection checks (the admin CheckConnection)', () => {
  it('each PSA answers a cheap authenticated read; wrong credentials say so', async () => {
    const access = new PsaAccess(h.redis, h.prefix, h.connections, async () => true);
    const check = (t: string, id: string) => access.check(t, id);
    for (const id of ['cw', 'at', 'halo']) {
      const r = await check('acme', id);
      expect([id, r?.ok, r?.detail]).toEqual([id, true, expect.stringMatching(/answered GET \//)]);
    }
    const bad = await check('acme', 'halo-bad');
    expect(bad?.ok).toBe(false);
    expect(bad?.detail).toMatch(/401|refused|client id and secret/);
    // Loopback is refused unless the tenant allows private networks (the SSRF guard applies).
    const strict = new PsaAccess(h.redis, h.prefix, h.connections, async () => false);
    const guarded = (t: string, id: string) => strict.check(t, id);
    const refused = await guarded('acme', 'cw');
    expect(refused?.ok).toBe(false);
    expect(refused?.detail).toMatch(/private|loopback|not allowed|refus/i);
    // Not a PSA: nothing to check.
    await h.connections.put('acme', { id: 'hook', kind: 'webhook', settings: {} }, 'test');
    expect(await check('acme', 'hook')).toBeUndefined();
  });
});

describe('budgets shared across processes', () => {
  let children: ChildProcess[] = [];
  afterAll(() => {
    for (const c of children) c.kill('SIGKILL');
  });

  it('two worker processes never exceed a Halo connection budget together', async () => {
    await h.worker!.close();
    h.worker = undefined;
    children = [await h.spawn(), await h.spawn()];
    await h.rule({
      id: 'halo-burst',
      actions: [
        { type: 'psa.ticket.create', connection: 'halo-small', with: { summary: '{{ ticket.id }}' } },
      ],
    });
    const ids: string[] = [];
    for (let i = 0; i < 15; i++) ids.push(await h.enqueue('halo-burst', event(`burst-${i}`, { id: i })));
    const runs: Array<{ status: string }> = [];
    for (const id of ids) runs.push(await h.waitRun(id, undefined, 40_000));
    expect(runs.every((r) => r.status === 'completed')).toBe(true);
    const times = psa.calls
      .filter((c) => c.psa === 'halo' && (c.body as Array<{ summary?: unknown }>)[0]?.summary !== undefined)
      .map((c) => c.at);
    const burst = times.slice(-15).sort((x, y) => x - y);
    expect(burst).toHaveLength(15);
    // In any 2 s window, at most 5 requests (the fake's clock and ours differ by scheduling only).
    let worst = 0;
    for (let i = 0; i < burst.length; i++)
      worst = Math.max(worst, burst.filter((t) => t >= burst[i]! && t < burst[i]! + 1950).length);
    expect(worst).toBeLessThanOrEqual(5);
    expect(burst.at(-1)! - burst[0]!).toBeGreaterThanOrEqual(4000);
    expect((await h.steps(ids[14]!))[0]!.attempts).toBe(1);
  });
});
