/**
 * The event archive from the command line: the admin API's Backtest and ReplayEvents, run on the
 * rule store directly, as `rules` is (the same checks and answers; no API key, since the command
 * holds the database itself).
 *
 *   signalbox backtest -f RULE_FILE [--rule ID] [--tenant T] --from TIME [--to TIME] [--samples N]
 *   signalbox backtest --rule ID [--tenant T] --from TIME [--to TIME] [--samples N]
 *   signalbox replay [--tenant T] --from TIME [--to TIME] [--source S] [--type T] [--rule ID] [--limit N] [--live]
 *   signalbox replay [--tenant T] --id EVENT_ID [--id …] [--rule ID] [--live]
 *
 * `backtest` evaluates a draft rule (from a rule file: its one rule, or the one `--rule` names) or
 * a stored rule (`--rule` alone) over the archived events of [from, to), at most 92 days: events
 * per day, matches, samples. `replay` sends archived events through the tenant's active rules (or
 * one, `--rule`): a dry run that says which rules each event matches, unless `--live`, which
 * queues their runs (Redis) as the rules are now. Both print the API's answer as JSON. Exit 2 for
 * bad arguments (usage, or the API's invalid_argument with its field), 1 when the operation
 * cannot be done (an unknown rule, a rule that is not active).
 */
import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import { AdminApi, AdminError, AdminService, ApiKeys, type Caller } from '../admin/index.js';
import { openRunQueue } from '../config/runs.js';
import { ConnectionStore, RuleStore, SecretBox } from '../store/index.js';
import type { CommandIo } from './args.js';
import { checkRedis, commandEnv, openStore } from './env.js';
import { readRuleFiles } from './rules.js';

const USAGE = `usage: signalbox backtest (-f RULE_FILE [--rule ID] | --rule ID) [--tenant T] --from TIME [--to TIME] [--samples N]
       signalbox replay [--tenant T] (--from TIME [--to TIME] | --id EVENT_ID …) [--source S] [--type T]
                        [--rule ID] [--limit N] [--live]
`;

/** Options that take a value, per command; `id` may be given more than once. */
const VALUED: Record<'backtest' | 'replay', readonly string[]> = {
  backtest: ['file', 'rule', 'tenant', 'from', 'to', 'samples'],
  replay: ['tenant', 'from', 'to', 'id', 'source', 'type', 'rule', 'limit'],
};

interface Parsed {
  readonly values: Map<string, string[]>;
  readonly live: boolean;
}

function parse(cmd: 'backtest' | 'replay', argv: readonly string[]): Parsed | string {
  const values = new Map<string, string[]>();
  let live = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (cmd === 'replay' && a === '--live') {
      live = true;
      continue;
    }
    const m = /^(?:--([a-z]+)|-(f))(?:=(.*))?$/.exec(a);
    const name = m ? (m[2] ? 'file' : m[1]!) : undefined;
    if (!name || !VALUED[cmd].includes(name)) return `unknown argument ${JSON.stringify(a)}`;
    const v = m![3] ?? argv[++i];
    if (v === undefined || v === '') return `${a} needs a value`;
    if (name !== 'id' && values.has(name)) return `${a} given more than once`;
    values.set(name, [...(values.get(name) ?? []), v]);
  }
  return { values, live };
}

/** A whole number option, or the message saying it is not one. */
function whole(p: Parsed, name: string): number | undefined | string {
  const v = p.values.get(name)?.[0];
  if (v === undefined) return undefined;
  return /^\d{1,9}$/.test(v) ? Number(v) : `--${name} must be a whole number, not ${JSON.stringify(v)}`;
}

