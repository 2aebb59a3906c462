/**
 * Live rules: the ingest's index is built from the rule store at start and kept current through
 * the store's notifications (real Postgres): a rule saved, paused or changed elsewhere takes effect
 * in the running process, swapped in whole.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { LiveRules } from '../../src/ingest/live-rules.js';
import { type Db, migrate, openPostgres, RuleStore } from '../../src/store/index.js';

const url = process.env.DATABASE_URL ?? 'postgres://signalbox:signalbox@127.0.0.1:5433/signalbox';
const schema = `sb_live_${process.pid}_${Date.now().toString(36)}`;
let db: Db;
let store: RuleStore;
let live: LiveRules;
let off: () => Promise<void>;
const told: string[] = [];

const event = (status: string) => ({
  id: `e-${status}`,
  tenant: 'acme',
  source: 'halo',
  type: 'ticket.updated',
  data: { status },
});

async function eventually(check: () => boolean, ms = 5_000): Promise<void> {
  const until = Date.now() + ms;
  while (!check()) {
    if (Date.now() > until) throw new Error('the change did not reach the index');
    await new Promise((r) => setTimeout(r, 20));
  }
}

beforeAll(async () => {
  db = await openPostgres({ url, schema });
  await migrate(db);
  store = new RuleStore(db);
  await store.ensureTenant('acme');
  await store.save(
    'acme',
    { id: 'at-start', source: '*', when: 'ticket.status == "New"' },
    { actor: 'test', status: 'active' },
  );
  await store.save('acme', { id: 'drafted', source: '*' }, { actor: 'test', status: 'draft' });
  // Stored before a check was added (the store takes what the admin validated): it no longer compiles.
  await store.save(
    'acme',
    { id: 'stale', source: '*', actions: [{ type: 'webhook', with: { url: 'ftp://files.example.com/x' } }] },
    { actor: 'test', status: 'active' },
  );
  live = new LiveRules(store);
  live.onBroken = (tenant, id, why) => told.push(`${tenant}/${id}: ${why}`);
  off = await live.start();
});

afterAll(async () => {
  await off?.();
  await db.exec(`drop schema ${schema} cascade`);
  await db.close();
});

it('loads the active rules at start', () => {
  expect(live.loaded).toBe(true);
  expect(live.engine.match(event('New'))).toEqual(['at-start']);
});

it('tells of an active rule that does not compile once, skips it, and forgets it once fixed', async () => {
  expect(told).toEqual(['acme/stale: actions[0].with.url: must be an http or https URL, not ftp']);
  expect([...live.broken.keys()]).toEqual(['acme/stale']);
  expect(live.engine.match({ ...event('x'), id: 'e-stale' })).toEqual([]);
  const other = new RuleStore(db);
  await other.save(
    'acme',
    { id: 'stale', source: '*', when: 'ticket.status == "Fixed"' },
    { actor: 'test', status: 'active' },
  );
  await eventually(() => live.engine.match(event('Fixed')).includes('stale'));
  expect(live.broken.size).toBe(0);
  expect(told).toHaveLength(1);
  await other.delete('acme', 'stale', { actor: 'test' });
  await eventually(() => !live.engine.match(event('Fixed')).includes('stale'));
});

it('takes saves, status changes, new versions and deletes from other processes', async () => {
  // Another process (here: another handle on the same database) changes the rules.
  const other = await openPostgres({ url, schema });
  const admin = new RuleStore(other);
  try {
    await admin.save(
      'acme',
      { id: 'escalated', source: 'halo', when: 'ticket.status == "Escalated"' },
      { actor: 'admin', status: 'active' },
    );
    await eventually(() => live.engine.match(event('Escalated')).includes('escalated'));

    await admin.setStatus('acme', 'at-start', 'paused', { actor: 'admin' });
    await eventually(() => live.engine.match(event('New')).length === 0);

    await admin.save(
      'acme',
      { id: 'escalated', source: 'halo', when: 'ticket.status == "Closed"' },
      { actor: 'admin' },
    );
    await eventually(() => live.engine.match(event('Closed')).includes('escalated'));
    expect(live.engine.match(event('Escalated'))).toEqual([]);

    await admin.setStatus('acme', 'drafted', 'active', { actor: 'admin' });
    await eventually(() => live.engine.match(event('Anything')).includes('drafted'));

    await admin.delete('acme', 'escalated', { actor: 'admin' });
    await eventually(() => !live.engine.match(event('Closed')).includes('escalated'));
    expect(live.engine.size).toBe(1);
  } finally {
    await other.close();
  }
});
