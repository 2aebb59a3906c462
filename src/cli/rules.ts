/**
 * Rules as code.
 *
 *   signalbox rules apply -f PATH [-f PATH …] [--tenant T] [--dry-run]
 *   signalbox rules export [--tenant T]
 *
 * `apply` reads rule files (JSON or YAML; one rule or a list per file; a folder means every
 * .json/.yaml/.yml file in it), validates all of them with the engine first (nothing is written
 * if any is bad: exit 2, one line per bad rule with its file and position), then saves each rule
 * whose document changed as a new version and prints what it did: `+` created, `~` updated,
 * `=` unchanged. Running it twice changes nothing the second time. `--dry-run` prints the same
 * without writing. A rule's tenant is its `tenant`, else --tenant, else "default". `--prune` also
 * archives (`-`) the stored rules of those tenants that no file holds, so the files are the whole
 * truth; archived, a rule stops matching and keeps its versions and runs (ActivateRule brings it
 * back).
 *
 * `export` prints the current version of every rule (of one tenant, or all) as a JSON array that
 * `apply` takes back.
 *
 * `check` compiles the current version of every rule that is not archived (of one tenant, or
 * all) with this version of Signalbox, and prints each one that does not compile, with why: a
 * rule saved before a check of the language was added. Run it before starting an upgraded
 * `serve`: an active rule that does not compile matches nothing. Exit 1 when any does not.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { extname, join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { stripBom } from '../config/body.js';
import { compileRuleSet, storedRuleProblem } from '../engine/index.js';
import { RuleStore, type StoredRule, UNSTORABLE_REASON, unstorablePath } from '../store/index.js';
import { openStore, unknownTenant } from './env.js';

export interface RulesIo {
  readonly stdout: NodeJS.WritableStream;
  readonly stderr: NodeJS.WritableStream;
}

const USAGE = `usage: signalbox rules apply -f PATH [-f PATH …] [--tenant T] [--dry-run] [--prune]
       signalbox rules export [--tenant T]
       signalbox rules check [--tenant T]
`;

function files(path: string): string[] {
  const st = statSync(path);
  if (!st.isDirectory()) return [path];
  return readdirSync(path)
    .filter((f) => ['.json', '.yaml', '.yml'].includes(extname(f)))
    .sort()
    .map((f) => join(path, f));
}

/** Canonical JSON (sorted keys) for comparing documents. */
function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (v !== null && typeof v === 'object') {
    return `{${Object.keys(v)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonical((v as Record<string, unknown>)[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(v);
}

export interface RuleFileDoc {
  readonly doc: Record<string, unknown>;
  readonly file: string;
}

/**
 * The rule documents of files and folders (JSON or YAML, one rule or a list per file; a folder:
 * its .json/.yaml/.yml files), each with its file; a document without a tenant gets `tenant` when
 * given. Throws an Error whose message is the line to print when a path or file cannot be read.
 */
export function readRuleFiles(
  paths: readonly string[],
  tenant: string | undefined,
  cmd: string,
): RuleFileDoc[] {
  const docs: RuleFileDoc[] = [];
  for (const p of paths) {
    let list: string[];
    try {
      list = files(p);
    } catch (e) {
      throw new Error(
        `signalbox ${cmd}: cannot read ${p}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
      );
    }
    for (const f of list) {
      let value: unknown;
      try {
        const text = stripBom(readFileSync(f, 'utf8'));
        value = extname(f) === '.json' ? JSON.parse(text) : parseYaml(text);
      } catch (e) {
        throw new Error(`${f}: ${(e as Error).message.split('\n')[0]}`);
      }
      for (const d of Array.isArray(value) ? value : [value]) {
        const doc = (typeof d === 'object' && d !== null ? { ...d } : d) as Record<string, unknown>;
        if (typeof doc === 'object' && doc !== null && doc.tenant === undefined && tenant !== undefined)
          doc.tenant = tenant;
        docs.push({ doc, file: f });
      }
    }
  }
  return docs;
}

