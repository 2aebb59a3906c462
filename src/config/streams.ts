/**
 * A consumer-group reader for Redis streams, shared by the debounce timers and
 * the history drain. At-least-once: entries are acknowledged only after the handler succeeded; a
 * restarted consumer reads its own pending entries first; entries delivered to a consumer that
 * died are claimed after `minIdleMs` (XAUTOCLAIM); on an error (Redis down, a failing handler)
 * it waits and reads its pending entries again.
 */
import type { Redis } from 'ioredis';
import { archiveStreamKey, historyStreamKey, runQueueGauges, timersKey } from './runs.js';

export interface StreamEntry {
  readonly id: string;
  /** The entry's field/value pairs; null when the entry was trimmed from the stream meanwhile. */
  readonly fields: Buffer[] | null;
}

/** The value of one field of an entry, given its field/value list (XRANGE's or XREADGROUP's). */
export function field<T extends Buffer | string>(
  fields: ReadonlyArray<T> | null,
  name: string,
): T | undefined {
  if (!fields) return undefined;
  for (let i = 0; i + 1 < fields.length; i += 2) if (fields[i]!.toString() === name) return fields[i + 1];
  return undefined;
}

/**
 * The lines of the NDJSON of every `name` field of an entry (the ingest's COMMIT writes a chunk's
 * events as one field, the workers a turn's run records, one JSON line each; JSON.stringify never
 * writes a raw newline), empty lines left out.
 */
export function ndjsonLines(fields: ReadonlyArray<Buffer | string> | null, name: string): string[] {
  const out: string[] = [];
  if (!fields) return out;
  for (let i = 0; i + 1 < fields.length; i += 2) {
    if (fields[i]!.toString() !== name) continue;
    const text = fields[i + 1]!.toString();
    let at = 0;
    while (at < text.length) {
      let nl = text.indexOf('\n', at);
      if (nl < 0) nl = text.length;
      if (nl > at) out.push(text.slice(at, nl));
      at = nl + 1;
    }
  }
  return out;
}

/**
 * The JSON values in the NDJSON of every `name` field of an entry (ndjsonLines). A line that does
 * not parse is skipped; the others still count.
 */
export function jsonLines<T>(fields: ReadonlyArray<Buffer | string> | null, name: string): T[] {
  const out: T[] = [];
  for (const line of ndjsonLines(fields, name)) {
    try {
      out.push(JSON.parse(line) as T);
    } catch {
      // a damaged line
    }
  }
  return out;
}

export interface StreamConsumerOptions {
  readonly key: string;
  readonly group: string;
  readonly consumer: string;
  readonly batch?: number;
  readonly blockMs?: number;
  /** Delete entries once acknowledged (nobody else reads them). */
  readonly deleteAcked?: boolean;
  /** How long an entry stays delivered and unacknowledged before another consumer takes it (60 s). */
  readonly minIdleMs?: number;
  /** How often a consumer looks for such entries (5 s). */
  readonly claimEveryMs?: number;
  /**
   * After a read that did not fill a batch, wait this long before the next one, so that a trickle
   * is handled in fewer, larger batches (for the drains to Postgres, which are off the hot path).
   */
  readonly lingerMs?: number;
  /**
   * The handler acknowledges (and deletes) the entries itself, in the same script as its own
   * writes (the reader that starts the runs of fired timers: START in workers/timers.ts).
   */
  readonly ackedByHandler?: boolean;
  /** Told when the handler fails and when it works again (the drains: a Postgres outage). */
  readonly watch?: OutageWatch;
}

/**
 * Reports an outage of what a handler writes to once when it starts (the first failure that
 * `counts`) and once when it ends (the next success), rather than on every retry.
 */
export class OutageWatch {
  private down = false;
  constructor(
    private readonly report: (up: boolean, error?: Error) => void,
    private readonly counts: (e: unknown) => boolean,
  ) {}

