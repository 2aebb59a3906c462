/**
 * Random rules and events for the property test (fast-check arbitraries), and the rendering of
 * reference trees to the two rule forms: text (with random spacing, synonyms, quotes and extra
 * parentheses) and condition trees.
 */
import fc from 'fast-check';
import type { J, R, REnvelope, RRule } from './interpreter.js';

const KEYS = [
  'status',
  'priority',
  'name',
  'tags',
  'customfields',
  'nested',
  'value',
  '__proto__',
  'constructor',
  'a b',
  'in',
  'toString',
  'x.y',
];
const STRINGS = ['New', 'new', 'Escalated', '', '1', 'a b', 'é', '\u2028', 'x"y', "it's", 'NEW ', 'Ne'];
const NUMBERS = [0, -0, 1, 2, 1.5, -1, 1e21, 100];

const prim: fc.Arbitrary<J> = fc.oneof(
  fc.constantFrom(...STRINGS),
  fc.constantFrom(...NUMBERS),
  fc.boolean(),
  fc.constant(null),
);

export const jsonValue: fc.Arbitrary<J> = fc.letrec<{ v: J }>((tie) => ({
  v: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    { arbitrary: prim, weight: 6 },
    { arbitrary: fc.array(tie('v'), { maxLength: 3 }), weight: 1 },
    {
      arbitrary: fc.array(fc.tuple(fc.constantFrom(...KEYS), tie('v')), { maxLength: 3 }).map(objectOf),
      weight: 1,
    },
  ),
})).v;

/** Builds an object with own properties even for `__proto__` (as JSON.parse does). */
export function objectOf(entries: ReadonlyArray<readonly [string, J]>): { [k: string]: J } {
  const o: { [k: string]: J } = {};
  for (const [k, v] of entries)
    Object.defineProperty(o, k, { value: v, enumerable: true, writable: true, configurable: true });
  return o;
}

/** A few keys that most events carry, with values from small pools, so that rules often hit. */
const COMMON = ['status', 'priority', 'name'];
const SMALL: J[] = ['New', 'new', 'Escalated', '', '1', 1, 2, 1.5, 0, true, null];
const small = fc.constantFrom(...SMALL);

const dataObject = fc
  .record({
    common: fc.array(fc.tuple(fc.constantFrom(...COMMON), small), { minLength: 1, maxLength: 3 }),
    tags: fc.option(fc.array(small, { maxLength: 3 }), { nil: undefined }),
    cf: fc.option(
      fc.array(fc.record({ name: fc.constantFrom('VIP', 'Site'), value: small }), { maxLength: 3 }),
      { nil: undefined },
    ),
    extra: fc.array(fc.tuple(fc.constantFrom(...KEYS), jsonValue), { maxLength: 3 }),
  })
  .map(({ common, tags, cf, extra }) => {
    const es: Array<[string, J]> = [...extra, ...common];
    if (tags !== undefined) es.push(['tags', tags]);
    if (cf !== undefined) es.push(['customfields', cf as J]);
    return objectOf(es) as Record<string, J>;
  });

const TYPES = [
  'ticket.created',
  'ticket.updated',
  'ticket.updated',
  'ticket.sla.breached',
  'device.offline',
  'event.custom',
  'it.thing',
  'data.created',
];

