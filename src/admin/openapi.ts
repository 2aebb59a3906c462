/**
 * The OpenAPI 3.1 description of the HTTP admin API, generated from ops.ts. The committed copy is
 * openapi/admin.json (`npm run openapi` writes it); a test fails when it differs from this output
 * and checks every documented route against the running server.
 */
import { type JsonSchema, OPERATIONS, type Operation, pathParams } from './ops.js';

const str = { type: 'string' };
const nstr = { type: ['string', 'null'] };
const int = { type: 'integer' };
const obj = { type: 'object' };
const ref = (n: string) => ({ $ref: `#/components/schemas/${n}` });
const list = (key: string, item: JsonSchema, extra: Record<string, JsonSchema> = {}) => ({
  type: 'object',
  properties: { [key]: { type: 'array', items: item }, ...extra },
  required: [key],
});

const SCHEMAS: Record<string, JsonSchema> = {
  Error: {
    type: 'object',
    properties: {
      error: {
        type: 'object',
        properties: {
          code: {
            type: 'string',
            enum: [
              'invalid_argument',
              'unauthenticated',
              'permission_denied',
              'not_found',
              'already_exists',
              'failed_precondition',
              'payload_too_large',
              'unsupported_media_type',
              'unavailable',
              'internal',
              'method_not_allowed',
            ],
          },
          message: str,
          details: { type: 'array', items: ref('FieldError') },
        },
        required: ['code', 'message', 'details'],
      },
    },
    required: ['error'],
  },
  FieldError: {
    type: 'object',
    properties: {
      field: str,
      reason: str,
      code: { type: 'string', description: 'the rule language error code (docs/errors.md)' },
      position: { type: 'object', properties: { line: int, column: int } },
      snippet: str,
    },
    required: ['field', 'reason'],
  },
  Rule: {
    type: 'object',
    properties: {
      id: str,
      version: int,
      status: { type: 'string', enum: ['active', 'draft', 'paused', 'archived'] },
      name: str,
      document: { ...obj, description: 'the rule document (docs/rules.md, schemas/rule.schema.json)' },
      runCount: int,
      lastRunAt: nstr,
      createdAt: str,
      updatedAt: str,
      problem: {
        ...nstr,
        description:
          'why this version does not compile (stored before a check of the language was added), or null',
      },
    },
    required: ['id', 'version', 'status', 'document', 'runCount'],
  },
  Run: {
    type: 'object',
    properties: {
      id: str,
      ruleId: str,
      ruleVersion: int,
      eventId: nstr,
      status: str,
      reason: nstr,
      createdAt: str,
      startedAt: nstr,
      finishedAt: nstr,
      error: {},
      steps: { type: 'array', items: ref('Step') },
    },
    required: ['id', 'ruleId', 'ruleVersion', 'status'],
  },
  Step: {
    type: 'object',
    properties: {
      index: int,
      type: str,
      status: str,
      attempts: int,
      startedAt: nstr,
      finishedAt: nstr,
      output: {},
      error: {},
    },
  },
  Connection: {
    type: 'object',
    properties: {
      id: str,
      kind: str,
      name: str,
      settings: obj,
      hasSecret: { type: 'boolean', description: 'secrets are write-only: never returned' },
      createdAt: str,
      updatedAt: str,
    },
    required: ['id', 'kind', 'settings', 'hasSecret'],
  },
  Template: {
    type: 'object',
    properties: {
      id: str,
      name: str,
      category: str,
      description: str,
      setup: { type: 'array', items: str },
      rule: obj,
      sample: obj,
    },
  },
  TestResult: {
    type: 'object',
    properties: {
      envelope: obj,
      matched: { type: 'boolean' },
      explanation: {
        ...obj,
        description: 'gates (tenant, source, on, status, self) and the condition trace',
      },
      actions: {
        type: 'array',
        items: {
          type: 'object',
          properties: { index: int, type: str, id: nstr, connection: nstr, params: {}, error: nstr },
        },
      },
    },
  },
  ApiKey: {
    type: 'object',
    properties: {
      id: str,
      name: str,
      role: { type: 'string', enum: ['admin', 'editor', 'viewer'] },
      createdAt: str,
      lastUsedAt: nstr,
      revokedAt: nstr,
      key: { type: 'string', description: 'only in the answer to CreateApiKey' },
    },
  },
};

