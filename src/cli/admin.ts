/**
 * The admin plane's wiring (HTTP JSON and gRPC over one AdminService), and `signalbox admin`:
 *
 *   signalbox admin keys create --tenant T --role admin|editor|viewer [--name N]
 *   signalbox admin keys list --tenant T
 *   signalbox admin keys revoke --tenant T --id ID
 *
 * `serve` starts the admin plane beside the ingest. On a fresh install (no API key at all) it
 * makes a first admin key for tenant `default` and writes it to var/admin.key (mode 0600).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import type { Redis } from 'ioredis';
import {
  AdminApi,
  type AdminGrpcServer,
  type AdminHttpServer,
  AdminService,
  ApiKeys,
  openapi,
  ROLES,
  type Role,
  startAdminGrpc,
  startAdminHttp,
} from '../admin/index.js';
import { openRunQueue } from '../config/runs.js';
import { adaptUnverified } from '../ingest/adapters/unverified.js';
import {
  allowsPrivateNetworks,
  ConnectionStore,
  type Db,
  RuleStore,
  type SecretBox,
} from '../store/index.js';
import { PsaAccess } from '../workers/psa-access.js';
import { arg, type CommandIo, unknownOption } from './args.js';
import { commandEnv, openStore } from './env.js';

export interface AdminPlane {
  readonly http: AdminHttpServer;
  readonly grpc: AdminGrpcServer;
  readonly keys: ApiKeys;
  close(): Promise<void>;
}

export interface AdminPlaneOptions {
  readonly db: Db;
  readonly secrets: SecretBox;
  /** Redis (a connection the plane may duplicate): trigger, retry, cancel and connection checks. */
  readonly redis?: Redis;
  readonly prefix?: string;
  readonly host?: string;
  readonly httpPort?: number;
  readonly grpcPort?: number;
  readonly onError?: (e: unknown) => void;
  /** Why calls answer `unavailable` (Postgres or Redis down), at most once a minute. */
  readonly onOutage?: (reason: string) => void;
  /** The process's PSA client for connection checks (default: one of its own, given Redis). */
  readonly psa?: PsaAccess;
}

export async function startAdminPlane(o: AdminPlaneOptions): Promise<AdminPlane> {
  const prefix = o.prefix ?? 'sb';
  const keys = new ApiKeys(o.db);
  const connections = new ConnectionStore(o.db, o.secrets);
  // Fails a command once a reconnect has failed (ioredis's default waits for Redis forever, and
  // the admin call with it): a call that queues runs answers `unavailable` while Redis is down.
  const queueRedis = o.redis?.duplicate({ maxRetriesPerRequest: 1 });
  queueRedis?.on('error', () => {});
  const queue = queueRedis ? openRunQueue(queueRedis, prefix) : undefined;
  const psa =
    o.psa ??
    (queueRedis
      ? new PsaAccess(queueRedis, prefix, connections, (t) => allowsPrivateNetworks(o.db, t))
      : undefined);
  const service = new AdminService({
    db: o.db,
    rules: new RuleStore(o.db),
    connections,
    keys,
    ...(queue ? { queue } : {}),
    adapt: (source, tenant, body) => adaptUnverified(source, tenant, body),
    ...(psa ? { check: (tenant, id) => psa.check(tenant, id) } : {}),
  });
  const api = new AdminApi(service, keys, o.onOutage);
  const host = o.host ?? '127.0.0.1';
  const http = await startAdminHttp(api, {
    host,
    port: o.httpPort ?? 0,
    openapi: openapi(),
    ...(o.onError ? { onError: o.onError } : {}),
  });
  const grpc = await startAdminGrpc(api, {
    host,
    port: o.grpcPort ?? 0,
    ...(o.onError ? { onError: o.onError } : {}),
  });
  return {
    http,
    grpc,
    keys,
    async close() {
      await Promise.all([http.close(), grpc.close()]);
      await queue?.close();
      queueRedis?.disconnect();
    },
  };
}

/** A fresh install has no key: make the first admin key and say where it is. */
export async function ensureFirstKey(
  keys: ApiKeys,
  io: CommandIo,
  path = 'var/admin.key',
): Promise<string | undefined> {
  if ((await keys.count()) > 0) return undefined;
  const { key } = await keys.create('default', 'admin', 'first admin key', 'signalbox');
  mkdirSync('var', { recursive: true });
  writeFileSync(path, `${key}\n`, { mode: 0o600 });
  io.stdout.write(`signalbox: no API key existed; the first admin key (tenant "default") is in ${path}\n`);
  return key;
}

const USAGE = `usage:
  signalbox admin keys create --tenant T --role admin|editor|viewer [--name N]
  signalbox admin keys list --tenant T
  signalbox admin keys revoke --tenant T --id ID
`;

export async function runAdmin(argv: readonly string[], io: CommandIo): Promise<number> {
  const [what, verb, ...rest] = argv;
  if (what !== 'keys' || !['create', 'list', 'revoke'].includes(verb ?? '')) {
    io.stderr.write(USAGE);
    return 2;
  }
  const unknown = unknownOption(rest, ['tenant', 'role', 'name', 'id']);
  if (unknown) {
    io.stderr.write(`signalbox admin: unknown option --${unknown}\n${USAGE}`);
    return 2;
  }
  const tenant = arg(rest, 'tenant');
  if (!tenant || !/^[a-z0-9][a-z0-9_-]{0,63}$/.test(tenant)) {
    io.stderr.write('signalbox admin: --tenant must name a tenant ([a-z0-9][a-z0-9_-]{0,63})\n');
    return 2;
  }
  const env = commandEnv();
  const db = await openStore(env);
  try {
    const keys = new ApiKeys(db);
    if (verb === 'create') {
      const role = arg(rest, 'role') as Role | undefined;
      if (!role || !ROLES.includes(role)) {
        io.stderr.write('signalbox admin: --role must be admin, editor or viewer\n');
        return 2;
      }
      const { key, info } = await keys.create(tenant, role, arg(rest, 'name') ?? '', 'cli');
      io.stdout.write(`${key}\n`);
      io.stderr.write(`made ${role} key ${info.id} for tenant "${tenant}"; it is shown only this once\n`);
      return 0;
    }
    if (verb === 'list') {
      for (const k of await keys.list(tenant))
        io.stdout.write(`${k.id}\t${k.role}\t${k.revokedAt ? 'revoked' : 'active'}\t${k.name}\n`);
      return 0;
    }
    const id = arg(rest, 'id');
    if (!id) {
      io.stderr.write('signalbox admin: --id is required\n');
      return 2;
    }
    if (!(await keys.revoke(tenant, id, 'cli'))) {
      io.stderr.write(`signalbox admin: tenant "${tenant}" has no key ${id}\n`);
      return 1;
    }
    io.stdout.write(`revoked ${id}\n`);
    return 0;
  } finally {
    await db.close();
  }
}
