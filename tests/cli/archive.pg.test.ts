/**
 * `signalbox backtest` and `signalbox replay` through the real command, on Postgres in a schema of
 * their own and Redis under a prefix of their own: the admin API's answers, its checks as exit 2,
 * and --live runs in the queue.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RUN_QUEUE } from '../../src/config/runs.js';
import { migrate, openPostgres } from '../../src/store/index.js';
import { archiveEvent } from '../pg-schema.js';
import { runCliOutput } from './serve-env.js';

const url = process.env.DATABASE_URL ?? 'postgres://signalbox:signalbox@127.0.0.1:5433/signalbox';
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6390';
const schema = `sb_archive_${process.pid}_${Date.now().toString(36)}`;
const prefix = `sbarch${process.pid}`;
const dir = mkdtempSync(join(tmpdir(), 'sb-archive-'));
const env = {
  ...process.env,
  DATABASE_URL: url,
  SIGNALBOX_DB_SCHEMA: schema,
  REDIS_URL,
  SIGNALBOX_REDIS_PREFIX: prefix,
};

const run = (args: string[]) => runCliOutput(env, args);

const day1 = '2026-09-10';
const day2 = '2026-09-11';

beforeAll(async () => {
  const db = await openPostgres({ url, schema });
  await migrate(db);
  // Four archived events of tenant acme, over two days; two of priority 1.
  for (const [id, day, type, priority] of [
    ['ev1', day1, 'ticket.updated', 1],
    ['ev2', day1, 'ticket.updated', 3],
    ['ev3', day2, 'ticket.created', 1],
    ['ev4', day2, 'device.offline', 1],
  ] as const) {
    const at = `${day}T10:00:00Z`;
    const envelope = {
      id,
      tenant: 'acme',
      source: 'halo',
      type,
      time: at,
      data: { id, priority },
      receivedAt: at,
    };
    await archiveEvent(db, envelope);
  }
  await db.close();
  writeFileSync(
    join(dir, 'p1.yaml'),
    'id: p1\ntenant: acme\nsource: halo\non: ["ticket.*"]\nwhen: ticket.priority == 1\n',
  );
  writeFileSync(
    join(dir, 'two.json'),
    JSON.stringify([
      { id: 'a', source: 'halo', on: 'ticket.*' },
      { id: 'b', source: 'halo', on: 'ticket.created' },
    ]),
  );
});

afterAll(async () => {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  await c.query(`drop schema if exists ${schema} cascade`);
  await c.end();
  const redis = new Redis(REDIS_URL);
  const keys = await redis.keys(`${prefix}*`);
  if (keys.length > 0) await redis.del(...keys);
  redis.disconnect();
});

const window = ['--from', `${day1}T00:00:00Z`, '--to', `${day2}T23:59:59Z`];

describe('signalbox backtest', () => {
  it('evaluates a rule file’s rule over the window: per day, matches, samples', async () => {
    const r = await run(['backtest', '-f', join(dir, 'p1.yaml'), ...window]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout) as Record<string, any>;
    expect(out).toMatchObject({ events: 4, matched: 2 });
    expect(out.days.map((d: { day: string; matched: number }) => [d.day, d.matched])).toEqual([
      [day1, 1],
      [day2, 1],
    ]);
    expect(out.samples.map((s: { id: string }) => s.id).sort()).toEqual(['ev1', 'ev3']);
  });

  it('takes one rule of a file of several by --rule, and a stored rule by --rule alone', async () => {
    const many = await run(['backtest', '-f', join(dir, 'two.json'), '--tenant', 'acme', ...window]);
    expect(many.code).toBe(2);
    expect(many.stderr).toContain('holds 2 rules ("a", "b"): name one with --rule ID');
    const b = await run([
      'backtest',
      '-f',
      join(dir, 'two.json'),
      '--rule',
      'b',
      '--tenant',
      'acme',
      ...window,
    ]);
    expect(JSON.parse(b.stdout)).toMatchObject({ events: 4, matched: 1 });
    expect((await run(['rules', 'apply', '-f', join(dir, 'p1.yaml')])).code).toBe(0);
    const stored = await run(['backtest', '--rule', 'p1', '--tenant', 'acme', ...window]);
    expect(JSON.parse(stored.stdout)).toMatchObject({ matched: 2 });
    const missing = await run(['backtest', '--rule', 'nope', '--tenant', 'acme', ...window]);
    expect([missing.code, missing.stderr]).toEqual([
      1,
      'signalbox backtest: rule "nope" not found in tenant "acme"\n',
    ]);
  });

  it('answers bad arguments with exit 2 and the reason: usage, the API’s checks', async () => {
    const noFrom = await run(['backtest', '-f', join(dir, 'p1.yaml')]);
    expect([noFrom.code, noFrom.stderr.split('\n')[0]]).toEqual([2, 'signalbox backtest: missing --from']);
    const inverted = await run([
      'backtest',
      '-f',
      join(dir, 'p1.yaml'),
      '--from',
      `${day2}T00:00:00Z`,
      '--to',
      `${day1}T00:00:00Z`,
    ]);
    expect([inverted.code, inverted.stderr]).toEqual([
      2,
      `signalbox backtest: to: must be after from (${day2}T00:00:00.000Z)\n`,
    ]);
    const long = await run([
      'backtest',
      '-f',
      join(dir, 'p1.yaml'),
      '--from',
      '2026-01-01T00:00:00Z',
      '--to',
      '2026-06-01T00:00:00Z',
    ]);
    expect([long.code, long.stderr]).toEqual([
      2,
      'signalbox backtest: to: a backtest window is at most 92 days\n',
    ]);
    const samples = await run(['backtest', '-f', join(dir, 'p1.yaml'), ...window, '--samples', 'many']);
    expect(samples.code).toBe(2);
    expect(samples.stderr).toContain('--samples must be a whole number');
    const unknown = await run(['backtest', '--bogus']);
    expect([unknown.code, unknown.stderr.split('\n')[0]]).toEqual([
      2,
      'signalbox backtest: unknown argument "--bogus"',
    ]);
  });
});

describe('signalbox replay', () => {
  it('says which active rules each archived event matches (dry run), and queues their runs with --live', async () => {
    expect((await run(['rules', 'apply', '-f', join(dir, 'p1.yaml')])).code).toBe(0);
    const dry = await run(['replay', '--tenant', 'acme', ...window]);
    expect(dry.stderr).toBe('');
    const out = JSON.parse(dry.stdout) as Record<string, any>;
    expect(out).toMatchObject({ dryRun: true, events: 4, matched: 2, runs: 0 });
    const queue = new Queue(RUN_QUEUE, {
      connection: new Redis(REDIS_URL, { maxRetriesPerRequest: null }),
      prefix,
    });
    try {
      expect(await queue.count()).toBe(0);
      const live = await run(['replay', '--tenant', 'acme', '--id', 'ev1', '--id', 'ev2', '--live']);
      expect(live.code).toBe(0);
      expect(JSON.parse(live.stdout)).toMatchObject({ dryRun: false, events: 2, matched: 1, runs: 1 });
      const jobs = await queue.getJobs(['wait']);
      expect(jobs.map((j) => [j.data.kind, j.data.ruleId, j.data.event.id])).toEqual([
        ['replay', 'p1', 'ev1'],
      ]);
    } finally {
      await queue.close();
    }
    const notActive = await run(['replay', '--tenant', 'acme', '--rule', 'nope', ...window]);
    expect([notActive.code, notActive.stderr]).toEqual([1, 'signalbox replay: rule "nope" is not active\n']);
    const nothing = await run(['replay', '--tenant', 'acme']);
    expect([nothing.code, nothing.stderr.split('\n')[0]]).toEqual([
      2,
      'signalbox replay: give --from TIME or --id EVENT_ID',
    ]);
  });
});
