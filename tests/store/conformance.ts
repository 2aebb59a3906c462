/**
 * One conformance suite for the store, run against every adapter (style.md: BullMQ's adapter
 * conformance tests): real Postgres in a schema of its own, and the embedded PGlite.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type Db,
  MIGRATIONS,
  migrate,
  type RuleChangeNotice,
  RuleStore,
  VersionConflict,
} from '../../src/store/index.js';

/** Subscribes (resolving once LISTEN is in place), then waits for a notice that satisfies `pred`. */
async function nextNotice(
  store: RuleStore,
  pred: (n: RuleChangeNotice) => boolean,
  ms = 5_000,
): Promise<{ notice: Promise<RuleChangeNotice> }> {
  let resolve!: (n: RuleChangeNotice) => void;
  const got = new Promise<RuleChangeNotice>((r) => {
    resolve = r;
  });
  const off = await store.onChange((n) => {
    if (pred(n)) resolve(n);
  });
  // Wrapped: an async function cannot return a bare promise without the caller awaiting it too.
  return {
    notice: Promise.race([
      got,
      new Promise<never>((_, reject) => setTimeout(() => reject(new Error('no notification arrived')), ms)),
    ]).finally(() => off()),
  };
}

async function sqlState(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    return String((e as { code?: string }).code);
  }
  return 'no error';
}

