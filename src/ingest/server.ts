/**
 * The ingest HTTP server on uWebSockets.js (design.md: steps 1–7).
 *
 *   POST /v1/hooks/<source>/<connection>[/anything][?query]   PSA webhooks (connectwise, autotask, halo)
 *   POST /v1/events                                           generic sources: one envelope, a JSON
 *                                                             array, or NDJSON; `Authorization: Bearer <key>`
 *   GET  /healthz, /readyz, /metrics
 *
 * A request is answered 2xx only after its events were committed to Redis (handoff.ts); when
 * that is impossible, 503 so the sender retries, and the server goes on serving. Bad input gets
 * a status and a JSON body: 413 (before the body is read, when Content-Length says so), 415, 400,
 * 401, 404, 422 per item, 429 with Retry-After.
 */

import uWS from 'uWebSockets.js';
import { threadId } from 'node:worker_threads';
import { genericEnvelope } from '../config/archive.js';
import {
  BodyError,
  bodyCharset,
  bodyCoding,
  bodyText,
  type Coding,
  decompress,
  invalidLines,
  invalidUtf8,
  notUtf8,
} from '../config/body.js';
import { AtMostEvery } from '../config/log-limit.js';
import { checkEnvelope, MAX_JSON_DEPTH, nestedDeeper } from '../engine/index.js';
import { autotask } from './adapters/autotask.js';
import { connectwise } from './adapters/connectwise.js';
import { halo } from './adapters/halo.js';
import {
  type AdaptedEvent,
  AdapterError,
  type Connection,
  type HookRequest,
  type PsaSource,
} from './connection.js';
import type { Handoff, HandoffResult } from './handoff.js';
import { KeyFetcher } from './keys.js';
import { IngestMetrics } from './metrics.js';

export interface ConnectionSource {
  get(source: PsaSource, id: string): Connection | undefined;
}

/** API keys of generic sources: the tenant a key belongs to, or undefined. */
export interface ApiKeySource {
  tenantOf(key: string): string | undefined;
}

export interface IngestOptions {
  readonly host?: string;
  /** 0 picks a free port. */
  readonly port?: number;
  readonly connections: ConnectionSource;
  readonly apiKeys: ApiKeySource;
  readonly handoff: Handoff;
  /** Whether the process can take traffic (Redis reachable, rules loaded): /readyz. */
  readonly ready: () => Promise<boolean>;
  readonly maxBodyBytes?: number;
  /** Generic API: events per second per tenant, and the burst. */
  readonly rate?: { readonly perSecond: number; readonly burst: number };
  readonly keys?: KeyFetcher;
  readonly metrics?: IngestMetrics;
  /**
   * Fetches the record of a Halo event that carries none (an "event information only" payload)
   * from the PSA's API with the connection's credentials; undefined when it cannot (no API
   * credentials, an error): the event then goes on with `data = {id}` (sources.md).
   */
  readonly fetchRecord?: (conn: Connection, ev: AdaptedEvent) => Promise<Record<string, unknown> | undefined>;
  /** More /metrics text, read at scrape time (the stream backlogs: config/streams.ts streamGauges). */
  readonly moreMetrics?: () => Promise<string>;
  /**
   * Told, at most once a minute, why events are answered 503: what Redis said when it refused
   * them (out of memory under `noeviction`, a damaged key) or why it could not be reached. The
   * senders only see "retry later"; the operator needs the reason. Told `null` once events are
   * accepted again.
   */
  readonly onUnavailable?: (reason: string | null) => void;
  /** Start even if the native uWebSockets.js binary did not load (slow pure-JS fallback). */
  readonly allowFallback?: boolean;
}

export interface IngestServer {
  readonly port: number;
  readonly metrics: IngestMetrics;
  /**
   * Stops taking connections and drains: each request in flight is answered (after its commit),
   * with `Connection: close`, and so is any request that arrives meanwhile on a connection already
   * open; then, once none is in flight or after `graceMs` (default 10 s), every connection left
   * (idle keep-alive ones) is closed. Under steady keep-alive traffic a server that only closed its
   * listen socket never ended: its clients' connections stayed busy.
   */
  close(graceMs?: number): Promise<void>;
}

/**
 * The longest event id the generic API takes. The archive keys events by (tenant, day, id), and
 * Postgres cannot index a key over ~2.7 KB: a longer id was accepted, matched and run, but never
 * archived. 512 characters is at most 2 KB of UTF-8; real ids (UUIDs, PSA record ids) are short.
 */
