/**
 * explain(rule, envelope): why a rule did or did not match an event. It walks the checked tree
 * (not the compiled closures) and records, per sub-condition, its text, its value and the values
 * it compared. It is for people (the admin "test" call, `signalbox explain`), not the hot path.
 */
import type { Json, Node } from './ast.js';
import { nodeText } from './ast.js';
import { type Envelope, EvalContext, entityOf, isCreatedType } from './context.js';
import type { CompiledRule } from './rule.js';
import { parseWhen } from './rule.js';
import {
  asJson,
  contains,
  deepEqual,
  getSegment,
  inArray,
  length,
  lessEqual,
  lessThan,
  toNum,
  toStr,
} from './values.js';

export interface Trace {
  /** The sub-condition as written. */
  readonly text: string;
  /** Its value for this event (a condition is true only when exactly `true`). */
  readonly value: Json;
  /** For comparisons: the values compared. */
  readonly left?: Json;
  readonly right?: Json;
  /** For calls: the arguments' values. */
  readonly args?: readonly Json[];
  readonly note?: string;
  readonly children?: readonly Trace[];
}

export interface Explanation {
  readonly rule: string;
  readonly matched: boolean;
  /** Each gate before the condition: tenant, source, on, status, self. */
  readonly gates: Readonly<
    Record<'tenant' | 'source' | 'on' | 'status' | 'self', { ok: boolean; detail: string }>
  >;
  /** The condition's trace; null for a rule without a condition (always). */
  readonly condition: Trace | null;
}

const MAX_SHOWN = 2_048;

/** Values in a trace are bounded: a huge or deep array or string is summarised, never copied whole. */
function shown(v: unknown): Json {
  const j = asJson(v);
  if (typeof j === 'string' && j.length > MAX_SHOWN)
    return `${j.slice(0, MAX_SHOWN)}… (${j.length} characters)`;
  if (typeof j === 'object' && j !== null && !small(j)) {
    return `${Array.isArray(j) ? 'array' : 'object'} of ${length(j)} entries (too large or deep to show)`;
  }
  return j;
}

/** Whether a value is small and shallow enough to show whole (iterative: events can be deep). */
function small(v: Json): boolean {
  let budget = MAX_SHOWN;
  const stack: Array<[Json, number]> = [[v, 0]];
  while (stack.length > 0) {
    const [x, depth] = stack.pop()!;
    if (depth > 32) return false;
    if (typeof x === 'string') budget -= x.length + 2;
    else if (typeof x !== 'object' || x === null) budget -= 8;
    else if (Array.isArray(x)) {
      budget -= 2 + x.length;
      for (const y of x) stack.push([y, depth + 1]);
    } else {
      for (const k of Object.keys(x)) {
        budget -= k.length + 4;
        stack.push([x[k]!, depth + 1]);
      }
    }
    if (budget < 0) return false;
  }
  return true;
}

export function explain(rule: CompiledRule, env: Envelope): Explanation {
  const tenant = env.tenant ?? 'default';
  const self = env.self === true;
  const on = rule.on;
  const onOk = on.star || on.exact.includes(env.type) || on.prefixes.some((p) => env.type.startsWith(p));
  const gates = {
    tenant: { ok: tenant === rule.tenant, detail: `rule tenant "${rule.tenant}", event tenant "${tenant}"` },
    source: {
      ok: rule.source === '*' || rule.source === env.source,
      detail: `rule source "${rule.source}", event source "${env.source}"`,
    },
    on: {
      ok: onOk,
      detail: `event type "${env.type}" against ${JSON.stringify(rule.doc.on ?? '*')}`,
    },
    status: { ok: rule.active, detail: `rule status "${rule.status}" (only active rules match live events)` },
    self: {
      ok: !self || rule.allowSelf,
      detail: self
        ? `the event was caused by Signalbox itself; the rule ${rule.allowSelf ? 'allows' : 'does not allow'} that (allowSelf)`
        : 'the event was not caused by Signalbox itself',
    },
  };
  const node = parseWhen(rule.doc.when);
  const c = new EvalContext();
  c.load(env, entityOf(env.type), isCreatedType(env.type));
  const condition = node === null ? null : trace(node, c, null);
  const gatesOk = Object.values(gates).every((g) => g.ok);
  return {
    rule: rule.id,
    matched: gatesOk && (condition === null || condition.value === true),
    gates,
    condition,
  };
}

/** Evaluates a node (no trace) with the language's semantics. */
export function evaluate(n: Node, c: EvalContext, it: unknown): unknown {
  return trace(n, c, it, false).value;
}

