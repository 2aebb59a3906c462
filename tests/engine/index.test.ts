/**
 * The index files rules so that an event only evaluates candidates, and changes swap in whole.
 */
import { describe, expect, it } from 'vitest';
import {
  buildBucket,
  type CompiledRule,
  compileRule,
  compileRuleSet,
  Engine,
} from '../../src/engine/index.js';

function rules(docs: object[]): CompiledRule[] {
  const { rules, errors } = compileRuleSet(docs.map((d, i) => ({ id: `r${i}`, source: '*', ...d })));
  expect(errors).toEqual([]);
  return rules;
}

describe('buckets', () => {
  it('files equality rules by value: an event sees only its value’s rules', () => {
    const rs = rules(
      Array.from({ length: 1000 }, (_, i) => ({
        when: `ticket.status == "S${i % 100}" and ticket.priority <= ${i % 5}`,
      })),
    );
    const b = buildBucket(rs, 'ticket.updated');
    expect(b.unkeyed.length).toBe(0);
    expect(b.groups).toHaveLength(1);
    expect(b.groups[0]!.map.get('S7')!.length).toBe(10);
    expect(b.groups[0]!.map.get('nope')).toBeUndefined();
  });
  it('uses in-lists, or-chains and bare booleans as keys', () => {
    const rs = rules([
      { when: 'ticket.priority in [1, 2]' },
      { when: 'ticket.status == "A" or ticket.status == "B"' },
      { when: 'ticket.is_vip and ticket.x > 1' },
      { when: { all: [{ field: 'ticket.board', op: 'eq', value: 'Help' }] } },
    ]);
    const b = buildBucket(rs, 'ticket.updated');
    expect(b.unkeyed.length).toBe(0);
    const keys = b.groups.flatMap((g) => [...g.map.keys()]);
    expect(keys.sort()).toEqual([1, 2, 'A', 'B', 'Help', true].sort() as never);
  });
  it('picks the more selective of two keys', () => {
    const rs = rules([
      ...Array.from({ length: 50 }, (_, i) => ({
        when: `ticket.board == "Help" and ticket.company == "C${i}"`,
      })),
    ]);
    const b = buildBucket(rs, 'ticket.updated');
    // Filed by company (one rule per value), not by board (50 rules under one value).
    expect(b.groups).toHaveLength(1);
    expect(b.groups[0]!.map.size).toBe(50);
  });
  it('leaves rules without an equality test unkeyed, and drops rules that cannot match the type', () => {
    const rs = rules([
      { when: 'ticket.summary contains "disk"' },
      { when: 'ticket.a != 1' },
      { when: 'device.status == "offline"' },
      { when: 'ticket.a in []' },
      { when: 'device.status == null and ticket.a == 3' },
    ]);
    const b = buildBucket(rs, 'ticket.updated');
    expect(b.size).toBe(3);
    expect(b.unkeyed.allIds()).toEqual(['r0', 'r1']);
    expect(b.groups.flatMap((g) => [...g.map.keys()])).toEqual([3]);
  });
  it('does not key on values that are not primitives', () => {
    const b = buildBucket(
      rules([{ when: 'ticket.tags == ["a"]' }, { when: 'ticket.a in [1, [2]]' }]),
      'ticket.updated',
    );
    expect(b.unkeyed.length).toBe(2);
  });
});

describe('engine', () => {
  const env = (over: object = {}) => ({
    id: 'e',
    tenant: 't1',
    source: 'halo',
    type: 'ticket.updated',
    data: { status: 'New' },
    ...over,
  });

  it('scopes rules by tenant, source, on and status', () => {
    const e = new Engine(
      rules([
        { tenant: 't1', source: 'halo', on: 'ticket.updated' },
        { tenant: 't2' },
        { tenant: 't1', source: 'autotask' },
        { tenant: 't1', on: 'ticket.*' },
        { tenant: 't1', on: ['device.*', 'ticket.created'] },
        { tenant: 't1', status: 'paused' },
        { tenant: 't1', status: 'draft' },
        { tenant: 't1', on: 'ticket.updated.more' },
      ]),
    );
    expect(e.match(env())).toEqual(['r0', 'r3']);
    expect(e.match(env({ tenant: undefined }))).toEqual([]);
  });
  it('matches self events only with allowSelf', () => {
    const e = new Engine(rules([{ allowSelf: true }, {}]));
    expect(e.match({ ...env(), tenant: undefined, self: true })).toEqual(['r0']);
    expect(e.match({ ...env(), tenant: undefined, self: false })).toEqual(['r0', 'r1']);
  });
  it('sorts ids by UTF-16 code units', () => {
    const ids = ['b', 'a-1', 'a_1', '0', 'a'];
    const e = new Engine(ids.map((id) => compileRule({ id, source: '*' })));
    expect(e.match({ id: 'x', source: 's', type: 'a.b', data: {} })).toEqual(['0', 'a', 'a-1', 'a_1', 'b']);
  });
  it('applies upserts and removals, swapping in a new index and leaving the old one intact', () => {
    const e = new Engine(rules([{ when: 'ticket.status == "New"' }, { when: 'ticket.status == "Closed"' }]));
    const before = e.current;
    e.apply({
      upsert: [
        compileRule({ id: 'r1', source: '*', when: 'ticket.status == "New"' }),
        compileRule({ id: 'r9', source: '*' }),
      ],
      remove: [{ tenant: 'default', id: 'r0' }],
    });
    expect(e.current).not.toBe(before);
    expect(e.match(env({ tenant: undefined }))).toEqual(['r1', 'r9']);
    // The old index is untouched: a match in flight against it sees the old rule set whole.
    expect(before.rule('default', 'r0')).toBeDefined();
    expect(before.rule('default', 'r9')).toBeUndefined();
    const old = new Engine();
    old.replaceAll([...before.tenants.get('default')!.byId.values()]);
    expect(old.match(env({ tenant: undefined }))).toEqual(['r0']);
  });
  it('an upsert that pauses a rule removes it from the index', () => {
    const e = new Engine(rules([{}]));
    e.apply({ upsert: [compileRule({ id: 'r0', source: '*', status: 'paused' })] });
    expect(e.size).toBe(0);
    expect(e.match(env({ tenant: undefined }))).toEqual([]);
  });
  it('moving a rule to another source re-files it', () => {
    const e = new Engine(rules([{ source: 'halo' }]));
    e.apply({ upsert: [compileRule({ id: 'r0', source: 'autotask' })] });
    expect(e.match(env({ tenant: undefined }))).toEqual([]);
    expect(e.match(env({ tenant: undefined, source: 'autotask' }))).toEqual(['r0']);
  });
  it('shares untouched tenants between versions', () => {
    const e = new Engine(rules([{ tenant: 'a' }, { tenant: 'b' }]));
    const before = e.current;
    e.apply({ upsert: [compileRule({ id: 'new', tenant: 'a', source: '*' })] });
    expect(e.current.tenants.get('b')).toBe(before.tenants.get('b'));
    expect(e.current.tenants.get('a')).not.toBe(before.tenants.get('a'));
  });
  it('returns a frozen shared array when nothing matches', () => {
    const e = new Engine(rules([{ when: 'false' }]));
    const r = e.match(env({ tenant: undefined }));
    expect(r).toEqual([]);
    expect(Object.isFrozen(r)).toBe(true);
  });
});
