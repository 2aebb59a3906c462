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
