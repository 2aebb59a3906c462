/**
 * `signalbox serve` SIGKILLed under load, through the real command: every event it acknowledged
 * is in the archive once, and every committed match becomes exactly one queued run, including the
 * matches its dispatcher had read and not acknowledged when it died (another `serve` claims them).
 */
import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, expect, it } from 'vitest';
import { archiveStreamKey, dispatchStreamKey, RUN_QUEUE, runJobId } from '../../src/config/runs.js';
import { outboxEntries } from '../../src/ingest/handoff.js';
import { applyOfflineRule, serveEnv, spawnServe } from './serve-env.js';

const port = 30_000 + ((process.pid + 7_919) % 20_000);
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

/** Entries the dispatch stream's consumer group has delivered and not acknowledged. */
async function pendingDispatch(): Promise<number> {
  const r = (await redis.xpending(dispatchStreamKey(prefix), 'dispatch')) as [number, ...unknown[]];
  return Number(r[0]);
}

it('loses no acknowledged event and starts every committed match once when serve is killed mid-load', {
  timeout: 120_000,
}, async () => {
  await applyOfflineRule(dir, env, 'crash-test-key');
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
          headers: { 'content-type': 'application/json', authorization: 'Bearer crash-test-key' },
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

  // Kill it while its dispatcher holds entries it has read and not acknowledged: freeze the
  // process, look, and let it go on until that is so.
  let caught = false;
  for (let i = 0; i < 50 && !caught; i++) {
    first.child.kill('SIGSTOP');
    // What it wrote before it stopped (an acknowledgement goes out with the next read) may still
    // be on its way to Redis: let Redis take it before looking.
    await new Promise((r) => setTimeout(r, 50));
    caught = (await pendingDispatch()) > 0;
    if (!caught) {
      first.child.kill('SIGCONT');
      await new Promise((r) => setTimeout(r, 10 + i));
    }
  }
  const exited = new Promise((r) => first.child.once('exit', r));
  first.child.kill('SIGKILL');
  await exited;
  sending = false;
  await Promise.all(senders);
  expect(caught).toBe(true);
  const orphaned = await pendingDispatch();
  expect(orphaned).toBeGreaterThan(0);

  // Every acknowledged event is in the archive, once (and so are events committed whose answer
  // the kill cut off).
  const archived = new Map<string, number>();
  const matching = new Set<string>();
  for (const [, fields] of await redis.xrangeBuffer(archiveStreamKey(prefix), '-', '+')) {
    for (const e of outboxEntries(fields)) {
      archived.set(e.envelope.id, (archived.get(e.envelope.id) ?? 0) + 1);
      if (e.rules.includes('offline')) matching.add(e.envelope.id);
    }
  }
  expect([...acked].filter((id) => !archived.has(id))).toEqual([]);
  expect([...archived.values()].every((n) => n === 1)).toBe(true);
  expect(matching.size).toBeGreaterThan(150);

  // A new serve (a new consumer name) claims what the dead one had read, and every committed
  // match has its run queued, once.
  const second = await spawnServe(serveArgs, { env, cwd: dir });
  children.push(second.child);
  const jobKey = (id: string) => `${prefix}:${RUN_QUEUE}:${runJobId('acme', id, 'offline')}`;
  const missing = async (): Promise<string[]> => {
    const ids = [...matching];
    const pl = redis.pipeline();
    for (const id of ids) pl.exists(jobKey(id));
    const res = (await pl.exec()) ?? [];
    return ids.filter((_, i) => res[i]?.[1] !== 1);
  };
  const until = Date.now() + 60_000;
  let left = await missing();
  while ((left.length > 0 || (await pendingDispatch()) > 0) && Date.now() < until) {
    await new Promise((r) => setTimeout(r, 250));
    left = await missing();
  }
  expect(left).toEqual([]);
  expect(await pendingDispatch()).toBe(0);
  // One job per committed match, and none for the events that did not match.
  expect(await redis.llen(`${prefix}:${RUN_QUEUE}:wait`)).toBe(matching.size);

  const stopped = new Promise((r) => second.child.once('exit', r));
  second.child.kill('SIGTERM');
  expect(await stopped).toBe(0);
});
