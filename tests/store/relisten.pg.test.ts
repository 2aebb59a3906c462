/**
 * Postgres connections lost under a running process (a Postgres restart, a failover, a proxy
 * closing idle connections). The one that LISTENs for rule and configuration changes: the process
 * survives, the connection comes back, and what changed meanwhile reaches the ingest's index and
 * the workers' rule cache. One in the middle of a transaction: the transaction fails, the process
 * and the pool go on.
 */
import pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { LiveRules } from '../../src/ingest/live-rules.js';
import { type Db, migrate, RuleStore } from '../../src/store/index.js';
import { RuleCache } from '../../src/workers/rules.js';
import { PG_URL, testSchemaDb } from '../pg-schema.js';

let db: Db;
let store: RuleStore;
let admin: pg.Client;

beforeAll(async () => {
  db = await testSchemaDb('relisten')();
  await migrate(db);
  store = new RuleStore(db);
  await store.ensureTenant('acme');
  admin = new pg.Client({ connectionString: PG_URL });
  await admin.connect();
});

afterAll(async () => {
  await admin?.end();
  await db?.close();
});

async function eventually(what: string, ok: () => boolean | Promise<boolean>): Promise<void> {
  const until = Date.now() + 20_000;
  while (!(await ok())) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

const rule = (id: string) => ({ id, source: '*', on: 'ticket.updated' });

it('survives losing the LISTEN connection, listens again, and catches up on what it missed', async () => {
  const live = new LiveRules(store);
  const off = await live.start();
  const cache = new RuleCache(store);
  await cache.start();
  const has = (id: string) => live.documents.has(`acme\u0000${id}`);

  await store.save('acme', rule('a'), { actor: 'test', status: 'active' });
  await store.save('acme', rule('b'), { actor: 'test', status: 'active' });
  await eventually('a and b in the index', () => has('a') && has('b'));
  expect((await cache.current('acme', 'b'))?.version).toBe(1);

  // The server ends the connection that listens on this schema's channels.
  const ended = await admin.query(
    'select pg_terminate_backend(pid) from pg_stat_activity where query = $1 and pid <> pg_backend_pid()',
    [`listen ${store.channel}`],
  );
  expect(ended.rowCount).toBe(1);
  // Changes made while nobody listens: their notifications are lost.
  await store.save('acme', rule('c'), { actor: 'test', status: 'active' });
  await store.setStatus('acme', 'b', 'paused', { actor: 'test' });

  // Still running (an unhandled 'error' event used to end the process here), and caught up.
  await eventually('c in the index, b out of it', () => has('c') && !has('b'));
  await eventually(
    'b no longer active for the workers',
    async () => (await cache.current('acme', 'b')) === undefined,
  );

  // Listening again: a change from now on arrives as a notification.
  await store.save('acme', rule('d'), { actor: 'test', status: 'active' });
  await eventually('d in the index', () => has('d'));
  await cache.stop();
  await off();
});

it('fails a transaction whose connection is lost between statements, and goes on', async () => {
  const failed = await db
    .transaction(async (tx) => {
      const me = await tx.query<{ pid: number }>('select pg_backend_pid() as pid');
      await admin.query('select pg_terminate_backend($1)', [me.rows[0]!.pid]);
      // Between statements (waiting on something else), as the server ends the connection.
      await new Promise((r) => setTimeout(r, 300));
      await tx.query('select 1');
    })
    .then(
      () => undefined,
      (e: Error) => e,
    );
  expect(failed).toBeInstanceOf(Error);
  // The process is still here (an unhandled 'error' event used to end it), and the pool serves.
  for (let i = 0; i < 12; i++)
    expect((await db.query<{ x: number }>('select 1 as x')).rows).toEqual([{ x: 1 }]);
});