export const envelope: fc.Arbitrary<REnvelope> = fc
  .record({
    tenant: fc.constantFrom(undefined, 'default', 'default', 't1'),
    source: fc.constantFrom('halo', 'rmm', 'connectwise'),
    type: fc.constantFrom(...TYPES),
    data: dataObject,
    prevKind: fc.constantFrom('absent', 'null', 'mutated', 'random'),
    prevRandom: dataObject,
    mutate: fc.array(fc.tuple(fc.constantFrom(...KEYS), jsonValue), { maxLength: 2 }),
    self: fc.constantFrom(undefined, false, false, true),
    time: fc.constantFrom(undefined, '2026-11-20T10:00:00.000Z'),
    raw: fc.constantFrom(undefined, null, { event: 'ticket status changed' } as J),
  })
  .map((r, i = 0) => {
    const env: REnvelope = { id: `e${i}`, source: r.source, type: r.type, data: r.data };
    if (r.tenant !== undefined) env.tenant = r.tenant;
    if (r.self !== undefined) env.self = r.self;
    if (r.time !== undefined) env.time = r.time;
    if (r.raw !== undefined) env.raw = r.raw;
    if (r.prevKind === 'null') env.previous = null;
    if (r.prevKind === 'random') env.previous = r.prevRandom;
    if (r.prevKind === 'mutated') {
      const copy = objectOf(Object.entries(r.data)) as Record<string, J>;
      for (const [k, v] of r.mutate)
        Object.defineProperty(copy, k, { value: v, enumerable: true, writable: true, configurable: true });
      env.previous = copy;
    }
    return env;
  });

const segment = fc.oneof(
  { arbitrary: fc.constantFrom(...KEYS), weight: 5 },
  { arbitrary: fc.constantFrom(0, 1, 5), weight: 1 },
);
const segs = (max: number) =>
  fc.oneof(
    { arbitrary: fc.constantFrom(...COMMON).map((k) => [k] as (string | number)[]), weight: 3 },
    { arbitrary: fc.array(segment, { minLength: 0, maxLength: max }), weight: 2 },
  );

function pathArb(inIt: boolean): fc.Arbitrary<Extract<R, { t: 'path' }>> {
  const roots = [
    'ticket',
    'ticket',
    'ticket',
    'data',
    'data',
    'previous',
    'device',
    'event',
    'raw',
    'nosuch',
    'it',
  ];
  return fc
    .record({ root: fc.constantFrom(...(inIt ? [...roots, 'it', 'it'] : roots)), segs: segs(2) })
    .map(({ root, segs }) => {
      // event.<field> is what people write; keep some odd ones too.
      if (root === 'event' && segs.length > 0 && typeof segs[0] === 'string' && segs[0] !== 'in') {
        return {
          t: 'path' as const,
          root,
          segs: [['id', 'tenant', 'source', 'type', 'time', 'self'][segs[0].length % 6]!, ...segs.slice(1)],
        };
      }
      return { t: 'path' as const, root, segs };
    });
}

const changedPath = fc
  .record({ root: fc.constantFrom('ticket', 'data', 'device'), segs: segs(2) })
  .map(({ root, segs }) => ({ t: 'path' as const, root, segs }));

const lit: fc.Arbitrary<R> = fc
  .oneof({ arbitrary: small, weight: 3 }, { arbitrary: jsonValue, weight: 1 })
  .map((v) => ({ t: 'lit' as const, v }));
const listLit: fc.Arbitrary<R> = fc
  .array(fc.oneof(small, prim), { maxLength: 4 })
  .map((v) => ({ t: 'lit' as const, v }));

function valueArb(inIt: boolean): fc.Arbitrary<R> {
  const p = pathArb(inIt);
  return fc.oneof(
    { arbitrary: p, weight: 5 },
    { arbitrary: lit, weight: 2 },
    {
      arbitrary: fc
        .tuple(fc.constantFrom('lower', 'upper', 'trim', 'len', 'num', 'str'), fc.oneof(p, lit))
        .map(([fn, a]) => ({ t: 'call' as const, fn, args: [a] })),
      weight: 2,
    },
  );
}

const PATTERNS: Array<[string, string]> = [
  ['^New$', ''],
  ['new', 'i'],
  ['^a b', ''],
  ['\\d+', ''],
  ['^$', ''],
  ['(foo|bar)+', ''],
  ['[é]', 'u'],
  ['.', 's'],
  ['^NEW\\s', 'im'],
];

