/** Environment for the commands: var/local.env (written by deploy/local/up.sh) under the real one. */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { Redis } from 'ioredis';
import { type Db, migrate, openDb, openPostgres, SecretBox } from '../store/index.js';
import { checkRedisServer, RedisPolicyError } from '../workers/worker.js';

/**
 * Something outside the command stops it from starting (a Redis or database it cannot reach or
 * use): main prints `signalbox <command>: <message>` and exits 2, with no stack trace.
 */
export class StartupError extends Error {
  override readonly name = 'StartupError';
}

export function commandEnv(): Record<string, string | undefined> {
  const out: Record<string, string | undefined> = {};
  if (existsSync('var/local.env')) {
    for (const line of readFileSync('var/local.env', 'utf8').split('\n')) {
      const m = /^([A-Z_]+)=(.*)$/.exec(line.trim());
      if (m) out[m[1]!] = m[2]!;
    }
  }
  return { ...out, ...process.env };
}

/** The rule store's database: DATABASE_URL (in SIGNALBOX_DB_SCHEMA when set), else embedded. */
function openCommandDb(env = commandEnv()): Promise<Db> {
  if (env.DATABASE_URL && env.SIGNALBOX_DB_SCHEMA)
    return openPostgres({ url: env.DATABASE_URL, schema: env.SIGNALBOX_DB_SCHEMA });
  return openDb({ DATABASE_URL: env.DATABASE_URL });
}

/**
 * openCommandDb with the migrations applied. A database that cannot be reached, logged in to or
 * migrated is a StartupError that names it (password masked) and gives the server's reason.
 */
export async function openStore(env = commandEnv()): Promise<Db> {
  let db: Db | undefined;
  try {
    db = await openCommandDb(env);
    await migrate(db);
    return db;
  } catch (e) {
    await db?.close().catch(() => {});
    const where = env.DATABASE_URL
      ? `the database at ${shownUrl(env.DATABASE_URL)}`
      : 'the embedded database (var/db)';
    throw new StartupError(`cannot open ${where}: ${reason(e)}`);
  }
}

/**
 * Checks the Redis at `url` once, before anything starts: that it answers, and that it will not
 * evict queued runs (design.md). Throws a StartupError that says which of these failed, where a
 * first command would otherwise fail with ioredis's "max retries per request" and a stack trace.
 */
export async function checkRedis(url: string): Promise<void> {
  if (!/^(rediss?:\/\/|\/)/.test(url))
    throw new StartupError(
      `REDIS_URL must be a redis:// or rediss:// URL or a socket path, not ${JSON.stringify(url)}`,
    );
  let cause: Error | undefined;
  let redis: Redis;
  try {
    redis = new Redis(url, {
      lazyConnect: true,
      retryStrategy: () => null,
      maxRetriesPerRequest: 0,
      connectTimeout: 5_000,
    });
  } catch (e) {
    throw new StartupError(`REDIS_URL ${JSON.stringify(shownUrl(url))}: ${reason(e)}`);
  }
  redis.on('error', (e: Error) => {
    cause ??= e;
  });
  try {
    await redis.connect();
  } catch (e) {
    redis.disconnect();
    throw new StartupError(`cannot reach Redis at ${shownUrl(url)}: ${reason(cause ?? e)}`);
  }
  try {
    await checkRedisServer(redis);
  } catch (e) {
    // A Redis that needs a password, or one that refuses INFO too.
    throw new StartupError(
      e instanceof RedisPolicyError ? e.message : `Redis at ${shownUrl(url)} answered: ${reason(e)}`,
    );
  } finally {
    redis.disconnect();
  }
}

/**
 * Checks that each fixed port can be listened on at `host`, before anything is opened: a port
 * another process holds (a second `serve`, whose uWebSockets.js socket would otherwise share the
 * ingest port through SO_REUSEPORT and take half the webhooks) is a StartupError naming it.
 * Port 0 (the system picks) is skipped.
 */
export async function checkPorts(
  host: string,
  ports: ReadonlyArray<readonly [number, string]>,
): Promise<void> {
  for (const [port, what] of ports) {
    if (port === 0) continue;
    await new Promise<void>((resolve, reject) => {
      const probe = createServer();
      probe.once('error', (e: NodeJS.ErrnoException) =>
        reject(
          new StartupError(
            e.code === 'EADDRINUSE'
              ? `port ${port} (${what}) on ${host} is in use by another process`
              : `cannot listen on ${host}:${port} (${what}): ${reason(e)}`,
          ),
        ),
      );
      probe.listen({ host, port, exclusive: true }, () => probe.close(() => resolve()));
    });
  }
}

