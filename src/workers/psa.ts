/**
 * PSA API clients for the `psa.*` actions (sources.md, last table): ConnectWise (Basic
 * companyId+publicKey:privateKey and a clientId header), Autotask (three headers, the zone URL
 * looked up once and cached), HaloPSA (OAuth2 client credentials, the token cached until shortly
 * before it expires and fetched again after a 401). Every call takes from the connection's shared
 * budget (budget.ts); a 429 cools the connection down and the step waits instead of failing.
 */
import type { ConnectionInfo } from '../store/index.js';
import type { Budgets, Window } from './budget.js';
import type { ActionContext, Connections } from './context.js';
import { ActionError, WaitError } from './errors.js';
import { checkStatus, type HttpResponse, retryAfterMs, send } from './http.js';

export type PsaOp = 'ticket.create' | 'ticket.update' | 'note.add' | 'request';

/** Default budgets per connection (sources.md); a connection's settings.rateLimit overrides them. */
const DEFAULT_WINDOWS: Record<string, Window | undefined> = {
  halo: { max: 300, windowMs: 5 * 60_000 },
  autotask: { max: 10_000, windowMs: 3600_000 },
  connectwise: undefined,
};
const AUTOTASK_CONCURRENCY = 3;
const AUTOTASK_ZONE_LOOKUP = 'https://webservices.autotask.net/atservicesrest/v1.0/zoneInformation';
/** How long a connection rests after a 429 without Retry-After (ConnectWise publishes no limit). */
const DEFAULT_COOL_MS = 5000;
/**
 * The shortest rest after a 429, whatever Retry-After says: `Retry-After: 0` on every answer would
 * otherwise send the step back at once, a request a turn, for as long as the PSA refuses.
 */
export const MIN_COOL_MS = 1000;

/** How long a connection rests after a 429 with this Retry-After. */
export function coolMs(retryAfter: string | undefined, now: number): number {
  return Math.max(MIN_COOL_MS, retryAfterMs(retryAfter, now) ?? DEFAULT_COOL_MS);
}

interface Prepared {
  readonly base: string;
  readonly headers: Record<string, string>;
}

interface Req {
  readonly method: string;
  readonly path: string;
  readonly body?: unknown;
  /** Autotask: the endpoint whose concurrency is limited (`Tickets`). */
  readonly endpoint: string;
}

function param(p: Record<string, unknown>, k: string): string {
  const v = p[k];
  if ((typeof v === 'string' && v !== '') || typeof v === 'number') return encodeURIComponent(String(v));
  throw new ActionError(`needs "${k}" (after templates), got ${JSON.stringify(v)}`, {
    retryable: false,
    code: 'SB_PARAMS',
  });
}

/** The fields of a create or update: `fields` when given, else the parameters themselves. */
function fields(p: Record<string, unknown>, drop: string[] = []): Record<string, unknown> {
  const f =
    p.fields && typeof p.fields === 'object' && !Array.isArray(p.fields)
      ? (p.fields as Record<string, unknown>)
      : p;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(f)) if (!drop.includes(k) && k !== 'fields') out[k] = v;
  return out;
}

function settingString(c: ConnectionInfo, k: string): string {
  const v = c.settings[k];
  if (typeof v !== 'string' || v === '')
    throw new ActionError(`connection "${c.id}" has no "${k}" setting`, {
      retryable: false,
      code: 'SB_CONFIG',
    });
  return v;
}

export class PsaClients {
  private readonly zones = new Map<string, { url: string; until: number }>();
  private readonly tokens = new Map<string, { token: string; until: number }>();
  /** Lookups and token requests in flight, shared by concurrent steps (one request, not many). */
  private readonly inFlight = new Map<string, Promise<unknown>>();

  constructor(
    private readonly connections: Connections,
    private readonly budgets: Budgets,
    private readonly now: () => number = Date.now,
    private readonly timeoutMs = 15_000,
  ) {}