export function boolArb(depth: number, inIt = false): fc.Arbitrary<R> {
  const v = valueArb(inIt);
  const common = fc
    .tuple(fc.constantFrom('ticket', 'data', 'ticket', 'previous'), fc.constantFrom(...COMMON))
    .map(([root, k]) => ({ t: 'path' as const, root, segs: [k] as (string | number)[] }));
  const smallLit = small.map((v) => ({ t: 'lit' as const, v }));
  const focused: fc.Arbitrary<R>[] = [
    fc
      .tuple(
        common,
        fc.constantFrom(
          '==',
          '!=',
          '<',
          '<=',
          '>',
          '>=',
          'contains',
          'startsWith',
          'endsWith',
          'in',
          'not in',
        ),
        smallLit,
        listLit,
      )
      .map(([l, op, r, list]) => ({
        t: 'cmp' as const,
        op,
        l,
        r: op === 'in' || op === 'not in' ? list : r,
      })),
    fc
      .tuple(fc.constantFrom('ticket', 'data'), fc.constantFrom('contains', 'in'), smallLit)
      .map(([root, op, v]) =>
        op === 'contains'
          ? { t: 'cmp' as const, op, l: { t: 'path' as const, root, segs: ['tags'] }, r: v }
          : { t: 'cmp' as const, op, l: v, r: { t: 'path' as const, root, segs: ['tags'] } },
      ),
    fc
      .tuple(
        fc.constantFrom('any', 'all'),
        fc.constantFrom('name', 'value'),
        fc.constantFrom('==', '!=', '<=', '>'),
        smallLit,
      )
      .map(([fn, k, op, v]) => ({
        t: 'call' as const,
        fn,
        args: [
          { t: 'path' as const, root: 'ticket', segs: ['customfields'] },
          { t: 'cmp' as const, op, l: { t: 'path' as const, root: 'it', segs: [k] }, r: v },
        ],
      })),
  ];
  const atoms: fc.Arbitrary<R>[] = [
    ...focused,
    ...focused,
    fc
      .tuple(v, fc.constantFrom('==', '!=', '<', '<=', '>', '>=', 'contains', 'startsWith', 'endsWith'), v)
      .map(([l, op, r]) => ({ t: 'cmp' as const, op, l, r })),
    fc
      .tuple(pathArb(inIt), fc.constantFrom('==', '!='), lit)
      .map(([l, op, r]) => ({ t: 'cmp' as const, op, l, r })),
    fc
      .tuple(v, fc.constantFrom('in', 'not in'), fc.oneof(listLit, pathArb(inIt)))
      .map(([l, op, r]) => ({ t: 'cmp' as const, op, l, r })),
    fc
      .tuple(v, fc.constantFrom(...PATTERNS))
      .map(([l, [pattern, flags]]) => ({ t: 'match' as const, l, pattern, flags })),
    pathArb(inIt).map((p) => ({ t: 'call' as const, fn: 'exists', args: [p] })),
    changedPath.map((p) => ({ t: 'call' as const, fn: 'changed', args: [p] })),
    pathArb(inIt),
    fc.constantFrom<R>(
      { t: 'lit', v: true },
      { t: 'lit', v: false },
      { t: 'lit', v: null },
      { t: 'lit', v: 'x' },
    ),
  ];
  if (depth <= 0) return fc.oneof(...atoms);
  const sub = boolArb(depth - 1, inIt);
  return fc.oneof(
    { arbitrary: fc.oneof(...atoms), weight: 4 },
    { arbitrary: sub.map((x) => ({ t: 'not' as const, x })), weight: 1 },
    {
      arbitrary: fc.array(sub, { minLength: 2, maxLength: 4 }).map((xs) => ({ t: 'and' as const, xs })),
      weight: 2,
    },
    {
      arbitrary: fc.array(sub, { minLength: 2, maxLength: 3 }).map((xs) => ({ t: 'or' as const, xs })),
      weight: 2,
    },
    {
      arbitrary: fc
        .tuple(fc.constantFrom('any', 'all'), pathArb(inIt), boolArb(depth - 1, true))
        .map(([fn, p, c]) => ({ t: 'call' as const, fn, args: [p, c] })),
      weight: 1,
    },
  );
}

