/**
 * The admin API over gRPC (proto/signalbox/admin/v1/admin.proto), with the standard health
 * service and server reflection. Every method is an operation of ops.ts run through the same
 * AdminApi as HTTP: the request message becomes the operation's input (Struct fields become JSON),
 * the answer becomes the response message, an AdminError becomes its gRPC status.
 */
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  type GrpcObject,
  loadPackageDefinition,
  Metadata,
  Server,
  ServerCredentials,
  type ServerUnaryCall,
  type ServiceClientConstructor,
  type sendUnaryData,
  type UntypedServiceImplementation,
} from '@grpc/grpc-js';
import { loadSync, type Options } from '@grpc/proto-loader';
import { ReflectionService } from '@grpc/reflection';
import { HealthImplementation } from 'grpc-health-check';
import protobuf from 'protobufjs';
import type { AdminApi } from './api.js';
import { AdminError } from './errors.js';
import { MAX_ADMIN_BODY } from './http.js';

/** admin.proto, found from this module (src/admin in development, dist/ in the bundle). */
function findProto(): string {
  const rel = 'proto/signalbox/admin/v1/admin.proto';
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    if (existsSync(join(dir, rel))) return join(dir, rel);
    dir = dirname(dir);
  }
  throw new Error(`cannot find ${rel} above ${fileURLToPath(import.meta.url)}`);
}

export const ADMIN_PROTO = findProto();
export const ADMIN_SERVICE = 'signalbox.admin.v1.Admin';

/** How messages become JS objects, on both sides (tests use it for their client too). */
export const LOADER_OPTIONS: Options = {
  keepCase: false,
  longs: Number,
  enums: String,
  defaults: false,
  oneofs: true,
};

type Obj = Record<string, unknown>;

// ── google.protobuf.Struct ⇄ JSON ─────────────────────────────────────────────────────────

export function toValue(v: unknown): Obj {
  if (v === null || v === undefined) return { nullValue: 'NULL_VALUE' };
  if (typeof v === 'number') return { numberValue: v };
  if (typeof v === 'string') return { stringValue: v };
  if (typeof v === 'boolean') return { boolValue: v };
  if (Array.isArray(v)) return { listValue: { values: v.map(toValue) } };
  return { structValue: toStruct(v as Obj) };
}

export function toStruct(o: Obj): Obj {
  const fields: Obj = {};
  for (const [k, v] of Object.entries(o)) if (v !== undefined) fields[k] = toValue(v);
  return { fields };
}

export function fromValue(v: Obj | undefined): unknown {
  if (!v) return null;
  if (v.structValue !== undefined) return fromStruct(v.structValue as Obj);
  if (v.listValue !== undefined) return (((v.listValue as Obj).values as Obj[]) ?? []).map(fromValue);
  if (v.stringValue !== undefined) return v.stringValue;
  if (v.numberValue !== undefined) return v.numberValue;
  if (v.boolValue !== undefined) return v.boolValue;
  return null;
}

export function fromStruct(s: Obj | undefined): Obj {
  const out: Obj = {};
  for (const [k, v] of Object.entries((s?.fields as Obj) ?? {})) out[k] = fromValue(v as Obj);
  return out;
}

/**
 * Converts between a message's JSON form (what the service speaks) and its protobuf object form,
 * walking the message type: Struct and Value fields are converted, nested messages recursed into.
 */
export class MessageCodec {
  constructor(private readonly root: protobuf.Root) {}

  static load(file = ADMIN_PROTO): MessageCodec {
    const root = new protobuf.Root();
    root.loadSync(file, { keepCase: false });
    root.resolveAll();
    return new MessageCodec(root);
  }

  type(name: string): protobuf.Type {
    return this.root.lookupType(name);
  }

  service(name: string): protobuf.Service {
    return this.root.lookupService(name);
  }

  /** JSON → protobuf object form (for sending). */
  encode(type: protobuf.Type, json: Obj): Obj {
    const out: Obj = {};
    for (const f of type.fieldsArray) {
      const v = json[f.name];
      if (v === undefined || v === null) continue;
      const conv = (x: unknown): unknown => this.encodeField(f, x);
      if (f.map) out[f.name] = Object.fromEntries(Object.entries(v as Obj).map(([k, x]) => [k, conv(x)]));
      else if (f.repeated) out[f.name] = (v as unknown[]).map(conv);
      else out[f.name] = conv(v);
    }
    return out;
  }

  private encodeField(f: protobuf.Field, x: unknown): unknown {
    const t = f.resolvedType;
    if (t instanceof protobuf.Type) {
      if (t.fullName === '.google.protobuf.Struct') return toStruct(x as Obj);
      if (t.fullName === '.google.protobuf.Value') return toValue(x);
      return this.encode(t, x as Obj);
    }
    return x;
  }

