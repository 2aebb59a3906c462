/**
 * Consumer-group housekeeping shared by every stream reader (dispatcher, timers, history): entries
 * delivered to a consumer that died are never acknowledged; after `minIdleMs` another consumer
 * claims them (XAUTOCLAIM) and processes them as its own pending entries.
 */
import type { Redis } from 'ioredis';

export class IdleClaimer {
  private last = 0;

  constructor(
    private readonly redis: Redis,
    private readonly key: string,
    private readonly group: string,
    private readonly consumer: string,
    private readonly minIdleMs = 60_000,
    private readonly everyMs = 5_000,
  ) {}

  /** Claims idle entries of other consumers (at most every `everyMs`); true when it took any. */
  async claim(): Promise<boolean> {
    const now = Date.now();
    if (now - this.last < this.everyMs) return false;
    this.last = now;
    const r = (await this.redis.call(
      'XAUTOCLAIM',
      this.key,
      this.group,
      this.consumer,
      String(this.minIdleMs),
      '0-0',
      'COUNT',
      '1000',
      'JUSTID',
    )) as [string, string[]];
    return (r?.[1]?.length ?? 0) > 0;
  }
}
