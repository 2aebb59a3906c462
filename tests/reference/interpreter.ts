/**
 * A slow, obviously-correct interpreter of the rule language, written from rule-language.md and
 * sharing no code with src/engine. The property test checks the compiled, indexed engine against
 * it. Clarity over speed everywhere: plain recursion, no caching, no indexing.
 */

export type J = null | boolean | number | string | J[] | { [k: string]: J };

/** The reference's own syntax tree (what the generator produces, rendered to text for the engine). */
export type R =
  | { t: 'lit'; v: J }
  | { t: 'path'; root: string; segs: (string | number)[] }
  | { t: 'call'; fn: string; args: R[] }
  | { t: 'not'; x: R }
  | { t: 'and'; xs: R[] }
  | { t: 'or'; xs: R[] }
  | { t: 'cmp'; op: string; l: R; r: R }
  | { t: 'match'; l: R; pattern: string; flags: string };

export interface REnvelope {
  id: string;
  tenant?: string;
  source: string;
  type: string;
  time?: string;
  data: Record<string, J>;
  previous?: Record<string, J> | null;
  raw?: J;
  self?: boolean;
}

const hasOwn = (o: object, k: string) => Object.hasOwn(o, k);

function typeName(v: J): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  return typeof v;
}

export function equal(a: J, b: J): boolean {
  const ta = typeName(a);
  if (ta !== typeName(b)) return false;
  if (ta === 'array') {
    const x = a as J[];
    const y = b as J[];
    return x.length === y.length && x.every((v, i) => equal(v, y[i]!));
  }
  if (ta === 'object') {
    const x = a as Record<string, J>;
    const y = b as Record<string, J>;
    const kx = Object.keys(x);
    const ky = Object.keys(y);
    return kx.length === ky.length && kx.every((k) => hasOwn(y, k) && equal(x[k]!, y[k]!));
  }
  return a === b; // null, booleans, numbers by value (0 === -0), strings by code units
}

