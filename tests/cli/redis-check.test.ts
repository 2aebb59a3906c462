/**
 * The start-up check of Redis (cli/env.ts checkRedis): the eviction policy is read from INFO, so
 * a managed Redis that refuses CONFIG (several services rename or disable it) is checked too,
 * not refused for the wrong reason.
 */
import type { ChildProcess } from 'node:child_process';
import { afterEach, expect, it } from 'vitest';
import { checkRedis } from '../../src/cli/env.js';
import { freePort, startRedisServer } from '../redis-server.js';

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
