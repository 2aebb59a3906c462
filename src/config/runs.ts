/**
 * The contract between the ingest and the workers: the BullMQ queue of runs and its job payload.
 * Both sides import it from here (design.md: ingest and workers share config, never each other).
 */
import { createHash } from 'node:crypto';

export const RUN_QUEUE = 'signalbox-runs';

/**
 * The archive stream: every event the ingest accepted (JSON of its outbox entry in field `e`),
 * drained into the Postgres event archive by the workers (src/workers/archive.ts).
 */
export function archiveStreamKey(prefix: string): string {
  return `${prefix}:outbox`;
}

/** An event as it travels in a run job (the envelope after snapshots, with when it arrived). */
export interface RunEvent {
  readonly id: string;
  readonly tenant?: string;
  readonly source: string;
  readonly type: string;
  readonly time?: string;
  readonly data: Record<string, unknown>;
  readonly previous?: Record<string, unknown> | null;
  readonly raw?: unknown;
  readonly self?: boolean;
  readonly receivedAt?: string;
}

/**
 * The payload of a run job. `kind` says why it exists: a match (`match`, the default), a
 * debounce timer that fired (`debounced`), a schedule tick (`schedule`), a replay (`replay`),
 * or a non-matching event that cancels a debounce timer (`cancel`).
 */
export interface RunJob {
  readonly tenant: string;
  readonly ruleId: string;
  readonly event: RunEvent;
  readonly kind?: 'match' | 'debounced' | 'schedule' | 'replay' | 'cancel';
  /** The Redis key of the entity's snapshot (guards read the latest one). */
  readonly snapshot?: string;
  /** The rule version to run (replays and timers pin it; a match takes the active one). */
  readonly version?: number;
}

export function runJobId(tenant: string, eventId: string, ruleId: string, kind = 'match'): string {
  // BullMQ ids must not be integers and are safest without separators: a hash of the triple.
  const what = kind === 'match' ? '' : `\u0000${kind}`;
  return `r-${createHash('sha256').update(`${tenant}\u0000${eventId}\u0000${ruleId}${what}`).digest('hex').slice(0, 40)}`;
}
