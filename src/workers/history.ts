/**
 * Run history, off the hot path: the executor appends each run's state to a Redis stream (one
 * XADD per turn of the event loop for all runs, group commit, the records as NDJSON in one
 * entry), and a drain writes the stream to
 * Postgres in batches (runs, steps, rule run counts, log records in the audit log). A record is a
 * whole run as it stands, so the drain keeps the last record of each run in a batch, and writing
 * one twice (after a crash) changes nothing.
 */
import type { Redis } from 'ioredis';
import { historyStreamKey, STREAM_MAXLEN } from '../config/runs.js';
import { ndjsonLines, type OutageWatch, StreamConsumer } from '../config/streams.js';
import { MAX_JSON_DEPTH, nestedDeeper } from '../engine/index.js';
import { type Db, pgJsonText, STATEMENT_CHARS, writeDroppingRefused } from '../store/index.js';

export type RunStatus =
  | 'pending'
  | 'running'
  | 'delayed'
  | 'completed'
  | 'failed'
  | 'skipped'
  | 'throttled'
  | 'cancelled';
export type StepStatus = 'pending' | 'running' | 'completed' | 'failed' | 'skipped';

export interface StepRecord {
  idx: number;
  type: string;
  status: StepStatus;
  attempts: number;
  startedAt: number | null;
  finishedAt: number | null;
  output: unknown;
  error: unknown;
}

export interface RunRecord {
  readonly id: string;
  readonly tenant: string;
  readonly ruleId: string;
  readonly version: number;
  readonly eventId: string | null;
  /** Increases with every record of the run (ms time, or more); the drain keeps the highest. */
  rev: number;
  status: RunStatus;
  reason: string | null;
  readonly createdAt: number;
  startedAt: number | null;
  finishedAt: number | null;
  error: unknown;
  steps: StepRecord[];
  /** `log` steps' records, written to the audit log. */
  logs?: Array<{ idx: number; at: number; record: unknown }>;
}

const MAX_OUTPUT = 16_384;

/**
 * A step output bounded in size (the database also refuses more than 64 KiB) and depth. An output
 * nested past MAX_JSON_DEPTH (an API's answer: JSON.stringify overflows the stack a few thousand
 * levels down, wherever the run's state is written next) is replaced by a note: thrown, it would
 * fail the run after its step's request had gone out.
 */
export function bounded(v: unknown): unknown {
  if (v === undefined) return null;
  if (nestedDeeper(v, MAX_JSON_DEPTH)) {
    return { truncated: true, unwritable: `nested deeper than ${MAX_JSON_DEPTH} levels` };
  }
  let s: string | undefined;
  try {
    s = JSON.stringify(v);
  } catch (e) {
    return { truncated: true, unwritable: (e as Error).message };
  }
  if (s === undefined) return null;
  return s.length <= MAX_OUTPUT ? v : { truncated: true, bytes: s.length, preview: s.slice(0, 2000) };
}

export class HistoryLog {
  readonly key: string;
  private pending: string[] = [];
  private waiters: Array<{ resolve: () => void; reject: (e: unknown) => void }> = [];
  private scheduled = false;
  /** The last append Redis refused (with `ordered`, nobody waits for the answer). */
  lastError: Error | undefined;

  /**
   * `ordered`: `redis` is the connection the worker's jobs complete (and move to delayed) on.
   * A record then counts as written once it is sent, not once Redis answers: Redis runs one
   * connection's commands in order, so the job's completion, sent after it, is never applied
   * without the record before it. That takes a round trip off every run (measured on the worker
   * benchmark: about +15% runs/s). Without it, record waits for Redis's answer.
   */
  constructor(
    private readonly redis: Redis,
    prefix: string,
    private readonly ordered = false,
    private readonly opts: {
      /** Told of each append Redis refused (with `ordered`, the records are sent again). */
      onError?: (e: Error) => void;
      /** How long before refused records are sent again (default a second; tests use less). */
      retryMs?: number;
    } = {},
  ) {
    this.key = historyStreamKey(prefix);
  }

  /**
   * With `ordered`, turns' records Redis refused (full under noeviction, or gone mid-write), to
   * send again: nobody waited for the answer, the job's completion sent after the record may
   * still have been applied (a full Redis refuses a script only at its first write, which need
   * not take memory), and the record is the run's only way into the history. Sending one late
   * is harmless: the drain keeps each run's highest revision. Bounded: past UNSENT_CHARS the
   * oldest go, told through onError.
   */
  private unsent: string[] = [];
  private unsentChars = 0;
  private resendTimer: NodeJS.Timeout | undefined;

