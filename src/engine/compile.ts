/**
 * Compiles the checked tree into closures (style.md: compile once, match many). Everything that
 * can be decided from the rule alone is decided here: which root a path reads, which accessor a
 * key needs, literal sets for `in`, typed fast paths for comparisons with a literal. The closures
 * never parse, validate, build a regex or allocate, except where the language itself makes a new
 * value (lower(), upper(), trim(), str()).
 *
 * Beside the predicate, the compiler extracts index keys: the top-level conditions that require a
 * path to equal one of a few literal values (`ticket.status == "New"`, `priority in [1, 2]`,
 * `a == 1 or a == 2`, a bare `ticket.is_vip`). The index (rule-index.ts) files the rule under
 * those values, so that an event only ever looks at rules that could match it.
 */
import type { CmpOp, Json, Node, PathNode, Segment } from './ast.js';
import { FIXED_ROOTS } from './ast.js';
import type { EvalContext } from './context.js';
import {
  contains,
  deepEqual,
  getIndex,
  getKey,
  getOwnKey,
  inArray,
  isInheritedName,
  isPrimitive,
  length,
  lessEqual,
  lessThan,
  toNum,
  toStr,
} from './values.js';

export type Val = (c: EvalContext, it: unknown) => unknown;
export type Pred = (c: EvalContext, it: unknown) => boolean;
export type Primitive = string | number | boolean | null;

const ALWAYS: Pred = () => true;
const NEVER: Pred = () => false;
const NULL: Val = () => null;

const EVENT_FIELDS: Record<string, (c: EvalContext) => unknown> = {
  id: (c) => c.id,
  tenant: (c) => c.tenant,
  source: (c) => c.source,
  type: (c) => c.type,
  time: (c) => c.time,
  self: (c) => c.self,
};

function segmentStep(seg: Segment): (o: unknown) => unknown {
  if (typeof seg === 'number') return (o) => getIndex(o, seg);
  if (isInheritedName(seg)) return (o) => getOwnKey(o, seg);
  return (o) => getKey(o, seg);
}

/** Applies `segs` to a base value; specialised for the common short paths. */
export function compileSegments(segs: readonly Segment[]): (o: unknown) => unknown {
  if (segs.length === 0) return (o) => (o === undefined ? null : o);
  const steps = segs.map(segmentStep);
  if (steps.length === 1) return steps[0]!;
  if (steps.length === 2) {
    const [a, b] = steps as [(o: unknown) => unknown, (o: unknown) => unknown];
    return (o) => b(a(o));
  }
  return (o) => {
    let v = o;
    for (let i = 0; i < steps.length && v !== null; i++) v = steps[i]!(v);
    return v;
  };
}

export function compilePath(root: string, segs: readonly Segment[]): Val {
  switch (root) {
    case 'data': {
      if (segs.length === 0) return (c) => c.data;
      const s = compileSegments(segs);
      const first = segs[0]!;
      // data is always a non-array object: the first key needs no type check.
      if (segs.length === 1 && typeof first === 'string' && !isInheritedName(first)) {
        return (c) => {
          const v = c.data[first];
          return v === undefined ? null : v;
        };
      }
      return (c) => s(c.data);
    }
    case 'previous': {
      const s = compileSegments(segs);
      return (c) => s(c.previous);
    }
    case 'raw': {
      const s = compileSegments(segs);
      return (c) => s(c.raw);
    }
    case 'it': {
      const s = compileSegments(segs);
      return (_c, it) => s(it);
    }
    case 'event': {
      if (segs.length === 0) return (c) => c.event();
      const f = segs[0]!;
      const field = typeof f === 'string' && Object.hasOwn(EVENT_FIELDS, f) ? EVENT_FIELDS[f]! : undefined;
      if (!field) return NULL;
      const s = compileSegments(segs.slice(1));
      return segs.length === 1 ? field : (c) => s(field(c));
    }
    default: {
      // An entity name: bound to data only for events whose type starts with it.
      const inner = compilePath('data', segs);
      return (c, it) => (c.entity === root ? inner(c, it) : null);
    }
  }
}

function literalOf(n: Node): { v: Json } | undefined {
  return n.k === 'lit' ? { v: n.v } : undefined;
}

