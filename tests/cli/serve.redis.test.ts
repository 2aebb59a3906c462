/**
 * `signalbox serve --threads 2` through the real command: both threads answer on one port, an
 * event posted to each is matched against the rules from the store, a rule change reaches every
 * thread, and SIGTERM shuts it down. A server thread that dies is started again with the rules
 * and keys of the moment.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { get } from 'node:http';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { listenablePort } from '../redis-server.js';
import { applyOfflineRule, BIN, runCli, serveEnv, startTwoThreads } from './serve-env.js';

const port = await listenablePort();
const { dir, env, cleanup } = serveEnv('serve');
let child: ChildProcess | undefined;

afterAll(async () => {
  child?.kill('SIGKILL');
  await cleanup();
});

const cli = (args: string[]) => runCli(env, args);

/** GET on a fresh connection (no keep-alive), so the kernel may pick either thread. */
function fresh(path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    get({ host: '127.0.0.1', port, path, agent: false }, (res) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve(body));
    }).on('error', reject);
  });
}

async function post(
  id: string,
  status: string,
  key = 'serve-test-key-0123456789',
): Promise<{ status: number; rules: string[] }> {
  const r = await fetch(`http://127.0.0.1:${port}/v1/events`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      authorization: `Bearer ${key}`,
      connection: 'close',
    },
    body: JSON.stringify({ id, source: 'rmm', type: 'device.offline', data: { status } }),
  });
  const body = (await r.json()) as { results?: Array<{ rules: string[] }> };
  return { status: r.status, rules: body.results?.[0]?.rules ?? [] };
}

it('serves on two threads, with live rules in each', { timeout: 60_000 }, async () => {
  await applyOfflineRule(dir, env, 'serve-test-key-0123456789');

  child = spawn(
    process.execPath,
    [
      BIN,
      'serve',
      '--port',
      String(port),
      '--threads',
      '2',
      '--connections',
      join(dir, 'connections.json'),
      '--admin-port',
      '0',
      '--grpc-port',
      '0',
    ],
    { env, cwd: dir },
  );
  let out = '';
  await new Promise<void>((resolve, reject) => {
    child!.stdout!.on('data', (d) => {
      out += d;
      if (out.includes('listening')) resolve();
    });
    child!.once('exit', (c) => reject(new Error(`serve exited ${c}: ${out}`)));
  });
  expect(out).toContain('2 threads');

  const threads = new Set<number>();
  for (let i = 0; i < 60 && threads.size < 2; i++) threads.add(JSON.parse(await fresh('/healthz')).thread);
  expect(threads.size).toBe(2);

  // Events on fresh connections reach both threads; each matches against the same rules.
  const results = await Promise.all(Array.from({ length: 10 }, (_, i) => post(`e${i}`, 'down')));
  expect(results.every((r) => r.status === 202 && r.rules.join() === 'offline')).toBe(true);

  // A rule change made elsewhere reaches every thread.
  writeFileSync(
    join(dir, 'rules.json'),
    JSON.stringify([
      { id: 'offline', tenant: 'acme', source: 'rmm', on: 'device.offline', when: 'device.status == "gone"' },
    ]),
  );
  expect(await cli(['rules', 'apply', '-f', join(dir, 'rules.json')])).toBe(0);
  const until = Date.now() + 10_000;
  let after: Array<{ status: number; rules: string[] }> = [];
  do {
    await new Promise((r) => setTimeout(r, 100));
    after = await Promise.all(Array.from({ length: 10 }, (_, i) => post(`f${Date.now()}-${i}`, 'gone')));
  } while (!after.every((r) => r.rules.join() === 'offline') && Date.now() < until);
  expect(after.every((r) => r.rules.join() === 'offline')).toBe(true);
  expect((await post(`g${Date.now()}`, 'down')).rules).toEqual([]);

  // An API key made through the admin API is accepted by both threads.
  const admin = /admin API on (http:\/\/[\d.]+:\d+)\/v1/.exec(out)![1]!;
  const adminKey = readFileSync(join(dir, 'var', 'admin.key'), 'utf8').trim();
  const made = await fetch(`${admin}/v1/keys`, {
    method: 'POST',
    headers: { authorization: `Bearer ${adminKey}`, 'content-type': 'application/json' },
    body: JSON.stringify({ role: 'editor', name: 'rmm' }),
  });
  const key = ((await made.json()) as { key: string }).key;
  const until2 = Date.now() + 10_000;
  let withKey: Array<{ status: number }> = [];
  do {
    await new Promise((r) => setTimeout(r, 100));
    withKey = await Promise.all(
      Array.from({ length: 10 }, (_, i) => post(`k${Date.now()}-${i}`, 'gone', key)),
    );
  } while (!withKey.every((r) => r.status === 202) && Date.now() < until2);
  expect(withKey.map((r) => r.status)).toEqual(Array(10).fill(202));

  child.kill('SIGTERM');
  const code = await new Promise<number | null>((r) => child!.once('exit', r));
  expect(code).toBe(0);
});

it('starts a server thread that died again, with the rules and keys of the moment', {
  timeout: 60_000,
}, async () => {
  const connections = await applyOfflineRule(dir, env, 'serve-test-key-0123456789');
  const stderr: string[] = [];
  const svc = await startTwoThreads(env, port, connections, stderr);
  try {
    const extra = svc.threads[0]!;
    const old = extra.thread;
    const dead = old.threadId;
    // A message it cannot take throws in the thread (an uncaught error, as a bug would). A rule
    // change while it is down must reach the new one.
    extra.thread.postMessage({ type: 'rules', rules: null });
    writeFileSync(
      join(dir, 'rules.json'),
      JSON.stringify([
        {
          id: 'offline',
          tenant: 'acme',
          source: 'rmm',
          on: 'device.offline',
          when: 'device.status == "lost"',
        },
      ]),
    );
    expect(await cli(['rules', 'apply', '-f', join(dir, 'rules.json')])).toBe(0);
    const until = Date.now() + 15_000;
    while (extra.thread === old && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
    expect(extra.restarts).toBe(1);
    expect(stderr.join('')).toContain('a server thread failed: TypeError');
    expect(stderr.join('')).toContain('a server thread died');
    const reborn = extra.thread.threadId;
    expect(reborn).not.toBe(dead);
    // Both threads answer again, the new one among them.
    const seen = new Set<number>();
    for (let i = 0; i < 80 && !seen.has(reborn); i++) seen.add(JSON.parse(await fresh('/healthz')).thread);
    expect([...seen]).toContain(reborn);
    // Events on fresh connections, whichever thread takes them, match the rule as it is now and
    // are accepted with the connection file's key.
    let results: Array<{ status: number; rules: string[] }> = [];
    const until2 = Date.now() + 10_000;
    do {
      await new Promise((r) => setTimeout(r, 100));
      results = await Promise.all(Array.from({ length: 12 }, (_, i) => post(`t${Date.now()}-${i}`, 'lost')));
    } while (!results.every((r) => r.rules.join() === 'offline') && Date.now() < until2);
    expect(results.map((r) => [r.status, r.rules.join()])).toEqual(Array(12).fill([202, 'offline']));
  } finally {
    await svc.close();
  }
});
