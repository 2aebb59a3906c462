/**
 * The database port: one small interface over Postgres (`pg`, when DATABASE_URL is set) and the
 * embedded default (PGlite, a real Postgres build running in process, under ./var/db), so that
 * the same migrations and the same repositories serve both (design.md).
 */
import { mkdirSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { PGlite } from '@electric-sql/pglite';
import pg from 'pg';

export interface QueryResult<T> {
  readonly rows: T[];
  readonly rowCount: number;
}

/** What repositories use: queries with $n parameters, transactions, notifications. */
export interface Queryable {
  query<T = Record<string, unknown>>(sql: string, params?: readonly unknown[]): Promise<QueryResult<T>>;
  /** Runs statements with no parameters (several may be given, as in a migration). */
  exec(sql: string): Promise<void>;
}

export interface Db extends Queryable {
  readonly kind: 'postgres' | 'pglite';
  /** The schema this handle works in ('' for the default): notification channels carry it, since
   * NOTIFY is database-wide and several schemas may share one server (tests do). */
  readonly namespace: string;
  /** Runs `fn` in one transaction; rolls back when it throws. */
  transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T>;
  /**
   * Subscribes to NOTIFY on a channel; returns the unsubscribe function. `onResync` is called
   * when notifications may have been missed (the listening connection was lost and is back):
   * the subscriber reloads what it mirrors.
   */
  listen(
    channel: string,
    onPayload: (payload: string) => void,
    onResync?: () => void,
  ): Promise<() => Promise<void>>;
  close(): Promise<void>;
}

/** Socket errors that mean the server could not be reached or went away. */
const UNREACHABLE = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
]);

/**
 * True when `e` says the database could not be reached or went away (connection refused or lost,
 * the server shutting down or starting), not that the statement was wrong: the caller can answer
 * "unavailable, try again" rather than "internal error". SQLSTATE class 08 is connection
 * exceptions; 57P01–57P03 are shutdowns and a server not yet accepting connections.
 */
export function isConnectionError(e: unknown): boolean {
  if (e instanceof AggregateError) return e.errors.some(isConnectionError);
  const code = (e as { code?: unknown } | null)?.code;
  if (
    typeof code === 'string' &&
    (UNREACHABLE.has(code) || code.startsWith('08') || /^57P0[123]$/.test(code))
  )
    return true;
  const message = (e as { message?: unknown } | null)?.message;
  // pg's own wording when the socket closes mid-query or no pooled connection could be made
  return (
    typeof message === 'string' &&
    /^(Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error)/.test(
      message,
    )
  );
}

const CHANNEL = /^[a-z_][a-z0-9_]{0,62}$/;

function checkChannel(channel: string): void {
  // LISTEN takes an identifier, not a parameter: only plain names are allowed.
  if (!CHANNEL.test(channel)) throw new Error(`invalid notification channel ${JSON.stringify(channel)}`);
}

export interface PostgresOptions {
  readonly url: string;
  /** Schema to work in (created if missing); tests use one per suite. */
  readonly schema?: string;
  readonly max?: number;
}

interface Subscriber {
  readonly onPayload: (payload: string) => void;
  readonly onResync: (() => void) | undefined;
}

/** Waits between attempts to get the listening connection back: 1 s, doubling, at most 30 s. */
const RELISTEN_FIRST_MS = 1_000;
const RELISTEN_MAX_MS = 30_000;

class PostgresDb implements Db {
  readonly kind = 'postgres' as const;
  readonly namespace: string;
  private listener: pg.Client | undefined;
  private readonly handlers = new Map<string, Set<Subscriber>>();
  private relistenTimer: NodeJS.Timeout | undefined;
  private closed = false;
  /** Times the listening connection was lost and made again (for tests and metrics). */
  relistens = 0;

  constructor(
    private readonly pool: pg.Pool,
    private readonly opts: PostgresOptions,
  ) {
    this.namespace = opts.schema ?? '';
  }

