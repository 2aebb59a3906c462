/**
 * What an expression sees (rule-language.md §2), for one event. One object of one shape, filled
 * in place per event by the matcher, so that matching allocates nothing beyond its result.
 */

export interface Envelope {
  id: string;
  tenant?: string;
  source: string;
  type: string;
  time?: string;
  data: Record<string, unknown>;
  previous?: Record<string, unknown> | null;
  raw?: unknown;
  self?: boolean;
}

export class EvalContext {
  id = '';
  tenant = 'default';
  source = '';
  type = '';
  time: string | null = null;
  self = false;
  /** First segment of `type`, bound to `data` unless it names another root. */
  entity = '';
  /** The type's last segment is `created` (changed() without previous). */
  created = false;
  data: Record<string, unknown> = {};
  previous: Record<string, unknown> | null = null;
  raw: unknown = null;
  /** A run's own roots (`meta`, `custom`, `steps`) for templates and guards; null when matching. */
  run: Record<string, unknown> | null = null;
  private eventObject: Record<string, unknown> | null = null;

  /** Loads an envelope; `entity` and `created` are passed in by the caller, which caches them per type. */
  load(env: Envelope, entity: string, created: boolean): void {
    this.id = env.id;
    this.tenant = env.tenant ?? 'default';
    this.source = env.source;
    this.type = env.type;
    this.time = env.time ?? null;
    this.self = env.self === true;
    this.entity = entity;
    this.created = created;
    this.data = env.data;
    this.previous = env.previous ?? null;
    this.raw = env.raw === undefined ? null : env.raw;
    this.eventObject = null;
  }

  /** The `event` root as a whole object; built only for the rare rule that reads it whole. */
  event(): Record<string, unknown> {
    if (this.eventObject === null) {
      this.eventObject = {
        id: this.id,
        tenant: this.tenant,
        source: this.source,
        type: this.type,
        time: this.time,
        self: this.self,
      };
    }
    return this.eventObject;
  }
}

const ROOT_NAMES = new Set(['event', 'data', 'previous', 'raw', 'it']);

/** The entity name of a type (its first segment), or '' when that names another root. */
export function entityOf(type: string): string {
  const dot = type.indexOf('.');
  const e = dot === -1 ? type : type.slice(0, dot);
  return ROOT_NAMES.has(e) ? '' : e;
}

export function isCreatedType(type: string): boolean {
  return type.endsWith('.created') || type === 'created';
}

/** A fresh context for one envelope (workers, tests): matching reuses one context instead. */
export function contextOf(env: Envelope, run: Record<string, unknown> | null = null): EvalContext {
  const c = new EvalContext();
  c.load(env, entityOf(env.type), isCreatedType(env.type));
  c.run = run;
  return c;
}