function compileCmp(op: CmpOp, ln: Node, rn: Node): Pred {
  const l = compileValue(ln);
  const r = compileValue(rn);
  const rl = literalOf(rn);
  const ll = literalOf(ln);
  switch (op) {
    case '==':
    case '!=': {
      let eq: Pred;
      if (rl && isPrimitive(rl.v)) {
        const k = rl.v;
        eq = (c, it) => l(c, it) === k;
      } else if (ll && isPrimitive(ll.v)) {
        const k = ll.v;
        eq = (c, it) => r(c, it) === k;
      } else {
        eq = (c, it) => deepEqual(l(c, it), r(c, it));
      }
      return op === '==' ? eq : (c, it) => !eq(c, it);
    }
    case '<':
    case '<=':
    case '>':
    case '>=': {
      const cmp = op === '<' || op === '>' ? lessThan : lessEqual;
      if (rl && typeof rl.v === 'number') {
        const k = rl.v;
        if (op === '<')
          return (c, it) => {
            const v = l(c, it);
            return typeof v === 'number' && v < k;
          };
        if (op === '<=')
          return (c, it) => {
            const v = l(c, it);
            return typeof v === 'number' && v <= k;
          };
        if (op === '>')
          return (c, it) => {
            const v = l(c, it);
            return typeof v === 'number' && v > k;
          };
        return (c, it) => {
          const v = l(c, it);
          return typeof v === 'number' && v >= k;
        };
      }
      return op === '<' || op === '<='
        ? (c, it) => cmp(l(c, it), r(c, it))
        : (c, it) => cmp(r(c, it), l(c, it));
    }
    case 'in':
    case 'nin': {
      let test: Pred;
      if (rl) {
        const list = Array.isArray(rl.v) ? rl.v : undefined;
        if (!list) test = NEVER;
        else test = literalMembership(l, list);
      } else {
        test = (c, it) => {
          const xs = r(c, it);
          return Array.isArray(xs) && inArray(l(c, it), xs);
        };
      }
      return op === 'in' ? test : (c, it) => !test(c, it);
    }
    case 'contains': {
      if (rl && typeof rl.v === 'string') {
        const k = rl.v;
        return (c, it) => {
          const v = l(c, it);
          return typeof v === 'string' ? v.includes(k) : Array.isArray(v) && inArray(k, v);
        };
      }
      return (c, it) => contains(l(c, it), r(c, it));
    }
    case 'startsWith':
    case 'endsWith': {
      const starts = op === 'startsWith';
      if (rl && typeof rl.v === 'string') {
        const k = rl.v;
        return starts
          ? (c, it) => {
              const v = l(c, it);
              return typeof v === 'string' && v.startsWith(k);
            }
          : (c, it) => {
              const v = l(c, it);
              return typeof v === 'string' && v.endsWith(k);
            };
      }
      return (c, it) => {
        const a = l(c, it);
        const b = r(c, it);
        return typeof a === 'string' && typeof b === 'string' && (starts ? a.startsWith(b) : a.endsWith(b));
      };
    }
  }
}

/** `x in [literals]`: a Set for primitives (SameValueZero is `==` on primitives), deep for the rest. */
function literalMembership(l: Val, list: readonly Json[]): Pred {
  const prims = list.filter(isPrimitive) as Primitive[];
  const deep = list.filter((v) => !isPrimitive(v));
  const set = new Set<unknown>(prims);
  if (deep.length === 0) {
    if (set.size === 1) {
      const k = prims[0];
      return (c, it) => l(c, it) === k;
    }
    return (c, it) => set.has(l(c, it));
  }
  return (c, it) => {
    const v = l(c, it);
    return isPrimitive(v) ? set.has(v) : inArray(v, deep);
  };
}

