/**
 * Postgres unreachable under a running worker. A run that meets it before its first step (the
 * worker reads the rule's version and the tenant's settings from it) is retried when Postgres
 * returns, not failed for good. Run history and archived events written meanwhile wait in their
 * Redis streams and reach Postgres when it returns, rather than being dropped by the drains.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { archiveStreamKey } from '../../src/config/runs.js';
import type { Db } from '../../src/store/index.js';
import { Receiver } from './fakes/receiver.js';
import { event, eventually, type Harness, harness } from './harness.js';

let h: Harness;
let rx: Receiver;
/** While true, every query of the worker's database fails as if Postgres were down. */
let down = false;
/** What the worker told about the outage (onStore). */
const told: string[] = [];

beforeAll(async () => {
  rx = await new Receiver().start();
  h = await harness('outage');
  const flaky = new Proxy(h.db, {
    get(target, p, receiver) {
      const v = Reflect.get(target, p, receiver);
      if (typeof v !== 'function') return v;
      if (p === 'query' || p === 'transaction')
        return (...args: unknown[]) =>
          down
            ? Promise.reject(
                Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432 (test outage)'), {
                  code: 'ECONNREFUSED',
                }),
              )
            : (v as (...a: unknown[]) => unknown).apply(target, args);
      return (v as (...a: unknown[]) => unknown).bind(target);
    },
  }) as Db;
  await h.start({ db: flaky, onStore: (up, e) => told.push(up ? 'up' : `down: ${e?.message}`) });
});

afterAll(async () => {
  await h?.close();
  await rx?.close();
});

it('a run that meets Postgres down before its first step runs once Postgres is back', async () => {
  await h.rule({ id: 'pg-down', actions: [{ type: 'webhook', with: { url: `${rx.url}/pg-down` } }] });
  down = true;
  const id = await h.enqueue('pg-down', event('e-pg-down'));
  // The first attempt fails (the rule's version is not compiled in this worker yet).
  for (let i = 0; i < 200 && (await h.queue.getJob(id))?.attemptsMade === 0; i++)
    await new Promise((r) => setTimeout(r, 25));
  expect((await h.queue.getJob(id))?.attemptsMade).toBeGreaterThan(0);
  down = false;
  const run = await h.waitRun(id);
  expect(run.status).toBe('completed');
  expect(rx.on('/pg-down')).toHaveLength(1);
});

it('history and archived events written while Postgres is down reach it when it returns', async () => {
  // The rule and the tenant's settings are in the worker's caches from the run above. Whatever
  // the drains met of the outage above has ended.
  await eventually('the last outage told over', () =>
    told.length === 0 || told.at(-1) === 'up' ? true : undefined,
  );
  told.length = 0;
  down = true;
  const at = new Date().toISOString();
  const archived = {
    envelope: {
      id: 'arch-outage',
      tenant: 'acme',
      source: 'halo',
      type: 'ticket.updated',
      time: at,
      data: { id: 1 },
      previous: null,
      receivedAt: at,
    },
    outcome: 'accepted',
    rules: [],
  };
  await h.redis.xadd(archiveStreamKey(h.prefix), '*', 'e', JSON.stringify(archived));
  const id = await h.enqueue('pg-down', event('e-history-outage'));
  await eventually('the step sent', () => (rx.on('/pg-down').length === 2 ? true : undefined));
  // Several rounds of both drains meet the outage.
  await new Promise((r) => setTimeout(r, 2_000));
  down = false;
  const run = await h.waitRun(id);
  expect(run.status).toBe('completed');
  await eventually('the archived event', async () => {
    const r = await h.db.query<{ id: string }>("select id from events where id = 'arch-outage'");
    return r.rows.length === 1 ? true : undefined;
  });
  // Both drains met it several times; it was told once as it began and once as it ended.
  expect(told).toEqual(['down: connect ECONNREFUSED 127.0.0.1:5432 (test outage)', 'up']);
});

it('a schedule that cannot be saved (Redis failing) does not end the worker; the next change saves it', async () => {
  const queue = h.worker!.queue;
  const upsert = queue.upsertJobScheduler.bind(queue);
  let refused = 0;
  queue.upsertJobScheduler = (async () => {
    refused++;
    throw new Error('Connection is closed. (test)');
  }) as typeof queue.upsertJobScheduler;
  await h.rule({
    id: 'sched-fail',
    schedule: { cron: '0 0 * * *', tz: 'UTC' },
    actions: [{ type: 'log', with: { message: 'tick' } }],
  });
  await eventually('the refused save', () => (refused > 0 ? true : undefined));
  queue.upsertJobScheduler = upsert;
  // Still running (an unhandled rejection used to end the process): a later change is applied.
  await h.rule({
    id: 'sched-fail',
    schedule: { cron: '0 1 * * *', tz: 'UTC' },
    actions: [{ type: 'log', with: { message: 'tick' } }],
  });
  await eventually('the schedule saved', async () =>
    (await queue.getJobSchedulers()).some((j) => j.key === 'schedule:acme:sched-fail') ? true : undefined,
  );
});
