/**
 * The extra server threads of `signalbox serve --threads N` are kept running: a thread that dies
 * (an uncaught error, out of memory) is started again after a second, and again until it starts.
 * Without it the others would carry its share with nobody told.
 */
import { Worker } from 'node:worker_threads';

/**
 * Starts a thread of `entry` with `workerData` and resolves once its first message says it
 * started: `started` returns undefined for that message, else why it did not. A thread that
 * fails, exits or says it did not start is ended and the promise rejects.
 */
export async function startThread(
  entry: URL,
  workerData: unknown,
  started: (first: unknown) => string | undefined,
): Promise<Worker> {
  const w = new Worker(entry, { workerData });
  let onError: ((e: Error) => void) | undefined;
  let onExit: ((code: number) => void) | undefined;
  let onMessage: ((m: unknown) => void) | undefined;
  try {
    await new Promise<void>((resolve, reject) => {
      onError = reject;
      onExit = (code) => reject(new Error(`the thread exited with ${code}`));
      onMessage = (m) => {
        const why = started(m);
        if (why === undefined) resolve();
        else reject(new Error(why));
      };
      w.once('error', onError).once('exit', onExit).once('message', onMessage);
    });
  } catch (e) {
    await w.terminate();
    throw e;
  } finally {
    // Only these: Worker.removeAllListeners would also drop Node's own hooks that start the
    // thread's message port when a 'message' listener is added, and later messages would be lost.
    w.off('error', onError!).off('exit', onExit!).off('message', onMessage!);
  }
  return w;
}

export interface Supervised {
  /** Times the thread died and was started again. */
  readonly restarts: number;
  /** The running thread (tests terminate it to see it come back). */
  readonly thread: Worker;
  /** Stops for good: posts the stop message and waits for the thread to end by itself. */
  stop(): Promise<void>;
}

export interface SuperviseOptions {
  /** Told when the thread died and is started again, with why. */
  readonly onRestart?: (reason: string) => void;
  /** Wait before starting it again (default 1 s). */
  readonly restartDelayMs?: number;
  /**
   * Called at once (in the same turn) whenever a thread becomes the running one, the first
   * included: what it must be told or listened to for (messages sent to `thread` from then on
   * reach it; a restarted thread needs the state it had been sent before).
   */
  readonly onStarted?: (w: Worker) => void;
  /**
   * What the thread ends on. It is never terminated from outside: Node aborts the whole process
   * when a thread holding uWebSockets.js's poll handle is (ingest-thread.ts).
   */
  readonly stopMessage: unknown;
}

/**
 * Starts a thread with `spawn` (which resolves once it runs) and keeps one running until stopped.
 * The first start's failure rejects; later ones are retried.
 */
export async function supervise(spawn: () => Promise<Worker>, o: SuperviseOptions): Promise<Supervised> {
  let stopping = false;
  let restarts = 0;
  let current = await spawn();
  /** The running thread's end, once it has ended (and no new one runs yet). */
  let ended: Promise<void> = new Promise(() => {});
  const adopt = (w: Worker): void => {
    current = w;
    ended = new Promise((r) => w.once('exit', () => r()));
    o.onStarted?.(w);
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
          spawn().then(
            (w) => (stopping ? void w.terminate() : adopt(w)),
            (e: Error) => again(e.message),
          );
        }, o.restartDelayMs ?? 1_000).unref();
      };
      again(error || `exit code ${code}`);
    });
  };
  adopt(current);
  return {
    get restarts() {
      return restarts;
    },
    get thread() {
      return current;
    },
    async stop() {
      stopping = true;
      // Between a death and its restart this is the dead thread: its end has come already.
      current.postMessage(o.stopMessage);
      await ended;
    },
  };
}
