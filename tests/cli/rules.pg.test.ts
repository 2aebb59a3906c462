/** `signalbox rules apply|export|check` through the real command, on Postgres in a schema of its own. */
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, expect, it } from 'vitest';
import { openPostgres, RuleStore } from '../../src/store/index.js';
import { runCliOutput } from './serve-env.js';

const url = process.env.DATABASE_URL ?? 'postgres://signalbox:signalbox@127.0.0.1:5433/signalbox';
const schema = `sb_cli_${process.pid}_${Date.now().toString(36)}`;
const dir = mkdtempSync(join(tmpdir(), 'sb-rules-'));
const rulesDir = join(dir, 'rules');
mkdirSync(rulesDir);

const run = (args: string[]) =>
  runCliOutput({ ...process.env, DATABASE_URL: url, SIGNALBOX_DB_SCHEMA: schema }, ['rules', ...args]);

afterAll(async () => {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  await c.query(`drop schema if exists ${schema} cascade`);
  await c.end();
});

it('applies rule files idempotently, printing what it did', async () => {
  writeFileSync(
    join(rulesDir, 'p1.yaml'),
    'id: p1-escalation\ntenant: acme\nsource: halo\non: [ticket.updated]\nwhen: ticket.priority <= 1 and changed(ticket.status)\n',
  );
  writeFileSync(
    join(rulesDir, 'more.json'),
    JSON.stringify([
      { id: 'vip', source: '*', when: 'ticket.company == "Contoso"' },
      { id: 'draft-one', source: '*', status: 'draft' },
    ]),
  );
  const first = await run(['apply', '-f', rulesDir, '--tenant', 'acme']);
  expect(first.code).toBe(0);
  expect(first.stdout).toContain('+ acme/p1-escalation (v1, active)');
  expect(first.stdout).toContain('+ acme/vip (v1, active)');
  expect(first.stdout).toContain('+ acme/draft-one (v1, draft)');
  expect(first.stdout).toContain('3 rules: 3 changed');

  const again = await run(['apply', '-f', rulesDir, '--tenant', 'acme']);
  expect(again.stdout).toContain('= acme/vip (v1, unchanged)');
  expect(again.stdout).toContain('3 rules: 0 changed');

  writeFileSync(
    join(rulesDir, 'more.json'),
    JSON.stringify([
      { id: 'vip', source: '*', when: 'ticket.company == "Fabrikam"' },
      { id: 'draft-one', source: '*', status: 'draft' },
    ]),
  );
  const dry = await run(['apply', '-f', rulesDir, '--tenant', 'acme', '--dry-run']);
  expect(dry.stdout).toContain('~ acme/vip (v1 → v2, dry run)');
  const real = await run(['apply', '-f', rulesDir, '--tenant', 'acme']);
  expect(real.stdout).toContain('~ acme/vip (v1 → v2, active)');

  const exported = await run(['export', '--tenant', 'acme']);
  const docs = JSON.parse(exported.stdout) as Array<Record<string, unknown>>;
  expect(docs.map((d) => d.id)).toEqual(['draft-one', 'p1-escalation', 'vip']);
  expect(docs.find((d) => d.id === 'vip')).toMatchObject({
    when: 'ticket.company == "Fabrikam"',
    status: 'active',
    tenant: 'acme',
  });
});

it("--prune archives the stored rules of the files' tenants that no file holds", async () => {
  const pruneDir = join(dir, 'prune');
  mkdirSync(pruneDir);
  const t = 'pruneco';
  writeFileSync(
    join(pruneDir, 'all.json'),
    JSON.stringify(['a', 'b', 'c'].map((id) => ({ id, source: '*' }))),
  );
  expect((await run(['apply', '-f', pruneDir, '--tenant', t])).code).toBe(0);
  // another tenant's rules are not the files' business
  writeFileSync(join(dir, 'other.json'), JSON.stringify([{ id: 'z', source: '*' }]));
  expect((await run(['apply', '-f', join(dir, 'other.json'), '--tenant', 'otherco'])).code).toBe(0);

  writeFileSync(join(pruneDir, 'all.json'), JSON.stringify([{ id: 'a', source: '*' }]));
  const dry = await run(['apply', '-f', pruneDir, '--tenant', t, '--prune', '--dry-run']);
  expect(dry.code).toBe(0);
  expect(dry.stdout).toContain('- pruneco/b (v1, active → archived, dry run)');
  expect(dry.stdout).toContain('- pruneco/c (v1, active → archived, dry run)');
  expect(dry.stdout).toContain('1 rule: 0 would change; 2 would be archived');
  const real = await run(['apply', '-f', pruneDir, '--tenant', t, '--prune']);
  expect(real.stdout).toContain('- pruneco/b (v1, active → archived)');
  expect(real.stdout).toContain('1 rule: 0 changed; 2 archived');
  const statuses = (tenant: string) =>
    run(['export', '--tenant', tenant]).then((r) =>
      (JSON.parse(r.stdout) as Array<{ id: string; status: string }>).map((d) => `${d.id}:${d.status}`),
    );
  expect(await statuses(t)).toEqual(['a:active', 'b:archived', 'c:archived']);
  expect(await statuses('otherco')).toEqual(['z:active']);
  // done twice, nothing more
  expect((await run(['apply', '-f', pruneDir, '--tenant', t, '--prune'])).stdout).toContain(
    '1 rule: 0 changed; 0 archived',
  );
});

