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
import { parentPort, Worker } from 'node:worker_threads';
import { Redis } from 'ioredis';
import { openRunQueue } from '../config/runs.js';
import { Dispatcher } from '../ingest/dispatch.js';

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

export interface DispatchThread {
  /** Times the thread died and was started again. */
  readonly restarts: number;
  /** The thread, for tests (terminate it to see it come back). */
  readonly thread: Worker;
  stop(): Promise<void>;
}

export interface DispatchThreadOptions {
  /** Told when the thread died and is started again. */
  readonly onRestart?: (reason: string) => void;
  /** Wait before starting it again (default 1 s). */
  readonly restartDelayMs?: number;
}

/** Starts one thread; resolves once its dispatcher reads the stream. */
async function spawn(entry: URL, data: DispatchThreadData): Promise<Worker> {
  const w = new Worker(entry, { workerData: data });
  try {
    await new Promise<void>((resolve, reject) => {
      w.once('error', reject);
      w.once('exit', (code) => reject(new Error(`the dispatcher thread exited with ${code}`)));
      w.once('message', (m: FromThread) =>
        m.type === 'started'
          ? resolve()
          : reject(new Error(`the dispatcher could not start: ${m.type === 'failed' ? m.message : m.type}`)),
      );
    });
  } catch (e) {
    await w.terminate();
    throw e;
  }
  w.removeAllListeners();
  return w;
}

/**
 * Starts the dispatcher thread from `entry`, a module that calls runDispatchThread when loaded
 * with DispatchThreadData (the CLI bundle does); resolves once it reads the stream. A thread that
 * dies (an uncaught error, out of memory) is started again after a second, and again until it
 * runs: without it no match would become a run. Entries it had read and not acknowledged are
 * read again by the new one (the consumer group keeps them pending), and job ids make repeats
 * no-ops.
 */
export async function startDispatchThread(
  entry: URL,
  data: Omit<DispatchThreadData, 'kind'>,
  o: DispatchThreadOptions = {},
): Promise<DispatchThread> {
  const full: DispatchThreadData = { kind: 'signalbox-dispatch-thread', ...data };
  let stopping = false;
  let restarts = 0;
  let current = await spawn(entry, full);
  const watch = (w: Worker): void => {
    let error = '';
    w.on('error', (e) => {
      error = e.message;
    });
    w.once('exit', (code) => {
      if (stopping) return;
      const again = (reason: string): void => {
        restarts++;
        o.onRestart?.(reason);
        setTimeout(() => {
          if (stopping) return;
          spawn(entry, full).then(
            (next) => {
              current = next;
              watch(next);
            },
            (e: Error) => again(e.message),
          );
        }, o.restartDelayMs ?? 1_000).unref();
      };
      again(error || `exit code ${code}`);
    });
  };
  watch(current);
  return {
    get restarts() {
      return restarts;
    },
    get thread() {
      return current;
    },
    async stop() {
      stopping = true;
      const w = current;
      const exited = new Promise((r) => w.once('exit', r));
      w.postMessage({ type: 'stop' } satisfies ToThread);
      // A dispatcher stops within its read block (200 ms); past 5 s the thread is ended.
      const t = setTimeout(() => void w.terminate(), 5_000);
      await exited;
      clearTimeout(t);
    },
  };
}
