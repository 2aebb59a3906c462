/**
 * The event archive's drain: the ingest appends every accepted event to a Redis stream in the same
 * round trip that acknowledges it (so an acknowledged event is never lost); this drain writes
 * them to Postgres in batches (`events`, one partition per day), where replay, backtest and the
 * admin API read them. Entries are deleted from the stream once written.
 *
 * It also keeps the partitions: today's and the next two days' exist before their events arrive,
 * and days older than the retention are dropped whole (cheap: no row deletes).
 */
import type { Redis } from 'ioredis';
import { type OutboxEntry, readArchive } from '../config/archive.js';
import { field, type OutageWatch, StreamConsumer, type StreamEntry } from '../config/streams.js';
import { type Db, pgJson, STATEMENT_CHARS, writeDroppingRefused } from '../store/index.js';
import { DRAIN_LINGER_MS } from './history.js';

export interface ArchiveOptions {
  readonly group?: string;
  readonly consumer?: string;
  readonly batch?: number;
  readonly blockMs?: number;
  readonly lingerMs?: number;
  /** Days of events kept (default 30). */
  readonly retentionDays?: number;
  readonly now?: () => number;
  /** Told when writing to Postgres fails and when it works again. */
  readonly watch?: OutageWatch;
  /** Characters of JSON per statement (default STATEMENT_CHARS; tests use few). */
  readonly statementChars?: number;
  /** Told of each event Postgres refused (or that could not be serialized), dropped so that the rest is written. */
  readonly onDropped?: (e: Error) => void;
}

interface Row {
  tenant_id: string;
  id: string;
  received_at: string;
  source: string;
  type: string;
  time: string | null;
  envelope: Record<string, unknown>;
}

const DAY = 86_400_000;
/** Rows per INSERT statement (one json parameter; see also STATEMENT_CHARS). */
const INSERT_ROWS = 2_000;

export class ArchiveDrain {
  private readonly reader: StreamConsumer;
  private readonly now: () => number;
  private maintained = -1;
  written = 0;
  /** The last batch error (a row the database refused is dropped, the rest written). */
  writeError: Error | undefined;

  constructor(
    private readonly redis: Redis,
    key: string,
    private readonly db: Db,
    private readonly o: ArchiveOptions = {},
  ) {
    this.now = o.now ?? Date.now;
    this.reader = new StreamConsumer(
      redis,
      {
        key,
        group: o.group ?? 'archive',
        consumer: o.consumer ?? `a-${process.pid}`,
        // An entry holds up to a chunk (256) of events.
        batch: o.batch ?? 200,
        blockMs: o.blockMs ?? 200,
        lingerMs: o.lingerMs ?? DRAIN_LINGER_MS,
        deleteAcked: true,
        ...(o.watch ? { watch: o.watch } : {}),
      },
      (entries) => this.drain(entries),
    );
  }

  get lastError(): Error | undefined {
    return this.writeError ?? this.reader.lastError;
  }

  async start(): Promise<void> {
    await this.maintain();
    await this.reader.start();
  }

  stop(): Promise<void> {
    return this.reader.stop();
  }

  /**
   * Writes the events of stream entries (a chunk's events each, as NDJSON, inline or in a key of
   * their own: config/archive.ts), then deletes the keys: once written, a redelivered entry whose
   * key is gone has nothing left to write. Entries go in groups of at most `statementChars` of
   * keyed text (by STRLEN first; an entry alone may be more): a chunk can hold 256 events of up to
   * 1 MiB, and a read 200 entries, too much to hold at once.
   */
  private async drain(entries: StreamEntry[]): Promise<void> {
    const named = entries.map((e) => field(e.fields, 'k')?.toString());
    const keyed = named.filter((k): k is string => k !== undefined);
    const lengths = keyed.length > 0 ? await this.keyLengths(keyed) : new Map<string, number>();
    const limit = this.o.statementChars ?? STATEMENT_CHARS;
    let group: StreamEntry[] = [];
    let size = 0;
    for (let i = 0; i < entries.length; i++) {
      const n = named[i] === undefined ? 0 : (lengths.get(named[i]!) ?? 0);
      if (group.length > 0 && size + n > limit) {
        await this.drainGroup(group);
        group = [];
        size = 0;
      }
      group.push(entries[i]!);
      size += n;
    }
    if (group.length > 0) await this.drainGroup(group);
  }

