/**
 * One extra ingest server thread of `signalbox serve --threads N`. uWebSockets.js threads listen
 * on the same port (the kernel spreads connections between them). The main thread keeps the one
 * connection to the rule store and forwards rule documents; each thread compiles its own index
 * and hands off to Redis with its own connection.
 */
import { parentPort, threadId } from 'node:worker_threads';
import { Redis } from 'ioredis';
import { backlogGauges } from '../config/streams.js';
import { type CompiledRule, Engine, RuleCompiler } from '../engine/index.js';
import type { Connection, PsaSource } from '../ingest/connection.js';
import { Handoff } from '../ingest/handoff.js';
import { startIngest } from '../ingest/server.js';

export interface ThreadData {
  readonly kind: 'signalbox-ingest-thread';
  readonly host: string;
  readonly port: number;
  readonly redisUrl: string;
  readonly prefix: string;
  readonly connections: Connection[];
  /** sha256(key) → tenant */
  readonly apiKeys: Array<[string, string]>;
  /** Generic API: events per second per tenant, and the burst (as the main thread's). */
  readonly rate?: { readonly perSecond: number; readonly burst: number };
  /** The dedupe and snapshot retention (as the main thread's). */
  readonly retention: { readonly dedupeTtlSeconds?: number; readonly snapshotTtlSeconds?: number };
}

export type RuleMessage =
  | { readonly type: 'rules'; readonly rules: Array<{ tenant: string; doc: Record<string, unknown> }> }
  | {
      readonly type: 'rule';
      readonly tenant: string;
      readonly id: string;
      readonly doc: Record<string, unknown> | null;
    }
  /** The connections and generic-API keys as the store has them now (sent after every reload). */
  | {
      readonly type: 'connections';
      readonly connections: Connection[];
      readonly apiKeys: Array<[string, string]>;
    }
  /** The answer to a thread's `fetch`: the record, or nothing. */
  | { readonly type: 'fetched'; readonly n: number; readonly record?: Record<string, unknown> }
  | { readonly type: 'stop' };

/** What a thread asks of the main thread. */
export type ThreadRequest =
  | { readonly type: 'listening'; readonly thread: number; readonly port: number }
  /** An uncaught error: the thread closes its port and ends (the main thread starts another). */
  | { readonly type: 'crashed'; readonly message: string }
  /** Why the thread answers events 503 (at most once a minute; null: accepted again), to log. */
  | { readonly type: 'unavailable'; readonly reason: string | null }
  /**
   * Halo "event information only": fetch the record from the Halo API. The main thread holds the
   * PSA clients (their token cache, the shared API budget and the connection store).
   */
  | {
      readonly type: 'fetch';
      readonly n: number;
      readonly tenant: string;
      readonly connection: string;
      readonly entity: string;
      readonly entityId: string;
    };

/** How long a thread waits for the main thread's answer (the server gives up after 5 s anyway). */
const FETCH_WAIT_MS = 10_000;

export async function runIngestThread(data: ThreadData): Promise<void> {
  const { hash } = await import('node:crypto');
  const engine = new Engine();
  const compiler = new RuleCompiler();
  let loaded = false;
  const compile = (tenant: string, doc: Record<string, unknown>): CompiledRule | undefined => {
    try {
      return compiler.compile({ ...doc, tenant, status: 'active' });
    } catch {
      return undefined;
    }
  };
  const redis = new Redis(data.redisUrl, { maxRetriesPerRequest: 1 });
  redis.on('error', () => {});
  let connections = new Map(data.connections.map((c) => [`${c.source}/${c.id}`, c]));
  let apiKeys = new Map(data.apiKeys);
  const fetches = new Map<number, (record: Record<string, unknown> | undefined) => void>();
  let nextFetch = 0;
  const server = await startIngest({
    host: data.host,
    port: data.port,
    connections: { get: (s: PsaSource, id: string) => connections.get(`${s}/${id}`) },
    apiKeys: { tenantOf: (k) => apiKeys.get(hash('sha256', k, 'hex')) },
    handoff: new Handoff(redis, () => engine, { prefix: data.prefix, ...data.retention }),
    ready: async () => loaded && (await redis.ping()) === 'PONG',
    ...(data.rate ? { rate: data.rate } : {}),
    moreMetrics: () => backlogGauges(redis, data.prefix),
    onUnavailable: (reason) =>
      parentPort!.postMessage({ type: 'unavailable', reason } satisfies ThreadRequest),
    fetchRecord: (conn, ev) =>
      new Promise((resolve) => {
        const n = ++nextFetch;
        const timer = setTimeout(() => {
          fetches.delete(n);
          resolve(undefined);
        }, FETCH_WAIT_MS);
        fetches.set(n, (record) => {
          clearTimeout(timer);
          fetches.delete(n);
          resolve(record);
        });
        parentPort!.postMessage({
          type: 'fetch',
          n,
          tenant: conn.tenant,
          connection: conn.id,
          entity: ev.entity,
          entityId: ev.entityId,
        } satisfies ThreadRequest);
      }),
  });
  let ended = false;
  const end = async (): Promise<void> => {
    if (ended) return;
    ended = true;
    // Requests in flight are answered first (their commits need the connection).
    await server.close().catch(() => {});
    redis.disconnect();
    parentPort!.close();
  };
  // A thread with uWebSockets.js must not be ended from outside (Worker.terminate) or by Node on
  // an uncaught error: the native server's poll handle is still open then, and Node aborts the
  // whole process ("uv_loop_close() while having open handles"), the main thread's requests with
  // it. Instead it stops taking connections and ends on its own: requests in flight are answered,
  // then its connections are closed (server.close).
  process.on('uncaughtException', (e) => {
    if (!ended) {
      parentPort!.postMessage({ type: 'crashed', message: e.stack ?? String(e) } satisfies ThreadRequest);
    }
    void end();
  });
  parentPort!.on('message', (m: RuleMessage) => {
    if (m.type === 'fetched') fetches.get(m.n)?.(m.record);
    else if (m.type === 'rules') {
      engine.replaceAll(
        m.rules.map((r) => compile(r.tenant, r.doc)).filter((r): r is CompiledRule => r !== undefined),
      );
      loaded = true;
    } else if (m.type === 'connections') {
      connections = new Map(m.connections.map((c) => [`${c.source}/${c.id}`, c]));
      apiKeys = new Map(m.apiKeys);
    } else if (m.type === 'rule') {
      const c = m.doc ? compile(m.tenant, m.doc) : undefined;
      engine.apply(c ? { upsert: [c] } : { remove: [{ tenant: m.tenant, id: m.id }] });
    } else void end();
  });
  parentPort!.postMessage({ type: 'listening', thread: threadId, port: server.port } satisfies ThreadRequest);
}

export function isIngestThread(data: unknown): data is ThreadData {
  return (
    typeof data === 'object' &&
    data !== null &&
    (data as { kind?: unknown }).kind === 'signalbox-ingest-thread'
  );
}