// ---------------------------------------------------------------------------------------------
// Rendering

export interface Style {
  /** Random choices for spacing, synonyms, quotes and extra parentheses, drawn from this list. */
  readonly bits: readonly number[];
}

class Renderer {
  private i = 0;
  constructor(private readonly bits: readonly number[]) {}
  private pick(n: number): number {
    if (this.bits.length === 0) return 0;
    return this.bits[this.i++ % this.bits.length]! % n;
  }
  private sp(): string {
    return [' ', ' ', '  ', '\n', '\t', ' \r\n '][this.pick(6)]!;
  }

  str(s: string): string {
    if (this.pick(3) === 0) {
      // Single quotes: escape backslashes, single quotes and control characters.
      return `'${JSON.stringify(s).slice(1, -1).replace(/\\"/g, '"').replace(/'/g, "\\'")}'`;
    }
    return JSON.stringify(s);
  }

  json(v: J): string {
    if (typeof v === 'string') return this.str(v);
    if (Array.isArray(v)) return `[${v.map((x) => this.json(x)).join(`,${this.pick(2) ? ' ' : ''}`)}]`;
    if (v !== null && typeof v === 'object') throw new Error('object literals cannot be written in text');
    return JSON.stringify(v);
  }

  path(root: string, segs: (string | number)[]): string {
    let s = root;
    for (const g of segs) {
      if (typeof g === 'number') s += `[${g}]`;
      else if (/^[A-Za-z_][A-Za-z0-9_]*$/.test(g) && this.pick(4) !== 0) s += `.${g}`;
      else s += `[${this.str(g)}]`;
    }
    return s;
  }

  render(n: R, min: number): string {
    const prec =
      n.t === 'or' ? 1 : n.t === 'and' ? 2 : n.t === 'not' ? 3 : n.t === 'cmp' || n.t === 'match' ? 4 : 5;
    let s: string;
    switch (n.t) {
      case 'lit':
        s = this.json(n.v);
        break;
      case 'path':
        s = this.path(n.root, n.segs);
        break;
      case 'call':
        s = `${n.fn}(${n.args.map((a) => this.render(a, 1)).join(`,${this.sp()}`)})`;
        break;
      case 'not':
        s = this.pick(2) ? `!${this.render(n.x, 3)}` : `not${this.sp()}${this.render(n.x, 3)}`;
        break;
      case 'and':
        s = n.xs
          .map((x) => this.render(x, 3))
          .join(this.pick(2) ? `${this.sp()}and${this.sp()}` : `${this.sp()}&&${this.sp()}`);
        break;
      case 'or':
        s = n.xs
          .map((x) => this.render(x, 2))
          .join(this.pick(2) ? `${this.sp()}or${this.sp()}` : `${this.sp()}||${this.sp()}`);
        break;
      case 'cmp':
        s = `${this.render(n.l, 5)}${this.sp()}${n.op}${this.sp()}${this.render(n.r, 5)}`;
        break;
      case 'match': {
        const lit =
          n.flags === '' && this.pick(2)
            ? this.str(n.pattern)
            : `/${n.pattern.replace(/\//g, '\\/')}/${n.flags}`;
        s = `${this.render(n.l, 5)}${this.sp()}matches${this.sp()}${lit}`;
        break;
      }
    }
    const wrap = prec < min || (prec < 5 && this.pick(8) === 0);
    return wrap ? `(${s})` : s;
  }
}

/** Whether a tree can be written as text (object literals cannot). */
export function writable(n: R): boolean {
  switch (n.t) {
    case 'lit':
      return !hasObject(n.v);
    case 'path':
      return true;
    case 'call':
      return n.args.every(writable);
    case 'not':
      return writable(n.x);
    case 'and':
    case 'or':
      return n.xs.every(writable);
    case 'cmp':
      return writable(n.l) && writable(n.r);
    case 'match':
      return writable(n.l);
  }
}

