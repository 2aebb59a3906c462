/**
 * The dispatcher of `signalbox serve` in a thread of its own. Turning committed events into
 * BullMQ run jobs (msgpack, a Lua script per job) costs the ingest about 3 µs of CPU per event at
 * 5% matching, a sixth of its per-event work: on its own thread it no longer holds up the event
 * loop that answers webhooks (measured on the ingest batch benchmark, 2 cores: the in-thread
 * dispatcher cut the server from ~60k to ~43k events/s).
 *
 * The thread has its own Redis connections; the stream's consumer group keeps delivery
 * at-least-once whatever thread or process reads it.
 */
import { parentPort } from 'node:worker_threads';
import { Redis } from 'ioredis';
import { openRunQueue } from '../config/runs.js';
import { Dispatcher } from '../ingest/dispatch.js';
import { type Supervised, type SuperviseOptions, startThread, supervise } from './supervise.js';

export interface DispatchThreadData {
  readonly kind: 'signalbox-dispatch-thread';
  readonly redisUrl: string;
  readonly prefix: string;
  /** The stream it reads (Handoff.dispatchKey). */
  readonly streamKey: string;
}

type ToThread = { readonly type: 'stop' };
type FromThread =
  | { readonly type: 'started' }
  | { readonly type: 'failed'; readonly message: string }
  | { readonly type: 'stopped' };

export function isDispatchThread(data: unknown): data is DispatchThreadData {
  return (
    typeof data === 'object' &&
    data !== null &&
    (data as { kind?: unknown }).kind === 'signalbox-dispatch-thread'
  );
}

/** In the thread: runs the dispatcher until the parent says stop. */
export async function runDispatchThread(data: DispatchThreadData): Promise<void> {
  const port = parentPort!;
  const redis = new Redis(data.redisUrl, { maxRetriesPerRequest: 1 });
  redis.on('error', () => {});
  const queueRedis = redis.duplicate();
  queueRedis.on('error', () => {});
  const queue = openRunQueue(queueRedis, data.prefix);
  const dispatcher = new Dispatcher(redis, data.streamKey, queue);
  try {
    await dispatcher.start();
  } catch (e) {
    port.postMessage({ type: 'failed', message: (e as Error).message } satisfies FromThread);
    redis.disconnect();
    queueRedis.disconnect();
    port.close();
    return;
  }
  port.on('message', (m: ToThread) => {
    if (m.type !== 'stop') return;
    void (async () => {
      await dispatcher.stop();
      await queue.close().catch(() => undefined);
      redis.disconnect();
      queueRedis.disconnect();
      port.postMessage({ type: 'stopped' } satisfies FromThread);
      port.close();
    })();
  });
  port.postMessage({ type: 'started' } satisfies FromThread);
}

/** The running dispatcher thread (`thread`: tests terminate it to see it come back). */
export type DispatchThread = Supervised;

/** Told when the thread died and is started again; the wait before (default 1 s). */
export type DispatchThreadOptions = Pick<SuperviseOptions, 'onRestart' | 'restartDelayMs'>;

/**
 * Starts the dispatcher thread from `entry`, a module that calls runDispatchThread when loaded
 * with DispatchThreadData (the CLI bundle does); resolves once it reads the stream. A thread that
 * dies is started again (supervise.ts): without it no match would become a run. Entries it had
 * read and not acknowledged are read again by the new one (the consumer group keeps them pending);
 * those it had acknowledged had their jobs added in the same transaction.
 */
export function startDispatchThread(
  entry: URL,
  data: Omit<DispatchThreadData, 'kind'>,
  o: DispatchThreadOptions = {},
): Promise<DispatchThread> {
  const full: DispatchThreadData = { kind: 'signalbox-dispatch-thread', ...data };
  return supervise(
    () =>
      startThread(entry, full, (m) => {
        const got = m as FromThread;
        if (got.type === 'started') return undefined;
        return `the dispatcher could not start: ${got.type === 'failed' ? got.message : got.type}`;
      }),
    {
      ...o,
      stopMessage: { type: 'stop' } satisfies ToThread,
      // A dispatcher stops within its read block (200 ms).
      graceMs: 5_000,
    },
  );
}
