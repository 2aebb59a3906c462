/**
 * The admin API suite, run on real Postgres and on the embedded default (PGlite), through both
 * front ends: every scenario runs once over HTTP JSON and once over gRPC, with a real client of
 * each, and asserts the same answers.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OPERATIONS } from '../../src/admin/index.js';
import { type AdminPlane, startAdminPlane } from '../../src/cli/admin.js';
import { RUN_QUEUE, type RunJob } from '../../src/config/runs.js';
import { type Db, migrate, RuleStore, SecretBox } from '../../src/store/index.js';
import { archiveEvent } from '../pg-schema.js';
import { AdminClient, type Answer, dropNulls, type Transport } from './client.js';

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6390';
const FIXTURES = new URL('../../examples/psa/', import.meta.url);
const fixture = (name: string) => readFileSync(new URL(name, FIXTURES), 'utf8');

export const ok = (a: Answer): Record<string, unknown> => {
  if (!a.ok) throw new Error(`expected success, got ${a.code}: ${a.message}`);
  return a.body;
};

export const err = (a: Answer): Extract<Answer, { ok: false }> => {
  if (a.ok) throw new Error(`expected an error, got ${JSON.stringify(a.body).slice(0, 300)}`);
  return a;
};

/** A valid rule document (P1 tickets, one `log` step). */
export const rule = (id: string, extra: Record<string, unknown> = {}) => ({
  id,
  source: '*',
  on: 'ticket.*',
  when: 'ticket.priority == 1',
  actions: [{ type: 'log', with: { message: 'P1 {{ ticket.id }}' } }],
  ...extra,
});

