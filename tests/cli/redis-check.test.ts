/**
 * The start-up check of Redis (cli/env.ts checkRedis): the eviction policy is read from INFO, so
 * a managed Redis that refuses CONFIG (several services rename or disable it) is checked too,
 * not refused for the wrong reason; a cluster node, a read-only replica and a Redis older than
 * 6.2 are refused with what to use instead (each used to start, then answer every event 503).
 */
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Redis } from 'ioredis';
import { afterEach, expect, it } from 'vitest';
import { checkRedis } from '../../src/cli/env.js';
import { checkRedisServer, RedisPolicyError } from '../../src/workers/worker.js';
import { freePort, listenablePort, startRedisServer } from '../redis-server.js';

let server: ChildProcess | undefined;
afterEach(() => {
  server?.kill('SIGKILL');
});

it('checks a Redis without CONFIG by its INFO: noeviction passes, allkeys-lru is refused', async () => {
  for (const [policy, refused] of [
    ['noeviction', undefined],
    ['allkeys-lru', 'Redis must run with maxmemory-policy noeviction (it has allkeys-lru)'],
  ] as const) {
    const port = await freePort();
    server = await startRedisServer(port, ['--rename-command', 'CONFIG', '""', '--maxmemory-policy', policy]);
    const check = checkRedis(`redis://127.0.0.1:${port}`);
    if (refused) await expect(check).rejects.toThrow(refused);
    else await expect(check).resolves.toBeUndefined();
    server.kill('SIGKILL');
  }
});

it('refuses a cluster node and a read-only replica, naming what to use instead', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'sb-cluster-'));
  const port = await listenablePort();
  server = await startRedisServer(port, [
    '--cluster-enabled',
    'yes',
    '--cluster-config-file',
    join(dir, 'nodes.conf'),
    '--dir',
    dir,
  ]);
  await expect(checkRedis(`redis://127.0.0.1:${port}`)).rejects.toThrow(
    /^Redis Cluster is not supported: .*use a standalone Redis/,
  );
  server.kill('SIGKILL');

  const primaryPort = await listenablePort();
  server = await startRedisServer(primaryPort);
  const replicaPort = await listenablePort();
  const replica = await startRedisServer(replicaPort, ['--replicaof', '127.0.0.1', String(primaryPort)]);
  try {
    await expect(checkRedis(`redis://127.0.0.1:${replicaPort}`)).rejects.toThrow(
      `REDIS_URL names a read-only replica (of 127.0.0.1:${primaryPort}): point it at the primary`,
    );
    await expect(checkRedis(`redis://127.0.0.1:${primaryPort}`)).resolves.toBeUndefined();
  } finally {
    replica.kill('SIGKILL');
  }
});

it('refuses a Redis older than 6.2 (the ingest needs SMISMEMBER)', async () => {
  const answering = (version: string) =>
    ({
      info: async () =>
        `# Server\r\nredis_version:${version}\r\n# Memory\r\nmaxmemory_policy:noeviction\r\n# Cluster\r\ncluster_enabled:0\r\n`,
    }) as unknown as Redis;
  await expect(checkRedisServer(answering('6.0.16'))).rejects.toThrow(
    'Redis 6.2 or later is needed (this one is 6.0.16)',
  );
  await expect(checkRedisServer(answering('5.0.7'))).rejects.toThrow(RedisPolicyError);
  await expect(checkRedisServer(answering('6.2.0'))).resolves.toBeUndefined();
  await expect(checkRedisServer(answering('7.4.1'))).resolves.toBeUndefined();
});
