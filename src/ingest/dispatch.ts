/**
 * The dispatcher: turns dispatch-stream entries (handoff.ts: committed events that matched) into
 * BullMQ run jobs, one per matched rule.
 * A consumer group gives at-least-once delivery (entries are acknowledged after their jobs are
 * added; a restarted dispatcher re-reads what it had not acknowledged), and job ids derived from
 * (tenant, event id, rule id) make a repeat a no-op, so each match becomes exactly one run.
 */
import type { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { type RunJob, runJobId } from '../config/runs.js';
import { IdleClaimer } from '../config/streams.js';
import type { OutboxEntry } from './handoff.js';

export { RUN_QUEUE, type RunJob, runJobId } from '../config/runs.js';

export interface DispatcherOptions {
  readonly group?: string;
  readonly consumer?: string;
  readonly batch?: number;
  readonly blockMs?: number;
}

export class Dispatcher {
  private running = false;
  private stopped: Promise<void> | undefined;
  private readonly group: string;
  private readonly consumer: string;
  private readonly batch: number;
  private readonly blockMs: number;
  /** Jobs added, for metrics. */
  enqueued = 0;
  /** The last error the loop met (Redis down, a bad entry), for readiness and metrics. */
  lastError: Error | undefined;

  constructor(
    private readonly redis: Redis,
    /** The stream it reads (Handoff.dispatchKey). */
    private readonly streamKey: string,
    private readonly queue: Queue,
    opts: DispatcherOptions = {},
  ) {
    this.group = opts.group ?? 'dispatch';
    this.consumer = opts.consumer ?? `c-${process.pid}`;
    this.batch = opts.batch ?? 500;
    this.blockMs = opts.blockMs ?? 200;
  }

  async start(): Promise<void> {
    try {
      await this.redis.xgroup('CREATE', this.streamKey, this.group, '0', 'MKSTREAM');
    } catch (e) {
      if (!String((e as Error).message).includes('BUSYGROUP')) throw e;
    }
    this.running = true;
    this.stopped = this.loop();
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.stopped;
  }

  /** Reads and dispatches until stopped; first what this consumer left pending, then new entries. */
  private async loop(): Promise<void> {
    let pendingFirst = true;
    // A dispatcher that died leaves delivered entries unacknowledged: claim them after a minute.
    const claimer = new IdleClaimer(this.redis, this.streamKey, this.group, this.consumer);
    while (this.running) {
      try {
        const got = (await this.redis.call(
          'XREADGROUP',
          'GROUP',
          this.group,
          this.consumer,
          'COUNT',
          String(this.batch),
          ...(pendingFirst ? [] : ['BLOCK', String(this.blockMs)]),
          'STREAMS',
          this.streamKey,
          pendingFirst ? '0' : '>',
        )) as unknown[] | null;
        // One stream's reply: [key, entries] (ioredis 6 unwraps it) or [[key, entries]] (raw).
        const entries = ((typeof got?.[0] === 'string' ? got[1] : (got?.[0] as unknown[] | undefined)?.[1]) ??
          []) as Array<[string, string[] | null]>;
        if (pendingFirst && entries.length === 0) pendingFirst = false;
        if (!pendingFirst && (await claimer.claim())) pendingFirst = true;
        if (entries.length > 0) await this.dispatch(entries);
      } catch (e) {
        // Redis is down or restarting: wait and go on; nothing is acknowledged until dispatched,
        // and what was delivered but not acknowledged is read again first.
        this.lastError = e as Error;
        pendingFirst = true;
        await new Promise((r) => setTimeout(r, 250));
      }
    }
  }

  private async dispatch(entries: Array<[string, string[] | null]>): Promise<void> {
    const jobs: Parameters<Queue['addBulk']>[0] = [];
    for (const [, fields] of entries) {
      // A pending entry whose content was trimmed from the stream comes back as null.
      const raw = fields ? fields[fields.indexOf('e') + 1] : undefined;
      if (raw === undefined) continue;
      const entry = JSON.parse(raw) as OutboxEntry;
      const tenant = entry.envelope.tenant ?? 'default';
      const snapshot = entry.snapshot;
      for (const ruleId of entry.rules) {
        const data: RunJob = { tenant, ruleId, event: entry.envelope, ...(snapshot ? { snapshot } : {}) };
        jobs.push({
          name: 'run',
          data,
          opts: {
            jobId: runJobId(tenant, entry.envelope.id, ruleId),
            removeOnComplete: 10_000,
            removeOnFail: 50_000,
          },
        });
      }
      // Debounced rules that admitted the event but did not match: their timer for its key ends.
      for (const ruleId of entry.cancel ?? []) {
        const data: RunJob = { tenant, ruleId, event: entry.envelope, kind: 'cancel' };
        jobs.push({
          name: 'cancel',
          data,
          opts: {
            jobId: runJobId(tenant, entry.envelope.id, ruleId, 'cancel'),
            removeOnComplete: 10_000,
            removeOnFail: 50_000,
          },
        });
      }
    }
    if (jobs.length > 0) await this.queue.addBulk(jobs);
    this.enqueued += jobs.length;
    await this.redis.xack(this.streamKey, this.group, ...entries.map(([id]) => id));
  }
}
