/**
 * Regex safety at compile time (rule-language.md §4). Patterns are ECMAScript regular
 * expressions run by V8's backtracking engine, so a pattern that can backtrack exponentially is
 * rejected before it can reach the hot path. Rejected, with the reason:
 *
 * - an unbounded quantifier (`*`, `+`, `{n,}`, or `{n,m}` with m > REGEX_BIG_REPEAT) applied to
 *   a group that itself holds one: `(a+)+`, `(a*)*`, `((ab)*)+`, `(x+x+)+`, `(a{1,100})*`;
 * - an unbounded quantifier applied to a group holding an alternation whose branches can start
 *   with the same character, or any non-literal branch: `(a|a)*`, `(a|ab)+`, `(\w|\d)+`;
 *   alternations of plain literals with distinct first characters (`(foo|bar)+`) are allowed;
 * - backreferences (`\1`, `\k<name>`): matching with them is NP-hard;
 * - patterns longer than MAX_REGEX_SOURCE.
 *
 * Entry points (cli, server) also turn on V8's linear-time fallback for excessive backtracking,
 * as a second line of defence; see src/cli/v8-flags.ts.
 */
import { MAX_REGEX_SOURCE, REGEX_BIG_REPEAT } from './limits.js';

export type RegexCheck = { ok: true; re: RegExp } | { ok: false; reason: string };

interface Frame {
  unbounded: boolean;
  /** Alternation branches seen in this group: each branch's literal text, or null when not literal. */
  branches: (string | null)[];
  current: string | null;
  hasAlt: boolean;
}

export function compileRegex(pattern: string, flags: string): RegexCheck {
  if (pattern.length > MAX_REGEX_SOURCE) {
    return {
      ok: false,
      reason: `regex is ${pattern.length} characters long, over the limit of ${MAX_REGEX_SOURCE}`,
    };
  }
  let re: RegExp;
  try {
    re = new RegExp(pattern, flags);
  } catch (e) {
    return { ok: false, reason: `invalid regular expression: ${(e as Error).message}` };
  }
  const problem = unsafeReason(pattern);
  if (problem) return { ok: false, reason: problem };
  return { ok: true, re };
}

function quantifierAt(p: string, i: number): { len: number; unbounded: boolean } | undefined {
  const c = p[i];
  let len = 0;
  let unbounded = false;
  if (c === '*' || c === '+') {
    len = 1;
    unbounded = true;
  } else if (c === '?') {
    len = 1;
  } else if (c === '{') {
    const m = /^\{(\d+)(,(\d*))?\}/.exec(p.slice(i, i + 24));
    if (!m) return undefined;
    len = m[0].length;
    const max = m[2] === undefined ? Number(m[1]) : m[3] === '' ? Number.POSITIVE_INFINITY : Number(m[3]);
    unbounded = max > REGEX_BIG_REPEAT;
  } else {
    return undefined;
  }
  if (p[i + len] === '?') len++;
  return { len, unbounded };
}

/** A reason the (already valid) pattern could backtrack catastrophically, or undefined. */
export function unsafeReason(p: string): string | undefined {
  const stack: Frame[] = [{ unbounded: false, branches: [], current: '', hasAlt: false }];
  let i = 0;
  const top = () => stack[stack.length - 1]!;
  const atom = (literal: string | null, unboundedInside: boolean): string | undefined => {
    // An atom has just ended at i; look for a quantifier after it.
    const q = quantifierAt(p, i);
    const f = top();
    if (q) {
      i += q.len;
      if (q.unbounded && unboundedInside) {
        return 'nested unbounded quantifiers (like (a+)+) can backtrack catastrophically';
      }
      if (q.unbounded || unboundedInside) f.unbounded = true;
      f.current = null;
    } else {
      if (unboundedInside) f.unbounded = true;
      f.current = f.current !== null && literal !== null ? f.current + literal : null;
    }
    return undefined;
  };
  while (i < p.length) {
    const c = p[i]!;
    if (c === '\\') {
      const d = p[i + 1] ?? '';
      if (/[1-9]/.test(d) || d === 'k') return 'backreferences are not allowed in rule regexes';
      let len = 2;
      if (d === 'u' && p[i + 2] === '{') len = p.indexOf('}', i) - i + 1;
      else if (d === 'u') len = 6;
      else if (d === 'x') len = 4;
      else if (d === 'c') len = 3;
      else if ((d === 'p' || d === 'P') && p[i + 2] === '{') len = p.indexOf('}', i) - i + 1;
      const lit = /[\\^$.|?*+()[\]{}/-]/.test(d) ? d : null;
      i += Math.max(len, 2);
      const err = atom(lit, false);
      if (err) return err;
    } else if (c === '[') {
      let j = i + 1;
      if (p[j] === '^') j++;
      if (p[j] === ']') j++;
      while (j < p.length && p[j] !== ']') j += p[j] === '\\' ? 2 : 1;
      i = j + 1;
      const err = atom(null, false);
      if (err) return err;
    } else if (c === '(') {
      let j = i + 1;
      if (p[j] === '?') {
        if (p[j + 1] === '<' && p[j + 2] !== '=' && p[j + 2] !== '!') j = p.indexOf('>', j) + 1;
        else j += p[j + 1] === '<' ? 3 : 2;
      }
      stack.push({ unbounded: false, branches: [], current: '', hasAlt: false });
      i = j;
    } else if (c === ')') {
      const f = stack.pop()!;
      f.branches.push(f.current);
      i++;
      const q = quantifierAt(p, i);
      if (q?.unbounded && f.hasAlt && !distinctLiteralBranches(f.branches)) {
        return 'a repeated alternation whose branches can match the same text (like (a|ab)+) can backtrack catastrophically';
      }
      const lit = !f.hasAlt && f.current !== null ? f.current : null;
      const err = atom(lit, f.unbounded);
      if (err) return err;
    } else if (c === '|') {
      const f = top();
      f.branches.push(f.current);
      f.current = '';
      f.hasAlt = true;
      i++;
    } else if (c === '^' || c === '$') {
      top().current = null;
      i++;
    } else {
      i++;
      const err = atom(c === '.' ? null : c, false);
      if (err) return err;
    }
  }
  return undefined;
}

function distinctLiteralBranches(branches: (string | null)[]): boolean {
  const firsts = new Set<string>();
  for (const b of branches) {
    if (b === null || b === '') return false;
    const f = b[0]!.toLowerCase();
    if (firsts.has(f)) return false;
    firsts.add(f);
  }
  return true;
}
