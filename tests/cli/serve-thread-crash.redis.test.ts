/**
 * A server thread of `signalbox serve --threads 2` that fails under load (an uncaught error, as a
 * bug would make): it drains like a stopping server (ingest-thread.ts), so every request on its
 * connections is answered and its clients reconnect (to the other thread, or the new one); every
 * acknowledged event is in the archive; the thread is started again.
 */
import { Agent, request } from 'node:http';
import { Redis } from 'ioredis';
import { afterAll, expect, it } from 'vitest';
import { readArchive } from '../../src/config/archive.js';
import { archiveStreamKey } from '../../src/config/runs.js';
import { listenablePort } from '../redis-server.js';
import { applyOfflineRule, serveEnv, startTwoThreads } from './serve-env.js';

const port = await listenablePort();
const { dir, env, prefix, cleanup } = serveEnv('tcrash');
const redis = new Redis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6390');

afterAll(async () => {
  redis.disconnect();
  await cleanup();
});

/** The thread that answers a GET of /healthz on the agent's keep-alive connection. */
function threadOf(agent: Agent): Promise<number> {
  return new Promise((resolve, reject) => {
    request({ host: '127.0.0.1', port, path: '/healthz', agent }, (res) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve((JSON.parse(body) as { thread: number }).thread));
    })
      .on('error', reject)
      .end();
  });
}

/** POSTs one event on a keep-alive connection of `agent`; the status, or the error's code. */
function post(agent: Agent, id: string): Promise<number | string> {
  const body = JSON.stringify({ id, source: 'rmm', type: 'device.offline', data: { status: 'down' } });
  return new Promise((resolve) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        path: '/v1/events',
        method: 'POST',
        agent,
        headers: {
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(body),
          authorization: 'Bearer thread-crash-key-0123456789',
        },
        // a request the dead thread's socket never answers fails the test by this
        timeout: 10_000,
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
        res.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
      },
    );
    req.on('timeout', () => {
      req.destroy();
      resolve('hung');
    });
    req.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
    req.end(body);
  });
}

it('answers every request of a server thread that fails mid-load, and loses no acknowledged event', {
  timeout: 60_000,
}, async () => {
  const connections = await applyOfflineRule(dir, env, 'thread-crash-key-0123456789');
  const stderr: string[] = [];
  const svc = await startTwoThreads({ ...env, SIGNALBOX_TENANT_RATE: '1000000' }, port, connections, stderr);
  let sending = true;
  try {
    // Sixteen senders on keep-alive connections: the kernel spreads them over both threads.
    const acked = new Set<string>();
    const outcomes = new Map<number | string, number>();
    const threads: number[] = [];
    const afterCrash: number[] = [];
    let crashedAt = 0;
    const sender = async (s: number): Promise<void> => {
      const agent = new Agent({ keepAlive: true, maxSockets: 1 });
      threads[s] = await threadOf(agent);
      for (let n = 0; sending; n++) {
        const id = `t${s}-${n}`;
        const r = await post(agent, id);
        if (crashedAt > 0) afterCrash[s] = (afterCrash[s] ?? 0) + 1;
        outcomes.set(r, (outcomes.get(r) ?? 0) + 1);
        if (r === 202) acked.add(id);
        if (r === 'hung') break;
      }
      agent.destroy();
    };
    const senders = Array.from({ length: 16 }, (_, s) => sender(s));
    while (acked.size < 300) await new Promise((r) => setTimeout(r, 10));
    const extra = svc.threads[0]!;
    const old = extra.thread;
    const dying = old.threadId;
    // Some of the senders' connections are the failing thread's, or this shows nothing.
    expect(threads).toContain(dying);
    old.postMessage({ type: 'rules', rules: null });
    crashedAt = Date.now();
    const until = Date.now() + 15_000;
    while (extra.thread === old && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
    expect(extra.restarts).toBe(1);
    const after = acked.size;
    while (acked.size < after + 300) await new Promise((r) => setTimeout(r, 10));
    sending = false;
    await Promise.all(senders);

    // No request hung, was reset or refused: all were answered 202, and the failed thread's
    // senders went on (on new connections) as the others did.
    expect(Object.fromEntries(outcomes)).toEqual({ 202: acked.size });
    for (let s = 0; s < 16; s++) expect([threads[s], afterCrash[s]! > 50]).toEqual([threads[s], true]);
    const stream = await redis.xrangeBuffer(archiveStreamKey(prefix), '-', '+');
    const archived = new Set(
      (
        await readArchive(
          redis,
          stream.map(([, f]) => f),
        )
      ).events.map((e) => e.envelope.id),
    );
    expect([...acked].filter((id) => !archived.has(id))).toEqual([]);
    expect(stderr.join('')).toContain('a server thread died');
  } finally {
    sending = false;
    await svc.close();
  }
});