export async function runRules(argv: readonly string[], io: RulesIo): Promise<number> {
  const [sub, ...rest] = argv;
  const paths: string[] = [];
  let tenant: string | undefined;
  let dryRun = false;
  let prune = false;
  for (let i = 0; i < rest.length; i++) {
    const a = rest[i]!;
    if (a === '-f' || a === '--file') {
      const p = rest[++i];
      if (!p) return usage(io, `${a} needs a path`);
      paths.push(p);
    } else if (a === '--tenant') {
      tenant = rest[++i];
      if (!tenant) return usage(io, '--tenant needs a name');
    } else if (a === '--dry-run' && sub === 'apply') {
      dryRun = true;
    } else if (a === '--prune' && sub === 'apply') {
      prune = true;
    } else {
      return usage(io, `unknown argument ${JSON.stringify(a)}`);
    }
  }
  if ((sub === 'export' || sub === 'check') && paths.length > 0) return usage(io, `${sub} takes no -f`);
  if (sub === 'export') return exportRules(tenant, io);
  if (sub === 'check') return checkRules(tenant, io);
  if (sub !== 'apply')
    return usage(io, sub ? `unknown subcommand ${JSON.stringify(sub)}` : 'missing subcommand');
  if (paths.length === 0) return usage(io, 'apply needs -f PATH');

  // Read every file, then validate every rule, before anything is written.
  let docs: RuleFileDoc[];
  try {
    docs = readRuleFiles(paths, tenant, 'rules');
  } catch (e) {
    io.stderr.write(`${(e as Error).message}\n`);
    return 2;
  }
  const { errors } = compileRuleSet(docs.map((d) => d.doc));
  const problems = errors.map((e) => `${docs[e.index]!.file}: ${e.label}: ${e.error.message}`);
  // Postgres stores no U+0000 nor lone surrogates (the store would fail halfway through the files).
  for (const { doc, file } of docs) {
    const nul = errors.some((e) => docs[e.index]!.doc === doc) ? undefined : unstorablePath(doc);
    if (nul !== undefined)
      problems.push(`${file}: rule ${JSON.stringify(doc.id)}: ${nul}: ${UNSTORABLE_REASON}`);
  }
  if (problems.length > 0) {
    for (const p of problems) io.stderr.write(`${p}\n`);
    io.stderr.write(
      `signalbox rules: ${problems.length} invalid rule${problems.length === 1 ? '' : 's'}; nothing was applied\n`,
    );
    return 2;
  }

  const db = await openStore();
  try {
    const store = new RuleStore(db);
    let changed = 0;
    for (const { doc } of docs) {
      const t = (doc.tenant as string | undefined) ?? 'default';
      const id = doc.id as string;
      const status = (doc.status as StoredRule['status'] | undefined) ?? 'active';
      const stored = { ...doc };
      delete stored.tenant;
      const cur = await store.get(t, id);
      if (cur && canonical(cur.document) === canonical(stored) && cur.status === status) {
        io.stdout.write(`= ${t}/${id} (v${cur.version}, unchanged)\n`);
        continue;
      }
      changed++;
      if (dryRun) {
        io.stdout.write(
          cur
            ? `~ ${t}/${id} (v${cur.version} → v${cur.version + 1}, dry run)\n`
            : `+ ${t}/${id} (new, dry run)\n`,
        );
        continue;
      }
      await store.ensureTenant(t);
      const saved = await store.save(t, stored, { actor: 'cli', status });
      io.stdout.write(
        cur
          ? `~ ${t}/${id} (v${cur.version} → v${saved.version}, ${saved.status})\n`
          : `+ ${t}/${id} (v1, ${saved.status})\n`,
      );
    }
    let pruned = 0;
    if (prune) {
      const held = new Map<string, Set<string>>();
      for (const { doc } of docs) {
        const t = (doc.tenant as string | undefined) ?? 'default';
        if (!held.has(t)) held.set(t, new Set());
        held.get(t)!.add(doc.id as string);
      }
      for (const [t, ids] of held) {
        for (const r of await store.list(t)) {
          if (r.status === 'archived' || ids.has(r.id)) continue;
          pruned++;
          if (!dryRun) await store.setStatus(t, r.id, 'archived', { actor: 'cli' });
          io.stdout.write(
            `- ${t}/${r.id} (v${r.version}, ${r.status} → archived${dryRun ? ', dry run' : ''})\n`,
          );
        }
      }
    }
    io.stdout.write(
      `${docs.length} rule${docs.length === 1 ? '' : 's'}: ${changed} ${dryRun ? 'would change' : 'changed'}${
        prune ? `; ${pruned} ${dryRun ? 'would be archived' : 'archived'}` : ''
      }\n`,
    );
    return 0;
  } finally {
    await db.close();
  }
}

/**
 * Every stored rule's current version, of one tenant or of all, tenant by tenant. False, having
 * said why, when the tenant named is not in the store (the caller exits 2).
 */
async function storedRules(
  tenant: string | undefined,
  io: RulesIo,
  each: (tenant: string, r: StoredRule) => void,
): Promise<boolean> {
  const db = await openStore();
  try {
    const store = new RuleStore(db);
    const unknown = tenant !== undefined ? await unknownTenant(db, tenant) : undefined;
    if (unknown) {
      io.stderr.write(`signalbox rules: ${unknown}\n`);
      return false;
    }
    const tenants = tenant
      ? [tenant]
      : (await db.query<{ id: string }>('select id from tenants order by id')).rows.map((r) => r.id);
    for (const t of tenants) for (const r of await store.list(t)) each(t, r);
    return true;
  } finally {
    await db.close();
  }
}

async function exportRules(tenant: string | undefined, io: RulesIo): Promise<number> {
  const out: Array<Record<string, unknown>> = [];
  if (!(await storedRules(tenant, io, (t, r) => out.push({ ...r.document, tenant: t, status: r.status }))))
    return 2;
  io.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
  return 0;
}

async function checkRules(tenant: string | undefined, io: RulesIo): Promise<number> {
  let checked = 0;
  let broken = 0;
  const read = await storedRules(tenant, io, (t, r) => {
    if (r.status === 'archived') return;
    checked++;
    const why = storedRuleProblem(t, r.id, r.document);
    if (why === null) return;
    broken++;
    io.stdout.write(`✗ ${t}/${r.id} (v${r.version}, ${r.status}): ${why}\n`);
  });
  if (!read) return 2;
  io.stdout.write(
    `${checked} rule${checked === 1 ? '' : 's'} checked: ${
      broken === 0 ? 'every one compiles' : `${broken} do${broken === 1 ? 'es' : ''} not compile`
    }\n`,
  );
  return broken === 0 ? 0 : 1;
}

function usage(io: RulesIo, msg: string): number {
  io.stderr.write(`signalbox rules: ${msg}\n${USAGE}`);
  return 2;
}
