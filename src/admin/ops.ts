/**
 * The admin API's operations, listed once: name (the gRPC method), HTTP method and path, the role
 * it needs, the JSON Schema of its input, and the service call. Both front ends are built from
 * this list, the OpenAPI file is generated from it (`npm run openapi`), and a test checks the
 * committed file against it, so the two interfaces and their documentation cannot drift apart.
 *
 * An operation's input is one object: HTTP builds it from the path parameters, the query string
 * (GET, DELETE) or the JSON body; gRPC from the request message, whose fields have the same names.
 */
import type { RuleStatus } from '../store/index.js';
import type { Caller, Role } from './keys.js';
import type { AdminService } from './service.js';

export type JsonSchema = Record<string, unknown>;

export interface Operation {
  /** PascalCase: the gRPC method name. */
  readonly name: string;
  readonly method: 'GET' | 'POST' | 'PUT' | 'DELETE';
  /** With `{param}` segments. */
  readonly path: string;
  readonly role: Role;
  readonly summary: string;
  readonly tag: string;
  /** The input's properties (path parameters included) and which are required. */
  readonly input: { readonly properties: Record<string, JsonSchema>; readonly required?: readonly string[] };
  readonly call: (
    s: AdminService,
    c: Caller,
    input: Record<string, unknown>,
  ) => Promise<Record<string, unknown>>;
}

const id = { type: 'string', pattern: '^[a-z0-9][a-z0-9_-]{0,127}$', description: 'a rule id' };
const connId = { type: 'string', pattern: '^[a-z0-9][a-z0-9_-]{0,63}$' };
const runId = { type: 'string', minLength: 1, maxLength: 128 };
const object = { type: 'object' };
const time = { type: 'string', description: 'ISO 8601 time', maxLength: 40 };
const ruleStatus = { type: 'string', enum: ['active', 'draft', 'paused', 'archived'] };
const version = { type: 'integer', minimum: 1 };

type Any = any;

const status =
  (st: RuleStatus) =>
  (s: AdminService, c: Caller, i: Any): Promise<Record<string, unknown>> =>
    s.setRuleStatus(c, i, st);

