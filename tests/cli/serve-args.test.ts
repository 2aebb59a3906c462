/**
 * Bad input to `signalbox serve`, `signalbox worker` and `signalbox demo`: each gets exit status 2
 * and a message that says what is wrong, before anything starts listening or taking jobs.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { type AddressInfo, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, expect, it } from 'vitest';
import { handoffRetention } from '../../src/cli/env.js';
import { freePort, startRedisServer } from '../redis-server.js';

const BIN = new URL('../../bin/signalbox.js', import.meta.url).pathname;
const elsewhere = mkdtempSync(join(tmpdir(), 'sb-args-'));
let redis: ChildProcess | undefined;
const badConnections = join(elsewhere, 'bad-connections.json');
writeFileSync(badConnections, JSON.stringify({ connections: [{ tenant: 'a', id: 'x', source: 'kaseya' }] }));

afterAll(() => {
  redis?.kill('SIGKILL');
});

function run(
  args: string[],
  env: NodeJS.ProcessEnv = process.env,
  cwd = process.cwd(),
): Promise<{ code: number; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { env, cwd, timeout: 30_000 }, (err, _stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stderr }),
    );
  });
}

it('refuses bad options with exit 2 and a reason', async () => {
  const cases: Array<[string[], RegExp]> = [
    [['serve', '--bogus'], /unknown option --bogus/],
    [['serve', '--port', 'http'], /--port must be a port number/],
    [['serve', '--port', '70000'], /--port must be a port number/],
    [['serve', '--threads', '0'], /--threads must be a whole number from 1 to 64/],
    [['serve', '--threads', '1.5'], /--threads must be a whole number/],
    [['serve', '--threads', '2', '--port', '0'], /--threads needs a fixed --port/],
    [['serve', '--connections', join(elsewhere, 'missing.json')], /cannot read connections file/],
    [
      ['serve', '--connections', badConnections],
      /connections file .* is not valid:\n {2}connections\[0\]\.source: must be one of connectwise, autotask, halo\n$/,
    ],
    [['worker', '--bogus'], /signalbox worker: unknown option --bogus/],
    [['worker', '--concurrency', '0'], /--concurrency must be a whole number from 1 to 1000/],
    [['worker', '--concurrency', 'many'], /--concurrency must be a whole number/],
    [['worker', '--fetchers', '0'], /--fetchers must be a whole number from 1 to the concurrency/],
    [
      ['worker', '--concurrency', '4', '--fetchers', '5'],
      /--fetchers must be a whole number from 1 to the concurrency/,
    ],
    [['serve', '--admin-port', 'http'], /--admin-port must be a port number/],
    [['serve', '--grpc-port', '70000'], /--grpc-port must be a port number/],
  ];
  for (const [args, reason] of cases) {
    const r = await run(args);
    expect(r.code, args.join(' ')).toBe(2);
    expect(r.stderr).toMatch(reason);
  }
});

it('refuses malformed numeric settings in the environment with exit 2 and a reason', async () => {
  for (const [cmd, name, value] of [
    ['serve', 'SIGNALBOX_ARCHIVE_DAYS', 'forever'],
    ['worker', 'SIGNALBOX_ARCHIVE_DAYS', '-3'],
    ['serve', 'SIGNALBOX_TENANT_RATE', '1.5'],
    ['serve', 'SIGNALBOX_DEDUPE_DAYS', '7d'],
    ['serve', 'SIGNALBOX_SNAPSHOT_DAYS', '0'],
  ] as const) {
    const r = await run([cmd], { ...process.env, [name]: value });
    expect(r.code, `${cmd} ${name}=${value}`).toBe(2);
    expect(r.stderr).toContain(`signalbox ${cmd}: ${name} must be a positive whole number, not "${value}"`);
  }
});

it('takes the dedupe window and the snapshot retention from the environment, in days', () => {
  expect(handoffRetention({})).toEqual({});
  expect(handoffRetention({ SIGNALBOX_DEDUPE_DAYS: '2', SIGNALBOX_SNAPSHOT_DAYS: '30' })).toEqual({
    dedupeTtlSeconds: 2 * 86_400,
    snapshotTtlSeconds: 30 * 86_400,
  });
  expect(handoffRetention({ SIGNALBOX_DEDUPE_DAYS: '', SIGNALBOX_SNAPSHOT_DAYS: '1' })).toEqual({
    snapshotTtlSeconds: 86_400,
  });
});

it('says what is missing when there is no Redis', async () => {
  const env = { ...process.env };
  delete env.REDIS_URL;
  const r = await run(['serve'], env, elsewhere);
  expect(r.code).toBe(2);
  expect(r.stderr).toMatch(/no Redis: set REDIS_URL, or run `bash deploy\/local\/up.sh`/);
});

it('a worker says what is missing: Redis, or a Postgres server', async () => {
  const env = { ...process.env };
  delete env.REDIS_URL;
  const noRedis = await run(['worker'], env, elsewhere);
  expect(noRedis.code).toBe(2);
  expect(noRedis.stderr).toMatch(/signalbox worker: no Redis: set REDIS_URL/);
  const noPg: NodeJS.ProcessEnv = { ...process.env, REDIS_URL: 'redis://127.0.0.1:6390' };
  delete noPg.DATABASE_URL;
  const r = await run(['worker'], noPg, elsewhere);
  expect(r.code).toBe(2);
  expect(r.stderr).toMatch(/signalbox worker: set DATABASE_URL \(a separate worker process needs Postgres/);
  // One slot takes one fetch loop without being told (the default, two, is capped at the concurrency).
  const one = await run(['worker', '--concurrency', '1'], noPg, elsewhere);
  expect(one.stderr).toMatch(/signalbox worker: set DATABASE_URL/);
});

it('says so, with exit 2 and no stack trace, when Redis or the database cannot be reached', async () => {
  const closed = await freePort();
  for (const cmd of [['serve', '--port', '0'], ['worker']]) {
    const r = await run(cmd, { ...process.env, REDIS_URL: `redis://127.0.0.1:${closed}` });
    expect(r.code, cmd[0]).toBe(2);
    expect(r.stderr).toBe(
      `signalbox ${cmd[0]}: cannot reach Redis at redis://127.0.0.1:${closed}: connect ECONNREFUSED 127.0.0.1:${closed}\n`,
    );
  }
  const notRedis = await run(['serve'], { ...process.env, REDIS_URL: 'http://127.0.0.1:6390' });
  expect(notRedis.code).toBe(2);
  expect(notRedis.stderr).toMatch(/signalbox serve: REDIS_URL must be a redis:\/\/ or rediss:\/\/ URL/);
  // Every command that opens the store names the database, with its password masked.
  const db = `postgres://someone:s3cret@127.0.0.1:${closed}/signalbox`;
  for (const cmd of [
    ['serve', '--port', '0'],
    ['worker'],
    ['rules', 'export'],
    ['admin', 'keys', 'list', '--tenant', 't'],
  ]) {
    const r = await run(cmd, { ...process.env, DATABASE_URL: db }, elsewhere);
    expect(r.code, cmd.join(' ')).toBe(2);
    expect(r.stderr).toBe(
      `signalbox ${cmd[0]}: cannot open the database at postgres://someone:***@127.0.0.1:${closed}/signalbox: connect ECONNREFUSED 127.0.0.1:${closed}\n`,
    );
  }
});

it('names a fixed port that another process holds', async () => {
  const holder = createServer();
  await new Promise<void>((r) => holder.listen(0, '127.0.0.1', () => r()));
  const taken = (holder.address() as AddressInfo).port;
  try {
    for (const [args, what] of [
      [['--port', String(taken)], 'ingest'],
      [['--port', '0', '--admin-port', String(taken)], 'admin API'],
      [['--port', '0', '--admin-port', '0', '--grpc-port', String(taken)], 'gRPC admin API'],
    ] as const) {
      const r = await run(['serve', ...args]);
      expect(r.stderr).toBe(
        `signalbox serve: port ${taken} (${what}) on 127.0.0.1 is in use by another process\n`,
      );
      expect(r.code).toBe(2);
    }
    // An --admin-host that is no address of this machine is named with the system's reason.
    const elsewhereHost = await run([
      'serve',
      '--port',
      '0',
      '--admin-host',
      '203.0.113.7',
      '--admin-port',
      String(taken),
    ]);
    expect(elsewhereHost.stderr).toBe(
      `signalbox serve: cannot listen on 203.0.113.7:${taken} (admin API): listen EADDRNOTAVAIL: address not available 203.0.113.7:${taken}\n`,
    );
    expect(elsewhereHost.code).toBe(2);
    // With --no-admin the admin ports are not needed, so not checked: it goes on to Redis.
    const r = await run(['serve', '--port', '0', '--admin-port', String(taken), '--no-admin'], {
      ...process.env,
      REDIS_URL: `redis://127.0.0.1:${await freePort()}`,
    });
    expect(r.stderr).toMatch(/^signalbox serve: cannot reach Redis at /);
    expect(r.code).toBe(2);
  } finally {
    holder.close();
  }
});

it('refuses a Redis that may evict queued runs', { timeout: 30_000 }, async () => {
  const port = await freePort();
  redis = await startRedisServer(port, ['--maxmemory-policy', 'allkeys-lru']);
  const r = await run(['serve', '--port', '0'], { ...process.env, REDIS_URL: `redis://127.0.0.1:${port}` });
  expect(r.stderr).toMatch(/maxmemory-policy noeviction \(it has allkeys-lru\)/);
  expect(r.code).toBe(2);
  // The worker too (it needs Postgres first: a schema of its own, dropped after).
  const pgUrl = process.env.DATABASE_URL ?? 'postgres://signalbox:signalbox@127.0.0.1:5433/signalbox';
  const schema = `sb_wargs_${process.pid}`;
  const w = await run(['worker'], {
    ...process.env,
    REDIS_URL: `redis://127.0.0.1:${port}`,
    DATABASE_URL: pgUrl,
    SIGNALBOX_DB_SCHEMA: schema,
  });
  const c = new pg.Client({ connectionString: pgUrl });
  await c.connect();
  await c.query(`drop schema if exists ${schema} cascade`);
  await c.end();
  expect(w.code).toBe(2);
  expect(w.stderr).toMatch(
    /signalbox worker: Redis must run with maxmemory-policy noeviction \(it has allkeys-lru\)/,
  );
});

it('a second command on the embedded database is refused while serve holds it, and let in after', {
  timeout: 60_000,
}, async () => {
  const cwd = mkdtempSync(join(tmpdir(), 'sb-embedded-'));
  const env = {
    ...process.env,
    REDIS_URL: process.env.REDIS_URL ?? 'redis://127.0.0.1:6390',
    DATABASE_URL: '',
  };
  const serve = spawn(
    process.execPath,
    [
      BIN,
      'serve',
      '--port',
      '0',
      '--admin-port',
      '0',
      '--grpc-port',
      '0',
      '--no-worker',
      '--admin-host',
      '127.0.0.2',
    ],
    { env, cwd, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  await new Promise<void>((resolve, reject) => {
    serve.stdout!.on('data', (b: Buffer) => {
      out += b.toString();
      if (out.includes('listening on')) resolve();
    });
    serve.once('exit', (code) => reject(new Error(`serve exited ${code}: ${out}`)));
  });
  expect(out).toContain('rules in var/db (embedded)');
  // --admin-host: the admin API on its own interface, the ingest on --host's.
  const adminPort = Number(/admin API on http:\/\/127\.0\.0\.2:(\d+)\/v1/.exec(out)?.[1]);
  expect((await fetch(`http://127.0.0.2:${adminPort}/healthz`)).status).toBe(200);
  await expect(fetch(`http://127.0.0.1:${adminPort}/healthz`)).rejects.toThrow();
  const refused = await run(['rules', 'export'], env, cwd);
  expect(refused.code).toBe(2);
  expect(refused.stderr).toBe(
    `signalbox rules: cannot open the embedded database (var/db): in use by process ${serve.pid}; the embedded database takes one process at a time: stop that one or use its admin API, or set DATABASE_URL to share a Postgres server (if process ${serve.pid} is not Signalbox, delete var/db.lock)\n`,
  );
  // A second serve on its ingest port is refused too: uWebSockets.js listens with SO_REUSEPORT,
  // which would otherwise let the two share the port and split the webhooks between them.
  const port = Number(/listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(out)![1]);
  const second = await run(['serve', '--port', String(port), '--no-admin'], env, cwd);
  expect(second.code).toBe(2);
  expect(second.stderr).toBe(
    `signalbox serve: port ${port} (ingest) on 127.0.0.1 is in use by another process\n`,
  );
  const exited = new Promise((r) => serve.once('exit', r));
  serve.kill('SIGTERM');
  await exited;
  const after = await run(['rules', 'export'], env, cwd);
  expect(after.stderr).toBe('');
  expect(after.code).toBe(0);
});

it('demo says where to run it from', async () => {
  const r = await run(['demo'], process.env, elsewhere);
  expect(r.code).toBe(2);
  expect(r.stderr).toMatch(/run it from the repository root/);
});