function compileCall(fn: string, args: readonly Node[]): Val {
  switch (fn) {
    case 'exists': {
      const p = compileValue(args[0]!);
      return (c, it) => p(c, it) !== null;
    }
    case 'changed':
      return compileChanged(args[0] as PathNode);
    case 'lower': {
      const a = compileValue(args[0]!);
      return (c, it) => {
        const v = a(c, it);
        return typeof v === 'string' ? v.toLowerCase() : null;
      };
    }
    case 'upper': {
      const a = compileValue(args[0]!);
      return (c, it) => {
        const v = a(c, it);
        return typeof v === 'string' ? v.toUpperCase() : null;
      };
    }
    case 'trim': {
      const a = compileValue(args[0]!);
      return (c, it) => {
        const v = a(c, it);
        return typeof v === 'string' ? v.trim() : null;
      };
    }
    case 'len': {
      const a = compileValue(args[0]!);
      return (c, it) => length(a(c, it));
    }
    case 'num': {
      const a = compileValue(args[0]!);
      return (c, it) => toNum(a(c, it));
    }
    case 'str': {
      const a = compileValue(args[0]!);
      return (c, it) => toStr(a(c, it));
    }
    case 'any':
    case 'all': {
      const p = compileValue(args[0]!);
      const cond = compileBool(args[1]!);
      if (fn === 'any') {
        return (c, it) => {
          const xs = p(c, it);
          if (!Array.isArray(xs)) return false;
          for (let i = 0; i < xs.length; i++) if (cond(c, xs[i] === undefined ? null : xs[i])) return true;
          return false;
        };
      }
      return (c, it) => {
        const xs = p(c, it);
        if (!Array.isArray(xs)) return false;
        for (let i = 0; i < xs.length; i++) if (!cond(c, xs[i] === undefined ? null : xs[i])) return false;
        return true;
      };
    }
    default:
      // The parser rejects unknown functions; this is unreachable for checked trees.
      return NULL;
  }
}

/** changed(p), rooted at data or the entity name (checked by the parser). */
function compileChanged(p: PathNode): Pred {
  const segs = compileSegments(p.segs);
  const entity = p.root === 'data' ? undefined : p.root;
  return (c) => {
    if (entity !== undefined && c.entity !== entity) return false;
    const now = segs(c.data);
    const prev = c.previous;
    if (prev !== null) return !deepEqual(now, segs(prev));
    return c.created && now !== null;
  };
}

export function compileValue(n: Node): Val {
  switch (n.k) {
    case 'lit': {
      const v = n.v;
      return () => v;
    }
    case 'path':
      return compilePath(n.root, n.segs);
    case 'call':
      return compileCall(n.fn, n.args);
    default:
      return compileBool(n);
  }
}

export function compileBool(n: Node): Pred {
  switch (n.k) {
    case 'lit':
      return n.v === true ? ALWAYS : NEVER;
    case 'not': {
      const x = compileBool(n.x);
      return (c, it) => !x(c, it);
    }
    case 'and':
      return andOf(n.xs.map(compileBool));
    case 'or':
      return orOf(n.xs.map(compileBool));
    case 'cmp':
      return compileCmp(n.op, n.l, n.r);
    case 'match': {
      const l = compileValue(n.l);
      const re = n.re;
      return (c, it) => {
        const v = l(c, it);
        return typeof v === 'string' && re.test(v);
      };
    }
    case 'call': {
      const f = compileCall(n.fn, n.args);
      if (n.fn === 'exists' || n.fn === 'changed' || n.fn === 'any' || n.fn === 'all') return f as Pred;
      return (c, it) => f(c, it) === true;
    }
    case 'path': {
      const v = compilePath(n.root, n.segs);
      return (c, it) => v(c, it) === true;
    }
  }
}

export function andOf(ps: readonly Pred[]): Pred {
  const xs = ps.filter((p) => p !== ALWAYS);
  if (xs.includes(NEVER)) return NEVER;
  if (xs.length === 0) return ALWAYS;
  if (xs.length === 1) return xs[0]!;
  if (xs.length === 2) {
    const [a, b] = xs as [Pred, Pred];
    return (c, it) => a(c, it) && b(c, it);
  }
  if (xs.length === 3) {
    const [a, b, d] = xs as [Pred, Pred, Pred];
    return (c, it) => a(c, it) && b(c, it) && d(c, it);
  }
  return (c, it) => {
    for (let i = 0; i < xs.length; i++) if (!xs[i]!(c, it)) return false;
    return true;
  };
}

export function orOf(ps: readonly Pred[]): Pred {
  const xs = ps.filter((p) => p !== NEVER);
  if (xs.includes(ALWAYS)) return ALWAYS;
  if (xs.length === 0) return NEVER;
  if (xs.length === 1) return xs[0]!;
  if (xs.length === 2) {
    const [a, b] = xs as [Pred, Pred];
    return (c, it) => a(c, it) || b(c, it);
  }
  return (c, it) => {
    for (let i = 0; i < xs.length; i++) if (xs[i]!(c, it)) return true;
    return false;
  };
}

export const TRUE_PRED = ALWAYS;
export const FALSE_PRED = NEVER;

// ---------------------------------------------------------------------------------------------
// Index keys