  failed(e: unknown): void {
    if (this.down || !this.counts(e)) return;
    this.down = true;
    this.report(false, e as Error);
  }

  worked(): void {
    if (!this.down) return;
    this.down = false;
    this.report(true);
  }
}

/**
 * Claiming for readers that start runs (fired debounce timers): their handler adds a run only for
 * an entry still pending and acknowledges it in the same script, so a run is never doubled when a
 * live but slow consumer's entries are taken, while the runs of a consumer that died (a SIGKILLed
 * worker: a restarted process reads under a new name) wait 10–12 s rather than a minute.
 */
export const RUN_STARTER_CLAIM = { minIdleMs: 10_000, claimEveryMs: 2_000 } as const;

export class StreamConsumer {
  private running = false;
  private done: Promise<void> | undefined;
  private lastClaim = 0;
  /** The last error the loop met, for readiness and metrics. */
  lastError: Error | undefined;

  constructor(
    private readonly redis: Redis,
    private readonly o: StreamConsumerOptions,
    private readonly handle: (entries: StreamEntry[]) => Promise<void>,
  ) {}

  async start(): Promise<void> {
    try {
      await this.redis.xgroup('CREATE', this.o.key, this.o.group, '0', 'MKSTREAM');
    } catch (e) {
      if (!String((e as Error).message).includes('BUSYGROUP')) throw e;
    }
    this.running = true;
    this.done = this.loop();
  }

  async stop(): Promise<void> {
    this.running = false;
    this.wake?.();
    await this.done;
  }

  /** Ends a linger at once (stop). */
  private wake: (() => void) | undefined;

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(resolve, ms);
      this.wake = () => {
        clearTimeout(t);
        resolve();
      };
    });
  }

  private async loop(): Promise<void> {
    let pendingFirst = true;
    // The acknowledgement of the last batch: sent, and answered with the next read (the same
    // connection runs them in order), so a batch costs one round trip less.
    let acked: Promise<unknown> | undefined;
    while (this.running) {
      try {
        const read = this.redis.xreadgroupBuffer(
          'GROUP',
          this.o.group,
          this.o.consumer,
          'COUNT',
          this.o.batch ?? 500,
          'BLOCK',
          pendingFirst ? 1 : (this.o.blockMs ?? 200),
          'STREAMS',
          this.o.key,
          pendingFirst ? '0' : '>',
        ) as Promise<Array<[Buffer, Array<[Buffer, Buffer[] | null]>]> | null>;
        // Should the acknowledgement fail, the read's answer is not used (its entries stay pending).
        read.catch(() => {});
        const ack = acked;
        acked = undefined;
        await ack;
        const got = await read;
        const raw = got?.[0]?.[1] ?? [];
        if (pendingFirst && raw.length === 0) pendingFirst = false;
        if (!pendingFirst && (await this.claim())) pendingFirst = true;
        if (raw.length === 0) continue;
        const entries = raw.map(([id, fields]) => ({ id: id.toString(), fields }));
        const ids = entries.map((e) => e.id);
        try {
          await this.handle(entries);
        } catch (e) {
          this.o.watch?.failed(e);
          throw e;
        }
        this.o.watch?.worked();
        if (!this.o.ackedByHandler) {
          acked = this.o.deleteAcked
            ? Promise.all([
                this.redis.xack(this.o.key, this.o.group, ...ids),
                this.redis.xdel(this.o.key, ...ids),
              ])
            : this.redis.xack(this.o.key, this.o.group, ...ids);
          acked.catch(() => {});
        }
        if (this.o.lingerMs && raw.length < (this.o.batch ?? 500) && this.running)
          await this.sleep(this.o.lingerMs);
      } catch (e) {
        // Nothing is acknowledged until handled; what was delivered is read again first.
        this.lastError = e as Error;
        pendingFirst = true;
        if (this.running) await this.sleep(250);
      }
    }
    // Stopping: the last acknowledgement still counts (an error leaves the entries pending).
    await acked?.catch(() => {});
  }

  /** Claims idle entries of other consumers (at most every `claimEveryMs`); true when it took any. */
  private async claim(): Promise<boolean> {
    const now = Date.now();
    if (now - this.lastClaim < (this.o.claimEveryMs ?? 5_000)) return false;
    this.lastClaim = now;
    const r = (await this.redis.call(
      'XAUTOCLAIM',
      this.o.key,
      this.o.group,
      this.o.consumer,
      String(this.o.minIdleMs ?? 60_000),
      '0-0',
      'COUNT',
      '1000',
      'JUSTID',
    )) as [string, string[]];
    return (r?.[1]?.length ?? 0) > 0;
  }
}

