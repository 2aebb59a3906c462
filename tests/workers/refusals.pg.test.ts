/**
 * Rows Postgres would refuse, kept by the drains instead of lost with a refused statement: U+0000
 * (Postgres stores none; JSON carries it freely, in a PSA payload or an API's answer in a step's
 * output) is written as U+FFFD; a run finished on a worker whose clock is behind the one that
 * started it is written as finished when it started.
 */
import { randomBytes } from 'node:crypto';
import { expect, it } from 'vitest';
import { batches, type Db, pgJson, unstorablePath } from '../../src/store/index.js';
import { ArchiveDrain } from '../../src/workers/archive.js';
import { HistoryDrain, type RunRecord } from '../../src/workers/history.js';
import { drainStores, runRecord } from './harness.js';

const stores = drainStores('refusals');
const key = `refused${randomBytes(4).toString('hex')}`;

it('pgJson writes U+0000 and lone surrogates as U+FFFD, in values and keys, and leaves the rest alone', () => {
  const v = { 'k\u0000': ['a\u0000b', '\\u0000', '\\\u0000'], n: 1 };
  expect(JSON.parse(pgJson(v))).toEqual({ 'k\ufffd': ['a\ufffdb', '\\u0000', '\\\ufffd'], n: 1 });
  // A lone high or low surrogate is replaced; a pair (an emoji) and an escaped backslash are kept.
  const s = { a: 'x\ud800y', b: '\udc00', c: '😀 ok', d: '\\ud800', e: 'é' };
  expect(JSON.parse(pgJson(s))).toEqual({ a: 'x\ufffdy', b: '\ufffd', c: '😀 ok', d: '\\ud800', e: 'é' });
  expect(unstorablePath({ a: ['x', 'y\udbff'] })).toBe('a[1]');
  expect(unstorablePath({ a: '\udc00z' })).toBe('a');
  expect(unstorablePath({ a: '😀', b: '\\ud800' })).toBeUndefined();
  expect(pgJson({ plain: 'text' })).toBe(JSON.stringify({ plain: 'text' }));
  expect(unstorablePath({ a: [{ b: 'x' }, { c: 'y\u0000' }] })).toBe('a[1].c');
  expect(unstorablePath({ 'k\u0000': 1 })).toBe('k\u0000');
  expect(unstorablePath('\u0000')).toBe('(value)');
  expect(unstorablePath({ a: ['x'], b: null, c: 2 })).toBeUndefined();
});

it('the archive keeps an event whose payload holds U+0000 or a lone surrogate', async () => {
  const drain = new ArchiveDrain(stores.redis.duplicate(), `${key}:archive`, stores.db, { blockMs: 50 });
  const at = new Date().toISOString();
  const envelope = (id: string, summary: string) => ({
    id,
    tenant: 'acme',
    source: 'halo',
    type: 'ticket.updated',
    time: at,
    data: { id: 7, summary },
    previous: null,
    receivedAt: at,
  });
  await drain.write([
    {
      tenant_id: 'acme',
      id: 'nul',
      received_at: at,
      source: 'halo',
      type: 'ticket.updated',
      time: at,
      envelope: envelope('nul', 'printer\u0000jam'),
    },
    {
      tenant_id: 'acme',
      id: 'surrogate',
      received_at: at,
      source: 'halo',
      type: 'ticket.updated',
      time: at,
      envelope: envelope('surrogate', 'cut \ud83d'),
    },
    {
      tenant_id: 'acme',
      id: 'ok',
      received_at: at,
      source: 'halo',
      type: 'ticket.updated',
      time: at,
      envelope: envelope('ok', 'fine'),
    },
  ]);
  const rows = await stores.db.query<{ id: string; summary: string }>(
    "select id, envelope->'data'->>'summary' as summary from events order by id",
  );
  expect(rows.rows).toEqual([
    { id: 'nul', summary: 'printer\ufffdjam' },
    { id: 'ok', summary: 'fine' },
    { id: 'surrogate', summary: 'cut \ufffd' },
  ]);
  expect(drain.lastError).toBeUndefined();
});

it('the history keeps a run whose error and step output hold U+0000', async () => {
  const drain = new HistoryDrain(stores.redis.duplicate(), `${key}:history`, stores.db);
  const now = Date.now();
  const run: RunRecord = {
    id: 'run-nul',
    tenant: 'acme',
    ruleId: 'r1',
    version: 1,
    eventId: 'e1',
    rev: 1,
    status: 'failed',
    reason: null,
    createdAt: now,
    startedAt: now,
    finishedAt: now,
    error: { message: 'bad\u0000answer' },
    steps: [
      {
        idx: 0,
        type: 'webhook',
        status: 'failed',
        attempts: 1,
        startedAt: now,
        finishedAt: now,
        output: { body: 'x\u0000y' },
        error: { message: 'HTTP 500' },
      },
    ],
  };
  await drain.write([JSON.stringify(run)]);
  const r = await stores.db.query<{ error: { message: string } }>('select error from runs where id = $1', [
    'run-nul',
  ]);
  expect(r.rows[0]?.error.message).toBe('bad\ufffdanswer');
  const s = await stores.db.query<{ output: { body: string } }>(
    'select output from steps where run_id = $1',
    ['run-nul'],
  );
  expect(s.rows[0]?.output.body).toBe('x\ufffdy');
  expect(drain.lastError).toBeUndefined();
});

