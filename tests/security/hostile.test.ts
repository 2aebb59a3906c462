/**
 * Hostile rules and payloads. Rules come through the admin API: each of these must get a clean
 * error or a correct answer, never a crash, a hang or executed code. (Per-test timeouts here are
 * hang guards, not performance checks.)
 */
import { describe, expect, it } from 'vitest';
import {
  compileRule,
  Engine,
  EngineError,
  explain,
  MAX_DEPTH,
  MAX_EXPR_BYTES,
  MAX_LIST,
} from '../../src/engine/index.js';

const HANG_GUARD = 10_000;

function errorOf(when: unknown): EngineError {
  try {
    compileRule({ id: 'r', source: '*', when });
  } catch (e) {
    if (e instanceof EngineError) return e;
    throw e;
  }
  throw new Error('expected a compile error');
}

function matches(when: unknown, data: unknown, extra: Record<string, unknown> = {}): boolean {
  const rule = compileRule({ id: 'r', source: '*', when });
  const env = { id: 'e', source: 'halo', type: 'ticket.updated', data, ...extra };
  const m = new Engine([rule]).match(env as never).length === 1;
  expect(explain(rule, env as never).matched).toBe(m);
  return m;
}

describe('code injection', () => {
  const payloads = [
    `"); process.exit(1); ("`,
    "'); globalThis.pwned = 1; ('",
    // biome-ignore lint/suspicious/noTemplateCurlyInString: an injection payload, on purpose
    '${globalThis.pwned = 1}',
    // biome-ignore lint/suspicious/noTemplateCurlyInString: an injection payload, on purpose
    '`${globalThis.pwned = 1}`',
    '\\u0022); globalThis.pwned = 1; //',
    '*/ globalThis.pwned = 1; /*',
    '</script><script>globalThis.pwned=1</script>',
  ];
  for (const p of payloads) {
    it(`literal ${JSON.stringify(p)}`, () => {
      expect(matches(`ticket.s == ${JSON.stringify(p)}`, { s: p })).toBe(true);
      expect(matches(`ticket[${JSON.stringify(p)}] == 1`, { [p]: 1 })).toBe(true);
      expect(matches({ field: `ticket[${JSON.stringify(p)}]`, op: 'eq', value: p }, { [p]: p })).toBe(true);
      expect((globalThis as Record<string, unknown>).pwned).toBeUndefined();
    });
  }
  it('regex source cannot escape its literal', () => {
    expect(
      matches('ticket.s matches "a/; globalThis.pwned = 1; /"', { s: 'a/; globalThis.pwned = 1; /' }),
    ).toBe(true);
    expect((globalThis as Record<string, unknown>).pwned).toBeUndefined();
  });
});

describe('prototype chains', () => {
  it('inherited names resolve to null', () => {
    expect(
      matches('ticket.constructor == null and ticket.__proto__ == null and ticket.toString == null', {}),
    ).toBe(true);
    expect(matches('ticket.constructor.constructor == null', {})).toBe(true);
    expect(
      matches('exists(ticket.hasOwnProperty) or exists(data.valueOf) or exists(event.constructor)', {}),
    ).toBe(false);
    expect(matches('ticket.a.constructor.name == null', { a: [] })).toBe(true);
    expect(matches('ticket.s.length == null and len(ticket.s) == 3', { s: 'abc' })).toBe(true);
  });
  it('own __proto__ and constructor keys are plain data', () => {
    const data = JSON.parse('{"__proto__": {"polluted": true}, "constructor": {"prototype": 1}}');
    expect(matches('ticket.__proto__.polluted == true and ticket.constructor.prototype == 1', data)).toBe(
      true,
    );
    expect(matches('changed(ticket.__proto__)', data, { previous: {} })).toBe(true);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });
  it('rule documents with __proto__ keys do not pollute', () => {
    const doc = JSON.parse(
      '{"id":"r","source":"*","__proto__":{"status":"paused"},"when":{"field":"ticket.a","op":"eq","value":{"__proto__":{"x":1}}}}',
    );
    const rule = compileRule(doc);
    expect(rule.status).toBe('active');
    expect(
      new Engine([rule]).match({
        id: 'e',
        source: 'h',
        type: 'ticket.updated',
        data: JSON.parse('{"a":{"__proto__":{"x":1}}}'),
      }).length,
    ).toBe(1);
    expect(({} as Record<string, unknown>).x).toBeUndefined();
  });
});

describe('line and paragraph separators', () => {
  it('U+2028 and U+2029 in literals, keys and regexes', () => {
    expect(matches('ticket["a\u2028b"] == "c\u2029d"', { 'a\u2028b': 'c\u2029d' })).toBe(true);
    expect(matches('ticket.s matches "\u2028"', { s: 'x\u2028y' })).toBe(true);
  });
  it('U+2028 is not a line break for positions', () => {
    const e = errorOf('"\u2028" == ==');
    expect(e.position).toMatchObject({ line: 1, column: 8 });
  });
});

