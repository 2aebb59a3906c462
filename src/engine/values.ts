/**
 * Runtime value semantics (rule-language.md §4), shared by the compiled matcher and explain().
 * Every function is total: it never throws, whatever JSON (or JSON-like) value it is given, and
 * deep equality is iterative so that a 100,000-deep event cannot overflow the stack.
 */
import type { Json } from './ast.js';

/** Keys that a plain object inherits; reading them needs an own-property check. */
const INHERITED = new Set(Object.getOwnPropertyNames(Object.prototype));

export function isInheritedName(key: string): boolean {
  return INHERITED.has(key);
}

export function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** `o[key]` for an own key of a non-array object; null otherwise. */
export function getKey(o: unknown, key: string): unknown {
  if (typeof o !== 'object' || o === null || Array.isArray(o)) return null;
  const v = (o as Record<string, unknown>)[key];
  return v === undefined ? null : v;
}

/** As getKey, for keys that objects inherit (`constructor`, `__proto__`, `toString` …). */
export function getOwnKey(o: unknown, key: string): unknown {
  if (typeof o !== 'object' || o === null || Array.isArray(o)) return null;
  if (!Object.hasOwn(o, key)) return null;
  const v = (o as Record<string, unknown>)[key];
  return v === undefined ? null : v;
}

export function getIndex(o: unknown, i: number): unknown {
  if (!Array.isArray(o) || i >= o.length) return null;
  const v = o[i];
  return v === undefined ? null : v;
}

export function getSegment(o: unknown, seg: string | number): unknown {
  if (typeof seg === 'number') return getIndex(o, seg);
  return INHERITED.has(seg) ? getOwnKey(o, seg) : getKey(o, seg);
}

function norm(v: unknown): unknown {
  return v === undefined ? null : v;
}

/** `==` of the rule language: same type and value, deep for arrays and objects, never throws. */
export function deepEqual(a: unknown, b: unknown): boolean {
  a = norm(a);
  b = norm(b);
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  const stack: unknown[] = [a, b];
  while (stack.length > 0) {
    const y = norm(stack.pop());
    const x = norm(stack.pop());
    if (x === y) continue;
    if (typeof x !== 'object' || typeof y !== 'object' || x === null || y === null) return false;
    const xa = Array.isArray(x);
    if (xa !== Array.isArray(y)) return false;
    if (xa) {
      const xs = x as unknown[];
      const ys = y as unknown[];
      if (xs.length !== ys.length) return false;
      for (let i = 0; i < xs.length; i++) stack.push(xs[i], ys[i]);
    } else {
      const xo = x as Record<string, unknown>;
      const yo = y as Record<string, unknown>;
      const xk = Object.keys(xo);
      if (xk.length !== Object.keys(yo).length) return false;
      for (const k of xk) {
        if (!Object.hasOwn(yo, k)) return false;
        stack.push(xo[k], yo[k]);
      }
    }
  }
  return true;
}

export function isPrimitive(v: unknown): v is string | number | boolean | null {
  return v === null || typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean';
}

export function lessThan(a: unknown, b: unknown): boolean {
  return (typeof a === 'number' && typeof b === 'number') || (typeof a === 'string' && typeof b === 'string')
    ? (a as number) < (b as number)
    : false;
}

export function lessEqual(a: unknown, b: unknown): boolean {
  return (typeof a === 'number' && typeof b === 'number') || (typeof a === 'string' && typeof b === 'string')
    ? (a as number) <= (b as number)
    : false;
}

export function contains(a: unknown, b: unknown): boolean {
  if (typeof a === 'string') return typeof b === 'string' && a.includes(b);
  if (Array.isArray(a)) return inArray(b, a);
  return false;
}

export function inArray(x: unknown, list: readonly unknown[]): boolean {
  if (isPrimitive(x)) {
    for (let i = 0; i < list.length; i++) if (norm(list[i]) === x) return true;
    return false;
  }
  for (let i = 0; i < list.length; i++) if (deepEqual(x, list[i])) return true;
  return false;
}

const JSON_NUMBER = /^-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?$/;

export function toNum(x: unknown): number | null {
  if (typeof x === 'number') return x;
  if (typeof x === 'string' && JSON_NUMBER.test(x)) return Number(x);
  return null;
}

export function toStr(x: unknown): string | null {
  if (typeof x === 'string') return x;
  if (typeof x === 'number' || typeof x === 'boolean') return String(x);
  return null;
}

export function length(x: unknown): number | null {
  if (typeof x === 'string' || Array.isArray(x)) return x.length;
  if (typeof x === 'object' && x !== null) {
    let n = 0;
    for (const k in x) if (Object.hasOwn(x, k)) n++;
    return n;
  }
  return null;
}

export function asJson(v: unknown): Json {
  return v === undefined ? null : (v as Json);
}
