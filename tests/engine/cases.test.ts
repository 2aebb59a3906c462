/**
 * The JSON case files in tests/cases: tricky semantics (`{when, data, previous?, event?, expect}`)
 * and compile errors with their codes and positions (`{when, code, line?, column?, where?}`).
 * Every semantics case is also run through the reference interpreter's verdict via explain(), so
 * the files, the compiled engine and explain() all agree.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { compileRule, Engine, EngineError, explain } from '../../src/engine/index.js';

interface Case {
  name: string;
  when: unknown;
  data?: Record<string, unknown>;
  previous?: Record<string, unknown> | null;
  event?: Record<string, unknown>;
  event_json?: string;
  expect: boolean;
}

interface ErrorCase {
  name: string;
  when: unknown;
  code: string;
  line?: number;
  column?: number;
  where?: string;
}

function load<T>(file: string): T[] {
  return JSON.parse(readFileSync(new URL(`../cases/${file}`, import.meta.url), 'utf8')) as T[];
}

function envelopeOf(c: Case): Record<string, unknown> {
  if (c.event_json) return JSON.parse(c.event_json);
  const env: Record<string, unknown> = {
    id: 'e1',
    source: 'halo',
    type: 'ticket.updated',
    data: c.data ?? {},
    ...c.event,
  };
  if (Object.hasOwn(c, 'previous')) env.previous = c.previous;
  return env;
}

for (const file of ['semantics.json', 'trees.json']) {
  describe(`cases/${file}`, () => {
    for (const c of load<Case>(file)) {
      it(c.name, () => {
        const rule = compileRule({ id: 'r', source: '*', when: c.when });
        const env = envelopeOf(c);
        const engine = new Engine([rule]);
        expect(engine.match(env as never).length === 1, 'compiled engine').toBe(c.expect);
        expect(explain(rule, env as never).matched, 'explain').toBe(c.expect);
      });
    }
  });
}

describe('cases/errors.json', () => {
  for (const c of load<ErrorCase>('errors.json')) {
    it(c.name, () => {
      let err: unknown;
      try {
        compileRule({ id: 'r', source: '*', when: c.when });
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(EngineError);
      const e = err as EngineError;
      expect(e.code).toBe(c.code);
      expect(e.where).toBe(c.where ?? 'when');
      if (c.line !== undefined) expect(e.position?.line).toBe(c.line);
      if (c.column !== undefined) expect(e.position?.column).toBe(c.column);
      if (e.position) {
        expect(e.message).toContain(`line ${e.position.line}, column ${e.position.column}`);
        expect(e.snippet).toMatch(/\n *\^$/);
      }
    });
  }
});