export async function runArchive(
  cmd: 'backtest' | 'replay',
  argv: readonly string[],
  io: CommandIo,
): Promise<number> {
  const p = parse(cmd, argv);
  if (typeof p === 'string') return usage(io, cmd, p);
  const one = (name: string) => p.values.get(name)?.[0];
  const input: Record<string, unknown> = {};
  for (const name of ['from', 'to', 'source', 'type']) if (one(name) !== undefined) input[name] = one(name);
  for (const name of cmd === 'backtest' ? ['samples'] : ['limit']) {
    const n = whole(p, name);
    if (typeof n === 'string') return usage(io, cmd, n);
    if (n !== undefined) input[name] = n;
  }
  let tenant = one('tenant');

  // The rule file's documents are read and picked before the database is opened.
  let draft: Record<string, unknown> | undefined;
  if (cmd === 'backtest') {
    if (one('from') === undefined) return usage(io, cmd, 'missing --from');
    const file = one('file');
    if (file === undefined && one('rule') === undefined)
      return usage(io, cmd, 'give -f RULE_FILE or --rule ID');
    if (file !== undefined) {
      let docs: ReturnType<typeof readRuleFiles>;
      try {
        docs = readRuleFiles([file], undefined, cmd);
      } catch (e) {
        io.stderr.write(`${(e as Error).message}\n`);
        return 2;
      }
      const wanted = one('rule');
      const picked = wanted === undefined ? docs : docs.filter((d) => d.doc?.id === wanted);
      if (picked.length !== 1) {
        const ids = docs.map((d) => JSON.stringify(d.doc?.id)).join(', ');
        return usage(
          io,
          cmd,
          wanted === undefined
            ? `${file} holds ${docs.length} rules (${ids}): name one with --rule ID`
            : `${file} holds no rule ${JSON.stringify(wanted)} (it holds ${ids || 'none'})`,
        );
      }
      const { tenant: own, status: _status, ...doc } = picked[0]!.doc;
      if (tenant === undefined && typeof own === 'string') tenant = own;
      draft = doc;
    }
  } else {
    if (p.values.has('id')) input.ids = p.values.get('id');
    else if (one('from') === undefined) return usage(io, cmd, 'give --from TIME or --id EVENT_ID');
    if (one('rule') !== undefined) input.ruleId = one('rule');
    input.dryRun = !p.live;
  }

  const env = commandEnv();
  let redis: Redis | undefined;
  if (p.live) {
    const url = env.REDIS_URL ?? '';
    await checkRedis(url);
    const { Redis } = await import('ioredis');
    redis = new Redis(url, { maxRetriesPerRequest: 1 });
    redis.on('error', () => {});
  }
  const db = await openStore(env);
  const queue = redis ? openRunQueue(redis, env.SIGNALBOX_REDIS_PREFIX || 'sb') : undefined;
  try {
    const rules = new RuleStore(db);
    const keys = new ApiKeys(db);
    const service = new AdminService({
      db,
      rules,
      // Neither operation reads a connection: a key of the moment keeps var/secret.key unmade.
      connections: new ConnectionStore(db, new SecretBox(randomBytes(32))),
      keys,
      ...(queue ? { queue } : {}),
    });
    const api = new AdminApi(service, keys);
    const caller: Caller = { tenant: tenant ?? 'default', keyId: `signalbox-${cmd}`, role: 'admin' };
    if (cmd === 'backtest' && draft === undefined) {
      const stored = await rules.get(caller.tenant, one('rule')!);
      if (!stored) {
        io.stderr.write(
          `signalbox backtest: rule ${JSON.stringify(one('rule'))} not found in tenant "${caller.tenant}"\n`,
        );
        return 1;
      }
      draft = stored.document;
    }
    if (draft) input.document = draft;
    const op = api.byName.get(cmd === 'backtest' ? 'Backtest' : 'ReplayEvents')!;
    let out: Record<string, unknown>;
    try {
      out = await api.invokeAs(op, caller, input);
    } catch (e) {
      if (!(e instanceof AdminError)) throw e;
      io.stderr.write(`signalbox ${cmd}: ${e.message}\n`);
      return e.code === 'invalid_argument' ? 2 : 1;
    }
    io.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
    return 0;
  } finally {
    await queue?.close();
    redis?.disconnect();
    await db.close();
  }
}

function usage(io: CommandIo, cmd: string, why: string): number {
  io.stderr.write(`signalbox ${cmd}: ${why}\n${USAGE}`);
  return 2;
}
