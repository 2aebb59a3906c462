/**
 * One client for both front ends of the admin API: `call(op, input)` over HTTP JSON (method, path,
 * query or body from ops.ts) or over gRPC (a real @grpc/grpc-js client; Struct fields converted),
 * answering the same shape: `{ ok: true, body }` or `{ ok: false, code, message, details }`.
 */
import { credentials, Metadata, type ServiceError } from '@grpc/grpc-js';
import { adminClientConstructor, MessageCodec, OPERATIONS } from '../../src/admin/index.js';

export type Transport = 'http' | 'grpc';
export type Answer =
  | { ok: true; body: Record<string, unknown>; status?: number }
  | { ok: false; code: string; message: string; details: Array<Record<string, unknown>>; status?: number };

const codec = MessageCodec.load();
const ops = new Map(OPERATIONS.map((o) => [o.name, o]));

/** JSON without nulls and empty lists: what gRPC carries (proto3 has neither), for comparing answers. */
export function dropNulls(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(dropNulls);
  if (v && typeof v === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v))
      if (x !== null && x !== undefined && !(Array.isArray(x) && x.length === 0)) out[k] = dropNulls(x);
    return out;
  }
  return v;
}

export class AdminClient {
  private readonly grpc: Record<string, (...a: unknown[]) => void> & { close(): void };

  constructor(
    readonly httpPort: number,
    readonly grpcPort: number,
  ) {
    const Admin = adminClientConstructor();
    this.grpc = new Admin(`127.0.0.1:${grpcPort}`, credentials.createInsecure()) as never;
  }

  close(): void {
    this.grpc.close();
  }

  async call(
    t: Transport,
    key: string | undefined,
    name: string,
    input: Record<string, unknown> = {},
  ): Promise<Answer> {
    return t === 'http' ? this.http(key, name, input) : this.rpc(key, name, input);
  }

  async http(key: string | undefined, name: string, input: Record<string, unknown>): Promise<Answer> {
    const op = ops.get(name)!;
    const rest = { ...input };
    const path = op.path.replace(/\{(\w+)\}/g, (_, p: string) => {
      const v = String(rest[p]);
      delete rest[p];
      return encodeURIComponent(v);
    });
    const url = new URL(`http://127.0.0.1:${this.httpPort}${path}`);
    const headers: Record<string, string> = key ? { authorization: `Bearer ${key}` } : {};
    let body: string | undefined;
    if (op.method === 'GET' || op.method === 'DELETE') {
      for (const [k, v] of Object.entries(rest)) url.searchParams.set(k, String(v));
    } else {
      body = JSON.stringify(rest);
      headers['content-type'] = 'application/json';
    }
    const res = await fetch(url, { method: op.method, headers, ...(body !== undefined ? { body } : {}) });
    const json = (await res.json()) as Record<string, unknown>;
    if (res.ok) return { ok: true, body: json, status: res.status };
    const e = json.error as { code: string; message: string; details: Array<Record<string, unknown>> };
    return { ok: false, code: e.code, message: e.message, details: e.details, status: res.status };
  }

  async rpc(key: string | undefined, name: string, input: Record<string, unknown>): Promise<Answer> {
    const method = codec.service('signalbox.admin.v1.Admin').methods[name]!;
    const md = new Metadata();
    if (key) md.set('authorization', `Bearer ${key}`);
    const req = codec.encode(method.resolvedRequestType!, input);
    return new Promise((resolve) => {
      this.grpc[name]!.call(this.grpc, req, md, (e: ServiceError | null, res: Record<string, unknown>) => {
        if (e) {
          const m = e.metadata;
          resolve({
            ok: false,
            code: String(m.get('sb-error-code')[0] ?? `grpc-${e.code}`),
            message: e.details,
            details: JSON.parse(String(m.get('sb-error-details')[0] ?? '[]')) as Array<
              Record<string, unknown>
            >,
            status: e.code,
          });
        } else resolve({ ok: true, body: codec.decode(method.resolvedResponseType!, res) });
      });
    });
  }
}
