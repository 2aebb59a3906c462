/**
 * `signalbox serve --connections FILE`: PSA connections and generic-API keys from a JSON file,
 * checked whole before anything starts. A connection the ingest could never verify (an Autotask
 * one without its secret, a Halo one with neither Basic credentials nor a URL secret) would
 * otherwise answer every webhook 401, and a misspelt field would be ignored: each problem is
 * named by its place in the file (`connections[2].autotask.secret`), and the command exits 2.
 */
import { readFileSync } from 'node:fs';
import { Ajv2020, type ErrorObject } from 'ajv/dist/2020.js';
import { isOrigin, ORIGIN_REASON } from '../admin/connection-kinds.js';
import { stripBom } from '../config/body.js';
import type { Connection, PsaSource } from '../ingest/connection.js';

export interface ConnectionsFile {
  connections?: Connection[];
  apiKeys?: Array<{ tenant: string; key: string }>;
}

const name = { type: 'string', pattern: '^[a-z0-9][a-z0-9_-]{0,63}$' };
const text = { type: 'string', minLength: 1 };

const SCHEMA = {
  type: 'object',
  additionalProperties: false,
  properties: {
    connections: {
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['tenant', 'id', 'source'],
        properties: {
          tenant: name,
          id: name,
          source: { enum: ['connectwise', 'autotask', 'halo'] },
          connectwise: {
            type: 'object',
            additionalProperties: false,
            properties: { signingKey: text, keyOrigin: { type: 'string' } },
          },
          autotask: {
            type: 'object',
            additionalProperties: false,
            required: ['secret'],
            properties: { secret: text },
          },
          halo: {
            type: 'object',
            additionalProperties: false,
            properties: { username: text, password: text, urlSecret: text },
            dependentRequired: { username: ['password'] },
          },
          selfActors: { type: 'array', items: text },
        },
      },
    },
    apiKeys: {
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['tenant', 'key'],
        // A key is a bearer secret: a short one can be guessed.
        properties: { tenant: name, key: { type: 'string', minLength: 16 } },
      },
    },
  },
} as const;

const validate = new Ajv2020({ allErrors: true, strict: true }).compile(SCHEMA);

/** `/connections/2/autotask` → `connections[2].autotask` (the file itself: `(file)`). */
function place(pointer: string): string {
  const parts = pointer.split('/').slice(1);
  let out = '';
  for (const p of parts) out += /^\d+$/.test(p) ? `[${p}]` : out ? `.${p}` : p;
  return out || '(file)';
}

function say(e: ErrorObject): string {
  const at = place(e.instancePath);
  const p = e.params as Record<string, unknown>;
  switch (e.keyword) {
    case 'required':
      return `${at}: ${String(p.missingProperty)} is required`;
    case 'additionalProperties':
      return `${at}: unknown field ${JSON.stringify(p.additionalProperty)}`;
    case 'enum':
      return `${at}: must be one of ${(p.allowedValues as string[]).join(', ')}`;
    case 'dependentRequired':
      return `${at}: ${String(p.missingProperty)} is required with ${String(p.property)}`;
    case 'pattern':
      return `${at}: must be lowercase letters, digits, - and _ (up to 64), starting with a letter or digit`;
    default:
      return `${at}: ${e.message ?? 'invalid'}`;
  }
}

/** Problems the schema cannot state: what each source needs, and one place per address and key. */
function meaning(file: ConnectionsFile): string[] {
  const out: string[] = [];
  const seen = new Map<string, number>();
  const blocks: PsaSource[] = ['connectwise', 'autotask', 'halo'];
  (file.connections ?? []).forEach((c, i) => {
    const at = `connections[${i}]`;
    for (const b of blocks)
      if (b !== c.source && c[b] !== undefined)
        out.push(`${at}.${b}: not for a connection whose source is ${c.source}`);
    const origin = c.connectwise?.keyOrigin;
    if (origin !== undefined && !isOrigin(origin)) out.push(`${at}.connectwise.keyOrigin: ${ORIGIN_REASON}`);
    if (c.source === 'autotask' && c.autotask === undefined)
      out.push(`${at}: an autotask connection needs autotask.secret (the webhook's secret key)`);
    if (c.source === 'halo' && c.halo?.username === undefined && c.halo?.urlSecret === undefined)
      out.push(`${at}: a halo connection needs halo.username and halo.password, or halo.urlSecret`);
    // Webhooks reach a file's connection at /v1/hooks/<source>/<id>: the tenant is not in it.
    const address = `${c.source}/${c.id}`;
    const first = seen.get(address);
    if (first !== undefined)
      out.push(
        `${at}: /v1/hooks/${address} is connections[${first}] already (ids are per source, not per tenant)`,
      );
    else seen.set(address, i);
  });
  const keys = new Map<string, number>();
  (file.apiKeys ?? []).forEach((k, i) => {
    const first = keys.get(k.key);
    if (first !== undefined) out.push(`apiKeys[${i}]: the same key as apiKeys[${first}]`);
    else keys.set(k.key, i);
  });
  return out;
}

/** Problems with a parsed connections file, each with its place; empty when it can be used. */
export function connectionsFileProblems(file: unknown): string[] {
  if (!validate(file)) return (validate.errors ?? []).map(say);
  return meaning(file as ConnectionsFile);
}

/** Reads and checks the file; throws an Error listing every problem (one per line). */
export function readConnectionsFile(path: string): ConnectionsFile {
  let file: unknown;
  try {
    file = JSON.parse(stripBom(readFileSync(path, 'utf8')));
  } catch (e) {
    throw new Error(`cannot read connections file ${path}: ${(e as Error).message}`);
  }
  const problems = connectionsFileProblems(file);
  if (problems.length > 0)
    throw new Error(`connections file ${path} is not valid:\n  ${problems.join('\n  ')}`);
  return file as ConnectionsFile;
}
