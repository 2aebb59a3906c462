/**
 * schemas/rule.schema.json, the JSON Schema for rule files: it accepts every rule the project
 * ships (docs examples, templates), refuses the malformed documents the engine refuses, and lists
 * exactly the engine's action types.
 */
import { readFileSync } from 'node:fs';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { describe, expect, it } from 'vitest';
import { TEMPLATES } from '../src/admin/index.js';
import { ACTION_TYPES, compileRule } from '../src/engine/index.js';

const schema = JSON.parse(readFileSync(new URL('../schemas/rule.schema.json', import.meta.url), 'utf8'));
const validate = new Ajv2020({ allErrors: true, strict: false }).compile(schema);

const docRules = (file: string) =>
  [...readFileSync(new URL(`../docs/${file}`, import.meta.url), 'utf8').matchAll(/```json\n([\s\S]*?)```/g)]
    .map((m) => JSON.parse(m[1]!) as Record<string, unknown>)
    .filter((r) => typeof r.id === 'string');

describe('rule JSON Schema', () => {
  it('accepts every rule the docs and the template catalogue ship', () => {
    const rules = [
      ...docRules('actions.md'),
      ...docRules('rules.md'),
      ...TEMPLATES.map((t) => ({ id: t.id, name: t.name, ...t.rule })),
    ];
    expect(rules.length).toBeGreaterThan(20);
    for (const r of rules) expect(validate(r), `${r.id}: ${JSON.stringify(validate.errors)}`).toBe(true);
    expect(validate(rules)).toBe(true);
  });

  it('refuses documents the engine refuses', () => {
    const base = { id: 'r', source: '*' };
    const bad: Array<Record<string, unknown>> = [
      { source: '*' },
      { id: 'r' },
      { id: 'Bad Id', source: '*' },
      { ...base, on: 'ticket' },
      { ...base, on: [] },
      { ...base, status: 'sleeping' },
      { ...base, actions: [{ type: 'fax' }] },
      { ...base, actions: [{ type: 'webhook', with: {} }] },
      { ...base, actions: [{ type: 'delay', with: { for: 'soon' } }] },
      { ...base, actions: [{ type: 'psa.note.add', with: { ticket_id: 1, text: 'x' } }] },
      { ...base, actions: [{ type: 'log', colour: 'red' }] },
      { ...base, debounce: { for: '15m' } },
      { ...base, throttle: { max: 0, per: '1h', key: 'k' } },
      { ...base, retries: 99 },
      { ...base, schedule: { cron: '0 8 * * 1' }, on: 'ticket.updated' },
      { ...base, when: { field: 'a', op: 'like', value: 1 } },
      { ...base, when: { all: [{ nope: 1 }] } },
    ];
    for (const d of bad) {
      expect(validate(d), JSON.stringify(d)).toBe(false);
      expect(() => compileRule(d), JSON.stringify(d)).toThrow();
    }
  });

  it('lists exactly the action types of the engine', () => {
    const step = schema.$defs.step.properties.type.enum as string[];
    expect([...step].sort()).toEqual(Object.keys(ACTION_TYPES).sort());
  });
});
