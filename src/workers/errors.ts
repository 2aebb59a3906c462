/** How an action fails: whether a retry can help, and when to try again. */

export class ActionError extends Error {
  override readonly name = 'ActionError';
  readonly retryable: boolean;
  readonly status: number | undefined;
  readonly retryAfterMs: number | undefined;
  readonly code: string;

  constructor(
    message: string,
    opts: { retryable: boolean; status?: number; retryAfterMs?: number | undefined; code?: string },
  ) {
    super(message);
    this.retryable = opts.retryable;
    this.status = opts.status;
    this.retryAfterMs = opts.retryAfterMs;
    this.code = opts.code ?? (opts.status ? `HTTP_${opts.status}` : 'SB_ACTION');
  }

  toJSON(): Record<string, unknown> {
    return { code: this.code, message: this.message, retryable: this.retryable, status: this.status };
  }
}

/**
 * Not a failure: the step must wait (a PSA connection's budget is spent, or the PSA asked us to
 * slow down). The step is resumed later without counting an attempt.
 */
export class WaitError extends Error {
  override readonly name = 'WaitError';
  constructor(
    readonly ms: number,
    readonly why: string,
  ) {
    super(`waiting ${ms} ms: ${why}`);
  }
}
