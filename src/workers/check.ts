/**
 * The admin "check" of a connection: one cheap authenticated call to the PSA's API with the
 * stored credentials, through the same client the actions use (auth flows, zone lookup, token
 * cache, budget, SSRF guard), so a passing check means the actions will authenticate too.
 */
import type { Redis } from 'ioredis';
import type { ConnectionStore } from '../store/index.js';
import { Budgets } from './budget.js';
import type { ActionContext, Connections } from './context.js';
import { PsaClients } from './psa.js';

/** A read that every account may do and that costs the PSA little. */
const CHECK_PATH: Record<string, string> = {
  connectwise: '/system/info',
  autotask: '/V1.0/Companies/entityInformation',
  halo: '/Agent/me',
};

export interface CheckResult {
  readonly ok: boolean;
  readonly detail: string;
  readonly latencyMs: number;
}

export function connectionChecker(
  redis: Redis,
  prefix: string,
  store: ConnectionStore,
  allowPrivate: (tenant: string) => Promise<boolean>,
): (tenant: string, id: string) => Promise<CheckResult | undefined> {
  const connections: Connections = {
    info: (t, id) => store.get(t, id),
    secret: (t, id) => store.secret(t, id),
  };
  const psa = new PsaClients(connections, new Budgets(redis, prefix));
  return async (tenant, id) => {
    const c = await store.get(tenant, id);
    const path = c ? CHECK_PATH[c.kind] : undefined;
    if (!c || !path) return undefined;
    const ctx: ActionContext = {
      tenant,
      runId: 'check',
      stepIndex: 0,
      idempotencyKey: `check:${id}:${Date.now()}`,
      connection: id,
      event: null,
      allowPrivate: await allowPrivate(tenant),
      now: Date.now,
    };
    const t0 = performance.now();
    try {
      await psa.call(tenant, id, 'request', { method: 'GET', path }, ctx);
      return {
        ok: true,
        detail: `${c.kind} answered GET ${path}`,
        latencyMs: Math.round(performance.now() - t0),
      };
    } catch (e) {
      return { ok: false, detail: (e as Error).message, latencyMs: Math.round(performance.now() - t0) };
    }
  };
}
