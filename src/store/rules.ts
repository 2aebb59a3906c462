/**
 * The rule store: rules with immutable versions and a status, the audit log of every change,
 * and a notification per change so that running processes swap their index (design.md: each
 * process rebuilds its index from Postgres and keeps it current through change notifications).
 *
 * The store keeps documents; it does not validate the rule language (src/store imports drivers
 * only). The admin service validates with the engine before saving, and the database's
 * constraints reject malformed rows whatever the caller.
 */
import { audit } from './audit.js';
import type { Db, Queryable } from './db.js';
import { assertStorable } from './json.js';

export type RuleStatus = 'active' | 'draft' | 'paused' | 'archived';

export interface StoredRule {
  readonly tenant: string;
  readonly id: string;
  readonly version: number;
  readonly status: RuleStatus;
  readonly document: Record<string, unknown>;
  readonly createdAt: Date;
  readonly updatedAt: Date;
  readonly runCount: number;
  readonly lastRunAt: Date | null;
}

/** What a change notification says; the receiver reads the rule itself. */
export interface RuleChangeNotice {
  readonly tenant: string;
  readonly id: string;
  /** The current version after the change; 0 when the rule was deleted. */
  readonly version: number;
  readonly status: RuleStatus | 'deleted';
}

export interface Actor {
  /** Who made the change: an API key id, a user, `cli`. */
  readonly actor: string;
}

interface Row {
  tenant_id: string;
  id: string;
  version: number;
  status: RuleStatus;
  document: Record<string, unknown>;
  created_at: Date;
  updated_at: Date;
  run_count: string | number;
  last_run_at: Date | null;
}

const SELECT = `select r.tenant_id, r.id, v.version, r.status, v.document, r.created_at, r.updated_at, r.run_count, r.last_run_at
  from rules r join rule_versions v on v.tenant_id = r.tenant_id and v.rule_id = r.id`;

function toRule(r: Row): StoredRule {
  return {
    tenant: r.tenant_id,
    id: r.id,
    version: r.version,
    status: r.status,
    document: r.document,
    createdAt: new Date(r.created_at),
    updatedAt: new Date(r.updated_at),
    runCount: Number(r.run_count),
    lastRunAt: r.last_run_at === null ? null : new Date(r.last_run_at),
  };
}

/** A save that expected another version than the rule's current one (a concurrent edit). */
export class VersionConflict extends Error {
  override readonly name = 'VersionConflict';
  constructor(
    readonly id: string,
    readonly current: number,
    readonly expected: number,
  ) {
    super(
      current === 0
        ? `rule "${id}" does not exist (expected version ${expected})`
        : `rule "${id}" is at version ${current}, not ${expected}`,
    );
  }
}

export class RuleStore {
  /** The notification channel; NOTIFY is database-wide, so it carries the schema. */
  readonly channel: string;

  constructor(private readonly db: Db) {
    this.channel = db.namespace ? `sb_rules_${db.namespace}`.slice(0, 63) : 'sb_rules';
  }

  async ensureTenant(id: string, name = ''): Promise<void> {
    await this.db.query('insert into tenants (id, name) values ($1, $2) on conflict (id) do nothing', [
      id,
      name,
    ]);
  }

  /**
   * Saves a document as the rule's next version (1 for a new rule). The status is the given one,
   * else the document's, else the rule's current one, else `draft`.
   */
  async save(
    tenant: string,
    document: Record<string, unknown>,
    opts: Actor & {
      status?: RuleStatus;
      /** Save only if the rule is at this version now (0: only if it does not exist). */
      expectedVersion?: number;
    },
  ): Promise<StoredRule> {
    const id = document.id;
    if (typeof id !== 'string') throw new TypeError('a rule document needs a string id');
    assertStorable(`rule ${id}`, document);
    return this.db.transaction(async (tx) => {
      const cur = await tx.query<{ version: number; status: RuleStatus }>(
        'select version, status from rules where tenant_id = $1 and id = $2 for update',
        [tenant, id],
      );
      const prev = cur.rows[0];
      // Checked under the row lock: two editors who read version n cannot both save n + 1.
      if (opts.expectedVersion !== undefined && (prev?.version ?? 0) !== opts.expectedVersion)
        throw new VersionConflict(id, prev?.version ?? 0, opts.expectedVersion);
      const version = (prev?.version ?? 0) + 1;
      const docStatus = typeof document.status === 'string' ? (document.status as RuleStatus) : undefined;
      const status = opts.status ?? docStatus ?? prev?.status ?? 'draft';
      if (prev) {
        await tx.query(
          'update rules set version = $3, status = $4, updated_at = now() where tenant_id = $1 and id = $2',
          [tenant, id, version, status],
        );
      } else {
        await tx.query('insert into rules (tenant_id, id, version, status) values ($1, $2, $3, $4)', [
          tenant,
          id,
          version,
          status,
        ]);
      }
      await tx.query(
        'insert into rule_versions (tenant_id, rule_id, version, document, created_by) values ($1, $2, $3, $4, $5)',
        [tenant, id, version, JSON.stringify(document), opts.actor],
      );
      await audit(tx, {
        tenant,
        actor: opts.actor,
        action: prev ? 'rule.update' : 'rule.create',
        entity: 'rule',
        id,
        details: { version, status },
      });
      await this.notify(tx, { tenant, id, version, status });
      const saved = await tx.query<Row>(
        `${SELECT} and v.version = r.version where r.tenant_id = $1 and r.id = $2`,
        [tenant, id],
      );
      return toRule(saved.rows[0]!);
    });
  }