export function adminConformance(name: string, open: () => Promise<Db>): void {
  describe(`admin API (${name})`, () => {
    let db: Db;
    let plane: AdminPlane;
    let client: AdminClient;
    let redis: Redis;
    let queue: Queue<RunJob>;
    const prefix = `adm${randomBytes(4).toString('hex')}`;
    const keys: Record<string, string> = {};
    const keyIds: Record<string, string> = {};

    beforeAll(async () => {
      db = await open();
      await migrate(db);
      redis = new Redis(REDIS_URL, { maxRetriesPerRequest: null });
      plane = await startAdminPlane({ db, secrets: new SecretBox(randomBytes(32)), redis, prefix });
      client = new AdminClient(plane.http.port, plane.grpc.port);
      queue = new Queue<RunJob>(RUN_QUEUE, { connection: redis.duplicate(), prefix });
      for (const [who, tenant, role] of [
        ['admin', 'acme', 'admin'],
        ['editor', 'acme', 'editor'],
        ['viewer', 'acme', 'viewer'],
        ['other', 'globex', 'admin'],
      ] as const) {
        const made = await plane.keys.create(tenant, role, who, 'test');
        keys[who] = made.key;
        keyIds[who] = made.info.id;
      }
    });

    afterAll(async () => {
      client?.close();
      await plane?.close();
      await queue?.obliterate({ force: true }).catch(() => {});
      await queue?.close();
      redis?.disconnect();
      await db?.close();
    });

    for (const t of ['http', 'grpc'] as Transport[]) {
      /** Operations that answered successfully through this transport. */
      const succeeded = new Set<string>();
      const call = async (who: string | undefined, op: string, input: Record<string, unknown> = {}) => {
        const a = await client.call(t, who === undefined ? undefined : (keys[who] ?? who), op, input);
        if (a.ok) succeeded.add(op);
        return a;
      };
      const rid = (s: string) => `${t}-${s}`;

      describe(t, () => {
        it('refuses calls without a valid key', async () => {
          expect(err(await call(undefined, 'ListRules')).code).toBe('unauthenticated');
          expect(err(await call('sbk_nope', 'ListRules')).code).toBe('unauthenticated');
          expect(err(await call(`sbk_${'a'.repeat(12)}_${'b'.repeat(43)}`, 'ListRules')).code).toBe(
            'unauthenticated',
          );
        });

        it('rules: listed by id in cursor pages, every rule once', async () => {
          for (const n of [1, 2, 3, 4, 5])
            ok(await call('editor', 'CreateRule', { document: rule(rid(`page${n}`)) }));
          const all = (
            ok(await call('viewer', 'ListRules', { limit: 1000 })).rules as Array<{ id: string }>
          ).map((r) => r.id);
          expect(all.length).toBeGreaterThanOrEqual(5);
          expect([...all].sort()).toEqual(all);
          const paged: string[] = [];
          let cursor: string | undefined;
          for (let pages = 0; pages < 100; pages++) {
            const page = ok(await call('viewer', 'ListRules', { limit: 2, ...(cursor ? { cursor } : {}) }));
            const ids = (page.rules as Array<{ id: string }>).map((r) => r.id);
            expect(ids.length).toBeLessThanOrEqual(2);
            paged.push(...ids);
            cursor = (page.nextCursor as string | null | undefined) ?? undefined;
            if (!cursor) break;
          }
          expect(paged).toEqual(all);
        });

        it('rule lifecycle: create, get, update to a new version, status changes, versions, delete', async () => {
          const id = rid('life');
          const created = ok(
            await call('editor', 'CreateRule', { document: rule(id, { name: 'P1 tickets' }) }),
          );
          expect(created).toMatchObject({ id, version: 1, status: 'draft', name: 'P1 tickets', runCount: 0 });
          expect(err(await call('editor', 'CreateRule', { document: rule(id) })).code).toBe('already_exists');
          const v2 = ok(
            await call('editor', 'UpdateRule', { id, document: rule(id, { when: 'ticket.priority <= 2' }) }),
          );
          expect(v2).toMatchObject({ version: 2, status: 'draft' });
          expect(ok(await call('viewer', 'GetRule', { id, version: 1 })).document).toMatchObject({
            when: 'ticket.priority == 1',
          });
          expect(ok(await call('editor', 'ActivateRule', { id })).status).toBe('active');
          const listed = ok(await call('viewer', 'ListRules', { status: 'active' })).rules as Array<{
            id: string;
          }>;
          expect(listed.map((r) => r.id)).toContain(id);
          expect(ok(await call('editor', 'PauseRule', { id })).status).toBe('paused');
          expect(ok(await call('editor', 'ArchiveRule', { id })).status).toBe('archived');
          const versions = ok(await call('viewer', 'ListRuleVersions', { id })).versions as Array<{
            version: number;
            createdBy: string;
          }>;
          expect(versions.map((v) => v.version)).toEqual([1, 2]);
          expect(versions[0]!.createdBy).toBe(keyIds.editor);
          expect(ok(await call('admin', 'DeleteRule', { id }))).toEqual({ deleted: true });
          expect(err(await call('viewer', 'GetRule', { id })).code).toBe('not_found');
        });

        it('expectedVersion refuses to overwrite an edit made since the editor read the rule', async () => {
          const id = rid('concurrent');
          ok(await call('editor', 'CreateRule', { document: rule(id) }));
          // Two editors read version 1; the first saves version 2.
          const first = ok(
            await call('editor', 'UpdateRule', {
              id,
              document: rule(id, { when: 'ticket.priority <= 2' }),
              expectedVersion: 1,
            }),
          );
          expect(first.version).toBe(2);
          // The second, still holding version 1, is refused and changes nothing.
          const refused = err(
            await call('admin', 'UpdateRule', {
              id,
              document: rule(id, { when: 'ticket.priority == 3' }),
              expectedVersion: 1,
            }),
          );
          expect(refused).toMatchObject({
            code: 'failed_precondition',
            message: `rule "${id}" is at version 2, not 1: someone else saved it since`,
            details: [
              {
                field: 'expectedVersion',
                reason: 'the rule is at version 2 now; get it again and apply your change to that',
              },
            ],
          });
          const now = ok(await call('viewer', 'GetRule', { id }));
          expect(now).toMatchObject({ version: 2, document: { when: 'ticket.priority <= 2' } });
          // Against the version it read again, it saves; without expectedVersion, the last write wins.
          expect(
            ok(await call('admin', 'UpdateRule', { id, document: rule(id), expectedVersion: 2 })).version,
          ).toBe(3);
          expect(ok(await call('admin', 'UpdateRule', { id, document: rule(id) })).version).toBe(4);
          expect(
            err(await call('admin', 'UpdateRule', { id, document: rule(id), expectedVersion: 0 })).code,
          ).toBe('invalid_argument');
        });

        it('a string holding U+0000 (Postgres stores none) is refused with its field', async () => {
          const id = rid('nul');
          const bad = err(
            await call('editor', 'CreateRule', {
              document: rule(id, { actions: [{ type: 'log', with: { message: 'a\u0000b' } }] }),
            }),
          );
          expect(bad.code).toBe('invalid_argument');
          expect(bad.details[0]).toMatchObject({ field: 'document.actions[0].with.message' });
          expect(err(await call('viewer', 'GetRule', { id })).code).toBe('not_found');
        });

        // Over gRPC a Struct this deep cannot be sent at all (protobuf's nesting limit of 100
        // messages: each JSON level is two), so the case is HTTP's. The body is written by hand:
        // JSON.stringify cannot write it either.
        if (t === 'http')
          it('a document nested 20,000 deep is refused with its field, not an internal error', async () => {
            const n = 20_000;
            const document = `{"id":"${rid('deep')}","source":"*","actions":[{"type":"log","with":{"message":"m","extra":${'{"a":'.repeat(n)}"x"${'}'.repeat(n)}}}]}`;
            const res = await fetch(`http://127.0.0.1:${plane.http.port}/v1/rules`, {
              method: 'POST',
              headers: { authorization: `Bearer ${keys.editor}`, 'content-type': 'application/json' },
              body: `{"document":${document}}`,
            });
            expect(res.status).toBe(400);
            const e = (
              (await res.json()) as {
                error: { code: string; details: Array<{ code: string; field: string }> };
              }
            ).error;
            expect(e.code).toBe('invalid_argument');
            expect(e.details[0]).toMatchObject({ code: 'SB_RULE_LIMIT' });
            expect(e.details[0]!.field).toMatch(/^document\.actions\[0\]\.with\.extra/);
          });

        it('a rule that does not compile is refused with its position, and the active version stays', async () => {
          const id = rid('keep');
          ok(await call('editor', 'CreateRule', { document: rule(id), status: 'active' }));
          const bad = err(
            await call('editor', 'UpdateRule', {
              id,
              document: rule(id, { when: 'ticket.priority == 1 and (' }),
            }),
          );
          expect(bad.code).toBe('invalid_argument');
          expect(bad.details[0]).toMatchObject({
            field: 'document.when',
            code: 'SB_RULE_PARSE',
            position: { line: 1, column: 27 },
          });
          const cur = ok(await call('viewer', 'GetRule', { id }));
          expect(cur).toMatchObject({ version: 1, status: 'active' });
          const badAction = err(
            await call('editor', 'UpdateRule', {
              id,
              document: rule(id, { actions: [{ type: 'webhook', with: { url: '{{ ticket.id ' } }] }),
            }),
          );
          expect(badAction.details[0]!.field).toMatch(/^document\.actions\[0\]\.with\.url/);
          const fine = ok(await call('viewer', 'GetRule', { id }));
          expect([fine.version, fine.problem ?? null]).toEqual([1, null]);
          // A version stored before a check was added (here: straight into the store) says why.
          const stale = rid('stale');
          await new RuleStore(db).save(
            'acme',
            { ...rule(stale), actions: [{ type: 'webhook', with: { url: 'ftp://files.example.com/x' } }] },
            { actor: 'test', status: 'draft' },
          );
          expect(ok(await call('viewer', 'GetRule', { id: stale })).problem).toBe(
            'actions[0].with.url: must be an http or https URL, not ftp',
          );
          expect(err(await call('editor', 'ActivateRule', { id: stale })).code).toBe('invalid_argument');
          // ListRules says it of each rule, so a tenant finds them all in one call
          const listed = ok(await call('viewer', 'ListRules', {})).rules as Array<Record<string, unknown>>;
          expect(listed.find((r) => r.id === stale)?.problem).toBe(
            'actions[0].with.url: must be an http or https URL, not ftp',
          );
          expect(listed.find((r) => r.id === id)?.problem ?? null).toBeNull();
        });

        it('validate answers errors with field and position without saving', async () => {
          const good = ok(await call('viewer', 'ValidateRule', { document: rule(rid('v')) }));
          expect(good).toMatchObject({ valid: true });
          const bad = ok(
            await call('viewer', 'ValidateRule', { document: rule(rid('v'), { when: 'nosuch(x)' }) }),
          );
          expect(bad.valid ?? false).toBe(false);
          expect((bad.errors as Array<Record<string, unknown>>)[0]).toMatchObject({
            field: 'document.when',
            code: 'SB_RULE_CHECK',
          });
          expect(err(await call('viewer', 'GetRule', { id: rid('v') })).code).toBe('not_found');
        });

        it('a viewer cannot write; an editor cannot do what only admins do', async () => {
          const id = rid('roles');
          expect(err(await call('viewer', 'CreateRule', { document: rule(id) })).code).toBe(
            'permission_denied',
          );
          ok(await call('editor', 'CreateRule', { document: rule(id) }));
          for (const [who, op, input] of [
            ['viewer', 'UpdateRule', { id, document: rule(id) }],
            ['viewer', 'ActivateRule', { id }],
            ['viewer', 'PutConnection', { id: 'x', kind: 'halo' }],
            ['viewer', 'InstallTemplate', { id: 'ticket-acknowledge' }],
            ['editor', 'DeleteRule', { id }],
            ['editor', 'PutConnection', { id: 'x', kind: 'halo' }],
            ['editor', 'CreateApiKey', { role: 'admin' }],
            ['editor', 'ListApiKeys', {}],
            ['editor', 'PutSettings', { settings: {} }],
          ] as const) {
            expect(err(await call(who, op, input as Record<string, unknown>)).code, `${who} ${op}`).toBe(
              'permission_denied',
            );
          }
          expect(ok(await call('viewer', 'GetRule', { id })).version).toBe(1);
        });

        it('malformed requests get 400 with a field-level reason and change nothing', async () => {
          const before = ok(await call('viewer', 'ListRules'));
          const cases: Array<[string, Record<string, unknown>, string]> = [
            ['CreateRule', {}, 'document'],
            ['CreateRule', { document: rule(rid('m')), status: 'sleeping' }, 'status'],
            ['CreateRule', { document: { ...rule(rid('m')), source: 7 } }, 'document.source'],
            ['CreateRule', { document: { ...rule(rid('m')), tenant: 'globex' } }, 'document.tenant'],
            ['ListRuns', { limit: 100000 }, 'limit'],
            ['ListRuns', { from: 'yesterday' }, 'from'],
            ['ListRuns', { cursor: 'garbage' }, 'cursor'],
            ['ListRules', { cursor: 'garbage' }, 'cursor'],
            ['ListRules', { limit: 5000 }, 'limit'],
            ['PutConnection', { id: 'Bad Id', kind: 'halo' }, 'id'],
            ['PutConnection', { id: 'ok', kind: 'fax' }, 'kind'],
            ['TestRule', { document: rule(rid('m')) }, 'envelope'],
            ['TestRule', { document: rule(rid('m')), envelope: { id: 'e' } }, 'envelope'],
          ];
          if (t === 'http') cases.push(['CreateRule', { document: rule(rid('m')), colour: 'red' }, 'colour']);
          for (const [op, input, field] of cases) {
            const e = err(await call('admin', op, input));
            expect([e.code, e.details[0]?.field], `${op} ${JSON.stringify(input)}`).toEqual([
              'invalid_argument',
              field,
            ]);
            expect(e.details[0]!.reason, op).toBeTruthy();
          }
          expect(ok(await call('viewer', 'ListRules'))).toEqual(before);
          expect(ok(await call('viewer', 'ListConnections')).connections ?? []).toEqual([]);
        });

        it('connections: secrets are stored encrypted and never returned or logged', async () => {
          const secret = `s3cr3t-${randomBytes(8).toString('hex')}`;
          const id = rid('halo');
          const put = ok(
            await call('admin', 'PutConnection', {
              id,
              kind: 'halo',
              name: 'Halo',
              settings: { apiUrl: 'https://halo.example.com/api', clientId: 'cid' },
              secret: { clientSecret: secret },
            }),
          );
          expect(put).toMatchObject({ id, kind: 'halo', hasSecret: true, settings: { clientId: 'cid' } });
          const renamed = ok(
            await call('admin', 'PutConnection', { id, kind: 'halo', name: 'Halo 2', settings: {} }),
          );
          expect(renamed.hasSecret).toBe(true);
          const answers = [
            put,
            renamed,
            ok(await call('viewer', 'GetConnection', { id })),
            ok(await call('viewer', 'ListConnections')),
          ];
          for (const a of answers) expect(JSON.stringify(a)).not.toContain(secret);
          const audit = await db.query<{ details: unknown }>('select details from audit_log');
          expect(JSON.stringify(audit.rows)).not.toContain(secret);
          const raw = await db.query<{ s: unknown }>(
            "select encode(secret_ciphertext, 'escape') as s from connections where id = $1",
            [id],
          );
          expect(String(raw.rows[0]!.s)).not.toContain(secret);
          // A PSA connection's check calls its API: here an unreachable example host.
          const check = await call('editor', 'CheckConnection', { id });
          expect(ok(check).ok ?? false).toBe(false);
          expect(JSON.stringify(check)).not.toContain(secret);
          expect(ok(await call('admin', 'DeleteConnection', { id }))).toEqual({ deleted: true });
          expect(err(await call('viewer', 'GetConnection', { id })).code).toBe('not_found');
        });

        it('connections: a setting or secret its kind does not have, or of the wrong type, is refused by field', async () => {
          const id = rid('typo');
          const refused = err(
            await call('admin', 'PutConnection', {
              id,
              kind: 'halo',
              settings: {
                apiURL: 'https://halo.example.com/api',
                authUrl: 'halo.example.com/auth',
                selfActors: 'agent-1',
              },
              secret: { clientsecret: 'x' },
            }),
          );
          expect(refused.code).toBe('invalid_argument');
          expect(refused.details).toEqual([
            {
              field: 'settings.apiURL',
              reason:
                'not a setting of a halo connection (its settings: apiUrl, authUrl, clientId, tenant, scope, webhookUsername, selfActors, rateLimit)',
            },
            { field: 'settings.authUrl', reason: 'must be an http(s) URL without credentials' },
            { field: 'settings.selfActors', reason: 'must be a list of non-empty strings' },
            {
              field: 'secret.clientsecret',
              reason:
                'not a secret of a halo connection (its secrets: clientSecret, webhookPassword, webhookUrlSecret)',
            },
          ]);
          expect(err(await call('viewer', 'GetConnection', { id })).code).toBe('not_found');
          for (const [kind, settings, field] of [
            ['smtp', { host: 'mail.example.com', port: '587' }, 'settings.port'],
            ['connectwise', { keyOrigin: 'https://cw.example.com/keys' }, 'settings.keyOrigin'],
            ['autotask', { rateLimit: { max: 100 } }, 'settings.rateLimit'],
            ['slack', { url: 'https://hooks.slack.com/x' }, 'settings.url'],
          ] as const) {
            const e = err(await call('admin', 'PutConnection', { id, kind, settings }));
            expect(
              e.details.map((d) => d.field),
              kind,
            ).toEqual([field]);
          }
          // generic connections hold anything; the others, what they document.
          ok(await call('admin', 'PutConnection', { id, kind: 'generic', settings: { anything: [1] } }));
          ok(
            await call('admin', 'PutConnection', {
              id,
              kind: 'smtp',
              settings: { host: 'mail.example.com', port: 587, secure: false, from: 'noc@msp.example' },
              secret: { user: 'u', pass: 'p' },
            }),
          );
          ok(await call('admin', 'DeleteConnection', { id }));
        });

        it("tenant B's key sees nothing of tenant A, even by guessing ids", async () => {
          const id = rid('secret-rule');
          ok(await call('editor', 'CreateRule', { document: rule(id), status: 'active' }));
          ok(await call('admin', 'PutConnection', { id: rid('cw'), kind: 'connectwise', settings: {} }));
          const runId = `${rid('run')}-a`;
          await db.query(
            `insert into runs (id, tenant_id, rule_id, rule_version, status, created_at) values ($1, 'acme', $2, 1, 'delayed', now())`,
            [runId, id],
          );
          for (const [op, input] of [
            ['GetRule', { id }],
            ['ListRuleVersions', { id }],
            ['UpdateRule', { id, document: rule(id) }],
            ['ActivateRule', { id }],
            ['PauseRule', { id }],
            ['DeleteRule', { id }],
            ['TriggerRule', { id }],
            [
              'TestRule',
              { ruleId: id, envelope: { id: 'e', source: 'halo', type: 'ticket.updated', data: {} } },
            ],
            ['GetConnection', { id: rid('cw') }],
            ['DeleteConnection', { id: rid('cw') }],
            ['CheckConnection', { id: rid('cw') }],
            ['GetRun', { id: runId }],
            ['CancelRun', { id: runId }],
            ['RetryRun', { id: runId }],
            ['RevokeApiKey', { id: keyIds.viewer }],
          ] as const) {
            expect(err(await call('other', op, input as Record<string, unknown>)).code, op).toBe('not_found');
          }
          const lists = [
            ok(await call('other', 'ListRules')).rules,
            ok(await call('other', 'ListConnections')).connections,
            ok(await call('other', 'ListRuns')).runs,
            ok(await call('other', 'ListRuns', { ruleId: id })).runs,
          ];
          for (const l of lists) expect(l ?? []).toEqual([]);
          const keysB = ok(await call('other', 'ListApiKeys')).keys as Array<{ id: string }>;
          expect(keysB.map((k) => k.id)).toEqual([keyIds.other]);
          expect((ok(await call('other', 'GetStats')).rules as unknown[]) ?? []).toEqual([]);
          // Tenant A still has all of it.
          expect(ok(await call('viewer', 'GetRule', { id })).status).toBe('active');
          expect(ok(await call('viewer', 'GetRun', { id: runId })).status).toBe('delayed');
          expect(ok(await call('viewer', 'GetConnection', { id: rid('cw') })).kind).toBe('connectwise');
          ok(await call('admin', 'DeleteConnection', { id: rid('cw') }));
        });

        it('the test call on each PSA fixture returns the envelope, the trace and the rendered actions', async () => {
          const doc = {
            id: 'psa-test',
            source: '*',
            on: 'ticket.*',
            when: 'exists(ticket.id)',
            actions: [{ type: 'log', with: { message: 'ticket {{ ticket.id }} from {{ event.source }}' } }],
          };
          const expected: Record<string, { id: RegExp; type: string; ticket: unknown }> = {
            'connectwise.ticket.created.json': { id: /^connectwise:/, type: 'ticket.created', ticket: 48213 },
            'connectwise.ticket.updated.json': { id: /^connectwise:/, type: 'ticket.updated', ticket: 48213 },
            'autotask.ticket.created.json': { id: /^autotask:/, type: 'ticket.created', ticket: 351181 },
            'autotask.ticket.updated.json': { id: /^autotask:/, type: 'ticket.updated', ticket: 351181 },
            'halo.ticket.created.json': { id: /^halo:/, type: 'ticket.created', ticket: 4242 },
            'halo.ticket.updated.json': { id: /^halo:/, type: 'ticket.updated', ticket: 4242 },
          };
          for (const [file, want] of Object.entries(expected)) {
            const source = file.split('.')[0]!;
            const out = ok(
              await call('viewer', 'TestRule', { document: doc, raw: { source, body: fixture(file) } }),
            );
            const [r] = out.results as Array<Record<string, any>>;
            expect(r!.envelope.id, file).toMatch(want.id);
            expect(
              [r!.envelope.type, r!.envelope.tenant, r!.envelope.source, r!.envelope.data.id],
              file,
            ).toEqual([want.type, 'acme', source, want.ticket]);
            expect(r!.matched, file).toBe(true);
            expect(r!.explanation.gates.on.ok, file).toBe(true);
            expect(r!.explanation.condition.text, file).toBe('exists(ticket.id)');
            expect(r!.actions[0].params, file).toEqual({ message: `ticket ${want.ticket} from ${source}` });
          }
          // A rule that does not match says which gate or sub-condition failed.
          const miss = ok(
            await call('viewer', 'TestRule', {
              document: { ...doc, when: 'ticket.priority == 99' },
              raw: { source: 'halo', body: fixture('halo.ticket.created.json') },
            }),
          );
          const [m] = miss.results as Array<Record<string, any>>;
          expect(m!.matched ?? false).toBe(false);
          expect(m!.explanation.condition.value ?? false).toBe(false);
          expect(
            err(await call('viewer', 'TestRule', { document: doc, raw: { source: 'halo', body: '{' } })).code,
          ).toBe('invalid_argument');
        });

        it('templates: each matches its own sample; installing one saves a draft', async () => {
          const list = ok(await call('viewer', 'ListTemplates')).templates as Array<Record<string, any>>;
          expect(list.length).toBeGreaterThanOrEqual(12);
          for (const tpl of list) {
            const out = ok(await call('viewer', 'TestRule', { document: tpl.rule, envelope: tpl.sample }));
            const [r] = out.results as Array<Record<string, any>>;
            expect(r!.matched, tpl.id).toBe(true);
            for (const a of r!.actions) expect(a.error ?? null, `${tpl.id} step ${a.index}`).toBeNull();
          }
          const ruleId = rid('tpl-ack');
          const installed = ok(await call('editor', 'InstallTemplate', { id: 'ticket-acknowledge', ruleId }));
          expect(installed).toMatchObject({ id: ruleId, status: 'draft', version: 1 });
          expect(
            err(await call('editor', 'InstallTemplate', { id: 'ticket-acknowledge', ruleId })).code,
          ).toBe('already_exists');
          expect(err(await call('editor', 'InstallTemplate', { id: 'no-such-template' })).code).toBe(
            'not_found',
          );
          const security = ok(await call('viewer', 'ListTemplates', { category: 'security' }))
            .templates as unknown[];
          expect(security.length).toBe(1);
        });

        it('runs: list with filters and cursor pages, get with steps, stats', async () => {
          const ruleId = rid('runs');
          const base = Date.parse('2026-10-01T00:00:00Z');
          for (let n = 0; n < 7; n++) {
            const id = `${ruleId}-${n}`;
            await db.query(
              `insert into runs (id, tenant_id, rule_id, rule_version, event_id, status, created_at, started_at, finished_at)
               values ($1, 'acme', $2, 1, $3, $4, $5, $5, $5)`,
              [
                id,
                ruleId,
                `ev-${n}`,
                n % 3 === 0 ? 'failed' : 'completed',
                new Date(base + n * 60_000).toISOString(),
              ],
            );
            await db.query(
              `insert into steps (run_id, idx, type, status, attempts, output) values ($1, 0, 'log', 'completed', 1, $2)`,
              [id, JSON.stringify({ n })],
            );
          }
          const page1 = ok(await call('viewer', 'ListRuns', { ruleId, limit: 3 }));
          const runs1 = page1.runs as Array<{ id: string }>;
          expect(runs1.map((r) => r.id)).toEqual([`${ruleId}-6`, `${ruleId}-5`, `${ruleId}-4`]);
          const page2 = ok(await call('viewer', 'ListRuns', { ruleId, limit: 3, cursor: page1.nextCursor }));
          expect((page2.runs as Array<{ id: string }>).map((r) => r.id)).toEqual([
            `${ruleId}-3`,
            `${ruleId}-2`,
            `${ruleId}-1`,
          ]);
          const page3 = ok(await call('viewer', 'ListRuns', { ruleId, limit: 3, cursor: page2.nextCursor }));
          expect((page3.runs as unknown[]).length).toBe(1);
          expect(page3.nextCursor ?? null).toBeNull();
          const failed = ok(await call('viewer', 'ListRuns', { ruleId, status: 'failed' })).runs as Array<{
            id: string;
          }>;
          expect(failed.map((r) => r.id)).toEqual([`${ruleId}-6`, `${ruleId}-3`, `${ruleId}-0`]);
          const windowed = ok(
            await call('viewer', 'ListRuns', {
              ruleId,
              from: '2026-10-01T00:01:00Z',
              to: '2026-10-01T00:03:00Z',
            }),
          ).runs as Array<{ id: string }>;
          expect(windowed.map((r) => r.id)).toEqual([`${ruleId}-2`, `${ruleId}-1`]);
          const run = ok(await call('viewer', 'GetRun', { id: `${ruleId}-5` }));
          expect(run).toMatchObject({ ruleId, status: 'completed', eventId: 'ev-5' });
          expect(run.steps).toEqual([expect.objectContaining({ index: 0, type: 'log', output: { n: 5 } })]);
          const stats = ok(
            await call('viewer', 'GetStats', { from: '2026-09-30T00:00:00Z', to: '2026-10-02T00:00:00Z' }),
          );
          expect((stats.rules as Array<Record<string, unknown>>).find((r) => r.ruleId === ruleId)).toEqual({
            ruleId,
            runs: 7,
            byStatus: { failed: 3, completed: 4 },
          });
        });

        it('runs: cancel a waiting run; retry a failed run from its failed step; trigger a rule', async () => {
          const ruleId = rid('ops');
          ok(await call('editor', 'CreateRule', { document: rule(ruleId), status: 'active' }));
          const ev = {
            id: `${ruleId}-ev`,
            tenant: 'acme',
            source: 'halo',
            type: 'ticket.updated',
            data: { id: 1 },
          };
          // A run waiting in a delay: its job is in BullMQ's delayed set.
          const waiting = `${ruleId}-waiting`;
          await queue.add('run', { tenant: 'acme', ruleId, event: ev }, { jobId: waiting, delay: 3_600_000 });
          await db.query(
            `insert into runs (id, tenant_id, rule_id, rule_version, status) values ($1, 'acme', $2, 1, 'delayed')`,
            [waiting, ruleId],
          );
          expect(ok(await call('editor', 'CancelRun', { id: waiting }))).toMatchObject({
            status: 'cancelled',
          });
          expect(await queue.getJob(waiting)).toBeUndefined();
          expect(ok(await call('viewer', 'GetRun', { id: waiting })).status).toBe('cancelled');
          expect(err(await call('editor', 'CancelRun', { id: waiting })).code).toBe('failed_precondition');
          // A run that failed at step 1, with its job (and state) still in Redis.
          const failed = `${ruleId}-failed`;
          const state = {
            id: failed,
            version: 1,
            step: 1,
            attempt: 0,
            custom: { owner: 'noc' },
            outputs: { first: { ok: true } },
            record: { id: failed, status: 'failed', steps: [] },
          };
          await queue.add('run', { tenant: 'acme', ruleId, event: ev, state } as RunJob, {
            jobId: failed,
            delay: 3_600_000,
          });
          await db.query(
            `insert into runs (id, tenant_id, rule_id, rule_version, status) values ($1, 'acme', $2, 1, 'failed')`,
            [failed, ruleId],
          );
          await db.query(
            `insert into steps (run_id, idx, type, status, attempts) values ($1, 0, 'log', 'completed', 1), ($1, 1, 'webhook', 'failed', 3)`,
            [failed],
          );
          const retried = ok(await call('editor', 'RetryRun', { id: failed }));
          expect(retried).toMatchObject({ runId: failed, fromStep: 1 });
          const job = await queue.getJob(String(retried.job));
          const data = job!.data as RunJob & { state: typeof state };
          expect([
            data.state.step,
            data.state.attempt,
            data.state.custom,
            data.state.outputs,
            data.version,
          ]).toEqual([1, 0, { owner: 'noc' }, { first: { ok: true } }, 1]);
          expect(ok(await call('viewer', 'GetRun', { id: failed })).status).toBe('pending');
          expect(err(await call('editor', 'RetryRun', { id: waiting })).code).toBe('failed_precondition');
          // Trigger: a run job of the active version, with the given event.
          const trig = ok(
            await call('editor', 'TriggerRule', { id: ruleId, event: { ...ev, id: `${ruleId}-manual` } }),
          );
          const tj = await queue.getJob(String(trig.runId));
          expect([tj!.data.ruleId, tj!.data.version, tj!.data.event.id, tj!.data.event.tenant]).toEqual([
            ruleId,
            1,
            `${ruleId}-manual`,
            'acme',
          ]);
          ok(await call('editor', 'PauseRule', { id: ruleId }));
          expect(err(await call('editor', 'TriggerRule', { id: ruleId })).code).toBe('failed_precondition');
          // Every change is in the audit log, with who made it.
          const audited = await db.query<{ action: string; entity_id: string; actor: string }>(
            `select action, entity_id, actor from audit_log where tenant_id = 'acme' and entity_id = any($1) order by id`,
            [[waiting, failed, ruleId]],
          );
          expect(audited.rows.map((r) => [r.action, r.entity_id, r.actor])).toEqual([
            ['rule.create', ruleId, keyIds.editor],
            ['run.cancel', waiting, keyIds.editor],
            ['run.retry', failed, keyIds.editor],
            ['rule.trigger', ruleId, keyIds.editor],
            ['rule.status', ruleId, keyIds.editor],
          ]);
        });

        it('events: get, explain, replay (dry run and live) and backtest over the archive', async () => {
          const ruleId = rid('p1');
          ok(await call('editor', 'CreateRule', { document: rule(ruleId), status: 'active' }));
          const day1 = '2026-09-10';
          const day2 = '2026-09-11';
          const evs = [
            [rid('ev1'), day1, 'ticket.updated', { id: 1, priority: 1 }],
            [rid('ev2'), day1, 'ticket.updated', { id: 2, priority: 3 }],
            [rid('ev3'), day2, 'ticket.created', { id: 3, priority: 1 }],
            [rid('ev4'), day2, 'device.offline', { id: 'd', priority: 1 }],
          ] as const;
          for (const [id, day, type, data] of evs) {
            const at = `${day}T${t === 'http' ? '10' : '11'}:00:00Z`;
            const envelope = {
              id,
              tenant: 'acme',
              source: 'halo',
              type,
              time: at,
              data,
              previous: null,
              receivedAt: at,
            };
            await archiveEvent(db, envelope);
          }
          const got = ok(await call('viewer', 'GetEvent', { id: rid('ev1') }));
          expect(got.envelope).toMatchObject({
            id: rid('ev1'),
            type: 'ticket.updated',
            data: { priority: 1 },
          });
          expect(err(await call('other', 'GetEvent', { id: rid('ev1') })).code).toBe('not_found');
          const ex = ok(await call('viewer', 'ExplainEvent', { id: rid('ev2'), ruleId }));
          const [why] = ex.rules as Array<Record<string, any>>;
          expect([why!.ruleId, why!.matched ?? false]).toEqual([ruleId, false]);
          expect(why!.explanation.condition).toMatchObject({
            text: 'ticket.priority == 1',
            left: 3,
            right: 1,
          });
          const window = { from: `${day1}T00:00:00Z`, to: `${day2}T23:59:59Z`, ruleId };
          const dry = ok(await call('editor', 'ReplayEvents', window));
          const mine = (dry.results as Array<Record<string, any>>).filter((r) =>
            String(r.eventId).startsWith(t),
          );
          expect(mine.map((r) => [r.eventId, r.rules ?? []])).toEqual([
            [rid('ev1'), [ruleId]],
            [rid('ev2'), []],
            [rid('ev3'), [ruleId]],
            [rid('ev4'), []],
          ]);
          expect(dry.runs ?? 0).toBe(0);
          const live = ok(await call('editor', 'ReplayEvents', { ids: [rid('ev1')], ruleId, dryRun: false }));
          const runIds = (live.results as Array<{ runs: string[] }>)[0]!.runs;
          const job = await queue.getJob(runIds[0]!);
          expect([job!.data.kind, job!.data.ruleId, job!.data.version, job!.data.event.id]).toEqual([
            'replay',
            ruleId,
            1,
            rid('ev1'),
          ]);
          expect(err(await call('editor', 'ReplayEvents', { source: 'halo' })).details[0]!.field).toBe(
            'from',
          );
          const bt = ok(
            await call('viewer', 'Backtest', {
              document: { source: 'halo', on: 'ticket.*', when: 'ticket.priority == 1' },
              from: `${day1}T00:00:00Z`,
              to: `${day2}T23:59:59Z`,
            }),
          );
          const mineBt = bt.days as Array<{
            day: string;
            events: number;
            considered: number;
            matched: number;
          }>;
          // Both transports' events are in the window by now (each adds 4): count at least ours.
          expect(bt.matched as number).toBeGreaterThanOrEqual(2);
          expect(mineBt.map((d) => d.day)).toEqual([day1, day2]);
          expect(mineBt[1]!.considered).toBeLessThan(mineBt[1]!.events);
          expect((bt.samples as Array<{ id: string }>).map((s) => s.id)).toContain(rid('ev3'));
          // samples: 0 means counts only, through either front end (gRPC: an optional field).
          const counts = ok(
            await call('viewer', 'Backtest', {
              document: { source: 'halo', on: 'ticket.*' },
              from: `${day1}T00:00:00Z`,
              to: `${day2}T23:59:59Z`,
              samples: 0,
            }),
          );
          expect([(counts.matched as number) > 0, counts.samples ?? []]).toEqual([true, []]);
          const none = ok(
            await call('other', 'Backtest', {
              document: { source: '*', on: '*' },
              from: `${day1}T00:00:00Z`,
            }),
          );
          expect(none.events ?? 0).toBe(0);
          // A window that ends before it starts matches nothing: it is refused, not answered empty.
          const inverted = { from: `${day2}T00:00:00Z`, to: `${day1}T00:00:00Z` };
          for (const [op, input] of [
            ['Backtest', { document: { source: '*' }, ...inverted }],
            ['ReplayEvents', inverted],
            ['ListRuns', inverted],
            ['GetStats', inverted],
          ] as const) {
            const e = err(await call('editor', op, input));
            expect([op, e.code, e.details[0]!.field]).toEqual([op, 'invalid_argument', 'to']);
          }
          // A future from, to defaulting to now: the message says where to came from.
          const future = err(
            await call('viewer', 'Backtest', { document: { source: '*' }, from: '2999-01-01T00:00:00Z' }),
          );
          expect([future.details[0]!.field, future.message]).toEqual([
            'from',
            expect.stringMatching(/^from: must be before to, which defaults to \d{4}-/),
          ]);
        });

        it('API keys: made by admins, shown once, revocable; settings', async () => {
          const made = ok(await call('admin', 'CreateApiKey', { role: 'viewer', name: rid('ci') }));
          const key = String(made.key);
          expect(key).toMatch(/^sbk_/);
          expect(ok(await call(key, 'ListRules')).rules).toBeDefined();
          const listed = ok(await call('admin', 'ListApiKeys'));
          expect(JSON.stringify(listed)).not.toContain(key);
          expect((listed.keys as Array<{ id: string }>).map((k) => k.id)).toContain(made.id);
          expect(ok(await call('admin', 'RevokeApiKey', { id: made.id }))).toEqual({ revoked: true });
          expect(err(await call(key, 'ListRules')).code).toBe('unauthenticated');
          ok(await call('admin', 'PutSettings', { settings: { allowPrivateNetworks: true } }));
          const settingsAudit = await db.query<{ details: unknown; actor: string }>(
            `select details, actor from audit_log where tenant_id = 'acme' and action = 'tenant.settings' order by id desc limit 1`,
          );
          expect(settingsAudit.rows[0]).toEqual({
            details: { allowPrivateNetworks: true },
            actor: keyIds.admin,
          });
          expect(ok(await call('viewer', 'GetSettings')).settings).toEqual({ allowPrivateNetworks: true });
          expect(
            err(await call('admin', 'PutSettings', { settings: { allowPrivateNetworks: 'yes' } })).code,
          ).toBe('invalid_argument');
          ok(await call('admin', 'PutSettings', { settings: {} }));
        });

        it('every operation of the API was exercised successfully above', () => {
          expect(OPERATIONS.map((o) => o.name).filter((n) => !succeeded.has(n))).toEqual([]);
        });
      });
    }

    it('both front ends answer the same', async () => {
      const id = 'same-answers';
      ok(await client.call('http', keys.editor, 'CreateRule', { document: rule(id), status: 'active' }));
      for (const [op, input] of [
        ['GetRule', { id }],
        ['ListRules', {}],
        ['ListTemplates', {}],
        ['ValidateRule', { document: rule(id, { when: 'a ==' }) }],
        [
          'TestRule',
          {
            ruleId: id,
            envelope: { id: 'e', source: 'halo', type: 'ticket.updated', data: { priority: 1 } },
          },
        ],
        ['ListRuns', { limit: 5 }],
        ['GetRule', { id: 'does-not-exist' }],
      ] as const) {
        const a = await client.call('http', keys.viewer, op, input as Record<string, unknown>);
        const b = await client.call('grpc', keys.viewer, op, input as Record<string, unknown>);
        if (a.ok && b.ok) expect(dropNulls(b.body), op).toEqual(dropNulls(a.body));
        else
          expect([b.ok, !b.ok && b.code, !b.ok && b.message], op).toEqual([
            a.ok,
            !a.ok && a.code,
            !a.ok && a.message,
          ]);
      }
    });
  });
}