describe('nesting', () => {
  const deep = (n: number, open: string, inner: string, close: string) =>
    open.repeat(n) + inner + close.repeat(n);
  it(`${MAX_DEPTH} levels are allowed, ${MAX_DEPTH + 1} are not`, () => {
    expect(matches(deep(MAX_DEPTH, '(', 'ticket.a == 1', ')'), { a: 1 })).toBe(true);
    expect(errorOf(deep(MAX_DEPTH + 1, '(', 'ticket.a == 1', ')'))).toMatchObject({
      code: 'SB_RULE_LIMIT',
      position: { column: MAX_DEPTH + 1 },
    });
    expect(
      matches(`ticket.a in ${deep(MAX_DEPTH, '[', '1', ']')}`, {
        a: deep(MAX_DEPTH - 1, '[', '1', ']') === '' ? 1 : JSON.parse(deep(MAX_DEPTH - 1, '[', '1', ']')),
      }),
    ).toBe(true);
    expect(errorOf(`ticket.a in ${deep(MAX_DEPTH + 1, '[', '1', ']')}`).code).toBe('SB_RULE_LIMIT');
    expect(matches(deep(MAX_DEPTH, 'lower(', 'ticket.a', ')') + ' == "x"', { a: 'X' })).toBe(true);
    expect(errorOf(deep(MAX_DEPTH + 1, 'lower(', 'ticket.a', ')') + ' == "x"').code).toBe('SB_RULE_LIMIT');
  });
  it('condition tree levels count, and add to the parentheses inside an expr', () => {
    const tree = (n: number, leaf: unknown): unknown => (n === 0 ? leaf : { not: tree(n - 1, leaf) });
    expect(matches(tree(MAX_DEPTH, { expr: 'true' }), {})).toBe(true);
    expect(errorOf(tree(MAX_DEPTH + 1, { expr: 'true' })).code).toBe('SB_RULE_LIMIT');
    expect(errorOf(tree(1, { expr: deep(MAX_DEPTH, '(', 'true', ')') })).code).toBe('SB_RULE_LIMIT');
    expect(matches(tree(1, { expr: deep(MAX_DEPTH - 1, '(', 'false', ')') }), {})).toBe(true);
  });
  it('10,000-deep parentheses, lists, calls and trees are clean errors', { timeout: HANG_GUARD }, () => {
    expect(errorOf(deep(10_000, '(', 'true', ')')).code).toBe('SB_RULE_LIMIT');
    expect(errorOf(`ticket.a in ${deep(10_000, '[', '', ']')}`).code).toBe('SB_RULE_LIMIT');
    expect(errorOf(deep(10_000, 'len(', 'ticket.a', ')')).code).toBe('SB_RULE_LIMIT');
    const tree = JSON.parse(deep(10_000, '{"not":', '{"expr":""}', '}'));
    expect(errorOf(tree).code).toBe('SB_RULE_LIMIT');
    const value = JSON.parse(deep(10_000, '[', '1', ']'));
    expect(errorOf({ field: 'ticket.a', op: 'eq', value }).code).toBe('SB_RULE_LIMIT');
  });
  it('10,000 nots and 10,000-term chains compile without recursion', { timeout: HANG_GUARD }, () => {
    expect(matches(`${'not '.repeat(10_000)}ticket.a`, { a: true })).toBe(true);
    expect(matches(`${'!'.repeat(10_001)}ticket.a`, { a: true })).toBe(false);
    expect(
      matches(Array.from({ length: 2_500 }, (_, i) => `ticket.a == ${i}`).join(' or '), { a: 2_499 }),
    ).toBe(true);
    expect(matches(Array.from({ length: 5_000 }, () => 'ticket.a').join('&&'), { a: true })).toBe(true);
  });
  it('a 100,000-deep event value never overflows the stack', { timeout: HANG_GUARD }, () => {
    const data = JSON.parse(`{"a":${deep(100_000, '[', '1', ']')},"b":${deep(100_000, '[', '1', ']')}}`);
    const previous = JSON.parse(`{"a":${deep(100_000, '[', '2', ']')}}`);
    expect(matches('changed(ticket.a)', data, { previous })).toBe(true);
    expect(matches('ticket.a == ticket.b', data)).toBe(true);
    expect(matches('ticket.a in ticket.b', data)).toBe(false);
    expect(matches('ticket.b contains ticket.a', data)).toBe(false);
  });
});

