/**
 * Connections: the credentials Signalbox uses to call a PSA (or an SMTP server, a chat webhook).
 * Secrets are encrypted at rest with AES-256-GCM under a key from the environment, bound to their
 * row (tenant and id are the authenticated data, so a ciphertext copied to another row does not
 * decrypt), and never returned by `get` or `list`: only `secret()` decrypts, for the workers.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { audit, configChannel, notifyConfig } from './audit.js';
import type { Db, Queryable } from './db.js';
import { assertStorable } from './json.js';

export type ConnectionKind =
  | 'connectwise'
  | 'autotask'
  | 'halo'
  | 'generic'
  | 'webhook'
  | 'slack'
  | 'teams'
  | 'smtp';

export interface ConnectionInfo {
  readonly tenant: string;
  readonly id: string;
  readonly kind: ConnectionKind;
  readonly name: string;
  /** What is not secret: API URLs, company ids, client ids, PSA identities of Signalbox. */
  readonly settings: Record<string, unknown>;
  readonly hasSecret: boolean;
  readonly createdAt: Date;
  readonly updatedAt: Date;
}

export interface ConnectionInput {
  readonly id: string;
  readonly kind: ConnectionKind;
  readonly name?: string;
  readonly settings?: Record<string, unknown>;
  /** Secret values (passwords, private keys, client secrets); omitted: keep the stored ones. */
  readonly secret?: Record<string, string>;
}

const VERSION = 1;

/** AES-256-GCM with a 32-byte key: version ‖ iv(12) ‖ tag(16) ‖ ciphertext. */
export class SecretBox {
  constructor(private readonly key: Buffer) {
    if (key.length !== 32)
      throw new Error('the secret key must be 32 bytes (64 hex characters or 44 base64)');
  }

  /** Reads a key given as 64 hex characters or base64 of 32 bytes. */
  static fromText(text: string): SecretBox {
    const t = text.trim();
    return new SecretBox(/^[0-9a-fA-F]{64}$/.test(t) ? Buffer.from(t, 'hex') : Buffer.from(t, 'base64'));
  }

  seal(plain: string, aad: string): Buffer {
    const iv = randomBytes(12);
    const c = createCipheriv('aes-256-gcm', this.key, iv);
    c.setAAD(Buffer.from(aad));
    const ct = Buffer.concat([c.update(plain, 'utf8'), c.final()]);
    return Buffer.concat([Buffer.from([VERSION]), iv, c.getAuthTag(), ct]);
  }

  open(sealed: Buffer, aad: string): string {
    if (sealed[0] !== VERSION || sealed.length < 29) throw new Error('unknown secret format');
    const d = createDecipheriv('aes-256-gcm', this.key, sealed.subarray(1, 13));
    d.setAAD(Buffer.from(aad));
    d.setAuthTag(sealed.subarray(13, 29));
    return Buffer.concat([d.update(sealed.subarray(29)), d.final()]).toString('utf8');
  }
}

interface Row {
  tenant_id: string;
  id: string;
  kind: ConnectionKind;
  name: string;
  settings: Record<string, unknown>;
  has_secret: boolean;
  created_at: Date;
  updated_at: Date;
}

const COLUMNS =
  'tenant_id, id, kind, name, settings, secret_ciphertext is not null as has_secret, created_at, updated_at';

function toInfo(r: Row): ConnectionInfo {
  return {
    tenant: r.tenant_id,
    id: r.id,
    kind: r.kind,
    name: r.name,
    settings: r.settings,
    hasSecret: r.has_secret,
    createdAt: new Date(r.created_at),
    updatedAt: new Date(r.updated_at),
  };
}

export class ConnectionStore {
  constructor(
    private readonly db: Db,
    private readonly box: SecretBox,
  ) {}