  private refused(text: string, e: Error): void {
    this.lastError = e;
    this.opts.onError?.(e);
    this.unsent.push(text);
    this.unsentChars += text.length;
    while (this.unsentChars > UNSENT_CHARS && this.unsent.length > 1) {
      this.unsentChars -= this.unsent.shift()!.length;
      this.opts.onError?.(
        new Error(`run records dropped: more than ${UNSENT_CHARS} characters wait to be sent again`),
      );
    }
    this.resendTimer ??= setTimeout(() => {
      this.resendTimer = undefined;
      const texts = this.unsent;
      this.unsent = [];
      this.unsentChars = 0;
      for (const t of texts)
        this.redis
          .xadd(this.key, 'MAXLEN', '~', STREAM_MAXLEN, '*', 'r', t)
          .catch((e2: Error) => this.refused(t, e2));
    }, this.opts.retryMs ?? 1_000);
    this.resendTimer.unref();
  }

  /**
   * Appends a run's state (its next revision); records of one turn share one call. Resolves once
   * Redis has it, or, `ordered`, once it is sent ahead of anything the caller sends next.
   */
  record(run: RunRecord): Promise<void> {
    // Time-based, so that a record written later by another worker (resuming the run from older
    // saved state) still wins over the dead worker's last records.
    run.rev = Math.max(run.rev + 1, Date.now());
    this.pending.push(JSON.stringify(run));
    return new Promise((resolve, reject) => {
      this.waiters.push({ resolve, reject });
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => void this.flush());
      }
    });
  }

  private async flush(): Promise<void> {
    this.scheduled = false;
    const batch = this.pending;
    const waiters = this.waiters;
    this.pending = [];
    this.waiters = [];
    try {
      // One stream entry for the turn's records, as NDJSON in field `r` (JSON.stringify writes no
      // raw newline): one XADD instead of one per run, and the drain reads, acknowledges and
      // deletes one entry for all of them. Measured on the worker benchmark: +6–10% runs/s.
      const text = batch.join('\n');
      const added = this.redis.xadd(this.key, 'MAXLEN', '~', STREAM_MAXLEN, '*', 'r', text);
      if (this.ordered) {
        added.catch((e: Error) => this.refused(text, e));
        for (const w of waiters) w.resolve();
        return;
      }
      await added;
      for (const w of waiters) w.resolve();
    } catch (e) {
      for (const w of waiters) w.reject(e);
    }
  }
}

/**
 * One statement (atomic, one round trip) writes a batch: runs (an older revision changes nothing),
 * the steps of the runs whose record was applied, the rules' run counts, and `log` records. The
 * records come as the workers wrote them (a json array of the stream's lines): the drain does not
 * parse them. Postgres reads each once (json_to_recordset, and the steps and logs within), keeps
 * the last revision of each run in the batch (a later line wins a tie), and writes a run finished
 * before it started (another worker's clock behind: the table refuses finished < started) as
 * finished when it started. Measured on the worker benchmark: parsing in the drain and writing
 * new json for Postgres was about 12 µs of the worker's CPU per run.
 */