function trace(n: Node, c: EvalContext, it: unknown, record = true): Trace {
  const text = record ? nodeText(n) : '';
  const t = (value: unknown, extra: Partial<Trace> = {}): Trace => ({
    text,
    value: record ? shown(value) : asJson(value),
    ...extra,
  });
  switch (n.k) {
    case 'lit':
      return t(n.v);
    case 'path':
      return t(readPath(n.root, n.segs, c, it));
    case 'not': {
      const x = trace(n.x, c, it, record);
      return t(x.value !== true, record ? { children: [x] } : {});
    }
    case 'and':
    case 'or': {
      const xs = n.xs.map((x) => trace(x, c, it, record));
      const v = n.k === 'and' ? xs.every((x) => x.value === true) : xs.some((x) => x.value === true);
      return t(v, record ? { children: xs } : {});
    }
    case 'match': {
      const l = readValue(n.l, c, it);
      const v = typeof l === 'string' && n.re.test(l);
      return t(v, record ? { left: shown(l), right: `/${n.pattern}/${n.flags}` } : {});
    }
    case 'cmp': {
      const l = readValue(n.l, c, it);
      const r = readValue(n.r, c, it);
      let v: boolean;
      switch (n.op) {
        case '==':
          v = deepEqual(l, r);
          break;
        case '!=':
          v = !deepEqual(l, r);
          break;
        case '<':
          v = lessThan(l, r);
          break;
        case '<=':
          v = lessEqual(l, r);
          break;
        case '>':
          v = lessThan(r, l);
          break;
        case '>=':
          v = lessEqual(r, l);
          break;
        case 'in':
          v = Array.isArray(r) && inArray(l, r);
          break;
        case 'nin':
          v = !(Array.isArray(r) && inArray(l, r));
          break;
        case 'contains':
          v = contains(l, r);
          break;
        case 'startsWith':
          v = typeof l === 'string' && typeof r === 'string' && l.startsWith(r);
          break;
        case 'endsWith':
          v = typeof l === 'string' && typeof r === 'string' && l.endsWith(r);
          break;
      }
      return t(v, record ? { left: shown(l), right: shown(r) } : {});
    }
    case 'call':
      return traceCall(n, c, it, record, t);
  }
}

function traceCall(
  n: Extract<Node, { k: 'call' }>,
  c: EvalContext,
  it: unknown,
  record: boolean,
  t: (value: unknown, extra?: Partial<Trace>) => Trace,
): Trace {
  const arg0 = n.args[0]!;
  if (n.fn === 'any' || n.fn === 'all') {
    const xs = readValue(arg0, c, it);
    if (!Array.isArray(xs)) return t(false, record ? { args: [shown(xs)], note: 'not an array' } : {});
    const cond = n.args[1]!;
    let decisive = -1;
    for (let i = 0; i < xs.length; i++) {
      const ok = evaluate(cond, c, asJson(xs[i])) === true;
      if (ok === (n.fn === 'any')) {
        decisive = i;
        break;
      }
    }
    const v = n.fn === 'any' ? decisive >= 0 : decisive < 0;
    if (!record) return t(v);
    const note =
      decisive >= 0
        ? `element ${decisive} of ${xs.length} ${n.fn === 'any' ? 'satisfies' : 'does not satisfy'} the condition`
        : `${n.fn === 'any' ? 'no' : 'every'} element of ${xs.length} satisfies the condition`;
    const children = decisive >= 0 ? [trace(cond, c, asJson(xs[decisive]), true)] : [];
    return t(v, { args: [shown(xs)], note, children });
  }
  if (n.fn === 'changed') {
    const p = arg0 as Extract<Node, { k: 'path' }>;
    const bound = p.root === 'data' || p.root === c.entity;
    const now = bound ? readSegs(c.data, p.segs) : null;
    const before = bound && c.previous !== null ? readSegs(c.previous, p.segs) : null;
    let v: boolean;
    let note: string;
    if (!bound) {
      v = false;
      note = `"${p.root}" is not this event's entity`;
    } else if (c.previous !== null) {
      v = !deepEqual(now, before);
      note = 'compared with previous';
    } else {
      v = c.created && now !== null;
      note = c.created
        ? 'no previous; a created event counts a present value as changed'
        : 'no previous: not changed';
    }
    return t(v, record ? { left: shown(before), right: shown(now), note } : {});
  }
  const a = readValue(arg0, c, it);
  let v: unknown;
  switch (n.fn) {
    case 'exists':
      v = a !== null;
      break;
    case 'lower':
      v = typeof a === 'string' ? a.toLowerCase() : null;
      break;
    case 'upper':
      v = typeof a === 'string' ? a.toUpperCase() : null;
      break;
    case 'trim':
      v = typeof a === 'string' ? a.trim() : null;
      break;
    case 'len':
      v = length(a);
      break;
    case 'num':
      v = toNum(a);
      break;
    case 'str':
      v = toStr(a);
      break;
    default:
      v = null;
  }
  return t(v, record ? { args: [shown(a)] } : {});
}

function readValue(n: Node, c: EvalContext, it: unknown): unknown {
  return trace(n, c, it, false).value;
}

function readSegs(base: unknown, segs: readonly (string | number)[]): unknown {
  let v: unknown = base;
  for (const s of segs) {
    if (v === null) return null;
    v = getSegment(v, s);
  }
  return v === undefined ? null : v;
}

function readPath(root: string, segs: readonly (string | number)[], c: EvalContext, it: unknown): unknown {
  switch (root) {
    case 'data':
      return readSegs(c.data, segs);
    case 'previous':
      return readSegs(c.previous, segs);
    case 'raw':
      return readSegs(c.raw, segs);
    case 'it':
      return readSegs(it, segs);
    case 'event':
      return readSegs(c.event(), segs);
    default:
      return c.entity === root ? readSegs(c.data, segs) : null;
  }
}