export function storeConformance(name: string, open: () => Promise<Db>): void {
  describe(`store on ${name}`, () => {
    let db: Db;
    let rules: RuleStore;

    beforeAll(async () => {
      db = await open();
      rules = new RuleStore(db);
    });
    afterAll(async () => {
      await db?.close();
    });

    it('applies every migration once, and again applies nothing', async () => {
      expect(await migrate(db)).toEqual(MIGRATIONS.map((m) => m.version));
      expect(await migrate(db)).toEqual([]);
      const r = await db.query<{ version: number }>('select version from schema_migrations order by version');
      expect(r.rows.map((x) => x.version)).toEqual(MIGRATIONS.map((m) => m.version));
    });

    it('saves versions: 1, then 2, each kept as it was', async () => {
      await rules.ensureTenant('acme');
      const v1 = await rules.save(
        'acme',
        { id: 'p1', source: 'halo', when: 'ticket.priority <= 1' },
        { actor: 'test' },
      );
      expect(v1).toMatchObject({
        tenant: 'acme',
        id: 'p1',
        version: 1,
        status: 'draft',
        runCount: 0,
        lastRunAt: null,
      });
      const v2 = await rules.save(
        'acme',
        { id: 'p1', source: 'halo', when: 'ticket.priority <= 2' },
        { actor: 'test', status: 'active' },
      );
      expect(v2).toMatchObject({ version: 2, status: 'active' });
      expect((await rules.get('acme', 'p1', 1))?.document.when).toBe('ticket.priority <= 1');
      expect((await rules.get('acme', 'p1'))?.document.when).toBe('ticket.priority <= 2');
      expect((await rules.versions('acme', 'p1')).map((v) => [v.version, v.createdBy])).toEqual([
        [1, 'test'],
        [2, 'test'],
      ]);
    });

    it('of two saves that expect the same version, exactly one is kept', async () => {
      await rules.ensureTenant('racing');
      await rules.save(
        'racing',
        { id: 'race', source: 'halo', when: 'ticket.priority == 1' },
        { actor: 'test' },
      );
      const saves = await Promise.allSettled(
        [2, 3].map((p) =>
          rules.save(
            'racing',
            { id: 'race', source: 'halo', when: `ticket.priority == ${p}` },
            { actor: 'test', expectedVersion: 1 },
          ),
        ),
      );
      const kept = saves.filter((s) => s.status === 'fulfilled');
      const refused = saves.filter((s): s is PromiseRejectedResult => s.status === 'rejected');
      expect(kept).toHaveLength(1);
      expect(refused).toHaveLength(1);
      expect(refused[0]!.reason).toBeInstanceOf(VersionConflict);
      expect(refused[0]!.reason).toMatchObject({ current: 2, expected: 1 });
      expect((await rules.versions('racing', 'race')).map((v) => v.version)).toEqual([1, 2]);
      // 0: only if the rule does not exist yet.
      await expect(
        rules.save('racing', { id: 'race', source: 'halo' }, { actor: 'test', expectedVersion: 0 }),
      ).rejects.toThrow('rule "race" is at version 2, not 0');
      expect(
        (await rules.save('racing', { id: 'fresh', source: 'halo' }, { actor: 'test', expectedVersion: 0 }))
          .version,
      ).toBe(1);
    });

    it('the database refuses to change a saved version', async () => {
      expect(
        await sqlState(db.query(`update rule_versions set document = '{"id":"p1"}' where rule_id = 'p1'`)),
      ).toBe('23514');
      expect((await rules.get('acme', 'p1', 1))?.document.when).toBe('ticket.priority <= 1');
    });

    it('the database rejects malformed rows whatever the application does', async () => {
      const bad: Array<[string, unknown[]]> = [
        ['insert into tenants (id) values ($1)', ['Bad Tenant']],
        ["insert into rules (tenant_id, id, version, status) values ('acme', 'x', 1, 'on')", []],
        ["insert into rules (tenant_id, id, version, status) values ('acme', 'UPPER', 1, 'active')", []],
        [
          "insert into api_keys (id, tenant_id, role, key_hash) values ('key12345', 'acme', 'root', repeat('a', 64))",
          [],
        ],
        [
          "insert into api_keys (id, tenant_id, role, key_hash) values ('key12345', 'acme', 'admin', 'plaintext-secret')",
          [],
        ],
        ["insert into connections (tenant_id, id, kind) values ('acme', 'c1', 'jira')", []],
        [
          "insert into runs (id, tenant_id, rule_id, rule_version, status) values ('r1', 'acme', 'p1', 1, 'done')",
          [],
        ],
        [
          "insert into audit_log (tenant_id, actor, action, entity, entity_id) values ('acme', '', 'x', 'rule', 'p1')",
          [],
        ],
        [
          "insert into events (tenant_id, id, received_on, received_at, source, type, envelope) values ('acme', 'e', current_date, now(), 'halo', 't.u', '[]')",
          [],
        ],
      ];
      for (const [sql, params] of bad) expect(await sqlState(db.query(sql, params)), sql).toBe('23514');
      // A version whose document names another rule, and a rule whose current version is missing.
      expect(
        await sqlState(
          db.query(
            `insert into rule_versions (tenant_id, rule_id, version, document) values ('acme', 'p1', 9, '{"id":"other"}')`,
          ),
        ),
      ).toBe('23514');
      expect(
        await sqlState(
          db.transaction((tx) =>
            tx.query(
              "insert into rules (tenant_id, id, version, status) values ('acme', 'ghost', 3, 'active')",
            ),
          ),
        ),
      ).toBe('23503');
      expect(await rules.get('acme', 'ghost')).toBeUndefined();
    });

    it('lists by status, and gives the active rules of every tenant', async () => {
      await rules.ensureTenant('other');
      await rules.save('acme', { id: 'a-draft', source: '*' }, { actor: 'test' });
      await rules.save('other', { id: 'p1', source: '*', status: 'active' }, { actor: 'test' });
      expect((await rules.list('acme')).map((r) => r.id)).toEqual(['a-draft', 'p1']);
      expect((await rules.list('acme', { status: 'draft' })).map((r) => r.id)).toEqual(['a-draft']);
      expect((await rules.active()).map((r) => `${r.tenant}/${r.id}@${r.version}`)).toEqual([
        'acme/p1@2',
        'other/p1@1',
      ]);
    });

    it('keeps tenants apart', async () => {
      expect((await rules.get('other', 'p1'))?.document).toEqual({ id: 'p1', source: '*', status: 'active' });
      expect(await rules.get('other', 'a-draft')).toBeUndefined();
      expect(await rules.setStatus('other', 'a-draft', 'active', { actor: 'test' })).toBe(false);
      expect(await rules.delete('other', 'a-draft', { actor: 'test' })).toBe(false);
      expect((await rules.get('acme', 'a-draft'))?.status).toBe('draft');
    });

    it('notifies every change after it commits', async () => {
      const saved = await nextNotice(rules, (n) => n.id === 'n1');
      await rules.save('acme', { id: 'n1', source: '*' }, { actor: 'test', status: 'active' });
      expect(await saved.notice).toEqual({ tenant: 'acme', id: 'n1', version: 1, status: 'active' });
      const paused = await nextNotice(rules, (n) => n.id === 'n1' && n.status === 'paused');
      expect(await rules.setStatus('acme', 'n1', 'paused', { actor: 'test' })).toBe(true);
      expect(await paused.notice).toEqual({ tenant: 'acme', id: 'n1', version: 1, status: 'paused' });
      const deleted = await nextNotice(rules, (n) => n.id === 'n1' && n.status === 'deleted');
      expect(await rules.delete('acme', 'n1', { actor: 'test' })).toBe(true);
      expect(await deleted.notice).toEqual({ tenant: 'acme', id: 'n1', version: 0, status: 'deleted' });
      expect(await rules.versions('acme', 'n1')).toEqual([]);
    });

    it('a rolled-back change is neither kept nor announced', async () => {
      const seen: RuleChangeNotice[] = [];
      const off = await rules.onChange((n) => seen.push(n));
      // The same id in another tenant that does not exist: the tenant foreign key fails at insert.
      await expect(rules.save('nosuch', { id: 'rb', source: '*' }, { actor: 'test' })).rejects.toThrow();
      await rules.save('acme', { id: 'marker', source: '*' }, { actor: 'test' });
      await new Promise((r) => setTimeout(r, 300));
      await off();
      expect(seen.map((n) => n.id)).toEqual(['marker']);
      expect(await rules.get('nosuch', 'rb')).toBeUndefined();
    });

    it('writes an audit record for every change', async () => {
      const r = await db.query<{ action: string; entity_id: string }>(
        "select action, entity_id from audit_log where tenant_id = 'acme' and entity_id = 'n1' order by id",
      );
      expect(r.rows.map((x) => x.action)).toEqual(['rule.create', 'rule.status', 'rule.delete']);
    });

    it('archives events by day, and retention drops old days', async () => {
      const parts = await db.query<{ p: string }>(
        "select sb_ensure_event_partition(d::date) as p from (values ('2026-11-19'), ('2026-11-20')) as t(d)",
      );
      expect(parts.rows.map((x) => x.p)).toEqual(['events_20261119', 'events_20261120']);
      const insert = (day: string, id: string) =>
        db.query(
          "insert into events (tenant_id, id, received_on, received_at, source, type, envelope) values ('acme', $1, $2, now(), 'halo', 'ticket.updated', $3)",
          [id, day, JSON.stringify({ id })],
        );
      await insert('2026-11-19', 'e1');
      await insert('2026-11-20', 'e2');
      await insert('2026-11-25', 'e3');
      const where = await db.query<{ id: string; part: string }>(
        'select id, tableoid::regclass::text as part from events order by id',
      );
      expect(where.rows.map((x) => [x.id, x.part.replace(/^.*\./, '')])).toEqual([
        ['e1', 'events_20261119'],
        ['e2', 'events_20261120'],
        ['e3', 'events_default'],
      ]);
      expect(await sqlState(insert('2026-11-20', 'e2'))).toBe('23505');
      const dropped = await db.query<{ n: number }>("select sb_drop_event_partitions('2026-11-20') as n");
      expect(dropped.rows[0]!.n).toBe(1);
      expect(
        (await db.query<{ id: string }>('select id from events order by id')).rows.map((x) => x.id),
      ).toEqual(['e2', 'e3']);
    });
  });
}
