/**
 * Run history past its retention (SIGNALBOX_HISTORY_DAYS) is deleted by the history drain: old
 * runs with their steps and `log` records, a few rows a statement; newer runs and the rest of the
 * audit log stay.
 */
import { randomBytes } from 'node:crypto';
import { expect, it } from 'vitest';
import { HistoryDrain } from '../../src/workers/history.js';
import { drainStores, runRecord } from './harness.js';

const stores = drainStores('retention');
const key = `retention${randomBytes(4).toString('hex')}`;
const DAY = 86_400_000;
const now = Date.parse('2026-12-07T12:00:00Z');

/** A run's record as a worker writes it to the history stream (a JSON line). */
function run(id: string, daysAgo: number): string {
  const at = now - daysAgo * DAY;
  return JSON.stringify(
    runRecord(id, {
      createdAt: at,
      startedAt: at,
      finishedAt: at + 5,
      steps: [
        {
          idx: 0,
          type: 'log',
          status: 'completed',
          attempts: 1,
          startedAt: at,
          finishedAt: at,
          output: null,
          error: null,
        },
      ],
      logs: [{ idx: 0, at, record: { message: `run ${id}` } }],
    }),
  );
}

it('deletes the runs, steps and log records older than the retention, and nothing newer', async () => {
  // Written with a clock far in the past, so that writing them prunes nothing.
  const writer = new HistoryDrain(stores.redis.duplicate(), `${key}:w`, stores.db, {
    now: () => now - 365 * DAY,
  });
  const old = Array.from({ length: 7 }, (_, i) => run(`old-${i}`, 40 + i));
  const recent = Array.from({ length: 3 }, (_, i) => run(`new-${i}`, 29 - i));
  await writer.write([...old, ...recent]);
  await stores.db.query(
    `insert into audit_log (tenant_id, actor, action, entity, entity_id, details, at)
     values ('acme', 'someone', 'rule.create', 'rule', 'r1', '{}', $1)`,
    [new Date(now - 100 * DAY).toISOString()],
  );
  const count = async (sql: string) => Number((await stores.db.query<{ n: string }>(sql)).rows[0]!.n);
  expect(await count('select count(*) as n from runs')).toBe(10);
  expect(await count('select count(*) as n from steps')).toBe(10);
  expect(await count(`select count(*) as n from audit_log where action = 'run.log'`)).toBe(10);

  // 30 days kept, three rows a statement: seven old runs take three statements.
  const drain = new HistoryDrain(stores.redis.duplicate(), `${key}:d`, stores.db, {
    now: () => now,
    retentionDays: 30,
    pruneRows: 3,
  });
  expect(await drain.deleteOld()).toBe(7);
  const left = await stores.db.query<{ id: string }>('select id from runs order by id');
  expect(left.rows.map((r) => r.id)).toEqual(['new-0', 'new-1', 'new-2']);
  expect(await count(`select count(*) as n from steps where run_id like 'old-%'`)).toBe(0);
  expect(await count('select count(*) as n from steps')).toBe(3);
  expect(await count(`select count(*) as n from audit_log where action = 'run.log'`)).toBe(3);
  // the audit of people's changes is not run history: it stays
  expect(await count(`select count(*) as n from audit_log where action = 'rule.create'`)).toBe(1);
  // again: nothing left to delete
  expect(await drain.deleteOld()).toBe(0);
});

it('prunes by itself with its first write of each hour, beside the write', async () => {
  let clock = now;
  const drain = new HistoryDrain(stores.redis.duplicate(), `${key}:h`, stores.db, {
    now: () => clock,
    retentionDays: 30,
  });
  const gone = async (id: string) => {
    const until = Date.now() + 5_000;
    while (
      Date.now() < until &&
      (await stores.db.query('select 1 from runs where id = $1', [id])).rowCount > 0
    )
      await new Promise((res) => setTimeout(res, 20));
    return (await stores.db.query('select 1 from runs where id = $1', [id])).rowCount === 0;
  };
  // This hour's pruning starts with the first write, before its records are in: the old run
  // written then waits for the next hour.
  await drain.write([run('hourly-old', 60), run('hourly-new', 1)]);
  await drain.write([run('hourly-old2', 61)]);
  clock += 3_600_000;
  await drain.write([run('hourly-newer', 0)]);
  expect(await gone('hourly-old')).toBe(true);
  expect(await gone('hourly-old2')).toBe(true);
  const kept = await stores.db.query<{ id: string }>(
    `select id from runs where id like 'hourly-%' order by id`,
  );
  expect(kept.rows.map((r) => r.id)).toEqual(['hourly-new', 'hourly-newer']);
  expect(drain.pruneError).toBeUndefined();
  await drain.stop();
});

it('prunes a drain that has nothing to write once an hour begins (a quiet system)', async () => {
  let clock = now;
  const drain = new HistoryDrain(stores.redis.duplicate(), `${key}:quiet`, stores.db, {
    now: () => clock,
    retentionDays: 30,
    pruneCheckMs: 20,
  });
  await drain.write([run('quiet-old', 60)]);
  await drain.start();
  try {
    // this hour's pruning began before the old run was in: it stays until the next hour
    await new Promise((res) => setTimeout(res, 200));
    const has = async () => (await stores.db.query(`select 1 from runs where id = 'quiet-old'`)).rowCount;
    expect(await has()).toBe(1);
    clock += 3_600_000;
    const until = Date.now() + 5_000;
    while (Date.now() < until && (await has()) > 0) await new Promise((res) => setTimeout(res, 20));
    expect(await has()).toBe(0);
  } finally {
    await drain.stop();
    await stores.redis.del(`${key}:quiet`);
  }
});
