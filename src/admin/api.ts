/**
 * What both front ends call: authenticate the key, check the role, validate the input against the
 * operation's schema (field-level reasons), then run the operation. Whatever fails becomes an
 * AdminError, which each front end encodes its own way (HTTP status + JSON, gRPC status + message).
 */
import { Ajv2020, type ErrorObject } from 'ajv/dist/2020.js';
import { AtMostEvery } from '../config/log-limit.js';
import { UNSTORABLE_REASON, unstorablePath } from '../store/index.js';
import { AdminError, type FieldError, passingFailure } from './errors.js';
import { type ApiKeys, allows, type Caller } from './keys.js';
import { inputSchema, OPERATIONS, type Operation } from './ops.js';
import type { AdminService } from './service.js';

type Validate = ((v: unknown) => boolean) & { errors?: ErrorObject[] | null };

/** A JSON Schema error as a field error: `document`, `raw.source`, `limit`. */
function fieldOf(e: ErrorObject): FieldError {
  const path = e.instancePath
    .split('/')
    .slice(1)
    .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'))
    .map((s, i) => (/^\d+$/.test(s) ? `[${s}]` : i === 0 ? s : `.${s}`))
    .join('');
  if (e.keyword === 'required') {
    const missing = String((e.params as { missingProperty: string }).missingProperty);
    return { field: path ? `${path}.${missing}` : missing, reason: 'is required' };
  }
  if (e.keyword === 'additionalProperties') {
    const extra = String((e.params as { additionalProperty: string }).additionalProperty);
    return { field: path ? `${path}.${extra}` : extra, reason: 'is not a field of this request' };
  }
  if (e.keyword === 'enum') {
    const allowed = (e.params as { allowedValues: unknown[] }).allowedValues;
    return {
      field: path || '(body)',
      reason: `must be one of ${allowed.map((v) => JSON.stringify(v)).join(', ')}`,
    };
  }
  return { field: path || '(body)', reason: e.message ?? 'is not valid' };
}

export class AdminApi {
  private readonly validators = new Map<string, Validate>();
  readonly byName = new Map<string, Operation>();

  /** Outages are told at most once a minute. */
  private readonly outageLog = new AtMostEvery(60_000);

  constructor(
    readonly service: AdminService,
    private readonly keys: ApiKeys,
    /** Told, at most once a minute, why calls answer `unavailable` (the store or Redis is down). */
    private readonly onOutage?: (reason: string) => void,
  ) {
    const ajv = new Ajv2020({ allErrors: true, strict: false });
    for (const op of OPERATIONS) {
      this.byName.set(op.name, op);
      this.validators.set(op.name, ajv.compile(inputSchema(op)) as Validate);
    }
  }

  /** Runs one operation for the holder of `key`. */
  async invoke(
    op: Operation,
    key: string | undefined,
    input: Record<string, unknown>,
  ): Promise<Record<string, unknown>> {
    try {
      return await this.run(op, key, input);
    } catch (e) {
      const passing = passingFailure(e);
      if (!passing) throw e;
      // The answer names no address (callers are tenants); the operator's log says what failed.
      if (this.onOutage && this.outageLog.due()) {
        this.onOutage(
          `${passing.message.replace(/; try again shortly$/, '')} (${(e as Error).message || String(e)})`,
        );
      }
      throw passing;
    }
  }

  private async run(
    op: Operation,
    key: string | undefined,
    input: Record<string, unknown>,
  ): Promise<Record<string, unknown>> {
    return this.invokeAs(op, await this.keys.authenticate(key), input);
  }

  /**
   * Runs one operation for a caller who needs no key (the command line, which holds the database
   * itself): the role check and input validation of every call, without authentication.
   */
  async invokeAs(
    op: Operation,
    caller: Caller,
    input: Record<string, unknown>,
  ): Promise<Record<string, unknown>> {
    if (!allows(caller.role, op.role)) {
      throw new AdminError(
        'permission_denied',
        `${op.name} needs the ${op.role} role; this key is a ${caller.role} key`,
      );
    }
    const validate = this.validators.get(op.name)!;
    if (!validate(input)) {
      const details = (validate.errors ?? []).map(fieldOf);
      throw new AdminError(
        'invalid_argument',
        details.map((d) => `${d.field}: ${d.reason}`).join('; ') || 'invalid request',
        details,
      );
    }
    // Postgres stores no U+0000 nor lone surrogates: refused here with the field, not in the store.
    const nul = unstorablePath(input);
    if (nul !== undefined) {
      throw new AdminError('invalid_argument', `${nul}: ${UNSTORABLE_REASON}`, [
        { field: nul, reason: UNSTORABLE_REASON },
      ]);
    }
    return op.call(this.service, caller, input);
  }
}
