/**
 * `signalbox demo`: the whole service with its embedded defaults, and a tour of it through its
 * admin API, in one command (the README's first). It brings up Redis (and the local Postgres)
 * with deploy/local/up.sh when REDIS_URL is not set, applies examples/demo-rules.yaml as code,
 * starts the service (ingest, admin API over HTTP and gRPC, workers) and then, as an MSP engineer
 * would through the API: makes the PSA connections, installs the template catalogue as drafts and
 * tests one against a raw PSA body, posts the example ConnectWise, Autotask and HaloPSA webhooks,
 * lists the runs the workers made with their steps, explains an event, and shows the stats.
 *
 *   signalbox demo [--keep]     --keep: leave the service running after the tour (Ctrl-C stops it)
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { Redis } from 'ioredis';
import { commandEnv, secretBox } from './env.js';
import { runRules } from './rules.js';
import { startService } from './serve.js';

const HALO_AUTH = { authorization: 'Basic aGFsby13ZWJob29rOnRlc3QtYmFzaWMtcGFzc3dvcmQ=' };
const POSTS: Array<[string, string, Record<string, string>]> = [
  [
    'connectwise/demo.cw/48213',
    'connectwise.ticket.created.json',
    { 'x-content-signature': '86oTs+FzhRHo8YZd9uSkz03rwrtxGXbpBSzyjGgkuqE=' },
  ],
  [
    'connectwise/demo.cw/48213',
    'connectwise.ticket.updated.json',
    { 'x-content-signature': '5DRPR5A+QFSCwZHtOLGUG9TxVzwHrBVXfg1snExfOtM=' },
  ],
  [
    'autotask/demo.at',
    'autotask.ticket.created.json',
    { 'x-hook-signature': 'sha1=GNVxsB2wTl/TbVhw1v9UdiESMm4=' },
  ],
  [
    'autotask/demo.at',
    'autotask.ticket.updated.json',
    { 'x-hook-signature': 'sha1=5tlvfR4R/O4ffPO+ZmJ4WfcPbsY=' },
  ],
  ['halo/demo.halo', 'halo.ticket.created.json', HALO_AUTH],
  ['halo/demo.halo', 'halo.ticket.updated.json', HALO_AUTH],
];

/** The PSA connections of the tour: the webhook secrets the example bodies were signed with. */
const CONNECTIONS = [
  {
    id: 'cw',
    kind: 'connectwise',
    name: 'ConnectWise (demo)',
    secret: { webhookSigningKey: 'test-signing-key' },
  },
  { id: 'at', kind: 'autotask', name: 'Autotask (demo)', secret: { webhookSecret: 'test-webhook-secret' } },
  {
    id: 'halo',
    kind: 'halo',
    name: 'HaloPSA (demo)',
    settings: { webhookUsername: 'halo-webhook' },
    secret: { webhookPassword: 'test-basic-password' },
  },
];

const FINAL = new Set(['completed', 'failed', 'skipped', 'throttled', 'cancelled']);

type Json = Record<string, any>;