export const MAX_EVENT_ID = 512;
const PSA: ReadonlySet<string> = new Set(['connectwise', 'autotask', 'halo']);

/** How long a webhook waits for a record fetched from the PSA before going on without it. */
const FETCH_TIMEOUT_MS = 5_000;

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T | undefined> {
  let t: NodeJS.Timeout | undefined;
  return Promise.race([
    p.finally(() => clearTimeout(t)),
    new Promise<undefined>((resolve) => {
      t = setTimeout(() => resolve(undefined), ms);
    }),
  ]);
}

/** Whether uWebSockets.js runs its native binary (the package silently falls back to pure JS). */
export function uwsIsNative(): boolean {
  return typeof uWS.App === 'function' && /\[native code\]/.test(Function.prototype.toString.call(uWS.App));
}

class TokenBuckets {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();
  constructor(
    private readonly perSecond: number,
    private readonly burst: number,
  ) {}
  /** Takes n tokens; returns 0 when allowed, else the seconds to wait. */
  take(key: string, n: number, now = Date.now()): number {
    let b = this.buckets.get(key);
    if (!b) this.buckets.set(key, (b = { tokens: this.burst, at: now }));
    b.tokens = Math.min(this.burst, b.tokens + ((now - b.at) / 1000) * this.perSecond);
    b.at = now;
    if (b.tokens >= n) {
      b.tokens -= n;
      return 0;
    }
    return Math.max(1, Math.ceil((n - b.tokens) / this.perSecond));
  }
}

type Reply = (status: number, body: unknown, headers?: Record<string, string>) => void;

/** How long a draining server waits for requests on open connections after the last one came. */
const DRAIN_QUIET_MS = 100;

