/**
 * The engine: holds the live rule index and matches envelopes against it.
 *
 * `match()` is the hot path. It does three map lookups to find the (tenant, source, type) bucket,
 * one lookup per key group, and evaluates only the candidate rules' residual predicates. It
 * allocates nothing unless a rule matches (then one array, the result).
 */
import { type Envelope, EvalContext } from './context.js';
import type { CompiledRule } from './rule.js';
import { type Candidates, TenantIndex } from './rule-index.js';

const EMPTY: readonly string[] = Object.freeze([]);
const NO_DATA: Record<string, unknown> = Object.freeze({}) as Record<string, unknown>;

/** A rule change. Rules that are not active leave the index (they are kept by the store only). */
export interface RuleChange {
  readonly upsert?: readonly CompiledRule[];
  readonly remove?: ReadonlyArray<{ readonly tenant: string; readonly id: string }>;
}

export class RuleIndex {
  constructor(readonly tenants: ReadonlyMap<string, TenantIndex>) {}

  static build(rules: Iterable<CompiledRule>): RuleIndex {
    const byTenant = new Map<string, CompiledRule[]>();
    for (const r of rules) {
      if (!r.active) continue;
      const a = byTenant.get(r.tenant);
      if (a) a.push(r);
      else byTenant.set(r.tenant, [r]);
    }
    const tenants = new Map<string, TenantIndex>();
    for (const [t, rs] of byTenant) tenants.set(t, TenantIndex.build(rs));
    return new RuleIndex(tenants);
  }

  /** A new index with the change applied; tenants the change does not touch are shared. */
  with(change: RuleChange): RuleIndex {
    const up = new Map<string, CompiledRule[]>();
    const rm = new Map<string, string[]>();
    for (const r of change.upsert ?? []) {
      if (r.active) push(up, r.tenant, r);
      else push(rm, r.tenant, r.id);
    }
    for (const { tenant, id } of change.remove ?? []) push(rm, tenant, id);
    const tenants = new Map(this.tenants);
    for (const t of new Set([...up.keys(), ...rm.keys()])) {
      const old = tenants.get(t);
      const next = old ? old.with(up.get(t) ?? [], rm.get(t) ?? []) : TenantIndex.build(up.get(t) ?? []);
      if (next.byId.size === 0) tenants.delete(t);
      else tenants.set(t, next);
    }
    return new RuleIndex(tenants);
  }

  get size(): number {
    let n = 0;
    for (const t of this.tenants.values()) n += t.byId.size;
    return n;
  }

  rule(tenant: string, id: string): CompiledRule | undefined {
    return this.tenants.get(tenant)?.byId.get(id);
  }

  private debouncedByTenant: Map<string, readonly CompiledRule[]> | undefined;

  /** A tenant's debounced rules (built on first use; an index is immutable). */
  debounced(tenant: string): readonly CompiledRule[] {
    if (this.debouncedByTenant === undefined) {
      this.debouncedByTenant = new Map();
      for (const [t, ti] of this.tenants) {
        const rs = [...ti.byId.values()].filter((r) => r.workflow.debounce !== undefined);
        if (rs.length > 0) this.debouncedByTenant.set(t, rs);
      }
    }
    return this.debouncedByTenant.get(tenant) ?? EMPTY_RULES;
  }
}

const EMPTY_RULES: readonly CompiledRule[] = Object.freeze([]);

function push<V>(m: Map<string, V[]>, k: string, v: V): void {
  const a = m.get(k);
  if (a) a.push(v);
  else m.set(k, [v]);
}

/** Evaluates grouped candidates; returns the result array, allocated on the first match. */
function evaluate(cs: Candidates, c: EvalContext, out: string[] | null): string[] | null {
  const pred = cs.pred;
  if (pred !== null) {
    if (pred(c, null)) (out ??= []).push(cs.id!);
    return out;
  }
  const preds = cs.preds!;
  for (let i = 0; i < preds.length; i++) {
    if (!preds[i]!(c, null)) continue;
    const ids = cs.ids![i]!;
    out ??= [];
    if (typeof ids === 'string') out.push(ids);
    else for (let j = 0; j < ids.length; j++) out.push(ids[j]!);
  }
  return out;
}

export class Engine {
  private index: RuleIndex;
  private readonly ctx = new EvalContext();

  constructor(rules: Iterable<CompiledRule> = []) {
    this.index = RuleIndex.build(rules);
  }

  /** The active rules, as the index holds them. */
  get current(): RuleIndex {
    return this.index;
  }

  get size(): number {
    return this.index.size;
  }

  /** Replaces every rule: a new index built off to the side, swapped in with one assignment. */
  replaceAll(rules: Iterable<CompiledRule>): void {
    this.index = RuleIndex.build(rules);
  }

  /** Applies an incremental change: a new index sharing the untouched tenants, swapped in whole. */
  apply(change: RuleChange): void {
    this.index = this.index.with(change);
  }

  /**
   * The debounced rules that admit an envelope (tenant, source, type) but are not among its
   * matches: an event of a debounce key that does not match cancels that key's timer.
   */
  cancels(env: Envelope, matched: readonly string[]): readonly string[] {
    const rs = this.index.debounced(env.tenant ?? 'default');
    if (rs.length === 0) return EMPTY;
    let out: string[] | null = null;
    for (const r of rs) {
      if (r.admits(env.tenant ?? 'default', env.source, env.type) && !matched.includes(r.id))
        (out ??= []).push(r.id);
    }
    return out ?? EMPTY;
  }

  /**
   * The ids of the active rules that match a valid envelope (checkEnvelope), sorted by UTF-16
   * code units. Returns a shared frozen empty array when nothing matches.
   */
  match(env: Envelope): readonly string[] {
    const tenant = this.index.tenants.get(env.tenant ?? 'default');
    if (tenant === undefined) return EMPTY;
    const b = tenant.bucket(env.source, env.type, env.self === true);
    if (b.size === 0) return EMPTY;
    const c = this.ctx;
    c.load(env, b.entity, b.created);
    let out: string[] | null = null;
    const groups = b.groups;
    for (let g = 0; g < groups.length; g++) {
      const grp = groups[g]!;
      const v = grp.get(c, null);
      if (v !== null && typeof v === 'object') continue; // arrays and objects are never keys
      const cs = grp.map.get(v as string);
      if (cs !== undefined) out = evaluate(cs, c, out);
    }
    out = evaluate(b.unkeyed, c, out);
    // Drop the event's references so the context does not keep a large event alive.
    c.data = NO_DATA;
    c.previous = null;
    c.raw = null;
    if (out === null) return EMPTY;
    if (out.length > 1) out.sort();
    return out;
  }
}