/** A stream Signalbox keeps in Redis, for the backlog gauges of /metrics. */
export interface WatchedStream {
  /** Its name in the metrics: archive, history, timers. */
  readonly name: string;
  readonly key: string;
}

/** The Redis streams of a Signalbox deployment (key prefix `prefix`). */
export function watchedStreams(prefix: string): WatchedStream[] {
  return [
    { name: 'archive', key: archiveStreamKey(prefix) },
    { name: 'history', key: historyStreamKey(prefix) },
    { name: 'timers', key: `${timersKey(prefix)}:fired` },
  ];
}

/**
 * Prometheus gauges of the streams' backlogs, read at scrape time: entries in each stream, and per
 * consumer group those delivered and not acknowledged (pending) and those not yet delivered (lag).
 * A growing archive or history backlog is a drain that cannot write to Postgres; Redis keeps
 * every entry (noeviction) until it can, so this is the number to alert on.
 */
export async function streamGauges(redis: Redis, streams: readonly WatchedStream[]): Promise<string> {
  const pl = redis.pipeline();
  for (const s of streams) {
    pl.xlen(s.key);
    pl.xinfo('GROUPS', s.key);
  }
  const res = (await pl.exec()) ?? [];
  const length: string[] = [];
  const pending: string[] = [];
  const lag: string[] = [];
  streams.forEach((s, i) => {
    const [lenErr, len] = res[2 * i] ?? [];
    length.push(`signalbox_stream_length{stream="${s.name}"} ${lenErr ? 0 : Number(len)}`);
    const [groupsErr, groups] = res[2 * i + 1] ?? [];
    if (groupsErr || !Array.isArray(groups)) return; // no such stream yet
    for (const g of groups as unknown[][]) {
      const info = new Map<string, unknown>();
      for (let j = 0; j + 1 < g.length; j += 2) info.set(String(g[j]), g[j + 1]);
      const labels = `{stream="${s.name}",group="${String(info.get('name'))}"}`;
      pending.push(`signalbox_stream_pending${labels} ${Number(info.get('pending') ?? 0)}`);
      // Redis answers nil when it cannot tell the lag (after deletions in the middle): left out.
      const l = info.get('lag');
      if (l !== null && l !== undefined) lag.push(`signalbox_stream_lag${labels} ${Number(l)}`);
    }
  });
  return [
    '# HELP signalbox_stream_length Entries in a Signalbox Redis stream (an archive entry holds up to 256 events)',
    '# TYPE signalbox_stream_length gauge',
    ...length,
    '# HELP signalbox_stream_pending Stream entries delivered to a consumer group and not yet acknowledged',
    '# TYPE signalbox_stream_pending gauge',
    ...pending,
    '# HELP signalbox_stream_lag Stream entries not yet delivered to a consumer group',
    '# TYPE signalbox_stream_lag gauge',
    ...lag,
    '',
  ].join('\n');
}

/** What /metrics adds from Redis: the streams' backlogs and the run queue's counts. */
export async function backlogGauges(redis: Redis, prefix: string): Promise<string> {
  const parts = await Promise.all([
    streamGauges(redis, watchedStreams(prefix)),
    runQueueGauges(redis, prefix),
  ]);
  return parts.join('');
}
