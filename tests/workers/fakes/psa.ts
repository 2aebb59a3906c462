/**
 * Fake ConnectWise, Autotask and HaloPSA APIs, built to what sources.md and the vendors document:
 * their auth (Basic company+public:private with a clientId header; the three Autotask headers after
 * an unauthenticated zone lookup; Halo OAuth2 client credentials with expiring bearer tokens),
 * their answers (401 on bad auth, 429 with Retry-After past a limit, scripted 5xx), Halo's rolling
 * request limit and Autotask's 3 concurrent requests per endpoint. Everything is recorded.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface ApiCall {
  readonly psa: 'connectwise' | 'autotask' | 'halo';
  readonly method: string;
  readonly path: string;
  readonly body: unknown;
  readonly at: number;
  readonly idempotencyKey: string | undefined;
}

export const CW = { company: 'msp', publicKey: 'pub', privateKey: 'priv', clientId: 'client-1' };
export const AT = { username: 'api@msp.example', secret: 'at-secret', integrationCode: 'INTCODE' };
export const HALO = { clientId: 'halo-client', clientSecret: 'halo-secret', tenant: 'msp' };

export class FakePsa {
  readonly calls: ApiCall[] = [];
  readonly tokenRequests: number[] = [];
  zoneLookups = 0;
  url = '';
  /** Halo: requests allowed per rolling window (sources.md: 300 per 5 minutes). */
  haloLimit = { max: 300, windowMs: 300_000 };
  haloOver = 0;
  /** Autotask: the most concurrent requests seen on one endpoint, and how many were over 3. */
  atMaxConcurrent = 0;
  atOver = 0;
  /** Latency added to Autotask calls, to make concurrency visible. */
  atLatencyMs = 0;
  /** Scripted answers for the next calls to a path suffix (status, Retry-After). */
  readonly failNext = new Map<string, Array<{ status: number; retryAfter?: string }>>();
  private tokens = new Set<string>();
  private nextId = 1000;
  private atInFlight = new Map<string, number>();
  private server: Server | undefined;

  async start(): Promise<this> {
    this.server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => void this.handle(req, res, Buffer.concat(chunks).toString('utf8')));
    });
    await new Promise<void>((r) => this.server!.listen(0, '127.0.0.1', r));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this;
  }

  /** Every issued Halo token stops working (as when an admin revokes the application's tokens). */
  revokeTokens(): void {
    this.tokens.clear();
  }

  async close(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise((r) => this.server?.close(r));
  }

  private json(
    res: ServerResponse,
    status: number,
    body: unknown,
    headers: Record<string, string> = {},
  ): void {
    res.writeHead(status, { 'content-type': 'application/json', ...headers });
    res.end(JSON.stringify(body));
  }

  private scripted(path: string, res: ServerResponse): boolean {
    for (const [suffix, list] of this.failNext) {
      if (path.endsWith(suffix) && list.length > 0) {
        const f = list.shift()!;
        this.json(res, f.status, { error: 'scripted' }, f.retryAfter ? { 'retry-after': f.retryAfter } : {});
        return true;
      }
    }
    return false;
  }

  private async handle(req: IncomingMessage, res: ServerResponse, text: string): Promise<void> {
    const u = new URL(req.url ?? '/', this.url);
    const path = u.pathname;
    const h = req.headers;
    let body: unknown = null;
    try {
      body = text && (h['content-type'] ?? '').includes('json') ? JSON.parse(text) : text;
    } catch {
      return this.json(res, 400, { error: 'bad json' });
    }
    const record = (psa: ApiCall['psa']) =>
      this.calls.push({
        psa,
        method: req.method ?? '',
        path,
        body,
        at: Date.now(),
        idempotencyKey: h['idempotency-key'] as string | undefined,
      });

    // ConnectWise: /cw/v4_6_release/apis/3.0/…
    if (path.startsWith('/cw/')) {
      const want = `Basic ${Buffer.from(`${CW.company}+${CW.publicKey}:${CW.privateKey}`).toString('base64')}`;
      if (h.authorization !== want || h.clientid !== CW.clientId)
        return this.json(res, 401, { code: 'Unauthorized' });
      record('connectwise');
      if (this.scripted(path, res)) return;
      const rest = path.slice('/cw/v4_6_release/apis/3.0'.length);
      if (req.method === 'POST' && rest === '/service/tickets')
        return this.json(res, 201, { id: this.nextId++, ...(body as object) });
      const m = /^\/service\/tickets\/(\d+)(\/notes)?$/.exec(rest);
      if (m && req.method === 'PATCH' && !m[2]) {
        if (!Array.isArray(body))
          return this.json(res, 400, { code: 'InvalidObject', message: 'JSON Patch expected' });
        return this.json(res, 200, { id: Number(m[1]) });
      }
      if (m && req.method === 'POST' && m[2])
        return this.json(res, 201, { id: this.nextId++, ticketId: Number(m[1]) });
      if (rest === '/system/info' && req.method === 'GET')
        return this.json(res, 200, { version: 'v2026.1', isCloud: true, serverTimeZone: 'UTC' });
      return this.json(res, 404, { code: 'NotFound' });
    }

    // Autotask: the zone lookup is unauthenticated; the zone's API needs the three headers.
    if (path === '/at/zoneInformation') {
      this.zoneLookups++;
      if (u.searchParams.get('user') !== AT.username)
        return this.json(res, 404, { errors: ['Zone information could not be determined'] });
      return this.json(res, 200, {
        zoneName: 'Pre-release',
        url: `${this.url}/at/zone5/`,
        webUrl: '',
        ci: 5,
      });
    }
    if (path.startsWith('/at/zone5/')) {
      if (h.apiintegrationcode !== AT.integrationCode || h.username !== AT.username || h.secret !== AT.secret)
        return this.json(res, 401, { errors: ['Unauthorized'] });
      const endpoint = path.split('/')[4] ?? '';
      const n = (this.atInFlight.get(endpoint) ?? 0) + 1;
      this.atInFlight.set(endpoint, n);
      this.atMaxConcurrent = Math.max(this.atMaxConcurrent, n);
      try {
        if (n > 3) {
          this.atOver++;
          return this.json(res, 429, { errors: ['too many concurrent requests'] }, { 'retry-after': '1' });
        }
        record('autotask');
        if (this.atLatencyMs) await new Promise((r) => setTimeout(r, this.atLatencyMs));
        if (this.scripted(path, res)) return;
        if (path === '/at/zone5/V1.0/Tickets' && req.method === 'POST')
          return this.json(res, 200, { itemId: this.nextId++ });
        if (path === '/at/zone5/V1.0/Tickets' && req.method === 'PATCH')
          return this.json(res, 200, { itemId: (body as { id: number }).id });
        if (/^\/at\/zone5\/V1\.0\/Tickets\/\d+\/Notes$/.test(path))
          return this.json(res, 200, { itemId: this.nextId++ });
        if (path === '/at/zone5/V1.0/Companies/entityInformation' && req.method === 'GET')
          return this.json(res, 200, { info: { name: 'Company', canCreate: true, canQuery: true } });
        return this.json(res, 404, { errors: ['not found'] });
      } finally {
        this.atInFlight.set(endpoint, (this.atInFlight.get(endpoint) ?? 1) - 1);
      }
    }

    // Halo: POST /halo/auth/token?tenant=…, then bearer tokens on /halo/api/…
    if (path === '/halo/auth/token' && req.method === 'POST') {
      this.tokenRequests.push(Date.now());
      const f = new URLSearchParams(text);
      if (
        u.searchParams.get('tenant') !== HALO.tenant ||
        f.get('grant_type') !== 'client_credentials' ||
        f.get('client_id') !== HALO.clientId ||
        f.get('client_secret') !== HALO.clientSecret
      )
        return this.json(res, 401, { error: 'invalid_client' });
      const token = `tok-${this.tokenRequests.length}-${Math.random().toString(36).slice(2)}`;
      this.tokens.add(token);
      return this.json(res, 200, {
        access_token: token,
        token_type: 'Bearer',
        expires_in: 3600,
        scope: f.get('scope'),
      });
    }
    if (path.startsWith('/halo/api/')) {
      const tok = (h.authorization ?? '').replace(/^Bearer /, '');
      if (!this.tokens.has(tok)) return this.json(res, 401, { error: 'invalid_token' });
      const now = Date.now();
      const recent = this.calls.filter(
        (c) => c.psa === 'halo' && c.at > now - this.haloLimit.windowMs,
      ).length;
      if (recent >= this.haloLimit.max) {
        this.haloOver++;
        return this.json(res, 429, { error: 'rate limited' }, { 'retry-after': '2' });
      }
      record('halo');
      if (this.scripted(path, res)) return;
      if (path === '/halo/api/Agent/me' && req.method === 'GET')
        return this.json(res, 200, { id: 27, name: 'Signalbox API' });
      if (path === '/halo/api/Tickets' && req.method === 'POST') {
        const t = (body as Array<Record<string, unknown>>)[0]!;
        return this.json(res, 201, { ...t, id: t.id ?? this.nextId++ });
      }
      if (path === '/halo/api/Actions' && req.method === 'POST')
        return this.json(res, 201, { id: this.nextId++, ...(body as object[])[0] });
      const ticket = /^\/halo\/api\/Tickets\/(\d+)$/.exec(path);
      if (ticket && req.method === 'GET') {
        const id = Number(ticket[1]);
        if (id >= 900_000) return this.json(res, 404, { error: 'not found' });
        if (id >= 800_000) {
          // A record nested deeper than an event may be (the ingest does not take it).
          let deep: unknown = 'x';
          for (let i = 0; i < 100; i++) deep = { a: deep };
          return this.json(res, 200, { id, summary: 'Nested too deep', deep });
        }
        return this.json(res, 200, {
          id,
          summary: 'Fetched from the Halo API',
          status_id: 21,
          priority_id: 1,
          client_name: 'Contoso Ltd',
        });
      }
      return this.json(res, 404, { error: 'not found' });
    }
    this.json(res, 404, { error: 'no such API' });
  }
}
