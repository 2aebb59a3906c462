/** The Postgres that deploy/local/up.sh provides (or DATABASE_URL names) is reachable. */
import pg from 'pg';
import { afterAll, expect, it } from 'vitest';

const url = process.env.DATABASE_URL;
const client = new pg.Client({
  connectionString: url ?? 'postgres://signalbox:signalbox@127.0.0.1:5433/signalbox',
});
afterAll(() => client.end());

it('DATABASE_URL is set by the test command', () => {
  expect(url, 'run the tests with `npm test`, which brings up deploy/local').toMatch(/^postgres(ql)?:\/\//);
});

it('answers queries in a schema of its own', async () => {
  await client.connect();
  const schema = `sb_test_${process.pid}`;
  await client.query(`create schema ${schema}`);
  try {
    await client.query(`create table ${schema}.t (id int primary key)`);
    await client.query(`insert into ${schema}.t values (1)`);
    const r = await client.query(`select count(*)::int as n from ${schema}.t`);
    expect(r.rows[0].n).toBe(1);
  } finally {
    await client.query(`drop schema ${schema} cascade`);
  }
});