describe('size limits', () => {
  it(`an expression of ${MAX_EXPR_BYTES} UTF-8 bytes is allowed, one more byte is not`, () => {
    const base = 'ticket.s == ""';
    const fill = (bytes: number) => `ticket.s == "${'x'.repeat(bytes - base.length)}"`;
    expect(Buffer.byteLength(fill(MAX_EXPR_BYTES))).toBe(MAX_EXPR_BYTES);
    expect(matches(fill(MAX_EXPR_BYTES), { s: 'x'.repeat(MAX_EXPR_BYTES - base.length) })).toBe(true);
    expect(errorOf(fill(MAX_EXPR_BYTES + 1))).toMatchObject({
      code: 'SB_RULE_LIMIT',
      position: { line: 1, column: 1 },
    });
  });
  it('bytes, not characters, count', () => {
    const text = `ticket.s == "${'é'.repeat(MAX_EXPR_BYTES / 2)}"`;
    expect(errorOf(text).code).toBe('SB_RULE_LIMIT');
  });
  it('a 1 MiB expression is rejected quickly', { timeout: HANG_GUARD }, () => {
    expect(errorOf('('.repeat(1 << 20)).code).toBe('SB_RULE_LIMIT');
  });
  it(`lists of ${MAX_LIST} elements are allowed, ${MAX_LIST + 1} are not`, () => {
    const list = (n: number) => `[${Array.from({ length: n }, (_, i) => i).join(',')}]`;
    expect(matches(`ticket.a in ${list(MAX_LIST)}`, { a: MAX_LIST - 1 })).toBe(true);
    const e = errorOf(`ticket.a in ${list(MAX_LIST + 1)}`);
    expect(e.code).toBe('SB_RULE_LIMIT');
    // The offending token is the 10,001st element, just after the last comma.
    expect(e.position?.column).toBe(`ticket.a in ${list(MAX_LIST)}`.length + 1);
    const values = Array.from({ length: MAX_LIST + 1 }, (_, i) => i);
    expect(errorOf({ field: 'ticket.a', op: 'in', value: values }).code).toBe('SB_RULE_LIMIT');
    expect(matches({ field: 'ticket.a', op: 'nin', value: values.slice(1) }, { a: 0 })).toBe(true);
  });
});

describe('catastrophic regexes', () => {
  const bad = [
    '(a+)+$',
    '(a*)*b',
    '((ab)*)+c',
    '(x+x+)+y',
    '(a|a)*b',
    '(a|ab)+c',
    '(\\w+\\s?)+$',
    '(.*a){20}',
    '(a{1,100})*',
    '(?:a+)+',
    '(\\d+)*x',
  ];
  for (const p of bad) {
    it(`rejects /${p}/ at compile time`, () => {
      expect(errorOf(`ticket.s matches /${p}/`).code).toBe('SB_RULE_REGEX');
      expect(errorOf({ field: 'ticket.s', op: 'matches', value: p }).code).toBe('SB_RULE_REGEX');
    });
  }
  it('backreferences are rejected', () => {
    expect(errorOf('ticket.s matches /(a)\\1/').code).toBe('SB_RULE_REGEX');
    expect(errorOf('ticket.s matches /(?<x>a)\\k<x>/').code).toBe('SB_RULE_REGEX');
  });
  it('ordinary patterns are accepted and run on large inputs', { timeout: HANG_GUARD }, () => {
    const s = `${'a'.repeat(1 << 20)}!`;
    expect(matches('ticket.s matches /^a+$/', { s })).toBe(false);
    expect(matches('ticket.s matches /(foo|bar)+|a+!$/', { s })).toBe(true);
    expect(matches('ticket.s matches /^(\\d{1,3}\\.){3}\\d{1,3}$/', { s: '10.0.0.1' })).toBe(true);
  });
  it('a slow pattern that slips past the static check is cut short by the V8 fallback', {
    timeout: HANG_GUARD,
  }, () => {
    // Polynomial, not nested: allowed statically; the entry points' backtrack fallback bounds it.
    expect(matches('ticket.s matches /^(a|b)*?c$/', { s: 'ab'.repeat(5_000) })).toBe(false);
  });
});

describe('hostile documents', () => {
  const docs: unknown[] = [
    null,
    42,
    'rule',
    [],
    { id: 'r' },
    { id: 'R!', source: '*' },
    { id: 'r', source: '*', when: 5 },
    { id: 'r', source: '*', when: [] },
    { id: 'r', source: '*', on: [] },
    { id: 'r', source: '*', on: 'ticket' },
    { id: 'r', source: '*', on: ['ticket.*', 7] },
    { id: 'r', source: '*', status: 'on' },
    { id: 'r', source: '*', tenant: null },
    { id: 'r', source: '*', allowSelf: 'yes' },
    { id: 'x'.repeat(129), source: '*' },
  ];
  for (const d of docs) {
    it(`rejects ${JSON.stringify(d)?.slice(0, 60)}`, () => {
      expect(() => compileRule(d)).toThrow(EngineError);
    });
  }
});
