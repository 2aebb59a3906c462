/** The documented error codes and the engine's list agree (fastify's error tests). */
import { readFileSync } from 'node:fs';
import { expect, it } from 'vitest';
import { ERROR_CODES } from '../src/engine/index.js';
import { freePort } from './redis-server.js';

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

it('docs/operations.md lists exactly the environment settings the code reads, and the units run valid commands', async () => {
  const { readdirSync, statSync } = await import('node:fs');
  const { join } = await import('node:path');
  const { execFile } = await import('node:child_process');
  const src = new URL('../src/', import.meta.url).pathname;
  const files = (dir: string): string[] =>
    readdirSync(dir).flatMap((f) =>
      statSync(join(dir, f)).isDirectory() ? files(join(dir, f)) : [join(dir, f)],
    );
  const read = new Set<string>();
  for (const f of files(src).filter((f) => f.endsWith('.ts')))
    for (const m of readFileSync(f, 'utf8').matchAll(
      /\benv\.([A-Z][A-Z0-9_]+)|\benv\[['"]([A-Z][A-Z0-9_]+)['"]\]/g,
    ))
      read.add(m[1] ?? m[2]!);
  const doc = readFileSync(new URL('../docs/operations.md', import.meta.url), 'utf8');
  const documented = [...doc.matchAll(/^\| `([A-Z][A-Z0-9_]+)` \|/gm)].map((m) => m[1]!);
  expect(documented.sort()).toEqual([...read].sort());
  // Each setting of the example environment file is one the code reads.
  const example = readFileSync(new URL('../deploy/systemd/signalbox.env.example', import.meta.url), 'utf8');
  for (const m of example.matchAll(/^#? ?([A-Z][A-Z0-9_]+)=/gm)) expect(read, m[1]).toContain(m[1]);
  // The units' command lines parse: with a Redis that is not there, each gets as far as saying so.
  const bin = new URL('../bin/signalbox.js', import.meta.url).pathname;
  for (const unit of ['signalbox-serve.service', 'signalbox-worker@.service']) {
    const text = readFileSync(new URL(`../deploy/systemd/${unit}`, import.meta.url), 'utf8');
    const line = /^ExecStart=\/opt\/signalbox\/bin\/signalbox\.js (.+)$/m.exec(text)![1]!;
    // The units' fixed ports, swapped for free ones: one in use here would stop the command first.
    const args: string[] = [];
    for (const a of line.split(' '))
      args.push(/^\d{4,5}$/.test(a) && args.at(-1)?.endsWith('port') ? String(await freePort()) : a);
    const r = await new Promise<{ code: number; stderr: string }>((resolve) =>
      execFile(
        process.execPath,
        [bin, ...args],
        {
          env: {
            ...process.env,
            REDIS_URL: 'redis://127.0.0.1:1',
            DATABASE_URL: 'postgres://x@127.0.0.1:1/x',
          },
        },
        (e, _o, stderr) => resolve({ code: e ? Number((e as { code?: number }).code) : 0, stderr }),
      ),
    );
    expect(r.stderr, unit).toMatch(/cannot reach Redis at redis:\/\/127\.0\.0\.1:1/);
    expect(r.code, unit).toBe(2);
  }
});