  async call(
    tenant: string,
    id: string,
    op: PsaOp,
    p: Record<string, unknown>,
    ctx: ActionContext,
  ): Promise<unknown> {
    const c = await this.connections.info(tenant, id);
    if (!c) throw new ActionError(`no connection "${id}"`, { retryable: false, code: 'SB_CONFIG' });
    if (c.kind !== 'connectwise' && c.kind !== 'autotask' && c.kind !== 'halo')
      throw new ActionError(`connection "${id}" is a ${c.kind} connection, not a PSA`, {
        retryable: false,
        code: 'SB_CONFIG',
      });
    const req = this.request(c.kind, op, p);
    const budgetKey = `${tenant}:${id}`;
    const window = this.windowOf(c);
    // A request counts against the budget when it leaves, after the token or zone it needed was
    // fetched: a budget taken before a slow token fetch let requests of two windows reach the PSA
    // within one (and an Autotask request refused a lease used one up without being sent).
    const send = async (prep: Prepared): Promise<HttpResponse> => {
      if (window) {
        const wait = await this.budgets.take(budgetKey, window);
        if (wait > 0) throw new WaitError(wait, `the API budget of connection "${id}" is spent`);
      }
      return this.send(prep, req, ctx);
    };
    const go = async (): Promise<HttpResponse> => {
      const secret = await this.connections.secret(tenant, id);
      let res = await send(await this.prepare(c, secret, false, ctx.allowPrivate));
      if (res.status === 401 && c.kind === 'halo') {
        // The token may have been revoked or expired early: fetch a new one once.
        res = await send(await this.prepare(c, secret, true, ctx.allowPrivate));
      }
      return res;
    };
    let res: HttpResponse;
    if (c.kind === 'autotask') {
      const held = await this.budgets.withLease(budgetKey, req.endpoint, AUTOTASK_CONCURRENCY, go);
      if (!held)
        throw new WaitError(
          1000,
          `${AUTOTASK_CONCURRENCY} requests to ${req.endpoint} are already in flight`,
        );
      res = held.value;
    } else {
      res = await go();
    }
    if (res.status === 429) {
      const ms = coolMs(res.headers['retry-after'], this.now());
      await this.budgets.coolDown(budgetKey, ms);
      throw new WaitError(
        ms,
        `${c.kind} answered 429 (Retry-After ${res.headers['retry-after'] ?? 'absent'})`,
      );
    }
    checkStatus(res, `${c.kind} ${req.method} ${req.path}`);
    return this.output(c.kind, op, res);
  }

  private windowOf(c: ConnectionInfo): Window | undefined {
    const o = c.settings.rateLimit as { max?: unknown; windowMs?: unknown } | undefined;
    if (o && typeof o.max === 'number' && typeof o.windowMs === 'number')
      return { max: o.max, windowMs: o.windowMs };
    return DEFAULT_WINDOWS[c.kind];
  }