const WRITE = `
with rec as (
  select * from rows from (json_to_recordset($1::json) as (id text, tenant text, "ruleId" text, version int,
    "eventId" text, rev bigint, status text, reason text, "createdAt" double precision,
    "startedAt" double precision, "finishedAt" double precision, error jsonb, steps json, logs json))
    with ordinality as r(id, tenant, rule_id, version, event_id, rev, status, reason, created_at, started_at,
      finished_at, error, steps, logs, n)
), x as (
  select distinct on (id) * from rec order by id, rev desc, n desc
), up as (
  insert into runs (id, tenant_id, rule_id, rule_version, event_id, status, reason, created_at, started_at, finished_at, error, revision)
  select id, tenant, rule_id, version, event_id, status, reason, to_timestamp(created_at / 1000.0),
    to_timestamp(started_at / 1000.0),
    to_timestamp((case when finished_at < started_at then started_at else finished_at end) / 1000.0),
    error, rev from x
  on conflict (id) do update set status = excluded.status, reason = excluded.reason, started_at = excluded.started_at,
    finished_at = excluded.finished_at, error = excluded.error, rule_version = excluded.rule_version,
    revision = excluded.revision
  where runs.revision <= excluded.revision
  returning id, tenant_id, rule_id, (xmax = 0) as inserted, created_at
), counted as (
  update rules r set run_count = r.run_count + c.n, last_run_at = greatest(r.last_run_at, c.at)
  from (select tenant_id, rule_id, count(*) filter (where inserted) as n, max(created_at) as at from up group by 1, 2) c
  where r.tenant_id = c.tenant_id and r.id = c.rule_id
), st as (
  insert into steps (run_id, idx, type, status, attempts, started_at, finished_at, output, error)
  select x.id, s.idx, s.type, s.status, s.attempts, to_timestamp(s."startedAt" / 1000.0),
    to_timestamp(s."finishedAt" / 1000.0), s.output, s.error
  from x cross join lateral json_to_recordset(x.steps) as s(idx int, type text, status text, attempts int,
    "startedAt" double precision, "finishedAt" double precision, output jsonb, error jsonb)
  where x.id in (select id from up)
  on conflict (run_id, idx) do update set status = excluded.status, attempts = excluded.attempts,
    started_at = excluded.started_at, finished_at = excluded.finished_at, output = excluded.output, error = excluded.error
), lg as (
  -- every record's: a worker writes a log record once, with the first record after its step
  insert into audit_log (tenant_id, actor, action, entity, entity_id, details, at)
  select rec.tenant, 'workflow', 'run.log', 'run', rec.id, jsonb_build_object('step', l.idx, 'record', l.record),
    to_timestamp(l.at / 1000.0)
  from rec cross join lateral json_to_recordset(rec.logs) as l(idx int, at double precision, record jsonb)
)
select count(*) from up`;

/**
 * How long the drains (history and event archive) wait after a read that did not fill a batch.
 * Measured on the worker benchmark's end-to-end run at 2,000 events/s: without it, the drains
 * wrote a few rows per statement, hundreds of statements a second, on the cores the hot path
 * needs. Too long a wait makes each statement a burst of Postgres CPU: at 250 ms, about 500 runs
 * and 40 ms of a core, during which everything else on a 2-core machine shares the other core.
 * 50 against 250 ms (2026-12-07, 24 runs each, alternating): accepted → first step p99 around
 * 20 ms against around 36 (medians of the runs), though single runs of either ranged 8–99 ms.
 */
export const DRAIN_LINGER_MS = 50;

/** Characters of refused run records a HistoryLog keeps to send again (16 MiB). */
const UNSENT_CHARS = 16 * 1024 * 1024;

/** Run records per statement (and at most STATEMENT_CHARS of them: a record holds its steps' outputs). */
const WRITE_RUNS = 2_000;

/** Days of run history kept by default (runs, their steps, their `log` records). */
export const HISTORY_DAYS = 90;
/** Rows a pruning statement deletes: short statements, so the drain's writes never wait long. */
const PRUNE_ROWS = 5_000;
const HOUR = 3_600_000;

/** Reads the history stream with a consumer group and writes it to Postgres in batches. */
export class HistoryDrain {
  private readonly reader: StreamConsumer;
  written = 0;
  private readonly retentionDays: number;
  private readonly pruneRows: number;
  private readonly now: () => number;
  /** Why the last pruning stopped short (Postgres down), if it did. */
  pruneError: Error | undefined;
  /** The hour pruning last began, the pruning under way, and whether the drain is stopping. */
  private pruned = -1;
  private pruning: Promise<void> | undefined;
  private stopping = false;
  /** Prunes a drain that writes nothing (a quiet system keeps no history past its retention). */
  private pruneTimer: NodeJS.Timeout | undefined;
  private readonly pruneCheckMs: number;
  private readonly writeChars: number;
  private readonly onDropped: ((e: Error) => void) | undefined;

