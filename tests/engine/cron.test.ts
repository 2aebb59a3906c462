/**
 * Schedules are checked when a rule is saved (cronProblem in src/engine/workflow.ts): an
 * expression the engine accepts must be one BullMQ's scheduler, cron-parser, can run, or the rule
 * would be active and never fire. Checked against cron-parser itself, on chosen and random
 * expressions.
 */
import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import { RuleCompiler } from '../../src/engine/index.js';
import { cronProblem } from '../../src/engine/workflow.js';

// cron-parser as BullMQ loads it (a dependency of BullMQ's, not of Signalbox's).
const bullmq = createRequire(import.meta.url).resolve('bullmq');
const { CronExpressionParser } = createRequire(bullmq)('cron-parser') as {
  CronExpressionParser: { parse(text: string, o: { tz: string }): unknown };
};
const runs = (text: string): boolean => {
  try {
    CronExpressionParser.parse(text, { tz: 'UTC' });
    return true;
  } catch {
    return false;
  }
};

const USUAL = [
  '0 8 * * 1-5',
  '*/15 * * * *',
  '0 9 1 * *',
  '30 6 * * MON,WED,FRI',
  '0 0 L * *',
  '0 17 * * 5L',
  '0 10 * * 1#2',
  '0 0 ? * SUN',
  '0 0 29 2 *',
  '0 0 31 1,3 *',
  '0 */2 * * *',
  '1-5/2 * * * *',
  '5/10 * * * *',
  '0 0 * JAN-MAR mon-fri',
  '0 0 * * 0-7',
  '0 0 01 * *',
  '30 0 8 * * 1-5',
  '@daily',
  '@hourly',
  '@weekly',
  '@monthly',
  '@yearly',
  '  0 8 * * *  ',
];

const WRONG = [
  '61 * * * *',
  '* 24 * * *',
  '0 0 0 * *',
  '0 0 32 * *',
  '0 0 1 13 *',
  '0 0 * * 8',
  '5-1 * * * *',
  '*/0 * * * *',
  '0 0 1, * *',
  '0 0 30 2 *',
  '0 L * * *',
  '0 0 * * 1#6',
  '0 0 * * 1#0',
  '0 0 * * 6#3,5L',
  '0 0 * * 0,7',
  '0 0 * * 1-5,3',
  '0 0 1.5 * *',
  '0 0 -1 * *',
  '0 0 * FEB-JAN *',
  '0 0 * * SAT-SUN',
  '0 0 LW * *',
  '* * * * * * *',
  'x y z a b',
  '@midnight',
  '@reboot',
  '0 9 * * 1-5 2026',
];

describe('cron expressions', () => {
  it('takes the usual forms, which cron-parser runs', () => {
    for (const c of USUAL) expect([c, cronProblem(c), runs(c)]).toEqual([c, undefined, true]);
  });

  it('refuses what cron-parser cannot run, with the field and the reason', () => {
    for (const c of WRONG) {
      expect([c, runs(c)]).toEqual([c, false]);
      expect([c, cronProblem(c) === undefined]).toEqual([c, false]);
    }
    expect(cronProblem('61 * * * *')).toBe('minute "61": 61: values are 0–59');
    expect(cronProblem('0 0 30 2 *')).toBe('no month named has day 30');
    expect(cronProblem('0 0 * * 1#6')).toBe(
      'day of week "1#6": "#" goes in the day of week alone, as weekday#1 to weekday#5',
    );
  });

  it('accepts nothing cron-parser cannot run, over random expressions', () => {
    let seed = 7;
    const next = (n: number) => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    // Per field, values mostly in range and a few just outside it, names, specials.
    const POOLS = [
      ['*', '0', '30', '59', '60', '5', '*/15', '0-30', '10-5'],
      ['*', '0', '23', '24', '9', '8-17', '*/2', '?'],
      ['*', '?', '1', '15', '28', '29', '30', '31', '32', '0', 'L', '1-15', '*/7'],
      ['*', '1', '2', '4', '12', '13', 'jan', 'FEB', 'dec', 'jan-mar', '*/3'],
      ['*', '?', '0', '1-5', '7', '8', 'mon', 'FRI', 'sun-sat', 'sat-sun', '5L', '1#2', '1#6', 'L'],
    ];
    const SECONDS = ['0', '30', '59', '60', '*', '*/10'];
    const field = (pool: readonly string[]) =>
      Array.from({ length: next(5) === 0 ? 2 : 1 }, () => {
        const a = pool[next(pool.length)]!;
        return next(8) === 0 && !a.includes('/') ? `${a}/${next(3)}` : a;
      }).join(',');
    let accepted = 0;
    for (let i = 0; i < 20_000; i++) {
      const five = POOLS.map(field).join(' ');
      const c = next(3) === 0 ? `${field(SECONDS)} ${five}` : five;
      if (cronProblem(c) !== undefined) continue;
      accepted++;
      expect([c, runs(c)]).toEqual([c, true]);
    }
    // the generator is not so wild that nothing passes
    expect(accepted).toBeGreaterThan(200);
  });

  it('a rule with a schedule that will not run is refused when it is saved, naming schedule.cron', () => {
    const c = new RuleCompiler();
    expect(() =>
      c.compile({
        id: 's',
        source: '*',
        schedule: { cron: '0 0 31 2 *' },
        actions: [{ type: 'log', with: { message: 'x' } }],
      }),
    ).toThrow(
      /schedule\.cron: must be a cron expression of 5 or 6 fields, like "0 8 \* \* 1-5", not "0 0 31 2 \*": no month named has day 31/,
    );
  });
});