  /** Creates or replaces a connection; a missing `secret` keeps the stored one. */
  async put(tenant: string, c: ConnectionInput, actor: string): Promise<ConnectionInfo> {
    assertStorable(`connection ${c.id}`, { name: c.name, settings: c.settings });
    const sealed =
      c.secret === undefined ? null : this.box.seal(JSON.stringify(c.secret), `${tenant}/${c.id}`);
    return this.db.transaction(async (tx) => {
      const r = await tx.query<Row>(
        `insert into connections (tenant_id, id, kind, name, settings, secret_ciphertext)
         values ($1, $2, $3, $4, $5, $6)
         on conflict (tenant_id, id) do update set kind = excluded.kind, name = excluded.name,
           settings = excluded.settings,
           secret_ciphertext = coalesce(excluded.secret_ciphertext, connections.secret_ciphertext),
           updated_at = now()
         returning ${COLUMNS}`,
        [tenant, c.id, c.kind, c.name ?? '', JSON.stringify(c.settings ?? {}), sealed],
      );
      // The audit names what changed, never the secret.
      await audit(tx, {
        tenant,
        actor,
        action: 'connection.put',
        entity: 'connection',
        id: c.id,
        details: {
          kind: c.kind,
          secretChanged: sealed !== null,
        },
      });
      await notifyConfig(tx, configChannel(this.db), 'connection');
      return toInfo(r.rows[0]!);
    });
  }

  async get(tenant: string, id: string): Promise<ConnectionInfo | undefined> {
    const r = await this.db.query<Row>(
      `select ${COLUMNS} from connections where tenant_id = $1 and id = $2`,
      [tenant, id],
    );
    return r.rows[0] ? toInfo(r.rows[0]) : undefined;
  }

  async list(tenant: string): Promise<ConnectionInfo[]> {
    const r = await this.db.query<Row>(
      `select ${COLUMNS} from connections where tenant_id = $1 order by id`,
      [tenant],
    );
    return r.rows.map(toInfo);
  }

  async delete(tenant: string, id: string, actor: string): Promise<boolean> {
    return this.db.transaction(async (tx) => {
      const r = await tx.query('delete from connections where tenant_id = $1 and id = $2', [tenant, id]);
      if (r.rowCount === 0) return false;
      await audit(tx, {
        tenant,
        actor,
        action: 'connection.delete',
        entity: 'connection',
        id,
        details: {},
      });
      await notifyConfig(tx, configChannel(this.db), 'connection');
      return true;
    });
  }

  /** Every connection of the given kinds, of every tenant (what an ingest process serves). */
  async all(kinds: readonly ConnectionKind[]): Promise<ConnectionInfo[]> {
    const r = await this.db.query<Row>(
      `select ${COLUMNS} from connections where kind = any($1) order by tenant_id, id`,
      [kinds],
    );
    return r.rows.map(toInfo);
  }

  /** The decrypted secret values (workers only; never sent to a client or a log). */
  async secret(tenant: string, id: string): Promise<Record<string, string>> {
    const r = await this.db.query<{ secret_ciphertext: Buffer | Uint8Array | null }>(
      'select secret_ciphertext from connections where tenant_id = $1 and id = $2',
      [tenant, id],
    );
    const sealed = r.rows[0]?.secret_ciphertext;
    if (!sealed) return {};
    return JSON.parse(this.box.open(Buffer.from(sealed), `${tenant}/${id}`)) as Record<string, string>;
  }
}

/** Whether a tenant lets outbound calls reach private networks (its `allowPrivateNetworks`). */
export async function allowsPrivateNetworks(db: Queryable, tenant: string): Promise<boolean> {
  return (await tenantSettings(db, tenant)).allowPrivateNetworks === true;
}

/** Tenant settings (jsonb): what workers need, like `allowPrivateNetworks`. */
export async function tenantSettings(db: Queryable, tenant: string): Promise<Record<string, unknown>> {
  const r = await db.query<{ settings: Record<string, unknown> }>(
    'select settings from tenants where id = $1',
    [tenant],
  );
  return r.rows[0]?.settings ?? {};
}

export async function setTenantSettings(
  db: Queryable,
  tenant: string,
  settings: Record<string, unknown>,
): Promise<void> {
  assertStorable('tenant settings', settings);
  await db.query(
    `insert into tenants (id, settings) values ($1, $2) on conflict (id) do update set settings = excluded.settings`,
    [tenant, JSON.stringify(settings)],
  );
}
