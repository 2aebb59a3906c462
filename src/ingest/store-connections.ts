/**
 * The ingest's connections and generic-API keys, read from the store (admin API) and held in
 * memory, decrypted, so the hot path looks them up without I/O. Reloaded every few seconds, and
 * at once (at most once a second) when a request names a connection or key not yet known, so a
 * connection made through the admin API takes hooks within a second.
 *
 * A store connection is addressed in the hook URL as `<tenant>.<id>` (ids are unique per tenant;
 * names cannot contain a dot): `POST /v1/hooks/halo/acme.halo-main`.
 *
 * What the webhook side needs, beside the API credentials the workers use:
 *   connectwise  secret.webhookSigningKey (a fixed key) and/or settings.keyOrigin
 *   autotask     secret.webhookSecret
 *   halo         settings.webhookUsername + secret.webhookPassword, and/or secret.webhookUrlSecret
 *   all          settings.selfActors: the PSA identities Signalbox acts as (the loop guard)
 */
import { hash } from 'node:crypto';
import { type ConnectionInfo, type ConnectionStore, configChannel, type Db } from '../store/index.js';
import type { Connection, PsaSource } from './connection.js';

const PSA: readonly PsaSource[] = ['connectwise', 'autotask', 'halo'];

export function hookConnection(c: ConnectionInfo, secret: Record<string, string>): Connection | undefined {
  if (!(PSA as readonly string[]).includes(c.kind)) return undefined;
  const s = c.settings;
  const str = (v: unknown): string | undefined => (typeof v === 'string' && v !== '' ? v : undefined);
  const selfActors = Array.isArray(s.selfActors) ? s.selfActors.map(String) : undefined;
  const base = { tenant: c.tenant, id: `${c.tenant}.${c.id}`, ...(selfActors ? { selfActors } : {}) };
  if (c.kind === 'connectwise') {
    const signingKey = str(secret.webhookSigningKey);
    const keyOrigin = str(s.keyOrigin);
    return {
      ...base,
      source: 'connectwise',
      connectwise: { ...(signingKey ? { signingKey } : {}), ...(keyOrigin ? { keyOrigin } : {}) },
    };
  }
  if (c.kind === 'autotask') {
    const sec = str(secret.webhookSecret);
    return { ...base, source: 'autotask', ...(sec ? { autotask: { secret: sec } } : {}) };
  }
  const username = str(s.webhookUsername);
  const password = str(secret.webhookPassword);
  const urlSecret = str(secret.webhookUrlSecret);
  return {
    ...base,
    source: 'halo',
    halo: {
      ...(username ? { username, password: password ?? '' } : {}),
      ...(urlSecret ? { urlSecret } : {}),
    },
  };
}

const sha256 = (k: string): string => hash('sha256', k, 'hex');

export class StoreConnections {
  private byKey = new Map<string, Connection>();
  private keyTenants = new Map<string, string>();
  private timer: NodeJS.Timeout | undefined;
  private off: (() => Promise<void>) | undefined;
  private lastLoad = 0;
  private loading: Promise<void> | undefined;
  private again = false;
  /** The last reload's error (readiness and logs). */
  lastError: Error | undefined;
  /** Called after every successful reload (serve forwards them to its extra ingest threads). */
  onReload: ((connections: Connection[], apiKeys: Array<[string, string]>) => void) | undefined;

  constructor(
    private readonly db: Db,
    private readonly store: ConnectionStore,
    private readonly o: {
      everyMs?: number;
      extra?: readonly Connection[];
      extraKeys?: ReadonlyMap<string, string>;
    } = {},
  ) {}

  async start(): Promise<void> {
    // A change made through the admin API (any process) reloads at once; the timer is the backstop.
    const reload = () => void this.reload().catch(() => {});
    // Resync: a change missed while the listening connection was lost is read now.
    this.off = await this.db.listen(configChannel(this.db), reload, reload);
    await this.reload();
    this.timer = setInterval(() => void this.reload().catch(() => {}), this.o.everyMs ?? 5_000);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.off?.();
  }

  /** The connections and sha256(key) → tenant pairs held now. */
  snapshot(): [Connection[], Array<[string, string]>] {
    return [[...this.byKey.values()], [...this.keyTenants]];
  }

  get size(): number {
    return this.byKey.size;
  }

  get(source: PsaSource, id: string): Connection | undefined {
    const c = this.byKey.get(`${source}/${id}`);
    if (!c) this.soon();
    return c;
  }

  /** The tenant of a generic-API key (an admin or editor API key of the tenant). */
  tenantOf(key: string): string | undefined {
    const t = this.keyTenants.get(sha256(key));
    if (t === undefined) this.soon();
    return t;
  }

  private soon(): void {
    if (Date.now() - this.lastLoad >= 1_000) void this.reload().catch(() => {});
  }

  reload(): Promise<void> {
    if (this.loading) {
      // A change committed while this load was reading: read again once it ends.
      this.again = true;
      return this.loading;
    }
    this.loading = (async () => {
      this.lastLoad = Date.now();
      try {
        const next = new Map<string, Connection>();
        for (const c of this.o.extra ?? []) next.set(`${c.source}/${c.id}`, c);
        for (const info of await this.store.all(PSA)) {
          try {
            const conn = hookConnection(info, await this.store.secret(info.tenant, info.id));
            if (conn) next.set(`${conn.source}/${conn.id}`, conn);
          } catch (e) {
            // One connection whose secret does not decrypt (wrong key) does not stop the others.
            this.lastError = e as Error;
          }
        }
        const keys = new Map(this.o.extraKeys ?? []);
        const r = await this.db.query<{ key_hash: string; tenant_id: string }>(
          `select key_hash, tenant_id from api_keys where revoked_at is null and role in ('admin', 'editor')`,
        );
        for (const k of r.rows) keys.set(k.key_hash, k.tenant_id);
        this.byKey = next;
        this.keyTenants = keys;
        this.onReload?.(...this.snapshot());
      } catch (e) {
        this.lastError = e as Error;
        throw e;
      } finally {
        this.loading = undefined;
        if (this.again) {
          this.again = false;
          void this.reload().catch(() => {});
        }
      }
    })();
    return this.loading;
  }
}