export async function startIngest(opts: IngestOptions): Promise<IngestServer> {
  if (!uwsIsNative() && !opts.allowFallback) {
    throw new Error(
      'uWebSockets.js did not load its native binary (the package fell back to a slow pure-JS server). ' +
        'Signalbox needs Node 20 on glibc >= 2.36 (Debian 12); pass allowFallback only for development.',
    );
  }
  const maxBody = opts.maxBodyBytes ?? 1024 * 1024;
  const metrics = opts.metrics ?? new IngestMetrics();
  const keys = opts.keys ?? new KeyFetcher();
  const buckets = new TokenBuckets(opts.rate?.perSecond ?? 1_000, opts.rate?.burst ?? 5_000);
  const app = uWS.App();

  /** Reads the body within the limit, then calls `done`; answers 413 itself. */
  function readBody(res: uWS.HttpResponse, length: number, reply: Reply, done: (body: Buffer) => void): void {
    const parts: Buffer[] = [];
    let size = 0;
    let over = false;
    res.onData((chunk, isLast) => {
      if (over) return;
      size += chunk.byteLength;
      if (size > maxBody || (length >= 0 && size > length)) {
        over = true;
        parts.length = 0;
        reply(413, { error: `request body over the limit of ${maxBody} bytes` }, { connection: 'close' });
        return;
      }
      // Copy: uWS reuses the chunk's memory after this callback.
      parts.push(Buffer.from(new Uint8Array(chunk)));
      if (isLast) done(parts.length === 1 ? parts[0]! : Buffer.concat(parts, size));
    });
  }

  // Draining (close): requests not yet answered, and who waits for them to be none.
  let draining = false;
  let inflight = 0;
  let lastStart = 0;
  let drained: (() => void) | undefined;
  const settled = (): void => {
    if (--inflight === 0) drained?.();
  };

  function replier(res: uWS.HttpResponse, route: string): { reply: Reply; aborted: () => boolean } {
    let aborted = false;
    let done = false;
    inflight++;
    if (draining) lastStart = Date.now();
    res.onAborted(() => {
      aborted = true;
      if (!done) settled();
    });
    const reply: Reply = (status, body, headers = {}) => {
      if (aborted || done) return;
      done = true;
      metrics.requests.inc({ route, status: String(status) });
      const close = draining || headers.connection === 'close';
      res.cork(() => {
        res.writeStatus(String(status));
        res.writeHeader('content-type', 'application/json');
        for (const k in headers) res.writeHeader(k, headers[k]!);
        res.end(JSON.stringify(body), close);
      });
      settled();
    };
    return { reply, aborted: () => aborted };
  }

  /**
   * Checks Content-Length, Content-Type (with its charset) and Content-Encoding before any body
   * is read (body.ts): how to read the body, or undefined once it has answered.
   */
  function precheck(
    headers: { type: string; length: string; encoding: string },
    allowed: RegExp,
    compressed: boolean,
    reply: Reply,
  ): { length: number; coding: Coding; charset: string | undefined } | undefined {
    const length = headers.length === '' ? -1 : Number(headers.length);
    if (length > maxBody) {
      metrics.rejected.inc({ reason: 'too_large' });
      reply(413, { error: `request body over the limit of ${maxBody} bytes` }, { connection: 'close' });
      return undefined;
    }
    if (headers.type !== '' && !allowed.test(headers.type)) {
      metrics.rejected.inc({ reason: 'content_type' });
      reply(415, { error: `unsupported content type ${JSON.stringify(headers.type)}` });
      return undefined;
    }
    try {
      const coding = headers.encoding === '' ? 'identity' : bodyCoding(headers.encoding, compressed);
      return { length, coding, charset: bodyCharset(headers.type) };
    } catch (e) {
      if (!(e instanceof BodyError)) throw e;
      metrics.rejected.inc({ reason: 'content_type' });
      reply(e.status, { error: e.message });
      return undefined;
    }
  }

  /** A request's results, and how many of them had each outcome and matched. */
  interface Handed {
    readonly results: HandoffResult[];
    readonly accepted: number;
    readonly duplicates: number;
    readonly stale: number;
    readonly matched: number;
  }

  async function handOff(events: AdaptedEvent[], receivedAt: number): Promise<Handed> {
    const results = await opts.handoff.submitAll(events, receivedAt);
    metrics.handoff.observe((Date.now() - receivedAt) / 1000);
    // Counted per request, not per event: a request's events share source and tenant.
    let accepted = 0;
    let duplicates = 0;
    let matched = 0;
    for (const r of results) {
      if (r.outcome === 'accepted') accepted++;
      else if (r.outcome === 'duplicate') duplicates++;
      matched += r.matches.length;
    }
    const stale = results.length - accepted - duplicates;
    const source = events[0]!.envelope.source;
    if (accepted > 0) metrics.events.inc({ source, outcome: 'accepted' }, accepted);
    if (duplicates > 0) metrics.events.inc({ source, outcome: 'duplicate' }, duplicates);
    if (stale > 0) metrics.events.inc({ source, outcome: 'stale' }, stale);
    if (matched > 0) metrics.matches.inc({ source }, matched);
    return { results, accepted, duplicates, stale, matched };
  }

  const unavailableLog = new AtMostEvery(60_000);
  /** An outage told, whose end is not told yet. */
  let unavailableTold = false;
  /** Hands the valid events off and answers: 202 with the outcomes, or 503 when Redis cannot take them. */
  async function accept(
    reply: Reply,
    good: AdaptedEvent[],
    receivedAt: number,
    errors: Array<{ index: number; error: string }>,
  ): Promise<void> {
    try {
      reply(202, summary(await handOff(good, receivedAt), errors));
      if (unavailableTold) {
        unavailableTold = false;
        unavailableLog.reset();
        opts.onUnavailable?.(null);
      }
    } catch (e) {
      metrics.rejected.inc({ reason: 'unavailable' });
      if (opts.onUnavailable && unavailableLog.due()) {
        unavailableTold = true;
        const why = (e as Error).message || String(e);
        opts.onUnavailable(
          why.startsWith('OOM')
            ? `${why} Redis is full: /metrics shows what waits in it (signalbox_stream_lag, signalbox_runs)`
            : why,
        );
      }
      reply(503, { error: 'the event store is unavailable; retry later' }, { 'retry-after': '5' });
    }
  }

  function summary(
    h: Handed,
    errors: ReadonlyArray<{ index: number; error: string }>,
  ): Record<string, unknown> {
    // Only the events that were not plainly accepted, or that matched: a batch of plain
    // acceptances answers with its counts alone.
    const results: Array<{ id: string; outcome: string; rules: readonly string[] }> = [];
    for (const r of h.results)
      if (r.outcome !== 'accepted' || r.matches.length > 0)
        results.push({ id: r.id, outcome: r.outcome, rules: r.matches });
    return {
      accepted: h.accepted,
      duplicates: h.duplicates,
      stale: h.stale,
      matched: h.matched,
      results,
      ...(errors.length > 0 ? { errors } : {}),
    };
  }

  const hook = (res: uWS.HttpResponse, req: uWS.HttpRequest) => {
    const { reply } = replier(res, 'hook');
    const receivedAt = Date.now();
    const parts = req.getUrl().split('/'); // ['', 'v1', 'hooks', source, connection, ...rest]
    const source = parts[3] ?? '';
    const connId = decodeURIComponent(parts[4] ?? '');
    const rest = `/${parts.slice(5).join('/')}`;
    const query = req.getQuery() ?? '';
    const headers: Record<string, string> = {};
    req.forEach((k, v) => {
      headers[k] = v;
    });
    const conn = PSA.has(source) ? opts.connections.get(source as PsaSource, connId) : undefined;
    if (!conn) {
      metrics.rejected.inc({ reason: 'unknown_connection' });
      // Drain nothing: answer at once.
      reply(404, { error: `unknown connection ${source}/${connId}` });
      return;
    }
    const read = precheck(
      {
        type: headers['content-type'] ?? '',
        length: headers['content-length'] ?? '',
        encoding: headers['content-encoding'] ?? '',
      },
      /^(application|text)\/json\b/i,
      false,
      reply,
    );
    if (read === undefined) return;
    readBody(res, read.length, reply, (body) => {
      const hr: HookRequest = { body, charset: read.charset, headers, rest, query, receivedAt };
      void (async () => {
        let events: AdaptedEvent[];
        let errors: Array<{ index: number; error: string }> = [];
        try {
          if (conn.source === 'connectwise') events = await connectwise(conn, hr, keys);
          else if (conn.source === 'autotask') events = autotask(conn, hr);
          else ({ events, errors } = halo(conn, hr));
        } catch (e) {
          if (!(e instanceof AdapterError)) throw e;
          metrics.rejected.inc({
            reason: e.status === 401 ? 'unauthorized' : e.status === 400 ? 'malformed' : 'invalid',
          });
          reply(e.status, { error: e.message });
          return;
        }
        const good: AdaptedEvent[] = [];
        events.forEach((ev, index) => {
          const c = checkEnvelope(ev.envelope);
          if (c.ok) good.push(ev);
          else errors.push({ index, error: c.reason });
        });
        if (good.length === 0) {
          reply(422, { error: 'no valid event in the request', errors });
          return;
        }
        // Halo "event information only" payloads: the record, from the PSA's API when possible.
        if (opts.fetchRecord && conn.source === 'halo') {
          for (let i = 0; i < good.length; i++) {
            const ev = good[i]!;
            if (ev.merge !== 'none') continue;
            const record = await withTimeout(opts.fetchRecord(conn, ev), FETCH_TIMEOUT_MS).catch(
              () => undefined,
            );
            // A record nested past what the envelope check allows goes the way of one not
            // fetched (data = {id}): it could not be written back (checkEnvelope, MAX_JSON_DEPTH).
            if (record && !nestedDeeper(record, MAX_JSON_DEPTH)) {
              metrics.fetched.inc({ source: conn.source, outcome: 'fetched' });
              good[i] = { ...ev, envelope: { ...ev.envelope, data: record }, merge: 'replace' };
            } else metrics.fetched.inc({ source: conn.source, outcome: 'not-fetched' });
          }
        }
        await accept(reply, good, receivedAt, errors);
      })().catch(() => reply(500, { error: 'internal error' }));
    });
  };
  app.post('/v1/hooks/:source/:connection', hook);
  app.post('/v1/hooks/:source/:connection/*', hook);

  app.post('/v1/events', (res, req) => {
    const { reply } = replier(res, 'events');
    const receivedAt = Date.now();
    const auth = req.getHeader('authorization');
    const contentType = req.getHeader('content-type');
    const contentLength = req.getHeader('content-length');
    const m = /^Bearer\s+(\S+)\s*$/i.exec(auth);
    const tenant = m ? opts.apiKeys.tenantOf(m[1]!) : undefined;
    if (!tenant) {
      metrics.rejected.inc({ reason: 'unauthorized' });
      reply(401, { error: 'a valid API key is required (Authorization: Bearer <key>)' });
      return;
    }
    const read = precheck(
      { type: contentType, length: contentLength, encoding: req.getHeader('content-encoding') },
      /^application\/(json|x-ndjson)\b/i,
      true,
      reply,
    );
    if (read === undefined) return;
    readBody(res, read.length, reply, (raw) => {
      void (async () => {
        let body = raw;
        try {
          if (read.coding !== 'identity') body = await decompress(raw, read.coding, maxBody);
        } catch (e) {
          if (!(e instanceof BodyError)) throw e;
          metrics.rejected.inc({ reason: e.status === 413 ? 'too_large' : 'malformed' });
          reply(e.status, { error: e.message }, e.status === 413 ? { connection: 'close' } : {});
          return;
        }
        const ndjson = /^application\/x-ndjson/i.test(contentType);
        // Bytes that are not UTF-8 are refused rather than read as U+FFFD: the sender can fix
        // them (a Windows tool sending Latin-1 unlabelled), and its data is not silently changed.
        // In NDJSON, only the lines that hold them.
        let badLines: Map<number, number> | undefined;
        if (read.charset === undefined) {
          const at = invalidUtf8(body);
          if (at >= 0 && !ndjson) {
            metrics.rejected.inc({ reason: 'malformed' });
            reply(400, { error: notUtf8(at, 'body') });
            return;
          }
          if (at >= 0) badLines = invalidLines(body);
        }
        const text = bodyText(body, read.charset);
        // Valid UTF-8 as long in bytes as in characters is ASCII: each event's text is then its
        // own bytes in the body, which the archive copies as they are (AdaptedEvent.line).
        const ascii = read.charset === undefined && badLines === undefined && text.length === body.length;
        let items: unknown[];
        if (ndjson) {
          items = [];
          const lines: Array<string | Uint8Array> = [];
          const errors: Array<{ index: number; error: string }> = [];
          // Line by line without split/replace/trim copies: this loop runs per event.
          for (let at = 0, index = 0; at < text.length; index++) {
            let nl = text.indexOf('\n', at);
            if (nl < 0) nl = text.length;
            const end = nl > at && text.charCodeAt(nl - 1) === 13 ? nl - 1 : nl; // CRLF
            const start = at;
            const l = text.slice(at, end);
            at = nl + 1;
            if (l.length === 0 || (l.charCodeAt(0) <= 32 && l.trim() === '')) continue;
            const bad = badLines?.get(index);
            if (bad !== undefined) {
              errors.push({ index, error: notUtf8(bad, 'line') });
              continue;
            }
            try {
              items[index] = JSON.parse(l);
              lines[index] = ascii ? body.subarray(start, end) : l;
            } catch (e) {
              errors.push({ index, error: `malformed JSON: ${(e as Error).message}` });
            }
          }
          return finish(items, errors, lines);
        }
        let parsed: unknown;
        try {
          parsed = JSON.parse(text);
        } catch (e) {
          metrics.rejected.inc({ reason: 'malformed' });
          reply(400, { error: `malformed JSON: ${(e as Error).message}` });
          return;
        }
        if (Array.isArray(parsed)) return finish(parsed, []);
        // One event: its text is its archive line when it has no newline (config/archive.ts).
        return finish([parsed], [], text.includes('\n') ? undefined : [ascii ? body : text]);
      })().catch(() => reply(500, { error: 'internal error' }));

      /** `lines`: each item's JSON text, when it came as one line of its own. */
      async function finish(
        items: unknown[],
        errors: Array<{ index: number; error: string }>,
        lines?: ReadonlyArray<string | Uint8Array>,
      ): Promise<void> {
        const good: AdaptedEvent[] = [];
        const iso = new Date(receivedAt).toISOString();
        items.forEach((item, index) => {
          if (item === undefined) return;
          const c = checkEnvelope(item);
          if (!c.ok) {
            errors.push({ index, error: c.reason });
            return;
          }
          const e = c.envelope;
          if (e.tenant !== undefined && e.tenant !== tenant) {
            errors.push({ index, error: `tenant "${e.tenant}" is not the API key's tenant` });
            return;
          }
          if (e.id.length > MAX_EVENT_ID) {
            errors.push({ index, error: `"id" is longer than ${MAX_EVENT_ID} characters` });
            return;
          }
          if (PSA.has(e.source)) {
            errors.push({
              index,
              error: `source "${e.source}" is a PSA: send its webhooks to /v1/hooks/${e.source}/<connection>`,
            });
            return;
          }
          good.push({
            // generic sources are not PSAs: AdaptedEvent's source type names only the adapters'
            envelope: genericEnvelope(e, tenant!, iso) as AdaptedEvent['envelope'],
            entity: '',
            entityId: '',
            merge: 'none',
            actor: null,
            line: lines?.[index],
          });
        });
        errors.sort((a, b) => a.index - b.index);
        if (good.length === 0) {
          metrics.rejected.inc({ reason: 'invalid' });
          reply(400, { error: 'no valid event in the request', errors });
          return;
        }
        const wait = buckets.take(tenant!, good.length);
        if (wait > 0) {
          metrics.rejected.inc({ reason: 'rate_limited' });
          reply(
            429,
            { error: `tenant "${tenant}" is over its event rate; retry in ${wait} s` },
            { 'retry-after': String(wait) },
          );
          return;
        }
        await accept(reply, good, receivedAt, errors);
      }
    });
  });

  app.get('/healthz', (res) => {
    const { reply } = replier(res, 'healthz');
    reply(200, { status: 'ok', native: uwsIsNative(), thread: threadId });
  });
  app.get('/readyz', (res) => {
    const { reply } = replier(res, 'readyz');
    opts.ready().then(
      (ok) => reply(ok ? 200 : 503, { ready: ok }),
      () => reply(503, { ready: false }),
    );
  });
  app.get('/metrics', (res) => {
    let aborted = false;
    res.onAborted(() => {
      aborted = true;
    });
    // What cannot be read within a second (Redis down) is left out; the counters are always there.
    const more = opts.moreMetrics ? withTimeout(opts.moreMetrics(), 1000).catch(() => undefined) : undefined;
    void Promise.resolve(more).then((text) => {
      if (aborted) return;
      res.cork(() => {
        res
          .writeStatus('200')
          .writeHeader('content-type', 'text/plain; version=0.0.4')
          .end(metrics.render() + (text ?? ''));
      });
    });
  });
  // HEAD for the probes that some load balancers send: the status alone.
  app.head('/healthz', (res) => headReply(res, 'healthz', 200));
  app.head('/readyz', (res) => {
    let aborted = false;
    res.onAborted(() => {
      aborted = true;
    });
    opts.ready().then(
      (ok) => !aborted && headReply(res, 'readyz', ok ? 200 : 503),
      () => !aborted && headReply(res, 'readyz', 503),
    );
  });
  // A known path with another method: 405 with what it allows (uWS tries any() after the
  // method's own routes).
  for (const [path, allow] of [
    ['/v1/events', 'POST'],
    ['/v1/hooks/:source/:connection', 'POST'],
    ['/v1/hooks/:source/:connection/*', 'POST'],
    ['/healthz', 'GET, HEAD'],
    ['/readyz', 'GET, HEAD'],
    ['/metrics', 'GET'],
  ] as const) {
    app.any(path, (res, req) => {
      const { reply } = replier(res, 'other');
      reply(405, { error: `method ${req.getMethod().toUpperCase()} not allowed: ${allow}` }, { allow });
    });
  }
  app.any('/*', (res) => {
    const { reply } = replier(res, 'other');
    reply(404, { error: 'not found' });
  });

  function headReply(res: uWS.HttpResponse, route: string, status: number): void {
    metrics.requests.inc({ route, status: String(status) });
    res.cork(() => {
      res.writeStatus(String(status)).writeHeader('content-type', 'application/json').endWithoutBody();
    });
  }

  const listen = await new Promise<uWS.us_listen_socket>((resolve, reject) => {
    app.listen(opts.host ?? '127.0.0.1', opts.port ?? 0, (token) =>
      token ? resolve(token) : reject(new Error(`cannot listen on port ${opts.port}`)),
    );
  });
  return {
    port: uWS.us_socket_local_port(listen),
    metrics,
    async close(graceMs = 10_000) {
      if (draining) return;
      draining = true;
      uWS.us_listen_socket_close(listen);
      // Until none is in flight and none has come on an open connection for DRAIN_QUIET_MS (each
      // such answer closes its connection, so busy connections end one by one), or the grace ends.
      const until = Date.now() + graceMs;
      lastStart = Date.now();
      while (Date.now() < until && (inflight > 0 || Date.now() - lastStart < DRAIN_QUIET_MS)) {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, inflight > 0 ? until - Date.now() : DRAIN_QUIET_MS);
          drained = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        drained = undefined;
      }
      // App.close (uWS 20.30: every socket, listen ones included) is missing from its typings.
      (app as unknown as { close(): void }).close();
    },
  };
}