it('the history keeps a run finished on a worker whose clock is behind', async () => {
  const drain = new HistoryDrain(stores.redis.duplicate(), `${key}:history`, stores.db);
  const started = Date.parse('2026-12-07T10:00:00.500Z');
  const run: RunRecord = {
    id: 'run-skew',
    tenant: 'acme',
    ruleId: 'r1',
    version: 1,
    eventId: 'e2',
    rev: 1,
    status: 'completed',
    reason: null,
    createdAt: started - 100,
    startedAt: started,
    finishedAt: started - 40,
    error: null,
    steps: [],
  };
  await drain.write([JSON.stringify(run)]);
  const r = await stores.db.query<{ started: string; finished: string }>(
    'select started_at::text as started, finished_at::text as finished from runs where id = $1',
    ['run-skew'],
  );
  expect(r.rows).toHaveLength(1);
  expect(r.rows[0]!.finished).toBe(r.rows[0]!.started);
  expect(drain.lastError).toBeUndefined();
});

it('a batch keeps the latest revision of each run, every log record, and drops a line that is not JSON', async () => {
  const drain = new HistoryDrain(stores.redis.duplicate(), `${key}:history`, stores.db);
  const now = Date.now();
  const record = (
    rev: number,
    status: RunRecord['status'],
    stepStatus: 'running' | 'completed',
    log: string,
  ) =>
    JSON.stringify({
      id: 'run-revs',
      tenant: 'acme',
      ruleId: 'r1',
      version: 1,
      eventId: 'e3',
      rev,
      status,
      reason: null,
      createdAt: now,
      startedAt: now,
      finishedAt: status === 'completed' ? now + 5 : null,
      error: null,
      steps: [
        {
          idx: 0,
          type: 'log',
          status: stepStatus,
          attempts: 1,
          startedAt: now,
          finishedAt: now,
          output: { rev },
          error: null,
        },
      ],
      logs: [{ idx: 0, at: now, record: { message: log } }],
    } satisfies RunRecord);
  // The later revision comes first in the batch (two workers' records), then the older one.
  await drain.write([
    record(now + 2, 'completed', 'completed', 'second'),
    record(now + 1, 'running', 'running', 'first'),
  ]);
  const r = await stores.db.query<{ status: string; revision: string }>(
    "select status, revision::text from runs where id = 'run-revs'",
  );
  expect(r.rows).toEqual([{ status: 'completed', revision: String(now + 2) }]);
  const s = await stores.db.query<{ status: string; output: unknown }>(
    "select status, output from steps where run_id = 'run-revs'",
  );
  expect(s.rows).toEqual([{ status: 'completed', output: { rev: now + 2 } }]);
  const logs = await stores.db.query<{ details: unknown }>(
    "select details from audit_log where entity_id = 'run-revs' order by details->'record'->>'message'",
  );
  expect(logs.rows.map((l) => l.details)).toEqual([
    { step: 0, record: { message: 'first' } },
    { step: 0, record: { message: 'second' } },
  ]);
  // A damaged line fails the batch's statement; the drain writes each record alone and drops it.
  const good = JSON.stringify({
    ...JSON.parse(record(1, 'completed', 'completed', 'x')),
    id: 'run-after-damage',
  });
  await drain.write(['{"id":"run-damaged",', good]);
  const after = await stores.db.query("select id from runs where id in ('run-after-damage', 'run-damaged')");
  expect(after.rows).toEqual([{ id: 'run-after-damage' }]);
  expect(drain.lastError?.message).toMatch(/json/i);
});

it('batches keeps the order and cuts by count and by characters; a text longer than the limit goes alone', () => {
  const t = (n: number, c = 'a') => c.repeat(n);
  expect(batches([], 2, 100)).toEqual([]);
  expect(batches(['a', 'b', 'c', 'd', 'e'], 2, 100)).toEqual([['a', 'b'], ['c', 'd'], ['e']]);
  // each text counts its length and a comma
  expect(batches([t(40), t(40, 'b'), t(40, 'c')], 10, 90)).toEqual([[t(40), t(40, 'b')], [t(40, 'c')]]);
  expect(batches([t(10), t(500, 'b'), t(10, 'c')], 10, 100)).toEqual([[t(10)], [t(500, 'b')], [t(10, 'c')]]);
});

it('the history writes a batch of large records in statements of bounded size', async () => {
  const statements: number[] = [];
  const counting = {
    ...stores.db,
    query: (sql: string, params?: readonly unknown[]) => {
      if (sql.includes('insert into runs')) statements.push(String(params?.[0]).length);
      return stores.db.query(sql, params);
    },
  } as Db;
  const drain = new HistoryDrain(stores.redis.duplicate(), `${key}:history`, counting, { writeChars: 5_000 });
  const now = Date.now();
  const record = (id: string) =>
    JSON.stringify(
      runRecord(id, {
        rev: now,
        steps: [
          {
            idx: 0,
            type: 'psa.request',
            status: 'completed',
            attempts: 1,
            startedAt: now,
            finishedAt: now,
            output: { body: 'x'.repeat(1_500) },
            error: null,
          },
        ],
      }),
    );
  const ids = ['long-1', 'long-2', 'long-3', 'long-4', 'long-5'];
  await drain.write(ids.map(record));
  expect(statements.length).toBeGreaterThanOrEqual(2);
  for (const n of statements) expect(n).toBeLessThan(6_000);
  const r = await stores.db.query<{ id: string }>("select id from runs where id like 'long-%' order by id");
  expect(r.rows.map((x) => x.id)).toEqual(ids);
  expect(drain.lastError).toBeUndefined();
});
