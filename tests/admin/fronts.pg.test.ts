/**
 * What belongs to one front end: HTTP's bad input (content type, size, JSON, routes, methods) and
 * its OpenAPI file checked against the server; gRPC's health service and server reflection.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import {
  credentials,
  type GrpcObject,
  loadPackageDefinition,
  type ServiceClientConstructor,
  status,
} from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_SERVICE, OPERATIONS, openapi } from '../../src/admin/index.js';
import { type AdminPlane, startAdminPlane } from '../../src/cli/admin.js';
import { type Db, migrate, openPglite, SecretBox } from '../../src/store/index.js';
import { AdminClient } from './client.js';

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6390';

let db: Db;
let plane: AdminPlane;
let redis: Redis;
let key: string;
let base: string;

beforeAll(async () => {
  db = await openPglite('memory://');
  await migrate(db);
  redis = new Redis(REDIS_URL, { maxRetriesPerRequest: null });
  plane = await startAdminPlane({ db, secrets: new SecretBox(randomBytes(32)), redis, prefix: 'fronts' });
  key = (await plane.keys.create('acme', 'admin', 'k', 'test')).key;
  base = `http://127.0.0.1:${plane.http.port}`;
});

afterAll(async () => {
  await plane?.close();
  redis?.disconnect();
  await db?.close();
});

const auth = () => ({ authorization: `Bearer ${key}` });

describe('HTTP front end', () => {
  it('415 for a body that is not JSON, 400 with the parser reason for malformed JSON', async () => {
    let r = await fetch(`${base}/v1/rules`, {
      method: 'POST',
      headers: { ...auth(), 'content-type': 'text/plain' },
      body: '{}',
    });
    expect(r.status).toBe(415);
    expect(((await r.json()) as { error: { code: string } }).error.code).toBe('unsupported_media_type');
    r = await fetch(`${base}/v1/rules`, {
      method: 'POST',
      headers: { ...auth(), 'content-type': 'application/json' },
      body: '{"document": {"id": "x",}}',
    });
    expect(r.status).toBe(400);
    const e = ((await r.json()) as { error: { message: string; details: Array<{ field: string }> } }).error;
    expect(e.message).toMatch(/not valid JSON: .*(position|property|token)/i);
    expect(e.details[0]!.field).toBe('(body)');
    r = await fetch(`${base}/v1/rules`, {
      method: 'POST',
      headers: { ...auth(), 'content-type': 'application/json' },
      body: '[1, 2]',
    });
    expect(r.status).toBe(400);
  });

  it('bodies: a UTF-8 byte order mark is ignored, a named charset decoded; bytes not UTF-8 get 400, a content coding or unknown charset 415', async () => {
    const make = (body: Buffer, headers: Record<string, string> = {}) =>
      fetch(`${base}/v1/keys`, {
        method: 'POST',
        headers: { ...auth(), 'content-type': 'application/json', ...headers },
        body,
      });
    const named = async (r: Response) => ((await r.json()) as { name: string }).name;
    const bom = await make(Buffer.from('\ufeff{"name":"with a BOM","role":"viewer"}'));
    expect(bom.status).toBe(201);
    expect(await named(bom)).toBe('with a BOM');
    const latin1 = Buffer.from('{"name":"Müller","role":"viewer"}', 'latin1');
    const decoded = await make(latin1, { 'content-type': 'application/json; charset=iso-8859-1' });
    expect(decoded.status).toBe(201);
    expect(await named(decoded)).toBe('Müller');
    // the same bytes unlabelled: refused, not stored as M\ufffdller
    const unlabelled = await make(latin1);
    expect(unlabelled.status).toBe(400);
    const e = ((await unlabelled.json()) as { error: { code: string; message: string } }).error;
    expect(e).toMatchObject({ code: 'invalid_argument' });
    expect(e.message).toMatch(/^not valid UTF-8 at byte 10 of the body/);
    const { gzipSync } = await import('node:zlib');
    const gz = await make(gzipSync('{"name":"gz","role":"viewer"}'), { 'content-encoding': 'gzip' });
    expect(gz.status).toBe(415);
    expect(((await gz.json()) as { error: { message: string } }).error.message).toMatch(/uncompressed/);
    const klingon = await make(Buffer.from('{"name":"k","role":"viewer"}'), {
      'content-type': 'application/json; charset=klingon',
    });
    expect(klingon.status).toBe(415);
    const list = await fetch(`${base}/v1/keys`, { headers: auth() });
    const names = ((await list.json()) as { keys: Array<{ name: string }> }).keys.map((k) => k.name);
    expect(names.filter((n) => n !== 'k').sort()).toEqual(['Müller', 'with a BOM']);
  });

  it('413 for a body over the limit, before reading it all', async () => {
    const big = JSON.stringify({ document: { id: 'big', source: '*', name: 'x'.repeat(1_100_000) } });
    const r = await fetch(`${base}/v1/rules`, {
      method: 'POST',
      headers: { ...auth(), 'content-type': 'application/json' },
      body: big,
    });
    expect(r.status).toBe(413);
    const list = await fetch(`${base}/v1/rules`, { headers: auth() });
    expect(((await list.json()) as { rules: unknown[] }).rules).toEqual([]);
  });

  it('404 for an unknown route, 405 with Allow for a wrong method, 401 with WWW-Authenticate', async () => {
    let r = await fetch(`${base}/v1/nothing-here`, { headers: auth() });
    expect(r.status).toBe(404);
    r = await fetch(`${base}/v1/rules/x`, { method: 'POST', headers: auth() });
    expect(r.status).toBe(405);
    expect(r.headers.get('allow')).toBe('GET, PUT, DELETE');
    r = await fetch(`${base}/v1/rules`);
    expect(r.status).toBe(401);
    expect(r.headers.get('www-authenticate')).toBe('Bearer');
    r = await fetch(`${base}/v1/rules/%E0%A4%A`, { headers: auth() });
    expect(r.status).toBe(400);
    r = await fetch(`${base}/v1/runs?limit=1&limit=2`, { headers: auth() });
    expect(r.status).toBe(400);
  });

  it('a path id and a body id that differ are refused', async () => {
    const r = await fetch(`${base}/v1/rules/a`, {
      method: 'PUT',
      headers: { ...auth(), 'content-type': 'application/json' },
      body: JSON.stringify({ id: 'b', document: { source: '*' } }),
    });
    expect(r.status).toBe(400);
  });

  it('the committed OpenAPI file is the one generated from the operations', () => {
    const committed = JSON.parse(readFileSync(new URL('../../openapi/admin.json', import.meta.url), 'utf8'));
    expect(committed).toEqual(openapi());
  });

  it('every documented route is served with its method, and the server serves no undocumented one', async () => {
    const doc = openapi() as { paths: Record<string, Record<string, { operationId: string }>> };
    const documented = Object.entries(doc.paths).flatMap(([p, ms]) =>
      Object.entries(ms).map(([m, o]) => [m.toUpperCase(), p, o.operationId] as const),
    );
    expect(documented.map((d) => d[2]).sort()).toEqual(OPERATIONS.map((o) => o.name).sort());
    for (const [method, path] of documented) {
      // Unauthenticated: a served route answers 401, an unserved one 404 or 405.
      const r = await fetch(`${base}${path.replace(/\{\w+\}/g, 'x1')}`, { method });
      expect(r.status, `${method} ${path}`).toBe(401);
    }
    const served = await fetch(`${base}/v1/openapi.json`);
    expect(await served.json()).toEqual(openapi());
  });
});

describe('gRPC front end', () => {
  it('refuses a message over the HTTP body limit (RESOURCE_EXHAUSTED), as HTTP answers 413', async () => {
    const client = new AdminClient(plane.http.port, plane.grpc.port);
    try {
      const doc = (id: string, n: number) => ({ document: { id, source: '*', name: 'x'.repeat(n) } });
      const big = await client.call('grpc', key, 'ValidateRule', doc('big', 1_100_000));
      expect(big).toMatchObject({ ok: false, code: `grpc-${status.RESOURCE_EXHAUSTED}` });
      // under the limit, the same request is taken (and judged on its merits)
      const small = await client.call('grpc', key, 'ValidateRule', doc('small', 100));
      expect(small.ok).toBe(true);
    } finally {
      client.close();
    }
  });

  it('serves the standard health service', async () => {
    const def = loadSync(
      new URL('../../node_modules/grpc-health-check/proto/health/v1/health.proto', import.meta.url).pathname,
      { enums: String },
    );
    const pkg = loadPackageDefinition(def) as GrpcObject;
    const Health = ((pkg.grpc as GrpcObject).health as GrpcObject).v1 as GrpcObject;
    const client = new (Health.Health as ServiceClientConstructor)(
      `127.0.0.1:${plane.grpc.port}`,
      credentials.createInsecure(),
    ) as unknown as {
      check(r: unknown, cb: (e: Error | null, v: { status: string }) => void): void;
      close(): void;
    };
    const status = (service: string) =>
      new Promise<string>((resolve, reject) =>
        client.check({ service }, (e, v) => (e ? reject(e) : resolve(v.status))),
      );
    expect(await status('')).toBe('SERVING');
    expect(await status(ADMIN_SERVICE)).toBe('SERVING');
    await expect(status('no.such.Service')).rejects.toThrow(/NOT_FOUND|not found/i);
    client.close();
  });

  it('serves reflection: a client can list the services and fetch admin.proto', async () => {
    const def = loadSync(
      new URL(
        '../../node_modules/@grpc/reflection/build/proto/grpc/reflection/v1/reflection.proto',
        import.meta.url,
      ).pathname,
    );
    const pkg = loadPackageDefinition(def) as GrpcObject;
    const R = (((pkg.grpc as GrpcObject).reflection as GrpcObject).v1 as GrpcObject)
      .ServerReflection as ServiceClientConstructor;
    const client = new R(`127.0.0.1:${plane.grpc.port}`, credentials.createInsecure()) as unknown as {
      serverReflectionInfo(): NodeJS.ReadWriteStream & { write(m: unknown): void; end(): void };
      close(): void;
    };
    const ask = (req: Record<string, unknown>) =>
      new Promise<Record<string, any>>((resolve, reject) => {
        const stream = client.serverReflectionInfo();
        stream.on('data', (m: Record<string, any>) => resolve(m));
        stream.on('error', reject);
        stream.write(req);
        stream.end();
      });
    const list = await ask({ listServices: '' });
    const names = (list.listServicesResponse.service as Array<{ name: string }>).map((s) => s.name);
    expect(names).toContain(ADMIN_SERVICE);
    const file = await ask({ fileContainingSymbol: ADMIN_SERVICE });
    const protos = file.fileDescriptorResponse.fileDescriptorProto as Buffer[];
    expect(Buffer.concat(protos).toString('latin1')).toContain('ListRules');
    client.close();
  });
});