it('reads rule files that start with a byte order mark (as Windows editors save them)', async () => {
  const bomDir = join(dir, 'bom');
  mkdirSync(bomDir);
  writeFileSync(join(bomDir, 'a.json'), `\ufeff${JSON.stringify([{ id: 'bom-json', source: '*' }])}`);
  writeFileSync(join(bomDir, 'b.yaml'), '\ufeffid: bom-yaml\nsource: halo\non: ticket.created\n');
  const r = await run(['apply', '-f', bomDir, '--tenant', 'acme', '--dry-run']);
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  expect(r.stdout).toContain('+ acme/bom-json (new, dry run)');
  expect(r.stdout).toContain('+ acme/bom-yaml (new, dry run)');
});

it('rejects the whole set, writing nothing, when any rule is bad', async () => {
  const bad = join(dir, 'bad');
  mkdirSync(bad);
  writeFileSync(join(bad, 'a.json'), JSON.stringify({ id: 'new-good', source: '*' }));
  writeFileSync(join(bad, 'b.yaml'), 'id: broken\nsource: "*"\nwhen: ticket.status ==\n');
  const r = await run(['apply', '-f', bad, '--tenant', 'acme']);
  expect(r.code).toBe(2);
  expect(r.stderr).toMatch(/b\.yaml: rule "broken": when: line 1, column 17: unexpected end of expression/);
  expect(r.stderr).toContain('nothing was applied');
  const exported = JSON.parse((await run(['export', '--tenant', 'acme'])).stdout) as Array<{ id: string }>;
  expect(exported.map((d) => d.id)).not.toContain('new-good');
});

it('refuses a rule holding U+0000 (Postgres stores none) before writing anything', async () => {
  const nul = join(dir, 'nul');
  mkdirSync(nul);
  writeFileSync(join(nul, 'a.json'), JSON.stringify({ id: 'nul-good', source: '*' }));
  writeFileSync(
    join(nul, 'b.json'),
    JSON.stringify({ id: 'nul-bad', source: '*', actions: [{ type: 'log', with: { message: 'a\u0000b' } }] }),
  );
  const r = await run(['apply', '-f', nul, '--tenant', 'acme']);
  expect(r.code).toBe(2);
  expect(r.stderr).toContain(
    'b.json: rule "nul-bad": actions[0].with.message: holds a character Postgres cannot store (U+0000 or a lone surrogate)',
  );
  expect(r.stderr).toContain('nothing was applied');
  const exported = JSON.parse((await run(['export', '--tenant', 'acme'])).stdout) as Array<{ id: string }>;
  expect(exported.map((d) => d.id)).not.toContain('nul-good');
});

it('check lists the stored rules this version cannot compile, with why, and exits 1', async () => {
  const t = 'checkco';
  writeFileSync(join(dir, 'fine.json'), JSON.stringify([{ id: 'fine', source: '*' }]));
  expect((await run(['apply', '-f', join(dir, 'fine.json'), '--tenant', t])).code).toBe(0);
  const clean = await run(['check', '--tenant', t]);
  expect([clean.code, clean.stdout]).toEqual([0, '1 rule checked: every one compiles\n']);

  // Versions saved before a check was added (straight into the store: apply would refuse them).
  const db = await openPostgres({ url, schema });
  try {
    const store = new RuleStore(db);
    const old = (id: string, status: 'active' | 'paused' | 'archived', doc: Record<string, unknown>) =>
      store.save(t, { id, source: '*', ...doc }, { actor: 'test', status });
    await old('stale-hook', 'active', {
      actions: [{ type: 'webhook', with: { url: 'ftp://x.example.com/a' } }],
    });
    await old('stale-cron', 'paused', { schedule: { cron: '61 * * * *' } });
    await old('gone', 'archived', { actions: [{ type: 'webhook', with: { url: 'ftp://x.example.com/b' } }] });
  } finally {
    await db.close();
  }
  const r = await run(['check', '--tenant', t]);
  expect(r.code).toBe(1);
  const lines = r.stdout.trim().split('\n');
  expect(lines).toHaveLength(3);
  expect(lines[0]).toMatch(
    /^✗ checkco\/stale-cron \(v1, paused\): schedule\.cron: .*minute "61": 61: values are 0–59$/,
  );
  expect(lines[1]).toBe(
    '✗ checkco/stale-hook (v1, active): actions[0].with.url: must be an http or https URL, not ftp',
  );
  // an archived rule is not checked: it cannot run, and activating it checks it
  expect(lines[2]).toBe('3 rules checked: 2 do not compile');
  // every tenant when none is named
  const all = await run(['check']);
  expect(all.code).toBe(1);
  expect(all.stdout).toContain('✗ checkco/stale-hook');
  expect(all.stdout).toMatch(/rules checked: 2 do not compile\n$/);
});

it('answers bad arguments with usage and exit 2', async () => {
  expect((await run(['apply'])).code).toBe(2);
  expect((await run(['frob'])).code).toBe(2);
  expect((await run(['check', '-f', dir])).code).toBe(2);
  // --prune is apply's: elsewhere it is an unknown argument, said with the usage
  const prune = await run(['export', '--prune']);
  expect(prune.code).toBe(2);
  expect(prune.stderr).toMatch(/^signalbox rules: unknown argument "--prune"\nusage: signalbox rules apply/);
  // a mistyped tenant is not one with no rules
  for (const sub of ['check', 'export']) {
    const r = await run([sub, '--tenant', 'acmee']);
    expect([r.code, r.stdout], sub).toEqual([2, '']);
    expect(r.stderr).toMatch(/^signalbox rules: no tenant "acmee" in the rule store \(it has .*"acme"/);
  }
  expect((await run(['apply', '-f', join(dir, 'missing')])).code).toBe(2);
});
