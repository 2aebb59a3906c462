/**
 * `signalbox worker` stops on SIGTERM even while Redis is down. BullMQ's close waits for Redis for
 * ever (every active run's end is written there, and its timers wait on a connection that does
 * not come back): the worker drops its connections at once when Redis is unreachable (another
 * worker retakes cut runs once their locks expire), and the command exits with status 0.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import pg from 'pg';
import { afterAll, expect, it } from 'vitest';
import { PG_URL } from '../pg-schema.js';
import { freePort, startRedisServer } from '../redis-server.js';

const BIN = new URL('../../bin/signalbox.js', import.meta.url).pathname;
const schema = `sb_wstop_${process.pid}`;
const children: ChildProcess[] = [];

afterAll(async () => {
  for (const c of children) c.kill('SIGKILL');
  const c = new pg.Client({ connectionString: PG_URL });
  await c.connect();
  await c.query(`drop schema if exists ${schema} cascade`);
  await c.end();
});

it('exits on SIGTERM while Redis is unreachable', { timeout: 60_000 }, async () => {
  const port = await freePort();
  const redis = await startRedisServer(port);
  children.push(redis);
  const worker = spawn(process.execPath, [BIN, 'worker', '--concurrency', '4'], {
    env: {
      ...process.env,
      REDIS_URL: `redis://127.0.0.1:${port}`,
      DATABASE_URL: PG_URL,
      SIGNALBOX_DB_SCHEMA: schema,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(worker);
  let out = '';
  let err = '';
  worker.stdout!.on('data', (b: Buffer) => (out += b.toString()));
  worker.stderr!.on('data', (b: Buffer) => (err += b.toString()));
  const exited = new Promise<number | null>((r) => worker.once('exit', (code) => r(code)));
  while (!out.includes('signalbox worker: running')) {
    if (worker.exitCode !== null) throw new Error(`worker exited: ${err}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  const redisGone = new Promise((r) => redis.once('exit', r));
  redis.kill('SIGKILL');
  await redisGone;
  while (!err.includes('Redis is unreachable')) await new Promise((r) => setTimeout(r, 50));
  worker.kill('SIGTERM');
  expect(await exited).toBe(0);
  expect(out).toContain('signalbox worker: finishing active runs');
});
