/**
 * The admin API over HTTP JSON: `/v1/…` routes built from ops.ts, `Authorization: Bearer <key>`,
 * errors as `{"error": {"code", "message", "details"}}` with the status of their code.
 *
 * The admin plane is not the hot path: it runs on node:http on its own port, apart from the
 * uWebSockets.js ingest, so a slow admin call never holds an ingest thread.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { BodyError, bodyCharset, bodyCoding, bodyText, invalidUtf8, notUtf8 } from '../config/body.js';
import type { AdminApi } from './api.js';
import { AdminError } from './errors.js';
import { OPERATIONS, type Operation, pathParams } from './ops.js';

export const MAX_ADMIN_BODY = 1_048_576;

interface Route {
  readonly op: Operation;
  readonly re: RegExp;
  readonly params: string[];
}

const ROUTES: readonly Route[] = OPERATIONS.map((op) => ({
  op,
  re: new RegExp(`^${op.path.replace(/\{\w+\}/g, '([^/]+)')}$`),
  params: pathParams(op),
}));

const CREATED = new Set(['CreateRule', 'CreateApiKey', 'InstallTemplate']);

function send(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
    ...headers,
  });
  res.end(text);
}

function sendError(res: ServerResponse, e: AdminError, headers: Record<string, string> = {}): void {
  const retry: Record<string, string> =
    e.retryAfterSeconds === undefined ? {} : { 'retry-after': String(e.retryAfterSeconds) };
  send(res, e.httpStatus, { error: e.toJSON() }, { ...headers, ...retry });
}

/**
 * Reads a JSON body: 415 without a JSON content type, with a content coding or a charset with no
 * decoder; 413 past the limit (before reading it all); 400 for bytes that are not UTF-8 (when no
 * other charset is named) or JSON that does not parse. A UTF-8 byte order mark is ignored.
 */
async function readJson(req: IncomingMessage, limit: number): Promise<unknown> {
  const length = Number(req.headers['content-length'] ?? NaN);
  if (length > limit) throw new AdminError('payload_too_large', `the body is over ${limit} bytes`);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) throw new AdminError('payload_too_large', `the body is over ${limit} bytes`);
    chunks.push(chunk);
  }
  if (size === 0) return {};
  const type = String(req.headers['content-type'] ?? '');
  if (!/^application\/(?:[\w.+-]+\+)?json\b/i.test(type)) {
    throw new AdminError(
      'unsupported_media_type',
      `send the body as application/json (got ${type || 'no content type'})`,
    );
  }
  const body = Buffer.concat(chunks);
  let charset: string | undefined;
  try {
    bodyCoding(String(req.headers['content-encoding'] ?? ''), false);
    charset = bodyCharset(type);
  } catch (e) {
    if (e instanceof BodyError) throw new AdminError('unsupported_media_type', e.message);
    throw e;
  }
  const bad = charset === undefined ? invalidUtf8(body) : -1;
  if (bad >= 0) {
    throw new AdminError('invalid_argument', notUtf8(bad, 'body'), [
      { field: '(body)', reason: `not valid UTF-8 at byte ${bad}` },
    ]);
  }
  try {
    return JSON.parse(bodyText(body, charset));
  } catch (e) {
    throw new AdminError('invalid_argument', `the body is not valid JSON: ${(e as Error).message}`, [
      { field: '(body)', reason: (e as Error).message },
    ]);
  }
}

/** Query parameters as an input object; integer fields are converted, repeated ones refused. */
function queryInput(op: Operation, search: URLSearchParams): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const k of new Set(search.keys())) {
    const all = search.getAll(k);
    if (all.length > 1)
      throw new AdminError('invalid_argument', `${k}: given more than once`, [
        { field: k, reason: 'given more than once' },
      ]);
    const v = all[0]!;
    const type = op.input.properties[k]?.type;
    if (type === 'integer' && /^-?\d{1,15}$/.test(v)) out[k] = Number(v);
    else if (type === 'boolean' && (v === 'true' || v === 'false')) out[k] = v === 'true';
    else out[k] = v;
  }
  return out;
}

export interface AdminHttpOptions {
  readonly host?: string;
  readonly port?: number;
  readonly maxBodyBytes?: number;
  /** The OpenAPI document, served at /v1/openapi.json. */
  readonly openapi?: unknown;
  readonly onError?: (e: unknown) => void;
}

export interface AdminHttpServer {
  readonly port: number;
  readonly server: Server;
  close(): Promise<void>;
}

export async function startAdminHttp(api: AdminApi, o: AdminHttpOptions = {}): Promise<AdminHttpServer> {
  const limit = o.maxBodyBytes ?? MAX_ADMIN_BODY;
  const server = createServer((req, res) => {
    void handle(req, res).catch((e) => {
      o.onError?.(e);
      if (!res.headersSent) sendError(res, new AdminError('internal', 'internal error'));
      else res.destroy();
    });
  });

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://admin');
    const method = req.method ?? 'GET';
    if (url.pathname === '/healthz' && method === 'GET') return send(res, 200, { ok: true });
    if (url.pathname === '/v1/openapi.json' && method === 'GET' && o.openapi)
      return send(res, 200, o.openapi);
    const onPath = ROUTES.filter((r) => r.re.test(url.pathname));
    if (onPath.length === 0) return sendError(res, new AdminError('not_found', `no route ${url.pathname}`));
    const route = onPath.find((r) => r.op.method === method);
    if (!route) {
      const allow = onPath.map((r) => r.op.method).join(', ');
      return send(
        res,
        405,
        {
          error: {
            code: 'method_not_allowed',
            message: `${method} is not allowed here (allowed: ${allow})`,
            details: [],
          },
        },
        { allow },
      );
    }
    const m = route.re.exec(url.pathname)!;
    try {
      const auth = String(req.headers.authorization ?? '');
      const key = /^Bearer\s+(\S+)\s*$/i.exec(auth)?.[1];
      let input: Record<string, unknown>;
      if (method === 'GET' || method === 'DELETE') {
        input = queryInput(route.op, url.searchParams);
      } else {
        const body = await readJson(req, limit);
        if (typeof body !== 'object' || body === null || Array.isArray(body))
          throw new AdminError('invalid_argument', 'the body must be a JSON object', [
            { field: '(body)', reason: 'must be a JSON object' },
          ]);
        input = body as Record<string, unknown>;
      }
      route.params.forEach((p, n) => {
        let v: string;
        try {
          v = decodeURIComponent(m[n + 1]!);
        } catch {
          throw new AdminError('invalid_argument', `${p}: malformed percent-encoding in the path`, [
            { field: p, reason: 'malformed percent-encoding' },
          ]);
        }
        if (input[p] !== undefined && input[p] !== v)
          throw new AdminError(
            'invalid_argument',
            `${p}: the body says ${JSON.stringify(input[p])}, the path ${JSON.stringify(v)}`,
            [{ field: p, reason: 'differs from the path' }],
          );
        input[p] = v;
      });
      const out = await api.invoke(route.op, key, input);
      send(res, CREATED.has(route.op.name) ? 201 : 200, out);
    } catch (e) {
      if (e instanceof AdminError) {
        // A body refused as too large was not read to its end: the connection cannot be reused.
        if (e.code === 'payload_too_large') res.setHeader('connection', 'close');
        return sendError(res, e, e.code === 'unauthenticated' ? { 'www-authenticate': 'Bearer' } : {});
      }
      throw e;
    }
  }

  server.requestTimeout = 30_000;
  server.headersTimeout = 10_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port ?? 0, o.host ?? '127.0.0.1', () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    server,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