export const OPERATIONS: readonly Operation[] = [
  {
    name: 'ListRules',
    method: 'GET',
    path: '/v1/rules',
    role: 'viewer',
    tag: 'rules',
    summary:
      'The rules of the tenant by id, with status, run count, last run and why one does not compile; paged by cursor (500 a page unless limit says)',
    input: {
      properties: {
        status: ruleStatus,
        limit: { type: 'integer', minimum: 1, maximum: 1000 },
        cursor: { type: 'string', maxLength: 200 },
      },
    },
    call: (s, c, i: Any) => s.listRules(c, i),
  },
  {
    name: 'CreateRule',
    method: 'POST',
    path: '/v1/rules',
    role: 'editor',
    tag: 'rules',
    summary: 'Create a rule (version 1); draft unless a status is given',
    input: { properties: { document: object, status: ruleStatus }, required: ['document'] },
    call: (s, c, i: Any) => s.createRule(c, i),
  },
  {
    name: 'ValidateRule',
    method: 'POST',
    path: '/v1/rules/validate',
    role: 'viewer',
    tag: 'rules',
    summary: 'Check a rule document; errors name the field and the position in the expression',
    input: { properties: { document: object }, required: ['document'] },
    call: (s, c, i: Any) => s.validateRule(c, i),
  },
  {
    name: 'TestRule',
    method: 'POST',
    path: '/v1/rules/test',
    role: 'viewer',
    tag: 'rules',
    summary:
      'Run a saved or draft rule against sample events or a raw PSA body: match, explain trace, rendered actions. No side effects',
    input: {
      properties: {
        ruleId: id,
        version,
        document: object,
        envelope: object,
        envelopes: { type: 'array', items: object, maxItems: 100 },
        raw: {
          type: 'object',
          properties: {
            source: { type: 'string', enum: ['connectwise', 'autotask', 'halo'] },
            body: { type: 'string', maxLength: 1_048_576 },
          },
          required: ['source', 'body'],
          additionalProperties: false,
        },
      },
    },
    call: (s, c, i: Any) => s.testRule(c, i),
  },
  {
    name: 'GetRule',
    method: 'GET',
    path: '/v1/rules/{id}',
    role: 'viewer',
    tag: 'rules',
    summary: 'A rule: its current version, or the given one',
    input: { properties: { id, version }, required: ['id'] },
    call: (s, c, i: Any) => s.getRule(c, i),
  },
  {
    name: 'UpdateRule',
    method: 'PUT',
    path: '/v1/rules/{id}',
    role: 'editor',
    tag: 'rules',
    summary:
      'Save a new version of a rule; a document that does not compile changes nothing. With expectedVersion (the version you read), a rule saved by someone else since is refused (failed_precondition), not overwritten',
    input: {
      properties: {
        id,
        document: object,
        status: ruleStatus,
        expectedVersion: {
          type: 'integer',
          minimum: 1,
          description:
            'save only if the rule is at this version now (the one you read): a concurrent edit is refused',
        },
      },
      required: ['id', 'document'],
    },
    call: (s, c, i: Any) => s.updateRule(c, i),
  },
  {
    name: 'DeleteRule',
    method: 'DELETE',
    path: '/v1/rules/{id}',
    role: 'admin',
    tag: 'rules',
    summary: 'Delete a rule and its versions (its runs stay in history)',
    input: { properties: { id }, required: ['id'] },
    call: (s, c, i: Any) => s.deleteRule(c, i),
  },
  {
    name: 'ListRuleVersions',
    method: 'GET',
    path: '/v1/rules/{id}/versions',
    role: 'viewer',
    tag: 'rules',
    summary: 'The versions of a rule, who saved each and when',
    input: { properties: { id }, required: ['id'] },
    call: (s, c, i: Any) => s.listRuleVersions(c, i),
  },
  {
    name: 'ActivateRule',
    method: 'POST',
    path: '/v1/rules/{id}/activate',
    role: 'editor',
    tag: 'rules',
    summary: 'Activate a rule: it matches events from now on',
    input: { properties: { id }, required: ['id'] },
    call: status('active'),
  },
  {
    name: 'PauseRule',
    method: 'POST',
    path: '/v1/rules/{id}/pause',
    role: 'editor',
    tag: 'rules',
    summary: 'Pause a rule: it stops matching; runs not yet started do not start',
    input: { properties: { id }, required: ['id'] },
    call: status('paused'),
  },
  {
    name: 'ArchiveRule',
    method: 'POST',
    path: '/v1/rules/{id}/archive',
    role: 'editor',
    tag: 'rules',
    summary: 'Archive a rule',
    input: { properties: { id }, required: ['id'] },
    call: status('archived'),
  },
  {
    name: 'TriggerRule',
    method: 'POST',
    path: '/v1/rules/{id}/trigger',
    role: 'editor',
    tag: 'rules',
    summary: 'Run an active rule now, with the given event or a manual.trigger event',
    input: { properties: { id, event: object }, required: ['id'] },
    call: (s, c, i: Any) => s.triggerRule(c, i),
  },
  {
    name: 'Backtest',
    method: 'POST',
    path: '/v1/rules/backtest',
    role: 'viewer',
    tag: 'rules',
    summary: 'Evaluate a draft rule over the archived events of a window: counts per day and sample matches',
    input: {
      properties: {
        document: object,
        from: time,
        to: time,
        samples: { type: 'integer', minimum: 0, maximum: 200 },
      },
      required: ['document', 'from'],
    },
    call: (s, c, i: Any) => s.backtest(c, i),
  },
  {
    name: 'GetEvent',
    method: 'GET',
    path: '/v1/events/{id}',
    role: 'viewer',
    tag: 'events',
    summary: 'An archived event (the envelope as matched) and the runs it started',
    input: { properties: { id: { type: 'string', minLength: 1, maxLength: 300 } }, required: ['id'] },
    call: (s, c, i: Any) => s.getEvent(c, i),
  },
  {
    name: 'ExplainEvent',
    method: 'GET',
    path: '/v1/events/{id}/explain',
    role: 'viewer',
    tag: 'events',
    summary:
      "Why each of the tenant's rules does or does not match an archived event (rules as they are now)",
    input: {
      properties: {
        id: { type: 'string', minLength: 1, maxLength: 300 },
        ruleId: id,
        all: { type: 'boolean', description: 'every rule, not only the active ones' },
      },
      required: ['id'],
    },
    call: (s, c, i: Any) => s.explainEvent(c, i),
  },
  {
    name: 'ReplayEvents',
    method: 'POST',
    path: '/v1/events/replay',
    role: 'editor',
    tag: 'events',
    summary:
      'Replay archived events (by id or by window) through the current active rules: dry run (default) or live',
    input: {
      properties: {
        ids: { type: 'array', items: { type: 'string', maxLength: 300 }, maxItems: 10_000 },
        from: time,
        to: time,
        source: { type: 'string', maxLength: 64 },
        type: { type: 'string', maxLength: 200 },
        ruleId: id,
        limit: { type: 'integer', minimum: 1, maximum: 10_000 },
        dryRun: { type: 'boolean' },
      },
    },
    call: (s, c, i: Any) => s.replayEvents(c, i),
  },
  {
    name: 'ListRuns',
    method: 'GET',
    path: '/v1/runs',
    role: 'viewer',
    tag: 'runs',
    summary: 'Runs, newest first, filtered by status, rule, event and time; paged by cursor',
    input: {
      properties: {
        status: {
          type: 'string',
          enum: ['pending', 'running', 'delayed', 'completed', 'failed', 'skipped', 'throttled', 'cancelled'],
        },
        ruleId: id,
        eventId: { type: 'string', maxLength: 300 },
        from: time,
        to: time,
        limit: { type: 'integer', minimum: 1, maximum: 500 },
        cursor: { type: 'string', maxLength: 400 },
      },
    },
    call: (s, c, i: Any) => s.listRuns(c, i),
  },
  {
    name: 'GetRun',
    method: 'GET',
    path: '/v1/runs/{id}',
    role: 'viewer',
    tag: 'runs',
    summary: 'A run with its steps: status, attempts, timings, outputs, errors',
    input: { properties: { id: runId }, required: ['id'] },
    call: (s, c, i: Any) => s.getRun(c, i),
  },
  {
    name: 'RetryRun',
    method: 'POST',
    path: '/v1/runs/{id}/retry',
    role: 'editor',
    tag: 'runs',
    summary: 'Run a failed run again from its failed step (completed steps are not repeated)',
    input: { properties: { id: runId }, required: ['id'] },
    call: (s, c, i: Any) => s.retryRun(c, i),
  },
  {
    name: 'CancelRun',
    method: 'POST',
    path: '/v1/runs/{id}/cancel',
    role: 'editor',
    tag: 'runs',
    summary: 'Cancel a run that has not ended (waiting in a delay, a backoff or a queue)',
    input: { properties: { id: runId }, required: ['id'] },
    call: (s, c, i: Any) => s.cancelRun(c, i),
  },
  {
    name: 'ListConnections',
    method: 'GET',
    path: '/v1/connections',
    role: 'viewer',
    tag: 'connections',
    summary: 'The connections of the tenant (never their secrets)',
    input: { properties: {} },
    call: (s, c) => s.listConnections(c),
  },
  {
    name: 'GetConnection',
    method: 'GET',
    path: '/v1/connections/{id}',
    role: 'viewer',
    tag: 'connections',
    summary: 'One connection (never its secret)',
    input: { properties: { id: connId }, required: ['id'] },
    call: (s, c, i: Any) => s.getConnection(c, i),
  },
  {
    name: 'PutConnection',
    method: 'PUT',
    path: '/v1/connections/{id}',
    role: 'admin',
    tag: 'connections',
    summary:
      'Create or replace a connection; secret values are encrypted at rest; omit secret to keep the stored one',
    input: {
      properties: {
        id: connId,
        kind: {
          type: 'string',
          enum: ['connectwise', 'autotask', 'halo', 'generic', 'webhook', 'slack', 'teams', 'smtp'],
        },
        name: { type: 'string', maxLength: 200 },
        settings: object,
        secret: { type: 'object', additionalProperties: { type: 'string', maxLength: 8192 } },
      },
      required: ['id', 'kind'],
    },
    call: (s, c, i: Any) => s.putConnection(c, i),
  },
  {
    name: 'DeleteConnection',
    method: 'DELETE',
    path: '/v1/connections/{id}',
    role: 'admin',
    tag: 'connections',
    summary: 'Delete a connection',
    input: { properties: { id: connId }, required: ['id'] },
    call: (s, c, i: Any) => s.deleteConnection(c, i),
  },
  {
    name: 'CheckConnection',
    method: 'POST',
    path: '/v1/connections/{id}/check',
    role: 'editor',
    tag: 'connections',
    summary: "Call the connection's API with its credentials and say whether they work",
    input: { properties: { id: connId }, required: ['id'] },
    call: (s, c, i: Any) => s.checkConnection(c, i),
  },
  {
    name: 'ListTemplates',
    method: 'GET',
    path: '/v1/templates',
    role: 'viewer',
    tag: 'templates',
    summary: 'The catalogue of ready rules for common MSP cases',
    input: { properties: { category: { type: 'string', maxLength: 40 } } },
    call: (s, c, i: Any) => s.listTemplates(c, i),
  },
  {
    name: 'InstallTemplate',
    method: 'POST',
    path: '/v1/templates/{id}/install',
    role: 'editor',
    tag: 'templates',
    summary: 'Save a template into the tenant as a draft rule',
    input: { properties: { id: { type: 'string', maxLength: 100 }, ruleId: id }, required: ['id'] },
    call: (s, c, i: Any) => s.installTemplate(c, i),
  },
  {
    name: 'GetStats',
    method: 'GET',
    path: '/v1/stats',
    role: 'viewer',
    tag: 'stats',
    summary: 'Runs per rule and per status for the tenant over a window (default: the last 7 days)',
    input: { properties: { from: time, to: time } },
    call: (s, c, i: Any) => s.stats(c, i),
  },
  {
    name: 'GetSettings',
    method: 'GET',
    path: '/v1/settings',
    role: 'viewer',
    tag: 'tenant',
    summary: 'The tenant settings (e.g. allowPrivateNetworks)',
    input: { properties: {} },
    call: (s, c) => s.getSettings(c),
  },
  {
    name: 'PutSettings',
    method: 'PUT',
    path: '/v1/settings',
    role: 'admin',
    tag: 'tenant',
    summary: 'Replace the tenant settings',
    input: {
      properties: {
        settings: {
          type: 'object',
          properties: { allowPrivateNetworks: { type: 'boolean' } },
          additionalProperties: false,
        },
      },
      required: ['settings'],
    },
    call: (s, c, i: Any) => s.putSettings(c, i),
  },
  {
    name: 'ListApiKeys',
    method: 'GET',
    path: '/v1/keys',
    role: 'admin',
    tag: 'tenant',
    summary: 'The API keys of the tenant (ids, names, roles; never the keys)',
    input: { properties: {} },
    call: (s, c) => s.listKeys(c),
  },
  {
    name: 'CreateApiKey',
    method: 'POST',
    path: '/v1/keys',
    role: 'admin',
    tag: 'tenant',
    summary: 'Make an API key; the key is in this answer only',
    input: {
      properties: {
        role: { type: 'string', enum: ['admin', 'editor', 'viewer'] },
        name: { type: 'string', maxLength: 200 },
      },
      required: ['role'],
    },
    call: (s, c, i: Any) => s.createKey(c, i),
  },
  {
    name: 'RevokeApiKey',
    method: 'DELETE',
    path: '/v1/keys/{id}',
    role: 'admin',
    tag: 'tenant',
    summary: 'Revoke an API key',
    input: { properties: { id: { type: 'string', pattern: '^[A-Za-z0-9_-]{8,64}$' } }, required: ['id'] },
    call: (s, c, i: Any) => s.revokeKey(c, i),
  },
];

/** The JSON Schema an operation's input is validated against (unknown fields are refused). */
export function inputSchema(op: Operation): JsonSchema {
  return {
    type: 'object',
    properties: op.input.properties,
    required: [...(op.input.required ?? [])],
    additionalProperties: false,
  };
}

/** Path parameter names of an operation, in order. */
export function pathParams(op: Operation): string[] {
  return [...op.path.matchAll(/\{(\w+)\}/g)].map((m) => m[1]!);
}