  async query<T>(sql: string, params: readonly unknown[] = []): Promise<QueryResult<T>> {
    const r = await this.pool.query(sql, params as unknown[]);
    return { rows: r.rows as T[], rowCount: r.rowCount ?? 0 };
  }

  async exec(sql: string): Promise<void> {
    await this.pool.query(sql);
  }

  async transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T> {
    const client = await this.pool.connect();
    // A connection lost between two statements (a restart, a failover) is an 'error' event on
    // the checked-out client: unhandled, it would end the process. The transaction fails at its
    // next statement instead, and the client is destroyed rather than handed out again.
    let lost: Error | undefined;
    const onError = (e: Error) => {
      lost = e;
    };
    client.on('error', onError);
    try {
      await client.query('begin');
      const tx: Queryable = {
        query: async <R>(sql: string, params: readonly unknown[] = []) => {
          const r = await client.query(sql, params as unknown[]);
          return { rows: r.rows as R[], rowCount: r.rowCount ?? 0 };
        },
        exec: async (sql: string) => {
          await client.query(sql);
        },
      };
      const out = await fn(tx);
      await client.query('commit');
      return out;
    } catch (e) {
      await client.query('rollback').catch(() => {});
      throw e;
    } finally {
      client.off('error', onError);
      client.release(lost);
    }
  }

  async listen(
    channel: string,
    onPayload: (payload: string) => void,
    onResync?: () => void,
  ): Promise<() => Promise<void>> {
    checkChannel(channel);
    if (!this.listener && !this.relistenTimer) this.listener = await this.connectListener();
    let set = this.handlers.get(channel);
    if (!set) {
      this.handlers.set(channel, (set = new Set()));
      // While the connection is being made again, the new connection listens to every channel.
      if (this.listener) await this.listener.query(`listen ${channel}`);
    }
    const sub: Subscriber = { onPayload, onResync };
    set.add(sub);
    return async () => {
      set!.delete(sub);
    };
  }

  /**
   * The connection LISTEN runs on. A server restart, a failover or a proxy closing idle
   * connections ends it: unhandled, its 'error' event would crash the process (every serve and
   * worker), and without it rule and connection changes would stop arriving. It is made again,
   * with backoff, and its subscribers resync.
   */
  private async connectListener(): Promise<pg.Client> {
    const c = new pg.Client({ connectionString: this.opts.url });
    let lost = false;
    const onLost = () => {
      if (lost) return;
      lost = true;
      if (this.listener === c) this.listener = undefined;
      c.end().catch(() => {});
      if (!this.closed) this.relisten(RELISTEN_FIRST_MS);
    };
    c.on('error', onLost);
    c.on('end', onLost);
    await c.connect();
    c.on('notification', (m) => {
      for (const s of this.handlers.get(m.channel) ?? []) s.onPayload(m.payload ?? '');
    });
    return c;
  }

  private relisten(waitMs: number): void {
    if (this.relistenTimer) return;
    this.relistenTimer = setTimeout(async () => {
      try {
        const c = await this.connectListener();
        for (const channel of this.handlers.keys()) await c.query(`listen ${channel}`);
        this.relistenTimer = undefined;
        if (this.closed) {
          await c.end().catch(() => {});
          return;
        }
        this.listener = c;
        this.relistens++;
        // Whatever was notified while no connection listened is lost: subscribers reload.
        for (const set of this.handlers.values()) for (const s of set) s.onResync?.();
      } catch {
        this.relistenTimer = undefined;
        if (!this.closed) this.relisten(Math.min(waitMs * 2, RELISTEN_MAX_MS));
      }
    }, waitMs);
    this.relistenTimer.unref();
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.relistenTimer);
    await this.listener?.end().catch(() => {});
    await this.pool.end();
  }
}

class PgliteDb implements Db {
  readonly kind = 'pglite' as const;
  readonly namespace = '';
  constructor(
    private readonly db: PGlite,
    private readonly unlock: () => void = () => {},
  ) {}

  async query<T>(sql: string, params: readonly unknown[] = []): Promise<QueryResult<T>> {
    const r = await this.db.query<T>(sql, params as unknown[]);
    return { rows: r.rows, rowCount: r.affectedRows ?? r.rows.length };
  }