  /** Protobuf object form → JSON (for receiving). Unset fields stay absent. */
  decode(type: protobuf.Type, msg: Obj): Obj {
    const out: Obj = {};
    for (const f of type.fieldsArray) {
      const v = msg[f.name];
      if (v === undefined || v === null) continue;
      const conv = (x: unknown): unknown => this.decodeField(f, x);
      if (f.map) out[f.name] = Object.fromEntries(Object.entries(v as Obj).map(([k, x]) => [k, conv(x)]));
      else if (f.repeated) out[f.name] = (v as unknown[]).map(conv);
      else out[f.name] = conv(v);
    }
    return out;
  }

  private decodeField(f: protobuf.Field, x: unknown): unknown {
    const t = f.resolvedType;
    if (t instanceof protobuf.Type) {
      if (t.fullName === '.google.protobuf.Struct') return fromStruct(x as Obj);
      if (t.fullName === '.google.protobuf.Value') return fromValue(x as Obj);
      return this.decode(t, x as Obj);
    }
    return x;
  }
}

/**
 * A request's fields as the operation's input. proto3 has no "unset" for plain scalars: an empty
 * string, a zero or an empty list means the field was not given. Fields declared `optional` (with
 * presence) keep what was sent, zero included.
 */
function requestInput(codec: MessageCodec, type: protobuf.Type, msg: Obj): Obj {
  const json = codec.decode(type, msg);
  for (const f of type.fieldsArray) {
    const v = json[f.name];
    if (f.partOf) continue;
    if (v === '' || v === 0 || (Array.isArray(v) && v.length === 0)) delete json[f.name];
  }
  return json;
}

export function loadAdminPackage(): { definition: ReturnType<typeof loadSync>; grpc: GrpcObject } {
  const definition = loadSync(ADMIN_PROTO, LOADER_OPTIONS);
  return { definition, grpc: loadPackageDefinition(definition) };
}

/** The generated constructor of the Admin service (clients and the server's definition). */
export function adminClientConstructor(grpc = loadAdminPackage().grpc): ServiceClientConstructor {
  return (((grpc.signalbox as GrpcObject).admin as GrpcObject).v1 as GrpcObject)
    .Admin as ServiceClientConstructor;
}

export interface AdminGrpcServer {
  readonly port: number;
  readonly health: HealthImplementation;
  close(): Promise<void>;
}

export async function startAdminGrpc(
  api: AdminApi,
  o: { host?: string; port?: number; onError?: (e: unknown) => void } = {},
): Promise<AdminGrpcServer> {
  const { definition, grpc } = loadAdminPackage();
  const codec = MessageCodec.load();
  const service = adminClientConstructor(grpc);
  const impl: UntypedServiceImplementation = {};
  const methods = codec.service(ADMIN_SERVICE).methods;
  for (const name of Object.keys(service.service)) {
    const op = api.byName.get(name);
    if (!op) throw new Error(`admin.proto has ${name}, which ops.ts does not list`);
    const method = methods[name]!;
    const reqType = method.resolvedRequestType!;
    const resType = method.resolvedResponseType!;
    impl[name] = (call: ServerUnaryCall<Obj, Obj>, callback: sendUnaryData<Obj>) => {
      const auth = String(call.metadata.get('authorization')[0] ?? '');
      const key = /^Bearer\s+(\S+)\s*$/i.exec(auth)?.[1];
      let input: Obj;
      try {
        input = requestInput(codec, reqType, call.request);
      } catch (e) {
        callback({ code: 3, details: `malformed request: ${(e as Error).message}` });
        return;
      }
      api.invoke(op, key, input).then(
        (out) => callback(null, codec.encode(resType, out)),
        (e: unknown) => {
          if (!(e instanceof AdminError)) o.onError?.(e);
          const err = e instanceof AdminError ? e : new AdminError('internal', 'internal error');
          const md = new Metadata();
          md.set('sb-error-code', err.code);
          md.set('sb-error-details', JSON.stringify(err.details));
          callback({ code: err.grpcStatus, details: err.message, metadata: md });
        },
      );
    };
  }
  for (const op of api.byName.keys())
    if (!(op in service.service)) throw new Error(`ops.ts lists ${op}, which admin.proto does not have`);

  // The HTTP front end's body limit, for the same requests: grpc-js would take 4 MiB.
  const server = new Server({ 'grpc.max_receive_message_length': MAX_ADMIN_BODY });
  server.addService(service.service, impl);
  const health = new HealthImplementation({ '': 'SERVING', [ADMIN_SERVICE]: 'SERVING' });
  health.addToServer(server);
  new ReflectionService(definition).addToServer(server);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(`${o.host ?? '127.0.0.1'}:${o.port ?? 0}`, ServerCredentials.createInsecure(), (e, p) =>
      e ? reject(e) : resolve(p),
    ),
  );
  return {
    port,
    health,
    close: () =>
      new Promise<void>((resolve) => {
        health.setStatus('', 'NOT_SERVING');
        server.tryShutdown(() => resolve());
        setTimeout(() => server.forceShutdown(), 5_000).unref();
      }),
  };
}
