/**
 * API keys: `sbk_<id>_<secret>`. Only the SHA-256 of the whole key is stored; the key itself is
 * shown once, when it is made. A key belongs to one tenant and has one role.
 */
import { hash as digest, randomBytes } from 'node:crypto';
import { audit, configChannel, type Db, notifyConfig } from '../store/index.js';
import { AdminError } from './errors.js';

export type Role = 'admin' | 'editor' | 'viewer';
export const ROLES: readonly Role[] = ['viewer', 'editor', 'admin'];

/** Who is calling: resolved from the key on every call. */
export interface Caller {
  readonly tenant: string;
  readonly keyId: string;
  readonly role: Role;
}

export interface ApiKeyInfo {
  readonly id: string;
  readonly name: string;
  readonly role: Role;
  readonly createdAt: string;
  readonly lastUsedAt: string | null;
  readonly revokedAt: string | null;
}

/** `sbk_` + the key id (hex) + `_` + 32 random bytes (base64url). */
const KEY = /^sbk_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$/;
const hash = (key: string): string => digest('sha256', key, 'hex');

/** Whether `role` may do what `needed` allows (viewer < editor < admin). */
export function allows(role: Role, needed: Role): boolean {
  return ROLES.indexOf(role) >= ROLES.indexOf(needed);
}

interface KeyRow {
  id: string;
  name: string;
  role: Role;
  created_at: Date;
  last_used_at: Date | null;
  revoked_at: Date | null;
}

const iso = (d: Date | null): string | null => (d === null ? null : new Date(d).toISOString());
const info = (r: KeyRow): ApiKeyInfo => ({
  id: r.id,
  name: r.name,
  role: r.role,
  createdAt: iso(r.created_at)!,
  lastUsedAt: iso(r.last_used_at),
  revokedAt: iso(r.revoked_at),
});

export class ApiKeys {
  /** key id → when its last_used_at was last written (written at most once a minute). */
  private readonly touched = new Map<string, number>();

  constructor(private readonly db: Db) {}

  /** Makes a key; the returned `key` is the only time the secret exists outside the caller. */
  async create(
    tenant: string,
    role: Role,
    name: string,
    actor: string,
  ): Promise<{ key: string; info: ApiKeyInfo }> {
    const id = randomBytes(8).toString('hex');
    const key = `sbk_${id}_${randomBytes(32).toString('base64url')}`;
    const row = await this.db.transaction(async (tx) => {
      await tx.query('insert into tenants (id) values ($1) on conflict (id) do nothing', [tenant]);
      const r = await tx.query<KeyRow>(
        `insert into api_keys (id, tenant_id, name, role, key_hash) values ($1, $2, $3, $4, $5)
         returning id, name, role, created_at, last_used_at, revoked_at`,
        [id, tenant, name, role, hash(key)],
      );
      await audit(tx, {
        tenant,
        actor,
        action: 'api_key.create',
        entity: 'api_key',
        id,
        details: { role, name },
      });
      await notifyConfig(tx, configChannel(this.db), 'api_key');
      return r.rows[0]!;
    });
    return { key, info: info(row) };
  }

  /** The caller a key stands for; `unauthenticated` for a missing, malformed, unknown or revoked key. */
  async authenticate(key: string | undefined): Promise<Caller> {
    if (key === undefined || key === '')
      throw new AdminError('unauthenticated', 'an API key is required (Authorization: Bearer sbk_…)');
    const m = KEY.exec(key);
    if (!m) throw new AdminError('unauthenticated', 'malformed API key');
    const r = await this.db.query<{ id: string; tenant_id: string; role: Role; revoked_at: Date | null }>(
      'select id, tenant_id, role, revoked_at from api_keys where key_hash = $1',
      [hash(key)],
    );
    const row = r.rows[0];
    if (!row || row.id !== m[1]) throw new AdminError('unauthenticated', 'unknown API key');
    if (row.revoked_at !== null) throw new AdminError('unauthenticated', 'this API key was revoked');
    const now = Date.now();
    if ((this.touched.get(row.id) ?? 0) < now - 60_000) {
      this.touched.set(row.id, now);
      void this.db.query('update api_keys set last_used_at = now() where id = $1', [row.id]).catch(() => {});
    }
    return { tenant: row.tenant_id, keyId: row.id, role: row.role };
  }

  async list(tenant: string): Promise<ApiKeyInfo[]> {
    const r = await this.db.query<KeyRow>(
      'select id, name, role, created_at, last_used_at, revoked_at from api_keys where tenant_id = $1 order by created_at, id',
      [tenant],
    );
    return r.rows.map(info);
  }

  /** Revokes a key of the tenant; false when the tenant has no such key. */
  async revoke(tenant: string, id: string, actor: string): Promise<boolean> {
    return this.db.transaction(async (tx) => {
      const r = await tx.query(
        'update api_keys set revoked_at = coalesce(revoked_at, now()) where tenant_id = $1 and id = $2',
        [tenant, id],
      );
      if (r.rowCount === 0) return false;
      await audit(tx, { tenant, actor, action: 'api_key.revoke', entity: 'api_key', id, details: {} });
      await notifyConfig(tx, configChannel(this.db), 'api_key');
      return true;
    });
  }

  /** How many keys exist at all (a fresh install has none and makes a first admin key). */
  async count(): Promise<number> {
    const r = await this.db.query<{ n: string }>('select count(*)::text as n from api_keys');
    return Number(r.rows[0]?.n ?? 0);
  }
}
