/**
 * What the drains drop is said: a run record Postgres refuses (or that is not JSON) and an
 * archived event it refuses are dropped so that the rest is written, and the worker tells it
 * (onDropped: the CLI's stderr line), at most once a minute per kind, with how many since.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { archiveStreamKey, historyStreamKey } from '../../src/config/runs.js';
import type { DroppedKind } from '../../src/workers/worker.js';
import { eventually, type Harness, harness, runRecord } from './harness.js';

let h: Harness;
const told: Array<{ what: DroppedKind; count: number; message: string }> = [];

beforeAll(async () => {
  h = await harness('dropped');
  await h.start({ onDropped: (what, count, e) => told.push({ what, count, message: e.message }) });
});

afterAll(async () => {
  await h?.close();
});

const at = new Date().toISOString();
const archived = (id: string, receivedAt: string) =>
  JSON.stringify({
    envelope: { id, tenant: 'acme', source: 'halo', type: 'ticket.updated', time: at, data: {}, receivedAt },
    outcome: 'accepted',
    rules: [],
  });

it('tells the run records and archived events Postgres refused, once a minute per kind, and writes the rest', async () => {
  const history = historyStreamKey(h.prefix);
  const good = JSON.stringify(runRecord('kept-run'));
  // A damaged record beside a good one, and an event whose arrival time Postgres cannot read.
  await h.redis.xadd(history, '*', 'r', ['{"id":"damaged",', good].join('\n'));
  await h.redis.xadd(
    archiveStreamKey(h.prefix),
    '*',
    'e',
    [archived('refused-event', 'not a time'), archived('kept-event', at)].join('\n'),
  );
  await eventually('both told', async () => told.length >= 2);
  expect(told.map((t) => [t.what, t.count]).sort()).toEqual([
    ['archived event', 1],
    ['run record', 1],
  ]);
  expect(told.find((t) => t.what === 'archived event')?.message).toMatch(/timestamp|time/i);
  // A refusal is told as it happens; the rows after it in the batch are written next.
  await eventually('the good ones written', async () => {
    const runs = (await h.db.query("select 1 from runs where id = 'kept-run'")).rowCount;
    const events = (await h.db.query("select 1 from events where id = 'kept-event'")).rowCount;
    return runs === 1 && events === 1;
  });
  // Another refusal within the minute is counted, not told at once.
  await h.redis.xadd(history, '*', 'r', '{"id":"damaged-again",');
  await eventually('drained', async () => (await h.redis.xlen(history)) === 0);
  await new Promise((r) => setTimeout(r, 300));
  expect(told).toHaveLength(2);
});

it('tells a fired debounce timer that could not be read as dropped: no run starts for it', async () => {
  await h.redis.xadd(`${h.prefix}:tm:fired`, '*', 'id', 'broken', 'p', 'not deflated JSON');
  await eventually('told', async () => told.some((t) => t.what === 'fired timer'));
  const t = told.find((x) => x.what === 'fired timer')!;
  expect(t.count).toBe(1);
  expect(t.message).toMatch(/^a fired debounce timer could not be read: /);
  // acknowledged and deleted, not read again
  await eventually('acknowledged', async () => (await h.redis.xlen(`${h.prefix}:tm:fired`)) === 0);
});
