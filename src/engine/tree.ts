/**
 * The condition tree form (rule-language.md §5): JSON conditions for builders and APIs, turned
 * into the same checked tree as the text form. Errors name where they are (`when.all[2].op`).
 */
import type { CmpOp, Json, Node } from './ast.js';
import { pathText } from './ast.js';
import { checkChangedPath } from './check.js';
import { describe, EngineError, invalid, positionAt } from './errors.js';
import { MAX_DEPTH, MAX_LIST } from './limits.js';
import { parseExpression, parsePath } from './parse.js';
import { compileRegex } from './regex.js';

const OPS: Record<string, CmpOp | 'matches' | 'exists' | 'changed'> = {
  eq: '==',
  ne: '!=',
  lt: '<',
  lte: '<=',
  gt: '>',
  gte: '>=',
  in: 'in',
  nin: 'nin',
  contains: 'contains',
  startsWith: 'startsWith',
  endsWith: 'endsWith',
  matches: 'matches',
  exists: 'exists',
  changed: 'changed',
};

const FORMS: ReadonlyArray<readonly [string, ReadonlySet<string>, ReadonlySet<string>]> = [
  ['all', new Set(['all']), new Set(['all'])],
  ['any', new Set(['any']), new Set(['any'])],
  ['not', new Set(['not']), new Set(['not'])],
  ['expr', new Set(['expr']), new Set(['expr'])],
  ['field', new Set(['field', 'op']), new Set(['field', 'op', 'value', 'flags'])],
];

/** Converts a condition tree; `level` is the nesting used by the enclosing levels. */
export function treeToNode(cond: unknown, where: string, level = 0): Node | null {
  if (typeof cond !== 'object' || cond === null || Array.isArray(cond)) {
    throw invalid(
      where,
      `a condition must be an object (all, any, not, expr or field), not ${describe(cond)}`,
    );
  }
  const keys = Object.keys(cond);
  const form = FORMS.find(([k]) => Object.hasOwn(cond, k));
  if (!form)
    throw invalid(
      where,
      `a condition needs one of the keys all, any, not, expr, field; got {${keys.join(', ')}}`,
    );
  const [name, required, allowed] = form;
  for (const k of keys) {
    if (!allowed.has(k)) throw invalid(where, `key "${k}" does not belong in a "${name}" condition`);
  }
  for (const k of required) {
    if (!Object.hasOwn(cond, k)) throw invalid(where, `a "${name}" condition needs "${k}"`);
  }
  const c = cond as Record<string, unknown>;
  const lvl = level + 1;
  if ((name === 'all' || name === 'any' || name === 'not') && lvl > MAX_DEPTH) {
    throw new EngineError('SB_RULE_LIMIT', `condition tree nested deeper than ${MAX_DEPTH} levels`, {
      where,
    });
  }
  switch (name) {
    case 'all':
    case 'any': {
      const xs = c[name];
      if (!Array.isArray(xs)) throw invalid(`${where}.${name}`, `"${name}" must be an array of conditions`);
      const nodes: Node[] = [];
      xs.forEach((x, i) => {
        const n = treeToNode(x, `${where}.${name}[${i}]`, lvl);
        nodes.push(n ?? { k: 'lit', v: true, src: 'true', start: 0, end: 4 });
      });
      if (nodes.length === 0) {
        const v = name === 'all';
        return { k: 'lit', v, src: String(v), start: 0, end: String(v).length };
      }
      if (nodes.length === 1) return nodes[0]!;
      const text = `${name}(${nodes.length} conditions)`;
      return { k: name === 'all' ? 'and' : 'or', xs: nodes, src: text, start: 0, end: text.length };
    }
    case 'not': {
      const x = treeToNode(c.not, `${where}.not`, lvl) ?? {
        k: 'lit',
        v: true,
        src: 'true',
        start: 0,
        end: 4,
      };
      return { k: 'not', x, src: 'not', start: 0, end: 3 };
    }
    case 'expr': {
      const text = c.expr;
      if (typeof text !== 'string') throw invalid(`${where}.expr`, '"expr" must be a string');
      try {
        return parseExpression(text, { baseDepth: level });
      } catch (e) {
        throw e instanceof EngineError ? e.within(`${where}.expr`) : e;
      }
    }
    default:
      return fieldNode(c, where, level);
  }
}