export async function runDemo(
  io: { stdout: NodeJS.WritableStream; stderr: NodeJS.WritableStream },
  argv: readonly string[] = [],
): Promise<number> {
  const say = (s: string) => io.stdout.write(`${s}\n`);
  if (!existsSync('examples/demo-rules.yaml')) {
    io.stderr.write('signalbox demo: run it from the repository root (examples/ is needed)\n');
    return 2;
  }
  let env = commandEnv();
  if (!env.REDIS_URL) {
    say('· no REDIS_URL: bringing up local services (deploy/local/up.sh)');
    const up = spawnSync('bash', ['deploy/local/up.sh'], { stdio: 'inherit' });
    if (up.status !== 0) {
      io.stderr.write(
        'signalbox demo: could not bring up Redis; set REDIS_URL to a Redis you run (maxmemory-policy noeviction)\n',
      );
      return 2;
    }
    env = commandEnv();
  }
  say('· rules as code: signalbox rules apply -f examples/demo-rules.yaml --tenant demo');
  if ((await runRules(['apply', '-f', 'examples/demo-rules.yaml', '--tenant', 'demo'], io)) !== 0) return 2;

  const prefix = `demo${Date.now().toString(36)}`;
  const svc = await startService(
    {
      env,
      host: '127.0.0.1',
      port: 0,
      threads: 1,
      adminPort: 0,
      grpcPort: 0,
      file: {},
      secrets: secretBox(env),
      prefix,
      firstKey: false,
    },
    { stdout: { write: () => true } as unknown as NodeJS.WritableStream, stderr: io.stderr },
  );
  const admin = svc.admin!;
  const ingest = `http://127.0.0.1:${svc.port}`;
  const base = `http://127.0.0.1:${admin.http.port}`;
  // The tour starts from a clean run history of its tenant.
  await svc.db.query("delete from runs where tenant_id = 'demo'");
  const { key, info } = await admin.keys.create('demo', 'admin', 'demo tour', 'demo');
  const api = async (
    method: string,
    path: string,
    body?: unknown,
  ): Promise<{ status: number; body: Json }> => {
    const r = await fetch(`${base}${path}`, {
      method,
      headers: { authorization: `Bearer ${key}`, ...(body ? { 'content-type': 'application/json' } : {}) },
      ...(body ? { body: JSON.stringify(body) } : {}),
    });
    return { status: r.status, body: (await r.json()) as Json };
  };
  let failed = 0;
  const check = (ok: boolean, what: string) => {
    if (!ok) {
      failed++;
      io.stderr.write(`signalbox demo: ${what}\n`);
    }
  };
  try {
    say(
      `· the service is up: ingest ${ingest}, admin API ${base}/v1 (OpenAPI ${base}/v1/openapi.json), gRPC 127.0.0.1:${admin.grpc.port}, workers in this process`,
    );
    say(`· an admin API key for tenant "demo" (${info.id}); every call below is an admin API call`);

    for (const c of CONNECTIONS) {
      const r = await api('PUT', `/v1/connections/${c.id}`, c);
      check(r.status === 200, `PUT /v1/connections/${c.id} answered ${r.status}`);
      say(
        `  PUT /v1/connections/${c.id.padEnd(5)} → ${r.status} ${r.body.kind}, secret stored encrypted (hasSecret: ${r.body.hasSecret}); webhook URL ${ingest}/v1/hooks/${c.kind}/demo.${c.id}`,
      );
    }

    const templates = (await api('GET', '/v1/templates')).body.templates as Json[];
    let installed = 0;
    for (const t of templates) {
      const r = await api('POST', `/v1/templates/${t.id}/install`, {});
      if (r.status === 201) installed++;
      else check(r.status === 409, `installing template ${t.id} answered ${r.status}`);
    }
    say(
      `  POST /v1/templates/{id}/install × ${templates.length} → ${installed} installed as drafts${installed < templates.length ? ` (${templates.length - installed} were already there)` : ''}: ${templates.map((t) => t.id).join(', ')}`,
    );
    const test = await api('POST', '/v1/rules/test', {
      ruleId: 'ticket-acknowledge',
      raw: { source: 'halo', body: readFileSync('examples/psa/halo.ticket.created.json', 'utf8') },
    });
    const tr = test.body.results?.[0] as Json | undefined;
    check(
      test.status === 200 && tr?.matched === true,
      'testing the ticket-acknowledge template did not match',
    );
    say(
      `  POST /v1/rules/test ticket-acknowledge on a raw Halo body → matched: ${tr?.matched}; it would add the note ${JSON.stringify(tr?.actions?.[0]?.params?.text)} (nothing sent)`,
    );

    say('· PSA webhooks through the ingest:');
    for (const [path, file, headers] of POSTS) {
      const post = () =>
        fetch(`${ingest}/v1/hooks/${path}`, {
          method: 'POST',
          body: readFileSync(`examples/psa/${file}`),
          headers: { 'content-type': 'application/json', ...headers },
        });
      let r = await post();
      // The ingest learns of new connections by notification: wait for it (moments).
      for (let i = 0; i < 50 && r.status === 404; i++) {
        await new Promise((res) => setTimeout(res, 100));
        r = await post();
      }
      const body = (await r.json()) as Json;
      check(r.status === 202, `POST /v1/hooks/${path} answered ${r.status}`);
      const rules = (body.results as Json[] | undefined)?.flatMap((x) => x.rules as string[]) ?? [];
      say(
        `  POST /v1/hooks/${path.padEnd(26)} ${file.padEnd(33)} → ${r.status} ${body.error ?? `${body.accepted} accepted${body.duplicates ? `, ${body.duplicates} duplicate` : ''}; matched: ${rules.join(', ') || '–'}`}`,
      );
    }

    // The workers run the matches; their history is read back through the API.
    let runs: Json[] = [];
    const until = Date.now() + 15_000;
    do {
      await new Promise((res) => setTimeout(res, 200));
      runs = (await api('GET', '/v1/runs?limit=100')).body.runs as Json[];
    } while ((runs.length < 12 || !runs.every((r) => FINAL.has(r.status))) && Date.now() < until);
    say(
      `· GET /v1/runs: the workers ran ${runs.length} runs (history in ${svc.db.kind === 'pglite' ? 'var/db' : 'Postgres'}):`,
    );
    for (const r of [...runs].reverse()) {
      const detail = (await api('GET', `/v1/runs/${r.id}`)).body;
      const steps = (detail.steps as Json[]).map(
        (s) => `${s.type} ${s.status}${s.output ? ` ${JSON.stringify(s.output)}` : ''}`,
      );
      say(
        `  ${String(r.status).padEnd(9)} ${r.ruleId} ← ${r.eventId}${steps.length ? `\n      ${steps.join('\n      ')}` : ''}`,
      );
    }
    check(
      runs.length === 12 && runs.every((r) => r.status === 'completed'),
      `expected 12 completed runs, got ${runs.length}`,
    );

    // Why did (or did not) each rule fire on the Halo update? The archive knows the event.
    const haloId = runs.find((r) => r.ruleId === 'halo-ticket-closed')?.eventId as string | undefined;
    if (haloId) {
      let ex: { status: number; body: Json } | undefined;
      for (let i = 0; i < 50; i++) {
        ex = await api('GET', `/v1/events/${encodeURIComponent(haloId)}/explain`);
        if (ex.status === 200) break;
        await new Promise((res) => setTimeout(res, 100));
      }
      say(`· GET /v1/events/${haloId}/explain: why each active rule did or did not match`);
      for (const r of (ex?.body.rules as Json[] | undefined) ?? []) {
        const gate = Object.entries(
          r.explanation.gates as Record<string, { ok: boolean; detail: string }>,
        ).find(([, g]) => !g.ok);
        const why = gate
          ? `${gate[0]}: ${gate[1].detail}`
          : r.explanation.condition
            ? `${r.explanation.condition.text} → ${JSON.stringify(r.explanation.condition.value)}`
            : 'no condition';
        say(`  ${r.matched ? 'matched ' : 'no match'} ${String(r.ruleId).padEnd(20)} ${why}`);
      }
    }
    const stats = (await api('GET', '/v1/stats')).body;
    say(
      `· GET /v1/stats: ${stats.tenant.runs} runs in 7 days; rules by status ${JSON.stringify(stats.tenant.rules)}`,
    );
    say(
      '· next: docs/admin.md (every operation, with curl and grpcurl), `npx signalbox serve` to keep it running (its first admin key goes to var/admin.key)',
    );
    if (argv.includes('--keep')) {
      say(`· --keep: serving until Ctrl-C (admin key for tenant "demo": ${key})`);
      await new Promise<void>((resolve) => {
        process.once('SIGINT', () => resolve());
        process.once('SIGTERM', () => resolve());
      });
    }
  } finally {
    await admin.keys.revoke('demo', info.id, 'demo');
    await svc.close();
    const redis = new Redis(env.REDIS_URL!);
    redis.on('error', () => {});
    const keys = await redis.keys(`${prefix}:*`);
    if (keys.length > 0) await redis.del(...keys);
    redis.disconnect();
  }
  return failed === 0 ? 0 : 1;
}
