/** explain(): per sub-condition, its text, value and the values compared; and the gates. */
import { describe, expect, it } from 'vitest';
import { compileRule, explain } from '../../src/engine/index.js';

const env = {
  id: 'e1',
  tenant: 'acme',
  source: 'halo',
  type: 'ticket.updated',
  data: {
    priority: 2,
    status: 'Escalated',
    customfields: [
      { name: 'Site', value: 1 },
      { name: 'VIP', value: true },
    ],
  },
  previous: { priority: 2, status: 'New' },
};

describe('explain', () => {
  it('shows why a rule did not match, sub-condition by sub-condition', () => {
    const rule = compileRule({
      id: 'p1',
      tenant: 'acme',
      source: 'halo',
      on: 'ticket.updated',
      when: 'ticket.priority <= 1 and changed(ticket.status)',
    });
    const ex = explain(rule, env);
    expect(ex.matched).toBe(false);
    expect(Object.values(ex.gates).every((g) => g.ok)).toBe(true);
    expect(ex.condition).toMatchObject({
      text: 'ticket.priority <= 1 and changed(ticket.status)',
      value: false,
      children: [
        { text: 'ticket.priority <= 1', value: false, left: 2, right: 1 },
        { text: 'changed(ticket.status)', value: true, left: 'New', right: 'Escalated' },
      ],
    });
  });
  it('names the element that decided any()', () => {
    const rule = compileRule({
      id: 'vip',
      tenant: 'acme',
      source: '*',
      when: 'any(ticket.customfields, it.name == "VIP")',
    });
    const ex = explain(rule, env);
    expect(ex.matched).toBe(true);
    expect(ex.condition?.note).toBe('element 1 of 2 satisfies the condition');
    expect(ex.condition?.children?.[0]).toMatchObject({ text: 'it.name == "VIP"', value: true, left: 'VIP' });
  });
  it('reports the gate that failed', () => {
    const rule = compileRule({
      id: 'x',
      tenant: 'other',
      source: 'autotask',
      on: 'device.*',
      status: 'paused',
    });
    const ex = explain(rule, { ...env, self: true });
    expect(ex.matched).toBe(false);
    expect(ex.condition).toBeNull();
    expect(Object.fromEntries(Object.entries(ex.gates).map(([k, g]) => [k, g.ok]))).toEqual({
      tenant: false,
      source: false,
      on: false,
      status: false,
      self: false,
    });
  });
  it('summarises huge values instead of copying them', () => {
    const rule = compileRule({ id: 'big', tenant: 'acme', source: '*', when: 'ticket.blob == "x"' });
    const ex = explain(rule, { ...env, data: { blob: 'y'.repeat(100_000) } });
    expect(String(ex.condition?.left)).toMatch(/… \(100000 characters\)$/);
  });
});
