/**
 * Lets a line be said at most once a period (why an outage goes on, each minute it lasts), and
 * at once again after `reset` (its end was told). The ingest, the workers and the admin API each
 * tell the operator why they refuse work this way.
 */
export class AtMostEvery {
  private last = Number.NEGATIVE_INFINITY;

  constructor(
    private readonly ms: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** Whether it may be said now; when it may, the period starts. */
  due(): boolean {
    const t = this.now();
    if (t - this.last < this.ms) return false;
    this.last = t;
    return true;
  }

  reset(): void {
    this.last = Number.NEGATIVE_INFINITY;
  }
}
