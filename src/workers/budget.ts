/**
 * API budgets shared by every worker through Redis (workflows.md, sources.md): a sliding window of
 * requests per connection (Halo 300 per 5 minutes, Autotask 10,000 per hour), a lease-based limit
 * of concurrent requests per endpoint (Autotask: 3), and a cool-down after a 429 (every PSA).
 * Past a budget, a step waits: `take` answers how long, the caller turns that into a WaitError.
 */
import type { Redis } from 'ioredis';

/** KEYS: window zset, cool-down key. ARGV: now, window ms, max, member. → 0 (ok) or ms to wait. */
const TAKE = `
local cool = redis.call('PTTL', KEYS[2])
if cool > 0 then return cool end
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return math.max(1, tonumber(oldest[2]) + window - now)
end
redis.call('ZADD', KEYS[1], now, ARGV[4])
redis.call('PEXPIRE', KEYS[1], window)
return 0
`;

/** KEYS: lease zset. ARGV: now, lease ms, max, token. → 1 (acquired) or 0. */
const LEASE = `
local now = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[4])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
return 1
`;

export interface Window {
  readonly max: number;
  readonly windowMs: number;
}

type BudgetRedis = Redis & {
  sbBudgetTake(...args: Array<string | number>): Promise<number>;
  sbBudgetLease(...args: Array<string | number>): Promise<number>;
};

let seq = 0;

export class Budgets {
  private readonly r: BudgetRedis;

  constructor(
    redis: Redis,
    private readonly prefix: string,
    private readonly now: () => number = Date.now,
  ) {
    if (!('sbBudgetTake' in redis)) {
      redis.defineCommand('sbBudgetTake', { lua: TAKE, numberOfKeys: 2 });
      redis.defineCommand('sbBudgetLease', { lua: LEASE, numberOfKeys: 1 });
    }
    this.r = redis as BudgetRedis;
  }

  private key(conn: string, what: string): string {
    return `${this.prefix}:budget:{${conn}}:${what}`;
  }

  /** Takes one request from a connection's window; 0 when allowed, else the ms to wait. */
  async take(conn: string, w: Window): Promise<number> {
    const member = `${this.now()}-${process.pid}-${++seq}`;
    return this.r.sbBudgetTake(
      this.key(conn, 'w'),
      this.key(conn, 'cool'),
      this.now(),
      w.windowMs,
      w.max,
      member,
    );
  }

  /** Slows a connection down after a 429: nobody calls it before `ms` have passed. */
  async coolDown(conn: string, ms: number): Promise<void> {
    await this.r.set(this.key(conn, 'cool'), '1', 'PX', Math.max(1, Math.ceil(ms)));
  }

  /**
   * Holds one of `max` concurrent slots of an endpoint while `fn` runs. Polls briefly for a free
   * slot; returns undefined (the caller waits as a step) when none frees up in time.
   */
  async withLease<T>(
    conn: string,
    endpoint: string,
    max: number,
    fn: () => Promise<T>,
    leaseMs = 60_000,
  ): Promise<{ value: T } | undefined> {
    const key = this.key(conn, `c:${endpoint}`);
    const token = `${process.pid}-${++seq}`;
    for (let i = 0; ; i++) {
      if ((await this.r.sbBudgetLease(key, this.now(), leaseMs, max, token)) === 1) break;
      if (i >= 40) return undefined;
      await new Promise((r) => setTimeout(r, 50));
    }
    try {
      return { value: await fn() };
    } finally {
      await this.r.zrem(key, token);
    }
  }
}
