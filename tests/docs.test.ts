/** The documented error codes and the engine's list agree (fastify's error tests). */
import { readFileSync } from 'node:fs';
import { expect, it } from 'vitest';
import { ERROR_CODES } from '../src/engine/index.js';

it('docs/errors.md lists exactly the error codes the code defines', () => {
  const doc = readFileSync(new URL('../docs/errors.md', import.meta.url), 'utf8');
  const documented = [...doc.matchAll(/^\| `(SB_[A-Z_]+)` \|/gm)].map((m) => m[1]).sort();
  expect(documented).toEqual(Object.keys(ERROR_CODES).sort());
});

it('every example in docs/rules.md compiles', async () => {
  const { compileRule, treeToNode } = await import('../src/engine/index.js');
  const doc = readFileSync(new URL('../docs/rules.md', import.meta.url), 'utf8');
  const blocks = [...doc.matchAll(/```(\w*)\n([\s\S]*?)```/g)].map((m) => ({
    lang: m[1],
    text: m[2]!.trim(),
  }));
  let checked = 0;
  for (const { lang, text } of blocks) {
    if (lang === 'json') {
      const v = JSON.parse(text);
      if ('id' in v) compileRule(v);
      else treeToNode(v, 'when');
    } else {
      // Expression blocks hold one condition per line.
      for (const line of text.split('\n')) compileRule({ id: 'doc', source: '*', when: line });
    }
    checked++;
  }
  // Table cells that show conditions, like `ticket.summary contains "backup"`.
  for (const m of doc.matchAll(/^\| `([^`]+)` \|/gm)) {
    compileRule({ id: 'doc', source: '*', when: m[1]!.replace(/\\\|/g, '|') });
    checked++;
  }
  expect(checked).toBeGreaterThanOrEqual(15);
});

it('every rule example in docs/actions.md compiles, and every action is documented', async () => {
  const { ACTION_TYPES, compileRule } = await import('../src/engine/index.js');
  const doc = readFileSync(new URL('../docs/actions.md', import.meta.url), 'utf8');
  const rules = [...doc.matchAll(/```json\n([\s\S]*?)```/g)].map(
    (m) => JSON.parse(m[1]!) as Record<string, unknown>,
  );
  for (const r of rules) expect(() => compileRule(r), String(r.id)).not.toThrow();
  expect(rules.length).toBeGreaterThanOrEqual(7);
  const used = new Set(rules.flatMap((r) => (r.actions as Array<{ type: string }>).map((a) => a.type)));
  for (const type of Object.keys(ACTION_TYPES)) {
    expect(doc, type).toContain(type);
    if (type !== 'psa.ticket.update') expect(used, `an example uses ${type}`).toContain(type);
  }
});

it('docs/admin.md: every operation with curl and grpcurl, valid example inputs, codes and templates listed', async () => {
  const { Ajv2020 } = await import('ajv/dist/2020.js');
  const { ADMIN_ERRORS, inputSchema, OPERATIONS, TEMPLATES } = await import('../src/admin/index.js');
  const { EXAMPLES, withOperations } = await import('../scripts/admin-docs.js');
  const doc = readFileSync(new URL('../docs/admin.md', import.meta.url), 'utf8');
  // The generated section is current.
  expect(withOperations(doc)).toBe(doc);
  const ajv = new Ajv2020({ allErrors: true, strict: false });
  for (const op of OPERATIONS) {
    expect(doc, op.name).toContain(`signalbox.admin.v1.Admin/${op.name}`);
    expect(doc, op.name).toContain(`#### ${op.name}: \`${op.method} ${op.path}\``);
    const input = JSON.parse(JSON.stringify(EXAMPLES[op.name]));
    const validate = ajv.compile(inputSchema(op));
    expect(validate(input), `${op.name}: ${JSON.stringify(validate.errors)}`).toBe(true);
    // Example rules compile (except ValidateRule's, which shows an error on purpose).
    if (input.document && op.name !== 'ValidateRule') {
      const { compileRule } = await import('../src/engine/index.js');
      expect(() => compileRule({ id: 'example', ...input.document }), op.name).not.toThrow();
    }
  }
  for (const code of Object.keys(ADMIN_ERRORS)) {
    const { http } = ADMIN_ERRORS[code as keyof typeof ADMIN_ERRORS];
    expect(doc, code).toMatch(new RegExp(`^\\| \`${code}\` \\| ${http} \\|`, 'm'));
  }
  for (const t of TEMPLATES) expect(doc, t.id).toContain(`| \`${t.id}\` | ${t.category} |`);
});