/** A requirement that the value at `root`/`segs` be one of `values`. */
export interface IndexKey {
  readonly root: string;
  readonly segs: readonly Segment[];
  readonly values: readonly Primitive[];
  /** Which top-level conjunct it comes from, and whether that conjunct is exactly this test. */
  readonly conjunct: number;
  readonly exact: boolean;
}

interface RawKey {
  root: string;
  segs: readonly Segment[];
  values: Set<Primitive>;
  exact: boolean;
}

function pathId(root: string, segs: readonly Segment[]): string {
  return `${root}\u0000${JSON.stringify(segs)}`;
}

function keyablePath(n: Node): n is PathNode {
  return n.k === 'path' && n.root !== 'it' && !(n.root === 'event' && n.segs.length === 0);
}

/** Keys of a boolean node: the paths it requires to hold one of a few literal values. */
function keysOf(n: Node): Map<string, RawKey> {
  const out = new Map<string, RawKey>();
  switch (n.k) {
    case 'path':
      if (keyablePath(n))
        out.set(pathId(n.root, n.segs), { root: n.root, segs: n.segs, values: new Set([true]), exact: true });
      break;
    case 'cmp': {
      if (n.op === '==') {
        const [p, lit] =
          keyablePath(n.l) && n.r.k === 'lit'
            ? [n.l, n.r.v]
            : keyablePath(n.r) && n.l.k === 'lit'
              ? [n.r, n.l.v]
              : [];
        if (p && isPrimitive(lit!))
          out.set(pathId(p.root, p.segs), {
            root: p.root,
            segs: p.segs,
            values: new Set([lit]),
            exact: true,
          });
      } else if (
        n.op === 'in' &&
        keyablePath(n.l) &&
        n.r.k === 'lit' &&
        Array.isArray(n.r.v) &&
        n.r.v.every(isPrimitive)
      ) {
        out.set(pathId(n.l.root, n.l.segs), {
          root: n.l.root,
          segs: n.l.segs,
          values: new Set(n.r.v as Primitive[]),
          exact: true,
        });
      }
      break;
    }
    case 'and': {
      for (const x of n.xs) {
        for (const [id, k] of keysOf(x)) {
          const had = out.get(id);
          if (had) {
            // Both must hold: the value is in the intersection.
            const both = new Set([...had.values].filter((v) => k.values.has(v)));
            out.set(id, { ...had, values: both, exact: false });
          } else {
            out.set(id, { ...k, exact: false });
          }
        }
      }
      break;
    }
    case 'or': {
      const all = n.xs.map(keysOf);
      const first = all[0];
      if (!first) break;
      for (const [id, k] of first) {
        if (!all.every((m) => m.has(id))) continue;
        const values = new Set<Primitive>();
        let exact = true;
        for (const m of all) {
          const e = m.get(id)!;
          for (const v of e.values) values.add(v);
          exact &&= e.exact;
        }
        // `a == 1 or a == 2` is exactly `a in [1, 2]` only when every branch is that one test.
        exact &&= all.every((m) => m.size === 1);
        out.set(id, { root: k.root, segs: k.segs, values, exact });
      }
      break;
    }
    default:
      break;
  }
  return out;
}

/** A compiled condition: the predicate, its top-level conjuncts, and its index keys. */
export class CompiledCondition {
  readonly pred: Pred;
  readonly keys: readonly IndexKey[];
  private readonly conjuncts: readonly Pred[];
  private residuals: Map<number, Pred> | undefined;

  constructor(node: Node | null) {
    if (node === null) {
      this.pred = ALWAYS;
      this.conjuncts = [];
      this.keys = [];
      return;
    }
    const parts = node.k === 'and' ? node.xs : [node];
    this.conjuncts = parts.map(compileBool);
    this.pred = andOf(this.conjuncts);
    const keys: IndexKey[] = [];
    parts.forEach((part, i) => {
      for (const k of keysOf(part).values()) {
        keys.push({ root: k.root, segs: k.segs, values: [...k.values], conjunct: i, exact: k.exact });
      }
    });
    this.keys = keys;
  }

  /** The predicate without the conjunct that an exact index key already proved. */
  residual(key: IndexKey): Pred {
    if (!key.exact) return this.pred;
    this.residuals ??= new Map();
    let r = this.residuals.get(key.conjunct);
    if (!r) {
      r = andOf(this.conjuncts.filter((_, i) => i !== key.conjunct));
      this.residuals.set(key.conjunct, r);
    }
    return r;
  }
}

export { FIXED_ROOTS };