  /** Changes a rule's status (activate, pause, archive); false when there is no such rule. */
  async setStatus(tenant: string, id: string, status: RuleStatus, opts: Actor): Promise<boolean> {
    return this.db.transaction(async (tx) => {
      const r = await tx.query<{ version: number }>(
        'update rules set status = $3, updated_at = now() where tenant_id = $1 and id = $2 returning version',
        [tenant, id, status],
      );
      const row = r.rows[0];
      if (!row) return false;
      await audit(tx, {
        tenant,
        actor: opts.actor,
        action: 'rule.status',
        entity: 'rule',
        id,
        details: { status, version: row.version },
      });
      await this.notify(tx, { tenant, id, version: row.version, status });
      return true;
    });
  }

  /** Deletes a rule and its versions (its runs stay in history); false when there is none. */
  async delete(tenant: string, id: string, opts: Actor): Promise<boolean> {
    return this.db.transaction(async (tx) => {
      const r = await tx.query('delete from rules where tenant_id = $1 and id = $2', [tenant, id]);
      if (r.rowCount === 0) return false;
      await audit(tx, {
        tenant,
        actor: opts.actor,
        action: 'rule.delete',
        entity: 'rule',
        id,
        details: {},
      });
      await this.notify(tx, { tenant, id, version: 0, status: 'deleted' });
      return true;
    });
  }

  /** The current version (or the given one) of one rule of a tenant. */
  async get(tenant: string, id: string, version?: number): Promise<StoredRule | undefined> {
    const r =
      version === undefined
        ? await this.db.query<Row>(
            `${SELECT} and v.version = r.version where r.tenant_id = $1 and r.id = $2`,
            [tenant, id],
          )
        : await this.db.query<Row>(`${SELECT} and v.version = $3 where r.tenant_id = $1 and r.id = $2`, [
            tenant,
            id,
            version,
          ]);
    return r.rows[0] ? toRule(r.rows[0]) : undefined;
  }

  /**
   * A tenant's rules (current versions) by id: all of them, or `limit` of those whose id comes
   * after `after` (a page).
   */
  async list(
    tenant: string,
    filter: { status?: RuleStatus; after?: string; limit?: number } = {},
  ): Promise<StoredRule[]> {
    const args: unknown[] = [tenant];
    let where = 'r.tenant_id = $1';
    if (filter.status !== undefined) {
      args.push(filter.status);
      where += ` and r.status = $${args.length}`;
    }
    if (filter.after !== undefined) {
      args.push(filter.after);
      where += ` and r.id > $${args.length}`;
    }
    let limit = '';
    if (filter.limit !== undefined) {
      args.push(filter.limit);
      limit = ` limit $${args.length}`;
    }
    const r = await this.db.query<Row>(
      `${SELECT} and v.version = r.version where ${where} order by r.id${limit}`,
      args,
    );
    return r.rows.map(toRule);
  }

  /** Every active rule of every tenant, current versions: what a process builds its index from. */
  async active(): Promise<StoredRule[]> {
    const r = await this.db.query<Row>(
      `${SELECT} and v.version = r.version where r.status = 'active' order by r.tenant_id, r.id`,
    );
    return r.rows.map(toRule);
  }

  /**
   * active(), asked again while the database does not answer (after 1 s, 2 s, … 10 tries, about
   * a minute): for a resync right after the connection came back. Undefined if it never answered.
   */
  async activeWhenReachable(): Promise<StoredRule[] | undefined> {
    for (let attempt = 1; attempt <= 10; attempt++) {
      const rules = await this.active().catch(() => undefined);
      if (rules) return rules;
      await new Promise((r) => setTimeout(r, 1_000 * attempt).unref());
    }
    return undefined;
  }

  async versions(
    tenant: string,
    id: string,
  ): Promise<Array<{ version: number; createdAt: Date; createdBy: string }>> {
    const r = await this.db.query<{ version: number; created_at: Date; created_by: string }>(
      'select version, created_at, created_by from rule_versions where tenant_id = $1 and rule_id = $2 order by version',
      [tenant, id],
    );
    return r.rows.map((x) => ({
      version: x.version,
      createdAt: new Date(x.created_at),
      createdBy: x.created_by,
    }));
  }

  /** Calls `fn` for every committed change, from any process on this database. */
  /**
   * Calls `fn` with each rule change committed from now on; `onResync` when changes may have been
   * missed (the listening connection was lost and is back): reload the active rules.
   */
  async onChange(fn: (n: RuleChangeNotice) => void, onResync?: () => void): Promise<() => Promise<void>> {
    return this.db.listen(
      this.channel,
      (payload) => {
        try {
          fn(JSON.parse(payload) as RuleChangeNotice);
        } catch {
          // A payload that is not ours (someone else's NOTIFY on the channel) is ignored.
        }
      },
      onResync,
    );
  }

  private async notify(tx: Queryable, n: RuleChangeNotice): Promise<void> {
    // Delivered on commit only, so listeners never see a change that was rolled back.
    await tx.query('select pg_notify($1, $2)', [this.channel, JSON.stringify(n)]);
  }
}
