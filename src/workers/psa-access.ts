/**
 * PSA calls made outside a run, through the same client as the `psa.*` actions (auth flows, token
 * and zone caches, API budget shared in Redis, outbound addresses checked), with one client per
 * process so the admin plane and the ingest share its caches:
 *
 * - `check`: the admin CheckConnection, one cheap authenticated read with the stored credentials,
 *   so a passing check means the actions will authenticate too;
 * - `haloRecord`: the record of a Halo "event information only" webhook (sources.md), for the
 *   ingest's `fetchRecord` port; a connection without API settings is not asked.
 */
import type { Redis } from 'ioredis';
import type { ConnectionStore } from '../store/index.js';
import { Budgets } from './budget.js';
import { type ActionContext, storeConnections } from './context.js';
import { PsaClients } from './psa.js';

/** A read that every account may do and that costs the PSA little. */
const CHECK_PATH: Record<string, string> = {
  connectwise: '/system/info',
  autotask: '/V1.0/Companies/entityInformation',
  halo: '/Agent/me',
};

/** Halo API resources by envelope entity. */
const HALO_PATHS: Readonly<Record<string, string>> = {
  ticket: 'Tickets',
  client: 'Client',
  site: 'Site',
  user: 'Users',
  asset: 'Asset',
  contract: 'ClientContract',
  invoice: 'Invoice',
  supplier: 'Supplier',
  project: 'Projects',
  quote: 'Quotation',
  opportunity: 'Opportunities',
  appointment: 'Appointment',
};

export interface CheckResult {
  readonly ok: boolean;
  readonly detail: string;
  readonly latencyMs: number;
}

export class PsaAccess {
  private readonly psa: PsaClients;

  constructor(
    redis: Redis,
    prefix: string,
    private readonly store: ConnectionStore,
    /** Whether a tenant allows private networks (its setting). */
    private readonly allowPrivate: (tenant: string) => Promise<boolean>,
  ) {
    // The client's own timeout (15 s); the ingest bounds its wait for a record itself (5 s).
    this.psa = new PsaClients(storeConnections(store), new Budgets(redis, prefix));
  }

  /** A GET on a connection's API, as a call outside any run. */
  private async get(tenant: string, id: string, path: string, what: string): Promise<unknown> {
    const ctx: ActionContext = {
      tenant,
      runId: what,
      stepIndex: 0,
      idempotencyKey: `${what}:${id}:${path}:${Date.now()}`,
      connection: id,
      event: null,
      allowPrivate: await this.allowPrivate(tenant),
      now: Date.now,
    };
    return this.psa.call(tenant, id, 'request', { method: 'GET', path }, ctx);
  }

  /** undefined when the connection is not a PSA (nothing to check). */
  async check(tenant: string, id: string): Promise<CheckResult | undefined> {
    const c = await this.store.get(tenant, id);
    const path = c ? CHECK_PATH[c.kind] : undefined;
    if (!c || !path) return undefined;
    const t0 = performance.now();
    try {
      await this.get(tenant, id, path, 'check');
      return {
        ok: true,
        detail: `${c.kind} answered GET ${path}`,
        latencyMs: Math.round(performance.now() - t0),
      };
    } catch (e) {
      return { ok: false, detail: (e as Error).message, latencyMs: Math.round(performance.now() - t0) };
    }
  }

  async haloRecord(
    tenant: string,
    connectionId: string,
    entity: string,
    id: string,
  ): Promise<Record<string, unknown> | undefined> {
    const resource = HALO_PATHS[entity];
    if (!resource || !/^[A-Za-z0-9_-]{1,64}$/.test(id)) return undefined;
    const c = await this.store.get(tenant, connectionId);
    if (c?.kind !== 'halo' || typeof c.settings.apiUrl !== 'string' || typeof c.settings.authUrl !== 'string')
      return undefined;
    const out = (await this.get(tenant, connectionId, `/${resource}/${id}`, 'ingest')) as { body: unknown };
    const body = out.body;
    return body && typeof body === 'object' && !Array.isArray(body)
      ? (body as Record<string, unknown>)
      : undefined;
  }
}
