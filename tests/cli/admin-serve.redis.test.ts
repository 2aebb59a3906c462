/**
 * `signalbox serve` with its admin API, through the real command: the first admin key is written
 * on a fresh install; a connection and a rule made through the admin API take a PSA webhook at
 * once (the ingest reads connections from the store); an editor key made through the API posts
 * generic events; the run reaches the workers and its history is readable through the API.
 */
import type { ChildProcess } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { serveEnv, spawnServe } from './serve-env.js';

const FIXTURES = new URL('../../examples/psa/', import.meta.url);
const { dir, env, cleanup } = serveEnv('aserve');
let child: ChildProcess | undefined;

afterAll(async () => {
  child?.kill('SIGKILL');
  await cleanup();
});

it('admin API and ingest in one serve: connection, rule, webhook, run history', {
  timeout: 60_000,
}, async () => {
  const served = await spawnServe(['--port', '0', '--admin-port', '0', '--grpc-port', '0'], {
    env,
    cwd: dir,
  });
  child = served.child;
  const { ingest, out } = served;
  const admin = served.admin!;
  expect(out).toContain('var/admin.key');
  const keyFile = join(dir, 'var', 'admin.key');
  expect(statSync(keyFile).mode & 0o777).toBe(0o600);
  const key = readFileSync(keyFile, 'utf8').trim();
  const api = async (method: string, path: string, body?: unknown, k = key) => {
    const r = await fetch(`${admin}${path}`, {
      method,
      headers: { authorization: `Bearer ${k}`, ...(body ? { 'content-type': 'application/json' } : {}) },
      ...(body ? { body: JSON.stringify(body) } : {}),
    });
    return { status: r.status, body: (await r.json()) as Record<string, any> };
  };

  // A Halo connection with the fixture's webhook credentials, and a rule on its tickets.
  expect(
    (
      await api('PUT', '/v1/connections/halo-main', {
        kind: 'halo',
        settings: { webhookUsername: 'halo-webhook' },
        secret: { webhookPassword: 'test-basic-password' },
      })
    ).status,
  ).toBe(200);
  expect(
    (
      await api('POST', '/v1/rules', {
        status: 'active',
        document: {
          id: 'halo-tickets',
          source: 'halo',
          on: 'ticket.*',
          actions: [{ type: 'log', with: { message: 'halo ticket {{ ticket.id }}' } }],
        },
      })
    ).status,
  ).toBe(201);

  const body = readFileSync(new URL('halo.ticket.created.json', FIXTURES));
  const hook = async (auth: string) => {
    const r = await fetch(`${ingest}/v1/hooks/halo/default.halo-main`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: auth },
      body,
    });
    return { status: r.status, body: (await r.json()) as Record<string, any> };
  };
  // The connection reaches the ingest by notification: until then its hook URL is unknown (404).
  const wrong = `Basic ${Buffer.from('halo-webhook:wrong').toString('base64')}`;
  let first = await hook(wrong);
  for (let i = 0; i < 50 && first.status === 404; i++) {
    await new Promise((r) => setTimeout(r, 100));
    first = await hook(wrong);
  }
  expect(first.status).toBe(401);
  // The rule reaches the ingest by notification: retry until it matches.
  let res: { status: number; body: Record<string, any> } | undefined;
  const until = Date.now() + 10_000;
  do {
    res = await hook('Basic aGFsby13ZWJob29rOnRlc3QtYmFzaWMtcGFzc3dvcmQ=');
    if (res.body.matched === 1) break;
    await new Promise((r) => setTimeout(r, 200));
  } while (Date.now() < until);
  expect(res!.status).toBe(202);
  expect(res!.body.results[0].rules).toEqual(['halo-tickets']);

  // The run, executed by the workers in this process, is visible through the admin API.
  let runs: Array<Record<string, any>> = [];
  const until2 = Date.now() + 20_000;
  do {
    runs = (await api('GET', '/v1/runs?ruleId=halo-tickets')).body.runs;
    if (runs[0]?.status === 'completed') break;
    await new Promise((r) => setTimeout(r, 200));
  } while (Date.now() < until2);
  expect(runs.map((r) => r.status)).toEqual(['completed']);
  const run = (await api('GET', `/v1/runs/${runs[0]!.id}`)).body;
  expect(run.steps[0]).toMatchObject({ type: 'log', status: 'completed' });
  // The event reached the archive (Redis stream, drained into Postgres) and explains itself.
  const eventId = res!.body.results[0].id as string;
  let ev: { status: number; body: Record<string, any> } | undefined;
  const until4 = Date.now() + 10_000;
  do {
    ev = await api('GET', `/v1/events/${encodeURIComponent(eventId)}`);
    if (ev.status === 200) break;
    await new Promise((r) => setTimeout(r, 200));
  } while (Date.now() < until4);
  expect(ev!.status).toBe(200);
  expect(ev!.body.envelope).toMatchObject({
    id: eventId,
    source: 'halo',
    type: 'ticket.created',
    tenant: 'default',
  });
  expect(ev!.body.runs.map((r: { ruleId: string }) => r.ruleId)).toEqual(['halo-tickets']);
  const why = (await api('GET', `/v1/events/${encodeURIComponent(eventId)}/explain`)).body;
  expect(why.rules).toEqual([expect.objectContaining({ ruleId: 'halo-tickets', matched: true })]);
  const stats = (await api('GET', '/v1/stats')).body;
  expect(stats.rules[0]).toMatchObject({ ruleId: 'halo-tickets', runs: 1 });

  // An editor key made through the API posts generic events; a viewer key may not.
  const editor = (await api('POST', '/v1/keys', { role: 'editor', name: 'rmm' })).body.key as string;
  const viewer = (await api('POST', '/v1/keys', { role: 'viewer', name: 'dash' })).body.key as string;
  const post = (k: string) =>
    fetch(`${ingest}/v1/events`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${k}` },
      body: JSON.stringify({
        id: `ev-${k.slice(4, 12)}`,
        source: 'rmm',
        type: 'device.offline',
        data: { id: 'd1' },
      }),
    });
  let status = 0;
  const until3 = Date.now() + 5_000;
  do {
    status = (await post(editor)).status;
    if (status === 202) break;
    await new Promise((r) => setTimeout(r, 200));
  } while (Date.now() < until3);
  expect(status).toBe(202);
  expect((await post(viewer)).status).toBe(401);

  child.kill('SIGTERM');
  expect(await new Promise<number | null>((r) => child!.once('exit', r))).toBe(0);
});
