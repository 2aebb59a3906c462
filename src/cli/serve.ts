/**
 * `signalbox serve`: the ingest server and its live rule index in one process.
 *
 *   signalbox serve [--host 127.0.0.1] [--port 8080] [--admin-port 8081] [--grpc-port 8082]
 *                   [--admin-host HOST (default: --host)]
 *                   [--no-admin] [--no-worker] [--connections connections.json]
 *
 * Redis: REDIS_URL, else the local one deploy/local/up.sh started (var/local.env). The rule
 * store: DATABASE_URL, else the embedded database under ./var/db. The admin API (HTTP JSON and
 * gRPC) runs on its own ports. Connections and generic-API keys come from the store (the admin
 * API: a PSA connection is addressed as `<tenant>.<id>` in the hook URL); a JSON file may add
 * more, addressed by their bare id:
 *
 *   {"connections": [{"tenant": "acme", "id": "halo-main", "source": "halo",
 *                     "halo": {"username": "…", "password": "…"}, "selfActors": ["7"]}],
 *    "apiKeys": [{"tenant": "acme", "key": "…"}]}
 */
import { hash as digest } from 'node:crypto';
import type { Worker } from 'node:worker_threads';
import { Redis } from 'ioredis';
import { backlogGauges } from '../config/streams.js';
import type { PsaSource } from '../ingest/connection.js';
import { Handoff } from '../ingest/handoff.js';
import { LiveRules } from '../ingest/live-rules.js';
import { startIngest } from '../ingest/server.js';
import { StoreConnections } from '../ingest/store-connections.js';
import {
  allowsPrivateNetworks,
  ConnectionStore,
  type Db,
  RuleStore,
  type SecretBox,
} from '../store/index.js';
import { PsaAccess } from '../workers/psa-access.js';
import { type AdminPlane, ensureFirstKey, startAdminPlane } from './admin.js';
import { arg, type CommandIo, unknownOption } from './args.js';
import { type ConnectionsFile, readConnectionsFile } from './connections-file.js';
import {
  checkPorts,
  checkRedis,
  commandEnv,
  envProblem,
  exitIfLingering,
  handoffRetention,
  openStore,
  secretBox,
} from './env.js';
import type { RuleMessage, ThreadData, ThreadRequest } from './ingest-thread.js';
import { type Supervised, startThread, supervise } from './supervise.js';
import { workerFromEnv } from './worker.js';

/**
 * The line that says why events are answered 503 (at most once a minute, per server thread), or
 * (null) that they are accepted again.
 */
const unavailableLine = (reason: string | null): string =>
  reason === null
    ? 'signalbox serve: events are accepted again\n'
    : `signalbox serve: answering events 503 (retry later): ${reason}\n`;