  constructor(
    redis: Redis,
    key: string,
    private readonly db: Db,
    opts: {
      group?: string;
      consumer?: string;
      batch?: number;
      blockMs?: number;
      lingerMs?: number;
      watch?: OutageWatch;
      /** Days of history kept (default HISTORY_DAYS); older runs are deleted, hourly. */
      retentionDays?: number;
      /** Rows a pruning statement deletes (default PRUNE_ROWS; tests use few). */
      pruneRows?: number;
      /** How often a drain with nothing to write looks whether an hour began (default a minute). */
      pruneCheckMs?: number;
      /** Characters of records per statement (default STATEMENT_CHARS; tests use few). */
      writeChars?: number;
      /** Told of each record Postgres refused (or that is not JSON), dropped so that the rest is written. */
      onDropped?: (e: Error) => void;
      now?: () => number;
    } = {},
  ) {
    this.retentionDays = opts.retentionDays ?? HISTORY_DAYS;
    this.pruneRows = opts.pruneRows ?? PRUNE_ROWS;
    this.pruneCheckMs = opts.pruneCheckMs ?? 60_000;
    this.writeChars = opts.writeChars ?? STATEMENT_CHARS;
    this.onDropped = opts.onDropped;
    this.now = opts.now ?? Date.now;
    this.reader = new StreamConsumer(
      redis,
      {
        key,
        group: opts.group ?? 'history',
        consumer: opts.consumer ?? `h-${process.pid}`,
        // Entries, each a turn's records (up to a worker's concurrency, usually a few).
        batch: opts.batch ?? 200,
        blockMs: opts.blockMs ?? 200,
        // A trickle in fewer, larger statements (runs appear in the history a little later).
        lingerMs: opts.lingerMs ?? DRAIN_LINGER_MS,
        // Acknowledged records are of no further use.
        deleteAcked: true,
        ...(opts.watch ? { watch: opts.watch } : {}),
      },
      async (entries) => {
        const lines = entries.flatMap((e) => ndjsonLines(e.fields, 'r'));
        await this.write(lines);
        this.written += lines.length;
      },
    );
  }

  get lastError(): Error | undefined {
    return this.writeError ?? this.reader.lastError;
  }

  /** A run the database refused (dropped, so that the drain goes on). */
  private writeError: Error | undefined;

  start(): Promise<void> {
    this.prune();
    this.pruneTimer = setInterval(() => this.prune(), this.pruneCheckMs);
    this.pruneTimer.unref();
    return this.reader.start();
  }

  async stop(): Promise<void> {
    this.stopping = true;
    clearInterval(this.pruneTimer);
    await this.reader.stop();
    await this.pruning;
  }

  /**
   * Starts deleting history past the retention, at most once an hour (with the first write of
   * the hour, or by the minute's check of a drain with nothing to write), beside the drain (its
   * writes do not wait for it). Several workers may prune at once: each statement skips the rows
   * another holds.
   */
  private prune(): void {
    const hour = Math.floor(this.now() / HOUR);
    if (hour === this.pruned || this.pruning) return;
    this.pruned = hour;
    this.pruning = this.deleteOld()
      .then(() => undefined)
      .catch((e) => {
        // Postgres down: tried again with the next write or check.
        this.pruned = -1;
        this.pruneError = e as Error;
      })
      .finally(() => {
        this.pruning = undefined;
      });
  }

  /**
   * Deletes the runs created before the retention (their steps go with them: on delete cascade)
   * and the `log` records of that age, `pruneRows` to a statement. Returns how many runs went.
   */
  async deleteOld(): Promise<number> {
    const before = new Date(this.now() - this.retentionDays * 86_400_000).toISOString();
    const deleteAll = async (sql: string): Promise<number> => {
      let n = 0;
      for (;;) {
        if (this.stopping) return n;
        const deleted = (await this.db.query(sql, [before, this.pruneRows])).rowCount;
        n += deleted;
        if (deleted < this.pruneRows) return n;
      }
    };
    const runs = await deleteAll(`delete from runs where id in (select id from runs where created_at < $1
      order by created_at limit $2 for update skip locked)`);
    await deleteAll(`delete from audit_log where id in (select id from audit_log
      where action = 'run.log' and at < $1 order by at limit $2 for update skip locked)`);
    return runs;
  }

  /**
   * Writes records (JSON lines, as HistoryLog wrote them), WRITE_RUNS and at most `writeChars` to a
   * statement; when Postgres refuses a statement's data (or a line is not JSON), each record
   * alone, dropping the refused one. When Postgres does not answer, it throws (the drain reads
   * the records again later).
   */
  async write(lines: readonly string[]): Promise<void> {
    this.prune();
    // Postgres not answering: nothing is acknowledged, the stream keeps the records (writing one
    // again changes nothing: runs keep the highest revision).
    await writeDroppingRefused(
      lines,
      { rows: WRITE_RUNS, chars: this.writeChars },
      (records) => this.writeRuns(records),
      (e) => {
        this.writeError = e;
        this.onDropped?.(e);
      },
    );
  }

  private async writeRuns(records: string): Promise<void> {
    await this.db.query(WRITE, [pgJsonText(records)]);
  }
}
