/**
 * The event archive drain: the ingest's stream into Postgres, in day partitions, once per event,
 * malformed entries skipped, the stream emptied; retention drops whole days.
 */
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { receivedLine } from '../../src/config/archive.js';
import type { Db } from '../../src/store/index.js';
import { migrate } from '../../src/store/index.js';
import { ArchiveDrain } from '../../src/workers/archive.js';
import { testSchemaDb } from '../pg-schema.js';
import { eventually, REDIS_URL } from './harness.js';

let db: Db;
let redis: Redis;
const key = `arc${randomBytes(4).toString('hex')}:outbox`;
const DAY = 86_400_000;
let now = Date.parse('2026-11-20T12:00:00Z');

beforeAll(async () => {
  db = await testSchemaDb('archive')();
  await migrate(db);
  redis = new Redis(REDIS_URL);
});

afterAll(async () => {
  await redis?.del(key);
  redis?.disconnect();
  await db?.close();
});

const entry = (id: string, receivedAt: string) =>
  JSON.stringify({
    envelope: {
      id,
      tenant: 'acme',
      source: 'halo',
      type: 'ticket.updated',
      time: receivedAt,
      data: { id: 1 },
      previous: null,
      receivedAt,
    },
    outcome: 'accepted',
    rules: [],
  });

it('drains the stream into day partitions once per event and keeps only the retention', async () => {
  const drain = new ArchiveDrain(redis.duplicate(), key, db, {
    retentionDays: 30,
    now: () => now,
    blockMs: 50,
  });
  await drain.start();
  const parts = await db.query<{ relname: string }>(
    "select relname from pg_class where relname like 'events_2026%' and relkind = 'r' and relnamespace = current_schema()::regnamespace order by relname",
  );
  expect(parts.rows.map((r) => r.relname)).toEqual(['events_20261120', 'events_20261121', 'events_20261122']);
  await redis.xadd(key, '*', 'e', entry('a', '2026-11-20T12:00:00Z'));
  await redis.xadd(key, '*', 'e', entry('a', '2026-11-20T12:00:00Z')); // the same event twice
  await redis.xadd(key, '*', 'e', 'not json');
  await redis.xadd(key, '*', 'e', entry('b', '2026-11-21T00:00:01Z'));
  await eventually('drained', async () => drain.written >= 3);
  const rows = await db.query<{ id: string; p: string; on: string }>(
    "select id, tableoid::regclass::text as p, to_char(received_on, 'YYYY-MM-DD') as on from events order by id",
  );
  expect(rows.rows.map((r) => [r.id, r.p.replace(/^.*\./, ''), r.on])).toEqual([
    ['a', 'events_20261120', '2026-11-20'],
    ['b', 'events_20261121', '2026-11-21'],
  ]);
  await eventually('stream emptied', async () => (await redis.xlen(key)) === 0);
  // 31 days later, the first day is past the retention: its partition is dropped.
  now += 31 * DAY;
  await drain.maintain();
  const left = await db.query<{ id: string }>('select id from events order by id');
  expect(left.rows.map((r) => r.id)).toEqual(['b']);
  await drain.stop();
});

it('drains chunks kept in keys of their own and events archived as received, then deletes the keys', async () => {
  const stream = `${key}2`;
  const text = (n: string) => `${stream}:ab:${n}`;
  const t = new Date(now).toISOString();
  const drain = new ArchiveDrain(redis.duplicate(), stream, db, { now: () => now, blockMs: 50 });
  await drain.start();
  const asReceived = (id: string) =>
    receivedLine(`{"id":"${id}","source":"app","type":"thing.done","data":{"x":1}}`, 'acme', t, 'accepted');
  await redis.set(text('1'), [entry('k1', t), entry('k2', t)].join('\n'));
  await redis.set(text('2'), [entry('k3', t), entry('k4', t), asReceived('k5')].join('\n'));
  await redis.xadd(stream, '*', 'k', text('1'));
  await redis.xadd(stream, '*', 'k', text('2'), 'c', 'odo'); // k4 did not commit
  await redis.xadd(stream, '*', 'k', text('gone')); // written and deleted by an earlier delivery
  // Beside a good line, damaged ones (an `in` that is not an event, text that is not JSON) are skipped.
  await redis.xadd(
    stream,
    '*',
    'e',
    [asReceived('k6'), '{"in":7,"tenant":"acme","receivedAt":"x"}', '{"in":'].join('\n'),
  );
  await eventually('drained', async () => drain.written >= 5);
  const rows = await db.query<{
    id: string;
    source: string;
    time: string;
    envelope: Record<string, unknown>;
  }>("select id, source, envelope from events where id like 'k%' order by id");
  expect(rows.rows.map((r) => [r.id, r.source])).toEqual([
    ['k1', 'halo'],
    ['k2', 'halo'],
    ['k3', 'halo'],
    ['k5', 'app'],
    ['k6', 'app'],
  ]);
  expect(rows.rows.find((r) => r.id === 'k6')?.envelope).toEqual({
    id: 'k6',
    tenant: 'acme',
    source: 'app',
    type: 'thing.done',
    time: t,
    data: { x: 1 },
    raw: null,
    self: false,
    previous: null,
    receivedAt: t,
  });
  await eventually('stream emptied', async () => (await redis.xlen(stream)) === 0);
  expect(await redis.exists(text('1'), text('2'))).toBe(0);
  expect(drain.written).toBe(5); // k1, k2, k3, k5, k6: nothing of the damaged lines
  await drain.stop();
  await redis.del(stream);
});

