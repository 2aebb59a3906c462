/**
 * The admin API's errors: one code per kind of failure, each with its HTTP status and gRPC status,
 * so both front ends answer the same failure the same way. `details` say which field was wrong
 * and, for rule errors, where in the expression.
 */
import { status as GrpcStatus } from '@grpc/grpc-js';
import { isConnectionError } from '../store/index.js';

export const ADMIN_ERRORS = {
  invalid_argument: { http: 400, grpc: GrpcStatus.INVALID_ARGUMENT },
  unauthenticated: { http: 401, grpc: GrpcStatus.UNAUTHENTICATED },
  permission_denied: { http: 403, grpc: GrpcStatus.PERMISSION_DENIED },
  not_found: { http: 404, grpc: GrpcStatus.NOT_FOUND },
  already_exists: { http: 409, grpc: GrpcStatus.ALREADY_EXISTS },
  failed_precondition: { http: 409, grpc: GrpcStatus.FAILED_PRECONDITION },
  payload_too_large: { http: 413, grpc: GrpcStatus.RESOURCE_EXHAUSTED },
  unsupported_media_type: { http: 415, grpc: GrpcStatus.INVALID_ARGUMENT },
  unavailable: { http: 503, grpc: GrpcStatus.UNAVAILABLE },
  internal: { http: 500, grpc: GrpcStatus.INTERNAL },
} as const;

export type AdminErrorCode = keyof typeof ADMIN_ERRORS;

export interface FieldError {
  /** The field, as a path into the request: `document.when`, `limit`, `connection.settings.url`. */
  readonly field: string;
  readonly reason: string;
  /** Engine error code (SB_RULE_PARSE …) when the rule language found the error. */
  readonly code?: string;
  /** 1-based line and column in the expression. */
  readonly position?: { readonly line: number; readonly column: number };
  readonly snippet?: string;
}

export class AdminError extends Error {
  override readonly name = 'AdminError';
  constructor(
    readonly code: AdminErrorCode,
    message: string,
    readonly details: readonly FieldError[] = [],
    /** For a passing failure (a store that is down): when to try again, sent as Retry-After. */
    readonly retryAfterSeconds?: number,
  ) {
    super(message);
  }

  get httpStatus(): number {
    return ADMIN_ERRORS[this.code].http;
  }

  get grpcStatus(): number {
    return ADMIN_ERRORS[this.code].grpc;
  }

  toJSON(): { code: AdminErrorCode; message: string; details: readonly FieldError[] } {
    return { code: this.code, message: this.message, details: this.details };
  }
}

export const invalid = (field: string, reason: string, extra: Partial<FieldError> = {}): AdminError =>
  new AdminError('invalid_argument', `${field}: ${reason}`, [{ field, reason, ...extra }]);

/**
 * The store (Postgres) or Redis could not be reached, or Redis is full: `unavailable` (HTTP 503
 * with Retry-After, gRPC UNAVAILABLE), which clients retry, rather than `internal`. The reason (an
 * address) stays out of the answer: callers are tenants, not operators.
 */
export function passingFailure(e: unknown): AdminError | undefined {
  if (isConnectionError(e))
    return new AdminError('unavailable', 'the rule store is unreachable; try again shortly', [], 5);
  const name = (e as { name?: unknown } | null)?.name;
  const message = (e as { message?: unknown } | null)?.message;
  if (name === 'MaxRetriesPerRequestError' || message === 'Connection is closed.')
    return new AdminError('unavailable', 'the run queue (Redis) is unreachable; try again shortly', [], 5);
  // Redis full (maxmemory under noeviction): it refuses writes until the workers free memory
  if (typeof message === 'string' && message.startsWith('OOM '))
    return new AdminError('unavailable', 'the run queue (Redis) is full; try again shortly', [], 5);
  return undefined;
}

export const notFound = (what: string): AdminError => new AdminError('not_found', `${what} not found`);
