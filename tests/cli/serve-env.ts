/**
 * What the tests of `signalbox serve` as a child process share: the command, an environment with
 * a schema and a Redis prefix of their own, and the cleanup of both.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { build, CLI_BUNDLE, isStale } from '../../scripts/build-lib.mjs';
import { secretBox } from '../../src/cli/env.js';
import type { RunningService } from '../../src/cli/serve.js';

export const BIN = new URL('../../bin/signalbox.js', import.meta.url).pathname;

export function serveEnv(name: string) {
  const url = process.env.DATABASE_URL ?? 'postgres://signalbox:signalbox@127.0.0.1:5433/signalbox';
  const schema = `sb_${name}_${process.pid}_${Date.now().toString(36)}`;
  const prefix = `sb${name}${process.pid}${Date.now().toString(36)}`;
  const dir = mkdtempSync(join(tmpdir(), `sb-${name}-`));
  const env = {
    ...process.env,
    DATABASE_URL: url,
    SIGNALBOX_DB_SCHEMA: schema,
    SIGNALBOX_REDIS_PREFIX: prefix,
  };
  async function cleanup(): Promise<void> {
    const { Redis } = await import('ioredis');
    const redis = new Redis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6390');
    const keys = await redis.keys(`${prefix}*`);
    if (keys.length > 0) await redis.del(...keys);
    await redis.quit();
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    await c.query(`drop schema if exists ${schema} cascade`);
    await c.end();
  }
  return { url, schema, prefix, dir, env, cleanup };
}

/**
 * Starts `signalbox serve` as a child process and resolves once it listens, with its output so
 * far and the ingest and admin URLs it printed.
 */
export async function spawnServe(
  args: string[],
  opts: { env: NodeJS.ProcessEnv; cwd: string },
): Promise<{ child: ChildProcess; out: string; ingest: string; admin: string | undefined }> {
  const child = spawn(process.execPath, [BIN, 'serve', ...args], opts);
  let out = '';
  let err = '';
  child.stderr!.on('data', (d) => (err += d));
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (d) => {
      out += d;
      if (out.includes('listening')) resolve();
    });
    child.once('exit', (c) => reject(new Error(`serve exited ${c}: ${out}${err}`)));
  });
  return {
    child,
    out,
    ingest: /listening on (http:\/\/[\d.]+:\d+)/.exec(out)![1]!,
    admin: /admin API on (http:\/\/[\d.]+:\d+)\/v1/.exec(out)?.[1],
  };
}

/** Runs `signalbox <args>` with `env`; resolves with its exit status and output. */
export function runCliOutput(
  env: NodeJS.ProcessEnv,
  args: readonly string[],
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { env }, (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

/** Runs `signalbox <args>` with `env`; resolves with 0, or 1 when it failed. */
export function runCli(env: NodeJS.ProcessEnv, args: string[]): Promise<number> {
  return new Promise((resolve) =>
    execFile(process.execPath, [BIN, ...args], { env }, (err) => resolve(err ? 1 : 0)),
  );
}

/**
 * Writes and applies the serve tests' rule (`offline`, tenant acme: rmm `device.offline` events
 * whose status is "down") and a connections file with an API key `key` for acme; resolves with
 * the connections file's path.
 */
export async function applyOfflineRule(dir: string, env: NodeJS.ProcessEnv, key: string): Promise<string> {
  writeFileSync(
    join(dir, 'rules.json'),
    JSON.stringify([
      { id: 'offline', tenant: 'acme', source: 'rmm', on: 'device.offline', when: 'device.status == "down"' },
    ]),
  );
  const connections = join(dir, 'connections.json');
  writeFileSync(connections, JSON.stringify({ connections: [], apiKeys: [{ tenant: 'acme', key }] }));
  if ((await runCli(env, ['rules', 'apply', '-f', join(dir, 'rules.json')])) !== 0) {
    throw new Error('signalbox rules apply failed');
  }
  return connections;
}

/**
 * `serve --threads 2` (ingest only) in this process, from the CLI bundle: the extra threads load
 * the bundle, and a test can only end one of them from inside. `stderr` collects what it writes.
 */
export async function startTwoThreads(
  env: NodeJS.ProcessEnv,
  port: number,
  connectionsFile: string,
  stderr: string[],
): Promise<RunningService> {
  if (isStale()) await build();
  const { startService } = (await import(CLI_BUNDLE)) as typeof import('../../src/cli/serve.js');
  const key = 'ab'.repeat(32);
  return startService(
    {
      env: { ...env, SIGNALBOX_SECRET_KEY: key },
      host: '127.0.0.1',
      port,
      threads: 2,
      adminPort: 0,
      grpcPort: 0,
      file: JSON.parse(readFileSync(connectionsFile, 'utf8')),
      secrets: secretBox({ SIGNALBOX_SECRET_KEY: key }),
      worker: false,
      admin: false,
      firstKey: false,
    },
    {
      stdout: { write: () => true } as unknown as NodeJS.WritableStream,
      stderr: { write: (s: string) => stderr.push(s) > 0 } as unknown as NodeJS.WritableStream,
    },
  );
}