  private async keyLengths(keys: readonly string[]): Promise<Map<string, number>> {
    const p = this.redis.pipeline();
    for (const k of keys) p.strlen(k);
    const out = new Map<string, number>();
    for (const [i, r] of ((await p.exec()) ?? []).entries()) {
      if (r[0]) throw r[0];
      out.set(keys[i]!, Number(r[1]));
    }
    return out;
  }

  private async drainGroup(entries: readonly StreamEntry[]): Promise<void> {
    const { events, keys } = await readArchive(
      this.redis,
      entries.map((e) => e.fields),
    );
    await this.write(
      events.flatMap((e: OutboxEntry) => this.row(e.envelope as unknown as Record<string, unknown>)),
    );
    if (keys.length > 0) await this.redis.unlink(...keys);
  }

  private row(env: Record<string, unknown>): Row[] {
    try {
      const receivedAt =
        typeof env.receivedAt === 'string' ? env.receivedAt : new Date(this.now()).toISOString();
      return [
        {
          tenant_id: String(env.tenant ?? 'default'),
          id: String(env.id),
          received_at: receivedAt,
          source: String(env.source),
          type: String(env.type),
          time: typeof env.time === 'string' && !Number.isNaN(Date.parse(env.time)) ? env.time : null,
          envelope: env,
        },
      ];
    } catch {
      return [];
    }
  }

  /** Partitions ahead, retention behind: once a day (and at start). */
  async maintain(): Promise<void> {
    const day = Math.floor(this.now() / DAY);
    if (day === this.maintained) return;
    for (let d = 0; d <= 2; d++) {
      const date = new Date((day + d) * DAY).toISOString().slice(0, 10);
      await this.db.query('select sb_ensure_event_partition($1::date)', [date]).catch(() => {
        // The default partition already holds rows of that day (a drain that lagged): they stay there.
      });
    }
    const keep = this.o.retentionDays ?? 30;
    const before = new Date((day - keep) * DAY).toISOString().slice(0, 10);
    await this.db.query('select sb_drop_event_partitions($1::date)', [before]);
    await this.db.query('delete from events_default where received_on < $1::date', [before]);
    this.maintained = day;
  }

  /**
   * Writes rows, INSERT_ROWS (and at most `statementChars` of JSON) to a statement; when Postgres
   * refuses a statement's data, its rows one by one, dropping the refused ones. When Postgres does
   * not answer, it throws: nothing is acknowledged, and the stream keeps every row until it does
   * (rows written again are ignored: on conflict do nothing).
   */
  async write(rows: Row[]): Promise<void> {
    if (rows.length === 0) return;
    await this.maintain();
    const texts: string[] = [];
    for (const r of rows) {
      try {
        texts.push(pgJson(r));
      } catch (e) {
        // not serializable (nothing the ingest accepts): dropped like a row Postgres refuses
        this.dropped(e as Error);
      }
    }
    await writeDroppingRefused(
      texts,
      { rows: INSERT_ROWS, chars: this.o.statementChars ?? STATEMENT_CHARS },
      (events) => this.insert(events),
      this.dropped,
    );
    this.written += rows.length;
  }

  /** A row dropped so that the rest is written. */
  private readonly dropped = (e: Error): void => {
    this.writeError = e;
    this.o.onDropped?.(e);
  };

  /** Inserts rows given as a json array of their JSON (pgJson). */
  private async insert(events: string): Promise<void> {
    await this.db.query(
      `insert into events (tenant_id, id, received_on, received_at, source, type, time, envelope)
       select x.tenant_id, x.id, (x.received_at at time zone 'UTC')::date, x.received_at, x.source, x.type, x.time, x.envelope
         from json_to_recordset($1::json) as x(tenant_id text, id text, received_at timestamptz, source text,
              type text, time timestamptz, envelope jsonb)
       on conflict do nothing`,
      [events],
    );
  }
}
