/**
 * What the tests of `signalbox serve` as a child process share: the command, an environment with
 * a schema and a Redis prefix of their own, and the cleanup of both.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';

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