  private request(kind: string, op: PsaOp, p: Record<string, unknown>): Req {
    if (op === 'request') {
      const method = String(p.method ?? 'GET').toUpperCase();
      const path = String(p.path ?? '');
      if (!path.startsWith('/') || path.includes('..') || /^\/\//.test(path))
        throw new ActionError('path must start with "/" and stay under the API base', {
          retryable: false,
          code: 'SB_PARAMS',
        });
      return { method, path, body: p.body, endpoint: path.split('/')[1]?.split('?')[0] ?? '' };
    }
    switch (kind) {
      case 'connectwise':
        if (op === 'ticket.create')
          return { method: 'POST', path: '/service/tickets', body: fields(p), endpoint: 'tickets' };
        if (op === 'ticket.update') {
          const patch = Array.isArray(p.patch)
            ? p.patch
            : Object.entries(fields(p, ['id'])).map(([k, v]) => ({ op: 'replace', path: k, value: v }));
          return {
            method: 'PATCH',
            path: `/service/tickets/${param(p, 'id')}`,
            body: patch,
            endpoint: 'tickets',
          };
        }
        return {
          method: 'POST',
          path: `/service/tickets/${param(p, 'ticket_id')}/notes`,
          body: {
            text: p.text,
            internalAnalysisFlag: p.internal === true,
            detailDescriptionFlag: p.internal !== true,
          },
          endpoint: 'tickets',
        };
      case 'autotask':
        if (op === 'ticket.create')
          return { method: 'POST', path: '/V1.0/Tickets', body: fields(p), endpoint: 'Tickets' };
        if (op === 'ticket.update')
          return {
            method: 'PATCH',
            path: '/V1.0/Tickets',
            body: { id: p.id, ...fields(p, ['id']) },
            endpoint: 'Tickets',
          };
        return {
          method: 'POST',
          path: `/V1.0/Tickets/${param(p, 'ticket_id')}/Notes`,
          body: {
            ticketID: Number(p.ticket_id),
            title: p.title ?? 'Signalbox',
            description: p.text,
            noteType: p.noteType ?? 1,
            publish: p.internal === true ? 2 : 1,
          },
          endpoint: 'Tickets',
        };
      default:
        if (op === 'ticket.create')
          return { method: 'POST', path: '/Tickets', body: [fields(p)], endpoint: 'Tickets' };
        if (op === 'ticket.update')
          return {
            method: 'POST',
            path: '/Tickets',
            body: [{ id: p.id, ...fields(p, ['id']) }],
            endpoint: 'Tickets',
          };
        return {
          method: 'POST',
          path: '/Actions',
          body: [
            {
              ticket_id: Number(p.ticket_id),
              note: p.text,
              outcome: p.outcome ?? 'Note',
              hiddenfromuser: p.internal === true,
            },
          ],
          endpoint: 'Actions',
        };
    }
  }

  private async prepare(
    c: ConnectionInfo,
    s: Record<string, string>,
    fresh: boolean,
    allowPrivate: boolean,
  ): Promise<Prepared> {
    switch (c.kind) {
      case 'connectwise': {
        const auth = Buffer.from(
          `${settingString(c, 'companyId')}+${s.publicKey ?? ''}:${s.privateKey ?? ''}`,
        ).toString('base64');
        return {
          base: settingString(c, 'apiUrl'),
          headers: { authorization: `Basic ${auth}`, clientid: settingString(c, 'clientId') },
        };
      }
      case 'autotask': {
        const user = settingString(c, 'username');
        const key = `${c.tenant}/${c.id}/${user}`;
        let zone = this.zones.get(key);
        if (!zone || zone.until < this.now()) {
          zone = await this.once(`zone:${key}`, async () => {
            const lookup =
              typeof c.settings.zoneLookupUrl === 'string' ? c.settings.zoneLookupUrl : AUTOTASK_ZONE_LOOKUP;
            const res = await send({
              method: 'GET',
              url: `${lookup}?user=${encodeURIComponent(user)}`,
              timeoutMs: this.timeoutMs,
              allowPrivate,
            });
            checkStatus(res, 'Autotask zone lookup');
            const url = (JSON.parse(res.body) as { url?: string }).url;
            if (!url) throw new ActionError('Autotask zone lookup returned no url', { retryable: false });
            const z = { url: url.replace(/\/+$/, ''), until: this.now() + 24 * 3600_000 };
            this.zones.set(key, z);
            return z;
          });
        }
        return {
          base: zone.url,
          headers: { apiintegrationcode: s.integrationCode ?? '', username: user, secret: s.secret ?? '' },
        };
      }
      default: {
        const key = `${c.tenant}/${c.id}`;
        let tok = fresh ? undefined : this.tokens.get(key);
        if (!tok || tok.until < this.now()) {
          tok = await this.once(`token:${key}:${fresh ? 'fresh' : ''}`, async () => {
            const authUrl = settingString(c, 'authUrl').replace(/\/+$/, '');
            const q =
              typeof c.settings.tenant === 'string' ? `?tenant=${encodeURIComponent(c.settings.tenant)}` : '';
            const form = new URLSearchParams({
              grant_type: 'client_credentials',
              client_id: settingString(c, 'clientId'),
              client_secret: s.clientSecret ?? '',
              scope: typeof c.settings.scope === 'string' ? c.settings.scope : 'all',
            }).toString();
            const res = await send({
              method: 'POST',
              url: `${authUrl}/token${q}`,
              headers: { 'content-type': 'application/x-www-form-urlencoded' },
              body: form,
              timeoutMs: this.timeoutMs,
              allowPrivate,
            });
            if (res.status === 400 || res.status === 401)
              throw new ActionError(
                `Halo token request refused (${res.status}): check the client id and secret`,
                { retryable: false, status: res.status },
              );
            checkStatus(res, 'Halo token');
            const body = JSON.parse(res.body) as { access_token?: string; expires_in?: number };
            if (!body.access_token)
              throw new ActionError('Halo token answer has no access_token', { retryable: true });
            // Kept until a minute before it expires (or half its life when that is shorter).
            const life = (body.expires_in ?? 3600) * 1000;
            const t = { token: body.access_token, until: this.now() + Math.max(life - 60_000, life / 2) };
            this.tokens.set(key, t);
            return t;
          });
        }
        return { base: settingString(c, 'apiUrl'), headers: { authorization: `Bearer ${tok.token}` } };
      }
    }
  }

  /** Runs `fn` once for concurrent callers with the same key. */
  private once<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const hit = this.inFlight.get(key);
    if (hit) return hit as Promise<T>;
    const p = fn().finally(() => this.inFlight.delete(key));
    this.inFlight.set(key, p);
    return p;
  }

  private send(prep: Prepared, req: Req, ctx: ActionContext): Promise<HttpResponse> {
    const body = req.body === undefined ? undefined : JSON.stringify(req.body);
    return send({
      method: req.method,
      url: prep.base.replace(/\/+$/, '') + req.path,
      headers: {
        ...prep.headers,
        accept: 'application/json',
        'idempotency-key': ctx.idempotencyKey,
        ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
      },
      ...(body !== undefined ? { body } : {}),
      timeoutMs: this.timeoutMs,
      allowPrivate: ctx.allowPrivate,
    });
  }

  private output(kind: string, op: PsaOp, res: HttpResponse): unknown {
    let body: unknown = null;
    try {
      body = res.body ? JSON.parse(res.body) : null;
    } catch {
      body = res.body.slice(0, 2000);
    }
    if (op === 'request') return { status: res.status, body };
    // One shape for every PSA: { id, record }.
    const rec = Array.isArray(body) ? body[0] : body;
    const r = (rec ?? {}) as Record<string, unknown>;
    const id = kind === 'autotask' ? (r.itemId ?? r.id) : r.id;
    return { id: id ?? null, record: rec ?? null };
  }
}