export async function runServe(argv: readonly string[], io: CommandIo): Promise<number> {
  const unknown = unknownOption(argv, [
    'host',
    'admin-host',
    'port',
    'connections',
    'threads',
    'no-worker',
    'no-admin',
    'admin-port',
    'grpc-port',
  ]);
  if (unknown) {
    io.stderr.write(`signalbox serve: unknown option --${unknown}\n`);
    return 2;
  }
  const port = Number(arg(argv, 'port') ?? process.env.PORT ?? 8080);
  const threads = Number(arg(argv, 'threads') ?? 1);
  if (!Number.isInteger(threads) || threads < 1 || threads > 64) {
    io.stderr.write('signalbox serve: --threads must be a whole number from 1 to 64\n');
    return 2;
  }
  const host = arg(argv, 'host') ?? '127.0.0.1';
  // The admin API on another interface than the ingest: webhooks from the internet (through a
  // proxy), the admin API on a private network.
  const adminHost = arg(argv, 'admin-host') ?? host;
  const adminPort = Number(arg(argv, 'admin-port') ?? process.env.SIGNALBOX_ADMIN_PORT ?? 8081);
  const grpcPort = Number(arg(argv, 'grpc-port') ?? process.env.SIGNALBOX_GRPC_PORT ?? 8082);
  for (const [name, p] of [
    ['port', port],
    ['admin-port', adminPort],
    ['grpc-port', grpcPort],
  ] as const) {
    if (!Number.isInteger(p) || p < 0 || p > 65535) {
      io.stderr.write(`signalbox serve: --${name} must be a port number\n`);
      return 2;
    }
  }
  if (threads > 1 && port === 0) {
    // The threads share one port; port 0 would give the first a port the others cannot join.
    io.stderr.write(
      'signalbox serve: --threads needs a fixed --port (0 lets the system pick one per thread)\n',
    );
    return 2;
  }
  const env = commandEnv();
  const bad = envProblem(env);
  if (bad) {
    io.stderr.write(`signalbox serve: ${bad}\n`);
    return 2;
  }
  if (!env.REDIS_URL) {
    io.stderr.write(
      'signalbox serve: no Redis: set REDIS_URL, or run `bash deploy/local/up.sh` to start a local one\n',
    );
    return 2;
  }
  let file: ConnectionsFile = {};
  const path = arg(argv, 'connections');
  if (path) {
    try {
      file = readConnectionsFile(path);
    } catch (e) {
      io.stderr.write(`signalbox serve: ${(e as Error).message}\n`);
      return 2;
    }
  }
  let secrets: ReturnType<typeof secretBox>;
  try {
    secrets = secretBox(env);
  } catch (e) {
    io.stderr.write(`signalbox serve: SIGNALBOX_SECRET_KEY: ${(e as Error).message}\n`);
    return 2;
  }

  const svc = await startService(
    {
      env,
      host,
      adminHost,
      port,
      threads,
      adminPort,
      grpcPort,
      file,
      secrets,
      worker: !argv.includes('--no-worker'),
      admin: !argv.includes('--no-admin'),
    },
    io,
  );
  await new Promise<void>((resolve) => {
    const stop = () => resolve();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
  io.stdout.write('signalbox: shutting down\n');
  await svc.close();
  exitIfLingering();
  return 0;
}

export interface ServiceOptions {
  readonly env: Record<string, string | undefined>;
  readonly host: string;
  /** Where the admin API listens (default: host). */
  readonly adminHost?: string;
  readonly port: number;
  readonly threads: number;
  readonly adminPort: number;
  readonly grpcPort: number;
  readonly file: ConnectionsFile;
  readonly secrets: SecretBox;
  readonly worker?: boolean;
  readonly admin?: boolean;
  /** Write var/admin.key on a fresh install (default true). */
  readonly firstKey?: boolean;
  /** Redis key prefix (default SIGNALBOX_REDIS_PREFIX or "sb"). */
  readonly prefix?: string;
}

export interface RunningService {
  readonly port: number;
  readonly db: Db;
  readonly admin: AdminPlane | undefined;
  /** The extra server threads of `--threads N` (tests end one to see it started again). */
  readonly threads: readonly Supervised[];
  close(): Promise<void>;
}

/**
 * The whole service in this process: ingest (and its extra threads), live rules,
 * connections from the store, the admin plane and the workers. `serve` and `demo` use it.
 */
export async function startService(o: ServiceOptions, io: CommandIo): Promise<RunningService> {
  const { env, host, port, threads, adminPort, grpcPort, file, secrets } = o;
  const adminHost = o.adminHost ?? host;
  const connections = new Map((file.connections ?? []).map((c) => [`${c.source}/${c.id}`, c]));
  // Keys are compared by hash, as the database stores them.
  const hash = (k: string) => digest('sha256', k, 'hex');
  const apiKeys = new Map((file.apiKeys ?? []).map((k) => [hash(k.key), k.tenant]));
  await checkPorts(host, [[port, 'ingest']]);
  if (o.admin !== false)
    await checkPorts(adminHost, [
      [adminPort, 'admin API'],
      [grpcPort, 'gRPC admin API'],
    ]);
  await checkRedis(env.REDIS_URL!);
  const db = await openStore(env);
  const redis = new Redis(env.REDIS_URL!, { maxRetriesPerRequest: 1 });
  redis.on('error', () => {});
  const live = new LiveRules(new RuleStore(db));
  live.onBroken = (tenant, id, why) =>
    io.stderr.write(
      `signalbox serve: active rule ${tenant}/${id} does not compile, so it matches nothing until it is fixed: ${why}\n`,
    );
  await live.start();
  const connectionStore = new ConnectionStore(db, secrets);
  const stored = new StoreConnections(db, connectionStore, {
    extra: [...connections.values()],
    extraKeys: apiKeys,
  });
  await stored.start();
  // SIGNALBOX_REDIS_PREFIX: the key prefix of the queue, streams, snapshots and dedupe keys.
  const prefix = o.prefix ?? (env.SIGNALBOX_REDIS_PREFIX || 'sb');
  const retention = handoffRetention(env);
  const handoff = new Handoff(redis, () => live.engine, { prefix, ...retention });
  const queueRedis = redis.duplicate();
  queueRedis.on('error', () => {});
  // One PSA client for the process: the ingest's record fetches and the admin plane's checks.
  const psa = new PsaAccess(queueRedis, prefix, connectionStore, (t) => allowsPrivateNetworks(db, t));
  // SIGNALBOX_TENANT_RATE: events per second per tenant on /v1/events (burst: 5 seconds' worth).
  const perSecond = Number(env.SIGNALBOX_TENANT_RATE);
  const rate = perSecond > 0 ? { perSecond, burst: 5 * perSecond } : undefined;
  // Halo "event information only" payloads: the record from the Halo API (connections made
  // through the admin API, addressed as <tenant>.<id>, with API settings). Extra threads ask here.
  const fetchRecord = (tenant: string, connection: string, entity: string, entityId: string) =>
    connection.startsWith(`${tenant}.`)
      ? psa.haloRecord(tenant, connection.slice(tenant.length + 1), entity, entityId)
      : Promise.resolve(undefined);
  const server = await startIngest({
    host,
    port,
    connections: { get: (s: PsaSource, id: string) => stored.get(s, id) },
    apiKeys: { tenantOf: (k) => stored.tenantOf(k) },
    handoff,
    ready: async () => live.loaded && (await redis.ping()) === 'PONG',
    ...(rate ? { rate } : {}),
    fetchRecord: (conn, ev) => fetchRecord(conn.tenant, conn.id, ev.entity, ev.entityId),
    moreMetrics: () => backlogGauges(redis, prefix),
    onUnavailable: (reason) => io.stderr.write(unavailableLine(reason)),
  });
  // Extra server threads on the same port; the rule store stays here and feeds them. One that
  // dies is started again and sent the rules and connections as they are then (supervise.ts).
  const threadData = (): ThreadData => ({
    kind: 'signalbox-ingest-thread',
    host,
    port: server.port,
    redisUrl: env.REDIS_URL!,
    prefix,
    connections: stored.snapshot()[0],
    apiKeys: stored.snapshot()[1],
    ...(rate ? { rate } : {}),
    retention,
  });
  const feed = (w: Worker): void => {
    const [conns, keys] = stored.snapshot();
    w.postMessage({ type: 'connections', connections: conns, apiKeys: keys } satisfies RuleMessage);
    w.postMessage({ type: 'rules', rules: [...live.documents.values()] } satisfies RuleMessage);
    w.on('message', (m: ThreadRequest) => {
      if (m.type === 'crashed') io.stderr.write(`signalbox: a server thread failed: ${m.message}\n`);
      if (m.type === 'unavailable') io.stderr.write(unavailableLine(m.reason));
      if (m.type !== 'fetch') return;
      const answer = (record?: Record<string, unknown>) =>
        w.postMessage({ type: 'fetched', n: m.n, ...(record ? { record } : {}) } satisfies RuleMessage);
      fetchRecord(m.tenant, m.connection, m.entity, m.entityId).then(answer, () => answer());
    });
  };
  const workers: Supervised[] = [];
  for (let i = 1; i < threads; i++) {
    workers.push(
      await supervise(
        () =>
          startThread(new URL(import.meta.url), threadData(), (m) =>
            (m as ThreadRequest).type === 'listening' ? undefined : 'the server thread did not start',
          ),
        {
          onStarted: feed,
          // It ends by itself once its connections close (uWS closes idle ones after 10 s).
          stopMessage: { type: 'stop' } satisfies RuleMessage,
          onRestart: (why) =>
            io.stderr.write(`signalbox: a server thread died (${why}); starting it again\n`),
        },
      ),
    );
  }
  live.onChange = (tenant, id, doc) => {
    for (const w of workers) w.thread.postMessage({ type: 'rule', tenant, id, doc } satisfies RuleMessage);
  };
  // Connections and keys made through the admin API reach every thread.
  stored.onReload = (conns, keys) => {
    for (const w of workers)
      w.thread.postMessage({ type: 'connections', connections: conns, apiKeys: keys } satisfies RuleMessage);
  };
  // The workers run here too unless told not to (with the embedded database they must: it
  // belongs to this process).
  const workers_ =
    o.worker === false ? undefined : await workerFromEnv({ ...env, SIGNALBOX_REDIS_PREFIX: prefix }, db);
  const admin =
    o.admin === false
      ? undefined
      : await startAdminPlane({
          db,
          secrets,
          redis,
          prefix,
          host: adminHost,
          httpPort: adminPort,
          grpcPort,
          psa,
          onError: (e) => io.stderr.write(`signalbox admin: ${(e as Error)?.stack ?? String(e)}\n`),
          onOutage: (reason) => io.stderr.write(`signalbox admin: answering unavailable: ${reason}\n`),
        });
  if (admin) {
    if (o.firstKey !== false) await ensureFirstKey(admin.keys, io);
    io.stdout.write(
      `signalbox: admin API on http://${adminHost}:${admin.http.port}/v1 (OpenAPI: /v1/openapi.json) and gRPC ${adminHost}:${admin.grpc.port}\n`,
    );
  }
  io.stdout.write(
    `signalbox: listening on http://${host}:${server.port} (uWebSockets.js native; ${threads} thread${threads === 1 ? '' : 's'}; ${live.engine.size} active rules; ` +
      `rules in ${db.kind === 'pglite' ? 'var/db (embedded)' : 'DATABASE_URL'}; ${stored.size} connections; ${workers_ ? 'workers in this process' : 'no workers'})\n`,
  );
  return {
    port: server.port,
    db,
    admin,
    threads: workers,
    async close() {
      await Promise.all(workers.map((w) => w.stop()));
      await server.close();
      await admin?.close();
      await stored.stop();
      await workers_?.close();
      await db.close();
      for (const r of [redis, queueRedis]) r.disconnect();
    },
  };
}
