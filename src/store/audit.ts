/** The audit log: one row per change, written in the transaction that makes the change. */
import type { Queryable } from './db.js';

export async function audit(
  tx: Queryable,
  entry: { tenant: string; actor: string; action: string; entity: string; id: string; details: object },
): Promise<void> {
  await tx.query(
    'insert into audit_log (tenant_id, actor, action, entity, entity_id, details) values ($1, $2, $3, $4, $5, $6)',
    [entry.tenant, entry.actor, entry.action, entry.entity, entry.id, JSON.stringify(entry.details)],
  );
}

/**
 * The channel that tells running processes that connections or API keys changed (they reload
 * them); NOTIFY is database-wide, so it carries the schema.
 */
export function configChannel(db: { readonly namespace: string }): string {
  return db.namespace ? `sb_config_${db.namespace}`.slice(0, 63) : 'sb_config';
}

/** Sent on commit only, so listeners never reload for a change that was rolled back. */
export async function notifyConfig(tx: Queryable, channel: string, what: string): Promise<void> {
  await tx.query('select pg_notify($1, $2)', [channel, what]);
}
