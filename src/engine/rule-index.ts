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

/**
 * Candidate rules grouped by shared predicate: each predicate is evaluated once per event and,
 * when true, every rule that shares it matches. Rules with identical conditions (interned by the
 * compiler) cost one evaluation together. One shape for all: a lone rule (the common case under
 * a selective key) is held in `pred`/`id` without arrays; otherwise `preds[i]` goes with
 * `ids[i]`, a rule id or a list of them (measured: this layout saves ~150 B per rule).
 */
export class Candidates {
  constructor(
    readonly pred: Pred | null,
    readonly id: string | null,
    readonly preds: readonly Pred[] | null,
    readonly ids: ReadonlyArray<string | readonly string[]> | null,
    /** Number of rules. */
    readonly length: number,
  ) {}

  /** Every rule id, for tests and stats. */
  allIds(): string[] {
    if (this.id !== null) return [this.id];
    return (this.ids ?? []).flatMap((x) => (typeof x === 'string' ? [x] : [...x]));
  }
}

export interface KeyGroup {
  readonly get: Val;
  readonly map: ReadonlyMap<Primitive, Candidates>;
}

function candidates(entries: readonly Entry[]): Candidates {
  if (entries.length === 1) return new Candidates(entries[0]!.pred, entries[0]!.id, null, null, 1);
  const byPred = new Map<Pred, string[]>();
  for (const e of entries) {
    const ids = byPred.get(e.pred);
    if (ids) ids.push(e.id);
    else byPred.set(e.pred, [e.id]);
  }
  const ids = [...byPred.values()].map((l) => (l.length === 1 ? l[0]! : l.slice()));
  return new Candidates(null, null, [...byPred.keys()], ids, entries.length);
}

export class Bucket {
  constructor(
    readonly entity: string,
    readonly created: boolean,
    readonly groups: readonly KeyGroup[],
    readonly unkeyed: Candidates,
    /** Rules in the bucket (for stats and tests). */
    readonly size: number,
  ) {}
}

/** The rules of one (tenant, source), split by their `on` patterns. */
class SourceRules {
  readonly exact = new Map<string, CompiledRule[]>();
  readonly prefixes = new Map<string, CompiledRule[]>();
  readonly star: CompiledRule[] = [];

  constructor(rules: Iterable<CompiledRule>) {
    for (const r of rules) {
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

const EMPTY_BUCKET = new Bucket('', false, [], candidates([]), 0);

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
    for (const r of rules) byId.set(r.id, r);
    const grouped = new Map<string, CompiledRule[]>();
    for (const r of byId.values()) push(grouped, r.source, r);
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
      const g: CompiledRule[] = [];
      for (const r of byId.values()) if (r.source === s) g.push(r);
      if (g.length === 0) bySource.delete(s);
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

/** One key path within a bucket: how often each value is required, and the rules filed under it. */
interface Slot {
  readonly root: string;
  readonly segs: readonly Segment[];
  readonly occ: Map<Primitive, number>;
  readonly map: Map<Primitive, Entry[]>;
}

interface Candidate {
  readonly key: IndexKey;
  readonly slot: Slot;
}

/** Files rules by their most selective index key for one event type. Exported for tests. */
export function buildBucket(rules: readonly CompiledRule[], type: string): Bucket {
  const entity = entityOf(type);
  // Slots by key path: segment arrays are interned by the compiler, so identity identifies them.
  const slots = new Map<readonly Segment[], Map<string, Slot>>();
  const slotOf = (root: string, segs: readonly Segment[]): Slot => {
    let byRoot = slots.get(segs);
    if (!byRoot) slots.set(segs, (byRoot = new Map()));
    let slot = byRoot.get(root);
    if (!slot) byRoot.set(root, (slot = { root, segs, occ: new Map(), map: new Map() }));
    return slot;
  };
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
      const slot = slotOf(root, key.segs);
      for (const v of key.values) slot.occ.set(v, (slot.occ.get(v) ?? 0) + 1);
      cands.push({ key, slot });
    }
    return { rule, cands };
  });

  const used = new Set<Slot>();
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
      let cost = 0;
      for (const v of c.key.values) cost += c.slot.occ.get(v)!;
      if (cost < bestCost || (cost === bestCost && best && c.key.values.length < best.key.values.length)) {
        best = c;
        bestCost = cost;
      }
    }
    if (!best) {
      unkeyed.push({ id: rule.id, pred: rule.condition.pred });
      continue;
    }
    used.add(best.slot);
    const entry: Entry = { id: rule.id, pred: rule.condition.residual(best.key) };
    const values = best.key.values;
    for (let i = 0; i < values.length; i++) {
      if (values.indexOf(values[i]!) === i) push(best.slot.map, values[i]!, entry);
    }
  }
  const keyGroups: KeyGroup[] = [...used].map((g) => ({
    get: compilePath(g.root, g.segs),
    map: new Map([...g.map].map(([v, es]) => [v, candidates(es)] as const)),
  }));
  return new Bucket(entity, isCreatedType(type), keyGroups, candidates(unkeyed), size);
}

export { EMPTY_BUCKET };
