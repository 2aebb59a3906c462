/**
 * Fetches the record of a Halo "event information only" webhook from the Halo API (sources.md):
 * through the same client as the `psa.*` actions (OAuth token cached, API budget shared in Redis,
 * outbound addresses checked), with the connection's stored credentials. The ingest calls it
 * through its `fetchRecord` port; a connection without API settings is not asked.
 */
import type { Redis } from 'ioredis';
import type { ConnectionStore } from '../store/index.js';
import { Budgets } from './budget.js';
import type { ActionContext, Connections } from './context.js';
import { PsaClients } from './psa.js';

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

export type RecordFetcher = (
  tenant: string,
  connectionId: string,
  entity: string,
  id: string,
) => Promise<Record<string, unknown> | undefined>;

export function haloRecordFetcher(
  redis: Redis,
  prefix: string,
  store: ConnectionStore,
  allowPrivate: (tenant: string) => Promise<boolean>,
): RecordFetcher {
  const connections: Connections = {
    info: (t, id) => store.get(t, id),
    secret: (t, id) => store.secret(t, id),
  };
  const psa = new PsaClients(connections, new Budgets(redis, prefix), Date.now, 4_000);
  return async (tenant, connectionId, entity, id) => {
    const resource = HALO_PATHS[entity];
    if (!resource || !/^[A-Za-z0-9_-]{1,64}$/.test(id)) return undefined;
    const c = await store.get(tenant, connectionId);
    if (c?.kind !== 'halo' || typeof c.settings.apiUrl !== 'string' || typeof c.settings.authUrl !== 'string')
      return undefined;
    const ctx: ActionContext = {
      tenant,
      runId: 'ingest',
      stepIndex: 0,
      idempotencyKey: `fetch:${connectionId}:${entity}:${id}`,
      connection: connectionId,
      event: null,
      allowPrivate: await allowPrivate(tenant),
      now: Date.now,
    };
    const out = (await psa.call(
      tenant,
      connectionId,
      'request',
      { method: 'GET', path: `/${resource}/${id}` },
      ctx,
    )) as {
      status: number;
      body: unknown;
    };
    const body = out.body;
    return body && typeof body === 'object' && !Array.isArray(body)
      ? (body as Record<string, unknown>)
      : undefined;
  };
}