function fieldNode(c: Record<string, unknown>, where: string, level: number): Node {
  if (typeof c.field !== 'string')
    throw invalid(`${where}.field`, '"field" must be a path string like "ticket.status"');
  if (typeof c.op !== 'string' || !Object.hasOwn(OPS, c.op)) {
    throw invalid(`${where}.op`, `"op" must be one of ${Object.keys(OPS).join(', ')}`);
  }
  let path: ReturnType<typeof parsePath>;
  try {
    path = parsePath(c.field);
  } catch (e) {
    throw e instanceof EngineError ? e.within(`${where}.field`) : e;
  }
  const op = OPS[c.op]!;
  const field = pathText(path.root, path.segs);
  const hasValue = Object.hasOwn(c, 'value');
  if (op === 'exists' || op === 'changed') {
    if (hasValue) throw invalid(`${where}.value`, `op "${c.op}" takes no "value"`);
    if (Object.hasOwn(c, 'flags')) throw invalid(`${where}.flags`, '"flags" goes only with op "matches"');
    if (op === 'changed') {
      const p = checkChangedPath(path.root, 0);
      if (p)
        throw new EngineError('SB_RULE_CHECK', p.reason, {
          where: `${where}.field`,
          position: positionAt(c.field, 0),
          text: c.field,
        });
    }
    const text = `${op}(${field})`;
    return {
      k: 'call',
      fn: op,
      args: [{ ...path, src: text, start: op.length + 1, end: op.length + 1 + field.length }],
      src: text,
      start: 0,
      end: text.length,
    };
  }
  if (!hasValue) throw invalid(`${where}.value`, `op "${c.op}" needs a "value"`);
  const value = c.value as Json;
  if (op === 'matches') {
    if (typeof value !== 'string')
      throw invalid(`${where}.value`, 'op "matches" needs a pattern string as "value"');
    const flags = Object.hasOwn(c, 'flags') ? c.flags : '';
    if (typeof flags !== 'string' || !/^[imsu]*$/.test(flags) || new Set(flags).size !== flags.length) {
      throw invalid(`${where}.flags`, '"flags" must be a string of distinct flags among i, m, s, u');
    }
    const r = compileRegex(value, flags);
    if (!r.ok) throw new EngineError('SB_RULE_REGEX', r.reason, { where: `${where}.value` });
    const text = `${field} matches ${JSON.stringify(value)}${flags ? ` (flags ${flags})` : ''}`;
    return {
      k: 'match',
      l: { ...path, src: text, start: 0, end: field.length },
      pattern: value,
      flags,
      re: r.re,
      src: text,
      start: 0,
      end: text.length,
    };
  }
  if (Object.hasOwn(c, 'flags')) throw invalid(`${where}.flags`, '"flags" goes only with op "matches"');
  if ((op === 'in' || op === 'nin') && !Array.isArray(value))
    throw invalid(`${where}.value`, `op "${c.op}" needs an array as "value"`);
  if ((op === 'in' || op === 'nin') && (value as Json[]).length > MAX_LIST) {
    throw new EngineError('SB_RULE_LIMIT', `list has more than ${MAX_LIST} elements`, {
      where: `${where}.value`,
    });
  }
  checkValueDepth(value, level, `${where}.value`);
  const vtext = JSON.stringify(value);
  const text = `${field} ${op === 'nin' ? 'not in' : op} ${vtext.length > 200 ? `${vtext.slice(0, 200)}…` : vtext}`;
  return {
    k: 'cmp',
    op: op as CmpOp,
    l: { ...path, src: text, start: 0, end: field.length },
    r: { k: 'lit', v: value, src: text, start: text.length - Math.min(vtext.length, 201), end: text.length },
    src: text,
    start: 0,
    end: text.length,
  };
}

/** Arrays and objects in a tree value count as nesting, like list brackets in text. */
function checkValueDepth(value: Json, level: number, where: string): void {
  const stack: Array<[Json, number]> = [[value, level]];
  while (stack.length > 0) {
    const [v, d] = stack.pop()!;
    if (typeof v !== 'object' || v === null) continue;
    if (d + 1 > MAX_DEPTH)
      throw new EngineError('SB_RULE_LIMIT', `value nested deeper than ${MAX_DEPTH} levels`, { where });
    for (const x of Array.isArray(v) ? v : Object.values(v)) stack.push([x, d + 1]);
  }
}