/**
 * Called once a command has closed everything it opened: should a library still hold the event
 * loop (BullMQ's lock and stalled-check timers, once Redis is gone, wait on a connection that
 * never comes back), the process exits anyway after `ms` with its exit code. Unreferenced: a clean
 * exit does not wait for it.
 */
export function exitIfLingering(ms = 2_000): void {
  setTimeout(() => process.exit(), ms).unref();
}

/** A URL as it may be printed: its password masked. */
export function shownUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return url.startsWith('/') ? url : '(not a URL)';
  }
}

/** An error's reason in words: Node's connection errors to "localhost" are AggregateErrors with no message. */
function reason(e: unknown): string {
  if (e instanceof AggregateError && !e.message) return e.errors.map(reason).join('; ');
  const err = e as { message?: string; code?: string };
  return err.message || err.code || String(e);
}

/**
 * The key that encrypts connection secrets: SIGNALBOX_SECRET_KEY (64 hex characters or base64 of
 * 32 bytes), else var/secret.key, created on first use (mode 0600) for the embedded setup.
 */
export function secretBox(env = commandEnv()): SecretBox {
  if (env.SIGNALBOX_SECRET_KEY) return SecretBox.fromText(env.SIGNALBOX_SECRET_KEY);
  const path = 'var/secret.key';
  if (!existsSync(path)) {
    mkdirSync('var', { recursive: true });
    writeFileSync(path, randomBytes(32).toString('hex'), { mode: 0o600, flag: 'wx' });
  }
  return SecretBox.fromText(readFileSync(path, 'utf8'));
}

/**
 * Why `--tenant` names no tenant of the store (naming those it has), or undefined when it does:
 * a mistyped tenant would otherwise read as one with no rules.
 */
export async function unknownTenant(db: Db, tenant: string): Promise<string | undefined> {
  const known = (await db.query<{ id: string }>('select id from tenants order by id')).rows.map((r) => r.id);
  if (known.includes(tenant)) return undefined;
  return `no tenant ${JSON.stringify(tenant)} in the rule store${
    known.length > 0 ? ` (it has ${known.map((t) => JSON.stringify(t)).join(', ')})` : ''
  }`;
}

/** Numeric settings from the environment that must be positive whole numbers when set. */
const POSITIVE_INTEGERS = [
  'SIGNALBOX_ARCHIVE_DAYS',
  'SIGNALBOX_HISTORY_DAYS',
  'SIGNALBOX_TENANT_RATE',
  'SIGNALBOX_DEDUPE_DAYS',
  'SIGNALBOX_SNAPSHOT_DAYS',
];

/**
 * The ingest's Redis retention from the environment (checked by envProblem): how long an event
 * id is remembered for dedupe (SIGNALBOX_DEDUPE_DAYS, default 7) and an entity's snapshot is kept
 * after its last event (SIGNALBOX_SNAPSHOT_DAYS, default 90).
 */
export function handoffRetention(env: Record<string, string | undefined>): {
  dedupeTtlSeconds?: number;
  snapshotTtlSeconds?: number;
} {
  const seconds = (days: string | undefined) => (days ? Number(days) * 86_400 : undefined);
  const dedupe = seconds(env.SIGNALBOX_DEDUPE_DAYS);
  const snapshot = seconds(env.SIGNALBOX_SNAPSHOT_DAYS);
  return {
    ...(dedupe !== undefined ? { dedupeTtlSeconds: dedupe } : {}),
    ...(snapshot !== undefined ? { snapshotTtlSeconds: snapshot } : {}),
  };
}

/** The first malformed setting of the environment, as a message; undefined when all are fine. */
export function envProblem(env: Record<string, string | undefined>): string | undefined {
  for (const name of POSITIVE_INTEGERS) {
    const v = env[name];
    if (v !== undefined && v !== '' && !/^[1-9]\d{0,8}$/.test(v))
      return `${name} must be a positive whole number, not ${JSON.stringify(v)}`;
  }
  return undefined;
}
