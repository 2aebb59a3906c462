/**
 * Templates (workflows.md): `{{ expr }}` placeholders in action parameters, where `expr` is an
 * expression of the rule language. Compiled once, when the rule is saved; rendered per step.
 *
 * Besides the roots of rule-language.md §2, templates (and guards) read the run's own roots:
 * `meta`, `custom`, `steps`, and the event's source name (`halo`, `autotask`, `connectwise`) as
 * an alias of `raw`. They are renamed here to `$`-roots, which the parser never produces, so a
 * rule condition can never read them.
 */
import type { Node, Segment } from './ast.js';
import { compileBool, compileValue, type Pred, type Val } from './compile.js';
import type { EvalContext } from './context.js';
import { EngineError, positionAt } from './errors.js';
import { MAX_JSON_DEPTH } from './limits.js';
import { parseExpression } from './parse.js';

export const RUN_ROOTS: ReadonlySet<string> = new Set(['meta', 'custom', 'steps']);
export const SOURCE_ALIASES: ReadonlySet<string> = new Set(['halo', 'autotask', 'connectwise']);

/** Renders a compiled template against an event context whose `run` is set. */
export type Render = (c: EvalContext) => unknown;

/** What a template may refer to under `steps`: the ids of the steps before it. */
export interface TemplateScope {
  readonly earlierSteps: ReadonlySet<string>;
}

function rewrite(n: Node, scope: TemplateScope | undefined, text: string, base: number): Node {
  switch (n.k) {
    case 'path': {
      if (n.root === 'steps' && scope) checkStepRef(n.segs, scope, text, base + n.start);
      if (RUN_ROOTS.has(n.root)) return { ...n, root: `$${n.root}` };
      if (SOURCE_ALIASES.has(n.root)) return { ...n, root: `$src:${n.root}` };
      return n;
    }
    case 'call':
      return { ...n, args: n.args.map((a) => rewrite(a, scope, text, base)) };
    case 'not':
      return { ...n, x: rewrite(n.x, scope, text, base) };
    case 'and':
    case 'or':
      return { ...n, xs: n.xs.map((x) => rewrite(x, scope, text, base)) };
    case 'cmp':
      return { ...n, l: rewrite(n.l, scope, text, base), r: rewrite(n.r, scope, text, base) };
    case 'match':
      return { ...n, l: rewrite(n.l, scope, text, base) };
    default:
      return n;
  }
}

function checkStepRef(segs: readonly Segment[], scope: TemplateScope, text: string, offset: number): void {
  const id = segs[0];
  if (typeof id === 'string' && scope.earlierSteps.has(id)) return;
  const known = [...scope.earlierSteps].map((s) => `"${s}"`).join(', ');
  throw new EngineError(
    'SB_RULE_CHECK',
    typeof id === 'string'
      ? `steps.${id}: no earlier step has the id "${id}" (${known ? `earlier steps: ${known}` : 'no earlier step has an id'})`
      : 'steps must be followed by a step id, like steps.ticket.output.id',
    { position: positionAt(text, offset), text },
  );
}

/** Parses one expression of a template or guard, with positions in the whole text. */
function parseIn(text: string, from: number, to: number, scope: TemplateScope | undefined): Node | null {
  const inner = text.slice(from, to);
  let node: Node | null;
  try {
    node = parseExpression(inner);
  } catch (e) {
    if (!(e instanceof EngineError) || !e.position) throw e;
    throw new EngineError(e.code, e.reason, { position: positionAt(text, from + e.position.offset), text });
  }
  return node === null ? null : rewrite(node, scope, text, from);
}

/** Finds the `}}` closing a placeholder opened before `from`, skipping string literals. */
function closing(text: string, from: number): number {
  let quote = '';
  for (let i = from; i < text.length; i++) {
    const ch = text[i]!;
    if (quote) {
      if (ch === '\\') i++;
      else if (ch === quote) quote = '';
    } else if (ch === '"' || ch === "'") quote = ch;
    else if (ch === '}' && text[i + 1] === '}') return i;
  }
  return -1;
}

