/**
 * The rule index: rules filed by tenant, source and event type, and inside each (tenant, source,
 * type) bucket by the values that their equality and `in` tests compare, so that an event only
 * evaluates rules that could match it (style.md: never loop over all rules).
 *
 * The index is immutable. A change builds a new one that shares every untouched tenant and
 * source, and the engine swaps it in with one assignment (quamina): an event is matched against
 * the old or the new index, never a mix.
 *
 * Buckets are built for the exact types named in rules' `on` when the index is built, and for
 * any other type (prefix and `*` patterns) on the first event of that type, then cached.
 */
import type { Segment } from './ast.js';
import { compilePath, type IndexKey, type Pred, type Primitive, type Val } from './compile.js';
import { entityOf, isCreatedType } from './context.js';
import type { CompiledRule } from './rule.js';

/** A rule as the matcher sees it in one bucket: its id and what is left to test. */
export interface Entry {
  readonly id: string;
  readonly pred: Pred;
}

export interface KeyGroup {
  readonly get: Val;
  readonly map: ReadonlyMap<Primitive, readonly Entry[]>;
}

export class Bucket {
  constructor(
    readonly entity: string,
    readonly created: boolean,
    readonly groups: readonly KeyGroup[],
    readonly unkeyed: readonly Entry[],
    /** Rules in the bucket (for stats and tests). */
    readonly size: number,
  ) {}
}

/** The rules of one (tenant, source), split by their `on` patterns. */
class SourceRules {
  readonly exact = new Map<string, CompiledRule[]>();
  readonly prefixes = new Map<string, CompiledRule[]>();
  readonly star: CompiledRule[] = [];

  constructor(readonly rules: ReadonlyMap<string, CompiledRule>) {
    for (const r of rules.values()) {
      if (r.on.star) {
        this.star.push(r);
        continue;
      }
      for (const t of r.on.exact) push(this.exact, t, r);
      for (const p of r.on.prefixes) push(this.prefixes, p, r);
    }
  }

  collect(type: string, into: Set<CompiledRule>): void {
    for (const r of this.star) into.add(r);
    const ex = this.exact.get(type);
    if (ex) for (const r of ex) into.add(r);
    if (this.prefixes.size > 0) {
      for (const [p, rs] of this.prefixes) if (type.startsWith(p)) for (const r of rs) into.add(r);
    }
  }
}

function push<K, V>(m: Map<K, V[]>, k: K, v: V): void {
  const a = m.get(k);
  if (a) a.push(v);
  else m.set(k, [v]);
}

/** Most buckets a tenant caches; past it, buckets of new types are built per event, uncached. */
const MAX_CACHED_BUCKETS = 50_000;

const EMPTY_BUCKET = new Bucket('', false, [], [], 0);

export class TenantIndex {
  /** Buckets by source, type, then [normal, self]. */
  private readonly cache = new Map<string, Map<string, [Bucket | undefined, Bucket | undefined]>>();
  private cached = 0;

  constructor(
    readonly byId: ReadonlyMap<string, CompiledRule>,
    readonly bySource: ReadonlyMap<string, SourceRules>,
  ) {}

  static build(rules: Iterable<CompiledRule>): TenantIndex {
    const byId = new Map<string, CompiledRule>();
    const grouped = new Map<string, Map<string, CompiledRule>>();
    for (const r of rules) {
      byId.set(r.id, r);
      let g = grouped.get(r.source);
      if (!g) grouped.set(r.source, (g = new Map()));
      g.set(r.id, r);
    }
    const bySource = new Map<string, SourceRules>();
    for (const [s, g] of grouped) bySource.set(s, new SourceRules(g));
    const t = new TenantIndex(byId, bySource);
    t.warm();
    return t;
  }

  /** A new tenant index with `upserts` (active rules) and `removals` (ids) applied. */
  with(upserts: readonly CompiledRule[], removals: readonly string[]): TenantIndex {
    const byId = new Map(this.byId);
    const touched = new Set<string>();
    for (const id of removals) {
      const old = byId.get(id);
      if (old) {
        byId.delete(id);
        touched.add(old.source);
      }
    }
    for (const r of upserts) {
      const old = byId.get(r.id);
      if (old) touched.add(old.source);
      byId.set(r.id, r);
      touched.add(r.source);
    }
    const bySource = new Map(this.bySource);
    for (const s of touched) {
      const g = new Map<string, CompiledRule>();
      for (const r of byId.values()) if (r.source === s) g.set(r.id, r);
      if (g.size === 0) bySource.delete(s);
      else bySource.set(s, new SourceRules(g));
    }
    const t = new TenantIndex(byId, bySource);
    t.warm();
    return t;
  }

