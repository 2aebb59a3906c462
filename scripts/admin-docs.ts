/**
 * The per-operation part of docs/admin.md: for every operation of the admin API, its role, a curl
 * example and the same call with grpcurl, generated from ops.ts and the example inputs below
 * (tests check that every operation has an example, that each example is a valid input, and that
 * the doc holds what this prints).
 *
 *   node --import tsx scripts/admin-docs.ts        rewrites the marked section of docs/admin.md
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { OPERATIONS, type Operation } from '../src/admin/ops.js';

const P1 = {
  id: 'p1-escalated',
  name: 'P1 moved to Escalated',
  source: 'halo',
  on: 'ticket.updated',
  when: 'ticket.priority_id == 1 and changed(ticket.status_id) and ticket.status_id == 21',
  actions: [{ type: 'slack', connection: 'slack-noc', with: { text: 'P1 #{{ ticket.id }} escalated: {{ ticket.summary }}' } }],
};

const EVENT = {
  id: 'rmm-4711',
  source: 'rmm',
  type: 'device.offline',
  time: '2026-11-02T09:30:00Z',
  data: { id: 'd-9', name: 'SRV-01', status: 'offline' },
};

export const EXAMPLES: Record<string, Record<string, unknown>> = {
  ListRules: { status: 'active' },
  CreateRule: { document: P1, status: 'active' },
  ValidateRule: { document: { ...P1, when: 'ticket.priority_id == 1 and' } },
  TestRule: {
    ruleId: 'p1-escalated',
    envelope: {
      id: 'halo:test-1',
      source: 'halo',
      type: 'ticket.updated',
      data: { id: 4242, priority_id: 1, status_id: 21, summary: 'Mail down' },
      previous: { id: 4242, priority_id: 1, status_id: 1, summary: 'Mail down' },
    },
  },
  Backtest: { document: { ...P1, id: undefined }, from: '2026-11-01T00:00:00Z', to: '2026-11-08T00:00:00Z', samples: 5 },
  GetRule: { id: 'p1-escalated' },
  UpdateRule: { id: 'p1-escalated', document: { ...P1, id: undefined, when: 'ticket.priority_id <= 2 and changed(ticket.status_id) and ticket.status_id == 21' }, expectedVersion: 1 },
  DeleteRule: { id: 'p1-escalated' },
  ListRuleVersions: { id: 'p1-escalated' },
  ActivateRule: { id: 'p1-escalated' },
  PauseRule: { id: 'p1-escalated' },
  ArchiveRule: { id: 'p1-escalated' },
  TriggerRule: { id: 'p1-escalated', event: { ...EVENT, source: 'halo', type: 'ticket.updated', data: { id: 4242 } } },
  GetEvent: { id: 'halo:8e25bc7b-e07e-4102-9398-5d6647e1e79d' },
  ExplainEvent: { id: 'halo:8e25bc7b-e07e-4102-9398-5d6647e1e79d', all: true },
  ReplayEvents: { from: '2026-11-02T00:00:00Z', to: '2026-11-03T00:00:00Z', type: 'ticket.*', dryRun: true },
  ListRuns: { status: 'failed', ruleId: 'p1-escalated', limit: 20 },
  GetRun: { id: 'r-3f9a2c' },
  RetryRun: { id: 'r-3f9a2c' },
  CancelRun: { id: 'r-3f9a2c' },
  ListConnections: {},
  GetConnection: { id: 'halo-main' },
  PutConnection: {
    id: 'halo-main',
    kind: 'halo',
    name: 'Halo production',
    settings: {
      apiUrl: 'https://msp.halopsa.com/api',
      authUrl: 'https://msp.halopsa.com/auth',
      clientId: 'signalbox',
      webhookUsername: 'halo-webhook',
      selfActors: ['27'],
    },
    secret: { clientSecret: 'from-your-vault', webhookPassword: 'long-random-password' },
  },
  DeleteConnection: { id: 'halo-main' },
  CheckConnection: { id: 'halo-main' },
  ListTemplates: { category: 'alerts' },
  InstallTemplate: { id: 'device-offline-ticket', ruleId: 'offline-15m' },
  GetStats: { from: '2026-11-01T00:00:00Z' },
  GetSettings: {},
  PutSettings: { settings: { allowPrivateNetworks: false } },
  ListApiKeys: {},
  CreateApiKey: { role: 'editor', name: 'rules-ci' },
  RevokeApiKey: { id: '9f2c4e1a7b3d5c60' },
};

const json = (v: unknown) => JSON.stringify(v);

function curl(op: Operation, input: Record<string, unknown>): string {
  const rest = { ...input };
  const path = op.path.replace(/\{(\w+)\}/g, (_, p: string) => {
    const v = encodeURIComponent(String(rest[p]));
    delete rest[p];
    return v;
  });
  const auth = '-H "Authorization: Bearer $SB_KEY"';
  if (op.method === 'GET' || op.method === 'DELETE') {
    const q = new URLSearchParams(
      Object.entries(rest).map(([k, v]): [string, string] => [k, String(v)]),
    ).toString();
    const url = `$SB_ADMIN${path}${q ? `?${q}` : ''}`;
    return `curl -s${op.method === 'DELETE' ? ' -X DELETE' : ''} "${url}" ${auth}`;
  }
  return `curl -s -X ${op.method} "$SB_ADMIN${path}" ${auth} \\\n  -H 'content-type: application/json' -d '${json(rest)}'`;
}

function grpcurl(op: Operation, input: Record<string, unknown>): string {
  const d = Object.keys(input).length > 0 ? ` -d '${json(input)}'` : '';
  return `grpcurl -plaintext -H "authorization: Bearer $SB_KEY"${d} \\\n  $SB_GRPC signalbox.admin.v1.Admin/${op.name}`;
}

export function operationsSection(): string {
  const out: string[] = [];
  let tag = '';
  for (const op of OPERATIONS) {
    if (op.tag !== tag) {
      tag = op.tag;
      out.push(`### ${tag[0]!.toUpperCase()}${tag.slice(1)}`, '');
    }
    const input = EXAMPLES[op.name];
    if (!input) throw new Error(`no example for ${op.name}`);
    out.push(
      `#### ${op.name}: \`${op.method} ${op.path}\``,
      '',
      `${op.summary}. Role: **${op.role}**.`,
      '',
      '```sh',
      curl(op, input),
      grpcurl(op, input),
      '```',
      '',
    );
  }
  return out.join('\n');
}

const BEGIN = '<!-- operations:begin (generated by scripts/admin-docs.ts) -->';
const END = '<!-- operations:end -->';

export function withOperations(doc: string): string {
  const a = doc.indexOf(BEGIN);
  const b = doc.indexOf(END);
  if (a < 0 || b < a) throw new Error('docs/admin.md has no operations markers');
  return `${doc.slice(0, a + BEGIN.length)}\n\n${operationsSection()}\n${doc.slice(b)}`;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const file = new URL('../docs/admin.md', import.meta.url);
  writeFileSync(file, withOperations(readFileSync(file, 'utf8')));
  console.log('wrote docs/admin.md');
}
