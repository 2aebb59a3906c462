/**
 * The Redis that deploy/local/up.sh provides (or REDIS_URL names) is reachable and configured as
 * BullMQ needs: maxmemory-policy noeviction (design.md). Later issues' queue tests stand on this.
 */
import { Redis } from 'ioredis';
import { afterAll, expect, it } from 'vitest';

const url = process.env.REDIS_URL;
const redis = new Redis(url ?? 'redis://127.0.0.1:6390', { lazyConnect: true, maxRetriesPerRequest: 1 });
afterAll(() => redis.quit());

it('REDIS_URL is set by the test command', () => {
  expect(url, 'run the tests with `npm test`, which brings up deploy/local').toMatch(/^rediss?:\/\//);
});

it('answers and never evicts keys', async () => {
  await redis.connect();
  expect(await redis.ping()).toBe('PONG');
  const [, policy] = (await redis.config('GET', 'maxmemory-policy')) as [string, string];
  expect(policy).toBe('noeviction');
  const key = `sb:test:${process.pid}:${Date.now()}`;
  await redis.set(key, 'x', 'EX', 10);
  expect(await redis.get(key)).toBe('x');
  await redis.del(key);
});