  /** Builds the buckets of the exact types that rules name, so the first event finds them ready. */
  private warm(): void {
    for (const [source, sr] of this.bySource) {
      if (source === '*') continue;
      for (const type of sr.exact.keys()) this.bucket(source, type, false);
    }
  }

  bucket(source: string, type: string, self: boolean): Bucket {
    let bySource = this.cache.get(source);
    if (bySource === undefined) {
      if (!this.bySource.has(source) && !this.bySource.has('*')) return EMPTY_BUCKET;
      bySource = new Map();
      this.cache.set(source, bySource);
    }
    let pair = bySource.get(type);
    const slot = self ? 1 : 0;
    const hit = pair?.[slot];
    if (hit !== undefined) return hit;
    const b = this.buildBucket(source, type, self);
    if (this.cached < MAX_CACHED_BUCKETS) {
      if (pair === undefined) bySource.set(type, (pair = [undefined, undefined]));
      pair[slot] = b;
      this.cached++;
    }
    return b;
  }

  private buildBucket(source: string, type: string, self: boolean): Bucket {
    const found = new Set<CompiledRule>();
    this.bySource.get(source)?.collect(type, found);
    if (source !== '*') this.bySource.get('*')?.collect(type, found);
    const rules = [...found].filter((r) => !self || r.allowSelf);
    return buildBucket(rules, type);
  }
}

interface Candidate {
  readonly key: IndexKey;
  readonly root: string;
  readonly pid: string;
}

/** Files rules by their most selective index key for one event type. Exported for tests. */
export function buildBucket(rules: readonly CompiledRule[], type: string): Bucket {
  const entity = entityOf(type);
  const occurrences = new Map<string, Map<Primitive, number>>();
  const perRule: Array<{ rule: CompiledRule; cands: Candidate[] } | null> = rules.map((rule) => {
    const cands: Candidate[] = [];
    for (const key of rule.condition.keys) {
      let root = key.root;
      if (root !== 'data' && root !== 'previous' && root !== 'raw' && root !== 'event') {
        // An entity name: the data of this type, or null for every event of it.
        if (root === entity) root = 'data';
        else if (key.values.includes(null)) continue;
        else return null; // the rule requires a non-null value of an unbound root: it never matches here
      }
      if (key.values.length === 0) return null;
      cands.push({ key, root, pid: `${root}\u0000${JSON.stringify(key.segs)}` });
    }
    for (const c of cands) {
      let occ = occurrences.get(c.pid);
      if (!occ) occurrences.set(c.pid, (occ = new Map()));
      for (const v of c.key.values) occ.set(v, (occ.get(v) ?? 0) + 1);
    }
    return { rule, cands };
  });

  const groups = new Map<string, { root: string; segs: readonly Segment[]; map: Map<Primitive, Entry[]> }>();
  const unkeyed: Entry[] = [];
  let size = 0;
  for (const pr of perRule) {
    if (pr === null) continue;
    size++;
    const { rule, cands } = pr;
    let best: Candidate | undefined;
    let bestCost = Number.POSITIVE_INFINITY;
    for (const c of cands) {
      // Expected rules looked at per event when filed under this key: the rules sharing its values.
      const occ = occurrences.get(c.pid)!;
      let cost = 0;
      for (const v of c.key.values) cost += occ.get(v)!;
      if (cost < bestCost || (cost === bestCost && best && c.key.values.length < best.key.values.length)) {
        best = c;
        bestCost = cost;
      }
    }
    if (!best) {
      unkeyed.push({ id: rule.id, pred: rule.condition.pred });
      continue;
    }
    let g = groups.get(best.pid);
    if (!g) groups.set(best.pid, (g = { root: best.root, segs: best.key.segs, map: new Map() }));
    const entry: Entry = { id: rule.id, pred: rule.condition.residual(best.key) };
    for (const v of new Set(best.key.values)) push(g.map, v, entry);
  }
  const keyGroups: KeyGroup[] = [...groups.values()].map((g) => ({
    get: compilePath(g.root, g.segs),
    map: g.map,
  }));
  return new Bucket(entity, isCreatedType(type), keyGroups, unkeyed, size);
}

export { EMPTY_BUCKET };
