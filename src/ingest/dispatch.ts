/**
 * The dispatcher: turns dispatch-stream entries (handoff.ts: committed events that matched) into
 * BullMQ run jobs, one per matched rule.
 * A consumer group hands out the entries; an entry is acknowledged in the same Redis transaction
 * that adds its jobs (addRunJobs), so a dispatcher that dies leaves either both done or neither,
 * and another reads again only entries whose jobs were never added. Job ids derived from
 * (tenant, event id, rule id) make a repeat by a slow but live dispatcher a no-op as well.
 */
import type { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { addRunJobs, type RunJob, type RunJobSpec, runJobId } from '../config/runs.js';
import { type AckOn, field, RUN_STARTER_CLAIM, StreamConsumer, type StreamEntry } from '../config/streams.js';
import { type OutboxEntry, outboxEntries } from './handoff.js';

export { RUN_QUEUE, type RunJob, runJobId } from '../config/runs.js';

export interface DispatcherOptions {
  readonly group?: string;
  readonly consumer?: string;
  readonly batch?: number;
  readonly blockMs?: number;
}

export class Dispatcher {
  private readonly reader: StreamConsumer;
  /** Jobs added, for metrics. */
  enqueued = 0;

  constructor(
    redis: Redis,
    /** The stream it reads (Handoff.dispatchKey). */
    streamKey: string,
    private readonly queue: Queue<RunJob>,
    opts: DispatcherOptions = {},
  ) {
    // A dispatcher that died leaves delivered entries unacknowledged: another claims them (after
    // 10 s: adding a job twice is a no-op).
    this.reader = new StreamConsumer(
      redis,
      {
        key: streamKey,
        group: opts.group ?? 'dispatch',
        consumer: opts.consumer ?? `c-${process.pid}`,
        batch: opts.batch ?? 500,
        blockMs: opts.blockMs ?? 200,
        ...RUN_STARTER_CLAIM,
        ackedByHandler: true,
      },
      (entries, ack) => this.dispatch(entries, ack),
    );
  }

  /** The last error the loop met (Redis down, a bad entry), for readiness and metrics. */
  get lastError(): Error | undefined {
    return this.reader.lastError;
  }

  start(): Promise<void> {
    return this.reader.start();
  }

  stop(): Promise<void> {
    return this.reader.stop();
  }

  private async dispatch(entries: StreamEntry[], ack: AckOn): Promise<void> {
    const jobs: RunJobSpec[] = [];
    for (const e of entries) {
      // A pending entry whose content was trimmed from the stream has no fields: no events.
      // `l`: the ingest counted the entry's runs for the loop breaker; it lists those over.
      const l = field(e, 'l');
      const over = l === undefined ? undefined : new Set(l.toString().split(' '));
      for (const entry of outboxEntries(e.fields)) this.jobs(entry, jobs, over);
    }
    await addRunJobs(this.queue, jobs, ack);
    this.enqueued += jobs.length;
  }

  /** The run jobs (and debounce cancels) of one committed event. */
  private jobs(entry: OutboxEntry, jobs: RunJobSpec[], over: Set<string> | undefined): void {
    const tenant = entry.envelope.tenant ?? 'default';
    const snapshot = entry.snapshot;
    for (const ruleId of entry.rules) {
      const jobId = runJobId(tenant, entry.envelope.id, ruleId);
      // Counted by the ingest: the worker needs no round trip of its own. (A debounced rule's
      // match was not counted; its worker arms a timer and never reads this.)
      const loop = over === undefined ? undefined : over.has(jobId) ? 'over' : 'ok';
      const data: RunJob = {
        tenant,
        ruleId,
        event: entry.envelope,
        ...(snapshot ? { snapshot } : {}),
        ...(loop ? { loop } : {}),
      };
      jobs.push({
        name: 'run',
        data,
        opts: {
          jobId,
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
}