  async exec(sql: string): Promise<void> {
    await this.db.exec(sql);
  }

  async transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T> {
    return this.db.transaction(async (t) =>
      fn({
        query: async <R>(sql: string, params: readonly unknown[] = []) => {
          const r = await t.query<R>(sql, params as unknown[]);
          return { rows: r.rows, rowCount: r.affectedRows ?? r.rows.length };
        },
        exec: async (sql: string) => {
          await t.exec(sql);
        },
      }),
    );
  }

  async listen(channel: string, onPayload: (payload: string) => void): Promise<() => Promise<void>> {
    checkChannel(channel);
    return this.db.listen(channel, onPayload);
  }

  async close(): Promise<void> {
    try {
      await this.db.close();
    } finally {
      this.unlock();
    }
  }
}

/** Another process has the embedded database open. */
export class DataDirInUseError extends Error {
  override readonly name = 'DataDirInUseError';
}

/**
 * Takes `<dataDir>.lock` for this process: PGlite's data directory belongs to one process (two
 * writing it corrupt it, and neither sees the other's rule notifications), and PGlite itself does
 * not check. A lock left by a process that is gone (SIGKILL, a crash) is taken over. Returns the
 * release.
 */
function lockDataDir(dataDir: string): () => void {
  const path = `${dataDir}.lock`;
  const mine = String(process.pid);
  for (let attempt = 0; ; attempt++) {
    try {
      writeFileSync(path, mine, { flag: 'wx' });
      return () => {
        try {
          if (readFileSync(path, 'utf8') === mine) unlinkSync(path);
        } catch {}
      };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST' || attempt > 0) throw e;
    }
    let holder = Number.NaN;
    try {
      holder = Number(readFileSync(path, 'utf8'));
    } catch {}
    if (Number.isInteger(holder) && holder > 0 && isRunning(holder)) {
      throw new DataDirInUseError(
        `in use by process ${holder}${holder === process.pid ? ' (this one)' : ''}; the embedded database takes one process at a time: stop that one or use its admin API, or set DATABASE_URL to share a Postgres server (if process ${holder} is not Signalbox, delete ${path})`,
      );
    }
    try {
      unlinkSync(path); // left by a process that is gone
    } catch {}
  }
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export async function openPostgres(opts: PostgresOptions): Promise<Db> {
  const schema = opts.schema;
  if (schema !== undefined && !CHANNEL.test(schema))
    throw new Error(`invalid schema name ${JSON.stringify(schema)}`);
  if (schema !== undefined) {
    const c = new pg.Client({ connectionString: opts.url });
    await c.connect();
    try {
      await c.query(`create schema if not exists ${schema}`);
    } finally {
      await c.end();
    }
  }
  const pool = new pg.Pool({
    connectionString: opts.url,
    max: opts.max ?? 10,
    ...(schema !== undefined ? { options: `-c search_path=${schema}` } : {}),
  });
  // A pool error (a server restart) must not crash the process; the next query reconnects.
  pool.on('error', () => {});
  return new PostgresDb(pool, opts);
}

/**
 * The embedded default: a data directory (created if missing, held by this process through
 * `<dataDir>.lock` until close), or `memory://` for tests.
 */
export async function openPglite(dataDir: string): Promise<Db> {
  const inMemory = dataDir.startsWith('memory://');
  if (!inMemory) mkdirSync(dataDir, { recursive: true });
  const unlock = inMemory ? () => {} : lockDataDir(dataDir);
  try {
    const db = new PGlite(dataDir);
    await db.waitReady;
    return new PgliteDb(db, unlock);
  } catch (e) {
    unlock();
    throw e;
  }
}

/** DATABASE_URL when set, else the embedded database under `dataDir` (default ./var/db). */
export async function openDb(env: { DATABASE_URL?: string } = process.env, dataDir = 'var/db'): Promise<Db> {
  return env.DATABASE_URL ? openPostgres({ url: env.DATABASE_URL }) : openPglite(dataDir);
}
