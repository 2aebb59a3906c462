/**
 * `signalbox serve`: the ingest server, its dispatcher and its live rule index in one process.
 *
 *   signalbox serve [--host 127.0.0.1] [--port 8080] [--connections connections.json]
 *
 * Redis: REDIS_URL, else the local one deploy/local/up.sh started (var/local.env). The rule
 * store: DATABASE_URL, else the embedded database under ./var/db. Connections and generic API
 * keys come from a JSON file until the admin API manages them (issue 5):
 *
 *   {"connections": [{"tenant": "acme", "id": "halo-main", "source": "halo",
 *                     "halo": {"username": "…", "password": "…"}, "selfActors": ["7"]}],
 *    "apiKeys": [{"tenant": "acme", "key": "…"}]}
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import type { Connection, PsaSource } from '../ingest/connection.js';
import { Dispatcher, RUN_QUEUE } from '../ingest/dispatch.js';
import { Handoff } from '../ingest/handoff.js';
import { LiveRules } from '../ingest/live-rules.js';
import { startIngest } from '../ingest/server.js';
import { migrate, RuleStore } from '../store/index.js';
import { arg, type CommandIo, unknownOption } from './args.js';
import { commandEnv, openCommandDb } from './env.js';
import type { RuleMessage, ThreadData } from './ingest-thread.js';
import { workerFromEnv } from './worker.js';

interface ConnectionsFile {
  connections?: Connection[];
  apiKeys?: Array<{ tenant: string; key: string }>;
}

export async function runServe(argv: readonly string[], io: CommandIo): Promise<number> {
  const unknown = unknownOption(argv, ['host', 'port', 'connections', 'threads', 'no-worker']);
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
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    io.stderr.write('signalbox serve: --port must be a port number\n');
    return 2;
  }
  const env = commandEnv();
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
      file = JSON.parse(readFileSync(path, 'utf8')) as ConnectionsFile;
    } catch (e) {
      io.stderr.write(`signalbox serve: cannot read connections file ${path}: ${(e as Error).message}\n`);
      return 2;
    }
  }
  const connections = new Map((file.connections ?? []).map((c) => [`${c.source}/${c.id}`, c]));
  // Keys are compared by hash, as the database will store them.
  const hash = (k: string) => createHash('sha256').update(k).digest('hex');
  const apiKeys = new Map((file.apiKeys ?? []).map((k) => [hash(k.key), k.tenant]));

  const redis = new Redis(env.REDIS_URL, { maxRetriesPerRequest: 1 });
  redis.on('error', () => {});
  const [, policy] = (await redis.config('GET', 'maxmemory-policy')) as [string, string];
  if (policy !== 'noeviction') {
    io.stderr.write(
      `signalbox serve: Redis must run with maxmemory-policy noeviction (it has ${policy}): queued runs could be evicted\n`,
    );
    redis.disconnect();
    return 2;
  }
  const db = await openCommandDb(env);
  await migrate(db);
  const live = new LiveRules(new RuleStore(db));
  await live.start();
  // SIGNALBOX_REDIS_PREFIX: the key prefix of the queue, streams, snapshots and dedupe keys.
  const prefix = env.SIGNALBOX_REDIS_PREFIX || 'sb';
  const handoff = new Handoff(redis, () => live.engine, { prefix });
  // Connections given to BullMQ and the dispatcher are ours to close (BullMQ closes only its own).
  const queueRedis = redis.duplicate();
  const dispatchRedis = redis.duplicate();
  const queue = new Queue(RUN_QUEUE, { connection: queueRedis, prefix });
  const dispatcher = new Dispatcher(dispatchRedis, handoff.dispatchKey, queue);
  await dispatcher.start();
  const server = await startIngest({
    host,
    port,
    connections: { get: (s: PsaSource, id: string) => connections.get(`${s}/${id}`) },
    apiKeys: { tenantOf: (k) => apiKeys.get(hash(k)) },
    handoff,
    ready: async () => live.loaded && (await redis.ping()) === 'PONG',
    // SIGNALBOX_TENANT_RATE: events per second per tenant on /v1/events (burst: 5 seconds' worth).
    ...(Number(env.SIGNALBOX_TENANT_RATE) > 0
      ? {
          rate: {
            perSecond: Number(env.SIGNALBOX_TENANT_RATE),
            burst: 5 * Number(env.SIGNALBOX_TENANT_RATE),
          },
        }
      : {}),
  });
  // Extra server threads on the same port; the rule store stays here and feeds them.
  const workers: Worker[] = [];
  for (let i = 1; i < threads; i++) {
    const data: ThreadData = {
      kind: 'signalbox-ingest-thread',
      host,
      port: server.port,
      redisUrl: env.REDIS_URL,
      prefix,
      connections: [...connections.values()],
      apiKeys: [...apiKeys],
    };
    const w = new Worker(new URL(import.meta.url), { workerData: data });
    await new Promise<void>((resolve, reject) => {
      w.once('message', () => resolve());
      w.once('error', reject);
    });
    w.postMessage({ type: 'rules', rules: [...live.documents.values()] } satisfies RuleMessage);
    workers.push(w);
  }
  live.onChange = (tenant, id, doc) => {
    for (const w of workers) w.postMessage({ type: 'rule', tenant, id, doc } satisfies RuleMessage);
  };
  // The workers run here too unless told not to (with the embedded database they must: it
  // belongs to this process).
  const workers_ = argv.includes('--no-worker') ? undefined : await workerFromEnv(env, db);
  io.stdout.write(
    `signalbox: listening on http://${host}:${server.port} (uWebSockets.js native; ${threads} thread${threads === 1 ? '' : 's'}; ${live.engine.size} active rules; ` +
      `rules in ${db.kind === 'pglite' ? 'var/db (embedded)' : 'DATABASE_URL'}; ${connections.size} connections; ${workers_ ? 'workers in this process' : 'no workers'})\n`,
  );
  await new Promise<void>((resolve) => {
    const stop = () => resolve();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
  io.stdout.write('signalbox: shutting down\n');
  for (const w of workers) w.postMessage({ type: 'stop' } satisfies RuleMessage);
  await Promise.all(workers.map((w) => new Promise((r) => w.once('exit', r))));
  server.close();
  await workers_?.close();
  await dispatcher.stop();
  await queue.close();
  await db.close();
  for (const r of [redis, queueRedis, dispatchRedis]) r.disconnect();
  return 0;
}