/** The text form of an interpolated value: null → '', strings as is, the rest as JSON. */
export function interpolated(v: unknown): string {
  if (v === null || v === undefined) return '';
  return typeof v === 'string' ? v : JSON.stringify(v);
}

/**
 * Compiles a string parameter. A string that is exactly one placeholder keeps the value's type;
 * otherwise the parts are interpolated. A string without placeholders is returned as a constant.
 */
export function compileTemplate(text: string, scope?: TemplateScope): Render {
  const parts: Array<string | Val> = [];
  let at = 0;
  for (let open = text.indexOf('{{', at); open !== -1; open = text.indexOf('{{', at)) {
    const close = closing(text, open + 2);
    if (close === -1) {
      throw new EngineError('SB_RULE_PARSE', 'unclosed "{{": a placeholder ends with "}}"', {
        position: positionAt(text, open),
        text,
      });
    }
    const node = parseIn(text, open + 2, close, scope);
    if (node === null) {
      throw new EngineError('SB_RULE_PARSE', 'empty placeholder: write an expression between "{{" and "}}"', {
        position: positionAt(text, open),
        text,
      });
    }
    if (open > at) parts.push(text.slice(at, open));
    parts.push(compileValue(node));
    at = close + 2;
  }
  if (at < text.length) parts.push(text.slice(at));
  if (parts.length === 0) return () => '';
  if (parts.length === 1) {
    const only = parts[0]!;
    // Exactly one placeholder: the value keeps its type (a missing value is null).
    return typeof only === 'string' ? () => only : (c) => only(c, null);
  }
  return (c) => {
    let s = '';
    for (const p of parts) s += typeof p === 'string' ? p : interpolated(p(c, null));
    return s;
  };
}

/** Whether a string holds a placeholder (only those are compiled). */
export function isTemplate(text: string): boolean {
  return text.includes('{{');
}

/**
 * Compiles a parameter value: strings as templates, arrays and objects member by member (keys
 * are not templated), other JSON as constants. `where` locates errors (`actions[0].with.summary`).
 */
export function compileParams(value: unknown, where: string, scope?: TemplateScope, depth = 0): Render {
  if (typeof value === 'object' && value !== null && depth >= MAX_JSON_DEPTH) {
    throw new EngineError('SB_RULE_LIMIT', `parameters nested deeper than ${MAX_JSON_DEPTH} levels`, {
      where,
    });
  }
  if (typeof value === 'string') {
    if (!isTemplate(value)) return () => value;
    try {
      return compileTemplate(value, scope);
    } catch (e) {
      throw e instanceof EngineError ? e.within(where) : e;
    }
  }
  if (Array.isArray(value)) {
    const items = value.map((v, i) => compileParams(v, `${where}[${i}]`, scope, depth + 1));
    return (c) => items.map((r) => r(c));
  }
  if (typeof value === 'object' && value !== null) {
    const entries = Object.entries(value).map(
      ([k, v]) =>
        [
          k,
          compileParams(
            v,
            /^[A-Za-z_][A-Za-z0-9_]*$/.test(k) ? `${where}.${k}` : `${where}[${JSON.stringify(k)}]`,
            scope,
            depth + 1,
          ),
        ] as const,
    );
    return (c) => {
      const out: Record<string, unknown> = {};
      for (const [k, r] of entries) out[k] = r(c);
      return out;
    };
  }
  return () => value;
}

/** Compiles a guard's condition (an expression over the event, the snapshot and the run). */
export function compileGuard(text: string, scope?: TemplateScope): Pred {
  const node = parseIn(text, 0, text.length, scope);
  if (node === null) {
    throw new EngineError('SB_RULE_PARSE', 'empty condition', { position: positionAt(text, 0), text });
  }
  return compileBool(node);
}