function hasObject(v: J): boolean {
  if (Array.isArray(v)) return v.some(hasObject);
  return v !== null && typeof v === 'object';
}

export function renderText(n: R, bits: readonly number[]): string {
  return new Renderer(bits).render(n, 1);
}

const TREE_OPS: Record<string, string> = {
  '==': 'eq',
  '!=': 'ne',
  '<': 'lt',
  '<=': 'lte',
  '>': 'gt',
  '>=': 'gte',
  in: 'in',
  'not in': 'nin',
  contains: 'contains',
  startsWith: 'startsWith',
  endsWith: 'endsWith',
};

/** The condition tree form of a reference tree (text leaves where the tree form has no node). */
export function renderTree(n: R, bits: readonly number[]): unknown {
  const r = new Renderer(bits);
  const go = (x: R): unknown => {
    switch (x.t) {
      case 'and':
        return { all: x.xs.map(go) };
      case 'or':
        return { any: x.xs.map(go) };
      case 'not':
        return { not: go(x.x) };
      case 'cmp':
        if (
          x.l.t === 'path' &&
          x.r.t === 'lit' &&
          ((x.op !== 'in' && x.op !== 'not in') || Array.isArray(x.r.v))
        ) {
          return { field: r.path(x.l.root, x.l.segs), op: TREE_OPS[x.op], value: x.r.v };
        }
        break;
      case 'match':
        if (x.l.t === 'path') {
          const node: Record<string, unknown> = {
            field: r.path(x.l.root, x.l.segs),
            op: 'matches',
            value: x.pattern,
          };
          if (x.flags) node.flags = x.flags;
          return node;
        }
        break;
      case 'call':
        if ((x.fn === 'exists' || x.fn === 'changed') && x.args[0]!.t === 'path') {
          const p = x.args[0] as Extract<R, { t: 'path' }>;
          return { field: r.path(p.root, p.segs), op: x.fn };
        }
        break;
      default:
        break;
    }
    return { expr: r.render(x, 1) };
  };
  return go(n);
}

export const ruleArb = (i: number): fc.Arbitrary<{ rule: RRule; doc: Record<string, unknown> }> =>
  fc
    .record({
      tenant: fc.constantFrom(undefined, 'default', 'default', 't1'),
      source: fc.constantFrom('*', 'halo', 'rmm', '*'),
      on: fc.constantFrom<string | string[] | undefined>(
        undefined,
        '*',
        'ticket.*',
        'ticket.updated',
        ['ticket.created', 'device.offline'],
        'event.*',
        ['ticket.updated', 'ticket.*'],
      ),
      status: fc.constantFrom(undefined, 'active', 'active', 'active', 'paused', 'draft'),
      allowSelf: fc.constantFrom(undefined, false, true),
      when: fc.option(boolArb(2), { nil: undefined, freq: 8 }),
      form: fc.constantFrom('text', 'text', 'tree'),
      bits: fc.array(fc.nat(), { minLength: 1, maxLength: 16 }),
    })
    .map((r): { rule: RRule; doc: Record<string, unknown> } | null => {
      const rule: RRule = { id: `r${String(i).padStart(3, '0')}`, source: r.source };
      const doc: Record<string, unknown> = { id: rule.id, source: r.source };
      if (r.tenant !== undefined) rule.tenant = doc.tenant = r.tenant;
      if (r.on !== undefined) rule.on = doc.on = r.on;
      if (r.status !== undefined) rule.status = doc.status = r.status;
      if (r.allowSelf !== undefined) rule.allowSelf = doc.allowSelf = r.allowSelf;
      if (r.when !== undefined) {
        rule.when = r.when;
        try {
          doc.when =
            r.form === 'tree' || !writable(r.when) ? renderTree(r.when, r.bits) : renderText(r.when, r.bits);
        } catch {
          return null; // an object literal where only text can hold it
        }
      }
      return { rule, doc };
    })
    .filter((x): x is { rule: RRule; doc: Record<string, unknown> } => x !== null);