const RESPONSES: Record<string, JsonSchema> = {
  ListRules: list('rules', ref('Rule'), { nextCursor: nstr }),
  CreateRule: ref('Rule'),
  GetRule: ref('Rule'),
  UpdateRule: ref('Rule'),
  ActivateRule: ref('Rule'),
  PauseRule: ref('Rule'),
  ArchiveRule: ref('Rule'),
  InstallTemplate: ref('Rule'),
  ValidateRule: {
    type: 'object',
    properties: {
      valid: { type: 'boolean' },
      errors: { type: 'array', items: ref('FieldError') },
      actions: { type: 'array' },
    },
    required: ['valid', 'errors'],
  },
  TestRule: {
    type: 'object',
    properties: {
      results: { type: 'array', items: ref('TestResult') },
      errors: { type: 'array', items: { type: 'object', properties: { index: int, error: str } } },
    },
  },
  DeleteRule: { type: 'object', properties: { deleted: { type: 'boolean' } } },
  DeleteConnection: { type: 'object', properties: { deleted: { type: 'boolean' } } },
  RevokeApiKey: { type: 'object', properties: { revoked: { type: 'boolean' } } },
  ListRuleVersions: list('versions', {
    type: 'object',
    properties: { version: int, createdAt: str, createdBy: str },
  }),
  TriggerRule: { type: 'object', properties: { runId: str, ruleVersion: int } },
  ListRuns: list('runs', ref('Run'), { nextCursor: nstr }),
  Backtest: {
    type: 'object',
    properties: {
      from: str,
      to: str,
      events: { ...int, description: 'archived events in the window' },
      considered: { ...int, description: "those the rule's source and on admit: read and matched" },
      matched: int,
      days: {
        type: 'array',
        items: { type: 'object', properties: { day: str, events: int, considered: int, matched: int } },
      },
      samples: {
        type: 'array',
        items: { type: 'object', properties: { id: str, type: str, time: nstr, receivedAt: str } },
      },
      elapsedMs: { type: 'number' },
      eventsPerSecond: { type: 'number' },
    },
  },
  GetEvent: {
    type: 'object',
    properties: { envelope: obj, receivedAt: str, runs: { type: 'array', items: ref('Run') } },
  },
  ExplainEvent: {
    type: 'object',
    properties: {
      envelope: obj,
      rules: {
        type: 'array',
        items: {
          type: 'object',
          properties: {
            ruleId: str,
            version: int,
            status: str,
            matched: { type: 'boolean' },
            explanation: obj,
          },
        },
      },
    },
  },
  ReplayEvents: {
    type: 'object',
    properties: {
      dryRun: { type: 'boolean' },
      events: int,
      matched: int,
      runs: int,
      results: {
        type: 'array',
        items: {
          type: 'object',
          properties: {
            eventId: str,
            type: str,
            rules: { type: 'array', items: str },
            runs: { type: 'array', items: str },
          },
        },
      },
    },
  },
  GetRun: ref('Run'),
  RetryRun: { type: 'object', properties: { runId: str, fromStep: int, job: str } },
  CancelRun: { type: 'object', properties: { runId: str, status: str } },
  ListConnections: list('connections', ref('Connection')),
  GetConnection: ref('Connection'),
  PutConnection: ref('Connection'),
  CheckConnection: {
    type: 'object',
    properties: { ok: { type: 'boolean' }, detail: str, latencyMs: { type: 'number' } },
  },
  ListTemplates: list('templates', ref('Template')),
  GetStats: { type: 'object', properties: { from: str, to: str, tenant: obj, rules: { type: 'array' } } },
  GetSettings: { type: 'object', properties: { settings: obj } },
  PutSettings: { type: 'object', properties: { settings: obj } },
  ListApiKeys: list('keys', ref('ApiKey')),
  CreateApiKey: ref('ApiKey'),
};

const ERRORS: Record<string, string> = {
  '400': 'invalid request: `details` name each field and why',
  '401': 'no API key, or an unknown or revoked one',
  '403': "the key's role does not allow this operation",
  '404': "no such thing in the key's tenant",
};

function operation(op: Operation): Record<string, unknown> {
  const params = pathParams(op);
  const inQuery = op.method === 'GET' || op.method === 'DELETE';
  const parameters = [
    ...params.map((p) => ({ name: p, in: 'path', required: true, schema: op.input.properties[p] })),
    ...(inQuery
      ? Object.entries(op.input.properties)
          .filter(([k]) => !params.includes(k))
          .map(([k, schema]) => ({
            name: k,
            in: 'query',
            required: (op.input.required ?? []).includes(k),
            schema,
          }))
      : []),
  ];
  const bodyProps = Object.fromEntries(
    Object.entries(op.input.properties).filter(([k]) => !params.includes(k)),
  );
  const created = ['CreateRule', 'CreateApiKey', 'InstallTemplate'].includes(op.name);
  return {
    operationId: op.name,
    summary: op.summary,
    tags: [op.tag],
    description: `Role: ${op.role}. gRPC: signalbox.admin.v1.Admin/${op.name}.`,
    ...(parameters.length > 0 ? { parameters } : {}),
    ...(!inQuery
      ? {
          requestBody: {
            required: (op.input.required ?? []).some((k) => !params.includes(k)),
            content: {
              'application/json': {
                schema: {
                  type: 'object',
                  properties: bodyProps,
                  required: (op.input.required ?? []).filter((k) => !params.includes(k)),
                  additionalProperties: false,
                },
              },
            },
          },
        }
      : {}),
    responses: {
      [created ? '201' : '200']: {
        description: 'OK',
        content: { 'application/json': { schema: RESPONSES[op.name] ?? obj } },
      },
      ...Object.fromEntries(
        Object.entries(ERRORS).map(([code, description]) => [
          code,
          { description, content: { 'application/json': { schema: ref('Error') } } },
        ]),
      ),
    },
  };
}

export function openapi(): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const op of OPERATIONS) {
    paths[op.path] ??= {};
    paths[op.path]![op.method.toLowerCase()] = operation(op);
  }
  return {
    openapi: '3.1.0',
    info: {
      title: 'Signalbox admin API',
      version: '1.0.0',
      description:
        'Rules, runs, connections, templates and keys of one tenant. Every call takes an API key (`Authorization: Bearer sbk_…`) and is confined to its tenant. The same operations are served over gRPC (proto/signalbox/admin/v1/admin.proto). See docs/admin.md.',
    },
    servers: [{ url: 'http://127.0.0.1:8081' }],
    security: [{ bearer: [] }],
    components: {
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer', description: 'a Signalbox API key' } },
      schemas: SCHEMAS,
    },
    paths,
  };
}