it('writes a batch of large events in statements of bounded size, every event kept', async () => {
  // By count alone, 2,000 events of up to 1 MiB (the ingest's body limit) make a statement whose
  // JSON V8 cannot build ("Invalid string length"): the drain would fail on it for ever.
  const statements: number[] = [];
  const counting: Db = {
    ...db,
    query: (sql: string, params?: readonly unknown[]) => {
      if (sql.includes('insert into events')) statements.push(String(params?.[0]).length);
      return db.query(sql, params);
    },
  } as Db;
  const drain = new ArchiveDrain(redis.duplicate(), `${key}:big`, counting, {
    now: () => Date.parse('2026-11-20T12:00:00Z'),
    statementChars: 5_000,
  });
  const at = '2026-11-20T12:00:00.000Z';
  const row = (id: string) => ({
    tenant_id: 'acme',
    id,
    received_at: at,
    source: 'halo',
    type: 'ticket.updated',
    time: at,
    envelope: {
      id,
      tenant: 'acme',
      source: 'halo',
      type: 'ticket.updated',
      time: at,
      data: { note: 'x'.repeat(1_500) },
    },
  });
  await drain.write(['big-1', 'big-2', 'big-3', 'big-4', 'big-5', 'big-6', 'big-7'].map(row));
  // two rows of about 1,800 characters fit under 5,000: 2 + 2 + 2 + 1
  expect(statements).toHaveLength(4);
  for (const n of statements) expect(n).toBeLessThan(6_000);
  const rows = await db.query<{ id: string }>("select id from events where id like 'big-%' order by id");
  expect(rows.rows.map((r) => r.id)).toEqual(['big-1', 'big-2', 'big-3', 'big-4', 'big-5', 'big-6', 'big-7']);
  expect(drain.lastError).toBeUndefined();
});

it('reads chunks kept in keys in groups of bounded size, every event kept and every key deleted', async () => {
  // A chunk holds up to 256 events of up to 1 MiB, and a read up to 200 entries: read all at once,
  // their keys could be gigabytes in the worker's heap.
  const stream = `${key}3`;
  const text = (n: string) => `${stream}:ab:${n}`;
  const t = new Date(now).toISOString();
  const reader = redis.duplicate();
  const reads: number[] = [];
  const mget = reader.mgetBuffer.bind(reader);
  reader.mgetBuffer = ((...keys: string[]) => {
    reads.push(keys.length);
    return mget(...keys);
  }) as typeof reader.mgetBuffer;
  const drain = new ArchiveDrain(reader, stream, db, { now: () => now, statementChars: 5_000 });
  const big = (id: string) =>
    entry(id, t).replace('"data":{"id":1}', `"data":{"id":1,"note":"${'n'.repeat(1_200)}"}`);
  // three chunks of about 3,000 characters: no two fit in 5,000
  for (const n of ['1', '2', '3']) {
    await redis.set(text(n), [big(`g${n}a`), big(`g${n}b`)].join('\n'));
    await redis.xadd(stream, '*', 'k', text(n));
  }
  await redis.xadd(stream, '*', 'e', entry('g4', t));
  await drain.start();
  await eventually('drained', async () => drain.written >= 7);
  expect(reads).toEqual([1, 1, 1]);
  const rows = await db.query<{ id: string }>("select id from events where id like 'g%' order by id");
  expect(rows.rows.map((r) => r.id)).toEqual(['g1a', 'g1b', 'g2a', 'g2b', 'g3a', 'g3b', 'g4']);
  expect(await redis.exists(text('1'), text('2'), text('3'))).toBe(0);
  await drain.stop();
  await redis.del(stream);
});