function step(v: J, seg: string | number): J {
  if (typeof seg === 'number') {
    if (!Array.isArray(v)) return null;
    return seg < v.length ? v[seg]! : null;
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return null;
  return hasOwn(v, seg) ? (v as Record<string, J>)[seg]! : null;
}

function follow(v: J, segs: (string | number)[]): J {
  let cur = v;
  for (const s of segs) cur = step(cur, s);
  return cur;
}

const ROOTS = ['event', 'data', 'previous', 'raw', 'it'];

function entityOf(env: REnvelope): string | null {
  const e = env.type.split('.')[0]!;
  return ROOTS.includes(e) ? null : e;
}

function eventRoot(env: REnvelope): J {
  return {
    id: env.id,
    tenant: env.tenant ?? 'default',
    source: env.source,
    type: env.type,
    time: env.time ?? null,
    self: env.self ?? false,
  };
}

function rootValue(root: string, env: REnvelope, it: J | undefined): J {
  switch (root) {
    case 'event':
      return eventRoot(env);
    case 'data':
      return env.data;
    case 'previous':
      return env.previous ?? null;
    case 'raw':
      return env.raw ?? null;
    case 'it':
      return it === undefined ? null : it;
    default:
      return entityOf(env) === root ? env.data : null;
  }
}

const JSON_NUMBER = /^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$/;

export function evaluate(n: R, env: REnvelope, it?: J): J {
  switch (n.t) {
    case 'lit':
      return n.v;
    case 'path':
      return follow(rootValue(n.root, env, it), n.segs);
    case 'not':
      return !(evaluate(n.x, env, it) === true);
    case 'and':
      return n.xs.every((x) => evaluate(x, env, it) === true);
    case 'or':
      return n.xs.some((x) => evaluate(x, env, it) === true);
    case 'match': {
      const s = evaluate(n.l, env, it);
      return typeof s === 'string' && new RegExp(n.pattern, n.flags).test(s);
    }
    case 'cmp': {
      const a = evaluate(n.l, env, it);
      const b = evaluate(n.r, env, it);
      const bothNum = typeof a === 'number' && typeof b === 'number';
      const bothStr = typeof a === 'string' && typeof b === 'string';
      switch (n.op) {
        case '==':
          return equal(a, b);
        case '!=':
          return !equal(a, b);
        case '<':
          return (bothNum || bothStr) && (a as number) < (b as number);
        case '<=':
          return (bothNum || bothStr) && (a as number) <= (b as number);
        case '>':
          return (bothNum || bothStr) && (a as number) > (b as number);
        case '>=':
          return (bothNum || bothStr) && (a as number) >= (b as number);
        case 'in':
          return Array.isArray(b) && b.some((x) => equal(a, x));
        case 'not in':
          return !(Array.isArray(b) && b.some((x) => equal(a, x)));
        case 'contains':
          if (bothStr) return (a as string).includes(b as string);
          if (Array.isArray(a)) return a.some((x) => equal(x, b));
          return false;
        case 'startsWith':
          return bothStr && (a as string).startsWith(b as string);
        case 'endsWith':
          return bothStr && (a as string).endsWith(b as string);
      }
      throw new Error(`unknown op ${n.op}`);
    }
    case 'call': {
      const [p, q] = n.args;
      switch (n.fn) {
        case 'exists':
          return evaluate(p!, env, it) !== null;
        case 'changed': {
          const path = p as Extract<R, { t: 'path' }>;
          if (path.root !== 'data' && entityOf(env) !== path.root) return false;
          const now = follow(env.data, path.segs);
          const prev = env.previous;
          if (prev !== null && prev !== undefined) return !equal(now, follow(prev, path.segs));
          return env.type.split('.').at(-1) === 'created' && now !== null;
        }
        case 'lower': {
          const v = evaluate(p!, env, it);
          return typeof v === 'string' ? v.toLowerCase() : null;
        }
        case 'upper': {
          const v = evaluate(p!, env, it);
          return typeof v === 'string' ? v.toUpperCase() : null;
        }
        case 'trim': {
          const v = evaluate(p!, env, it);
          return typeof v === 'string' ? v.trim() : null;
        }
        case 'len': {
          const v = evaluate(p!, env, it);
          if (typeof v === 'string' || Array.isArray(v)) return v.length;
          if (v !== null && typeof v === 'object') return Object.keys(v).length;
          return null;
        }
        case 'num': {
          const v = evaluate(p!, env, it);
          if (typeof v === 'number') return v;
          return typeof v === 'string' && JSON_NUMBER.test(v) ? Number(v) : null;
        }
        case 'str': {
          const v = evaluate(p!, env, it);
          if (typeof v === 'string') return v;
          return typeof v === 'number' || typeof v === 'boolean' ? String(v) : null;
        }
        case 'any': {
          const xs = evaluate(p!, env, it);
          return Array.isArray(xs) && xs.some((x) => evaluate(q!, env, x) === true);
        }
        case 'all': {
          const xs = evaluate(p!, env, it);
          return Array.isArray(xs) && xs.every((x) => evaluate(q!, env, x) === true);
        }
      }
      throw new Error(`unknown function ${n.fn}`);
    }
  }
}

export interface RRule {
  id: string;
  tenant?: string;
  source: string;
  on?: string | string[];
  when?: R | null;
  status?: string;
  allowSelf?: boolean;
}

function onMatches(on: string | string[] | undefined, type: string): boolean {
  if (on === undefined) return true;
  const list = typeof on === 'string' ? [on] : on;
  return list.some((p) => p === '*' || p === type || (p.endsWith('.*') && type.startsWith(p.slice(0, -1))));
}

/** The sorted ids of the rules that match, by a linear walk over every rule. */
export function referenceMatch(rules: RRule[], env: REnvelope): string[] {
  const tenant = env.tenant ?? 'default';
  return rules
    .filter(
      (r) =>
        (r.status ?? 'active') === 'active' &&
        (r.tenant ?? 'default') === tenant &&
        (r.source === '*' || r.source === env.source) &&
        onMatches(r.on, env.type) &&
        (!(env.self ?? false) || r.allowSelf === true) &&
        (r.when == null || evaluate(r.when, env) === true),
    )
    .map((r) => r.id)
    .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}
