/**
 * `signalbox serve` SIGKILLed under load, through the real command: every event it acknowledged
 * is in the archive once, and every committed match is exactly one queued run: the COMMIT that
 * archives an event adds its runs, so nothing is left half done for another process to finish.
 */
import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, expect, it } from 'vitest';
import { readArchive } from '../../src/config/archive.js';
import { archiveStreamKey, RUN_QUEUE, runJobId } from '../../src/config/runs.js';
import { listenablePort } from '../redis-server.js';
import { applyOfflineRule, serveEnv, spawnServe } from './serve-env.js';

const port = await listenablePort();
const { dir, env, prefix, cleanup } = serveEnv('crash');
const redis = new Redis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6390');
const children: ChildProcess[] = [];

afterAll(async () => {
  for (const c of children) c.kill('SIGKILL');
  redis.disconnect();
  await cleanup();
});

const serveArgs = [
  '--no-worker',
  '--no-admin',
  '--port',
  String(port),
  '--connections',
  join(dir, 'connections.json'),
];

it('loses no acknowledged event and starts every committed match once when serve is killed mid-load', {
  timeout: 120_000,
}, async () => {
  await applyOfflineRule(dir, env, 'crash-test-key-0123456789');
  const first = await spawnServe(serveArgs, { env, cwd: dir });
  children.push(first.child);

  // Eight senders, one event a request; every other event matches.
  const acked = new Set<string>();
  let sending = true;
  const sender = async (s: number): Promise<void> => {
    for (let n = 0; sending; n++) {
      const id = `c${s}-${n}`;
      try {
        const r = await fetch(`${first.ingest}/v1/events`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: 'Bearer crash-test-key-0123456789' },
          body: JSON.stringify({
            id,
            source: 'rmm',
            type: 'device.offline',
            data: { status: n % 2 === 0 ? 'down' : 'up' },
          }),
        });
        await r.arrayBuffer();
        if (r.status === 202) acked.add(id);
      } catch {
        return; // the server is gone: this request was never answered
      }
    }
  };
  const senders = Array.from({ length: 8 }, (_, s) => sender(s));
  while (acked.size < 400) await new Promise((r) => setTimeout(r, 20));

  const exited = new Promise((r) => first.child.once('exit', r));
  first.child.kill('SIGKILL');
  await exited;
  sending = false;
  await Promise.all(senders);

  // Every acknowledged event is in the archive, once (and so are events committed whose answer
  // the kill cut off).
  const archived = new Map<string, number>();
  const matching = new Set<string>();
  const stream = await redis.xrangeBuffer(archiveStreamKey(prefix), '-', '+');
  for (const e of (
    await readArchive(
      redis,
      stream.map(([, f]) => f),
    )
  ).events) {
    archived.set(e.envelope.id, (archived.get(e.envelope.id) ?? 0) + 1);
    if (e.rules.includes('offline')) matching.add(e.envelope.id);
  }
  expect([...acked].filter((id) => !archived.has(id))).toEqual([]);
  expect([...archived.values()].every((n) => n === 1)).toBe(true);
  expect(matching.size).toBeGreaterThan(150);

  // Every committed match has its run queued, once, and no event that did not match has one.
  const jobKey = (id: string) => `${prefix}:${RUN_QUEUE}:${runJobId('acme', id, 'offline')}`;
  const pl = redis.pipeline();
  for (const id of matching) pl.exists(jobKey(id));
  const res = (await pl.exec()) ?? [];
  expect([...matching].filter((_, i) => res[i]?.[1] !== 1)).toEqual([]);
  expect(await redis.llen(`${prefix}:${RUN_QUEUE}:wait`)).toBe(matching.size);

  // A new serve takes over, and what the senders retry is a duplicate where it had committed.
  const second = await spawnServe(serveArgs, { env, cwd: dir });
  children.push(second.child);
  const again = await fetch(`${second.ingest}/v1/events`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: 'Bearer crash-test-key-0123456789' },
    body: JSON.stringify({
      id: [...matching][0],
      source: 'rmm',
      type: 'device.offline',
      data: { status: 'down' },
    }),
  });
  expect(((await again.json()) as { results: Array<{ outcome: string }> }).results[0]!.outcome).toBe(
    'duplicate',
  );
  expect(await redis.llen(`${prefix}:${RUN_QUEUE}:wait`)).toBe(matching.size);

  const stopped = new Promise((r) => second.child.once('exit', r));
  second.child.kill('SIGTERM');
  expect(await stopped).toBe(0);
});
