/** Templates and the run fields of rule documents (workflows.md). */
import { describe, expect, it } from 'vitest';
import {
  compileRule,
  compileTemplate,
  contextOf,
  Engine,
  EngineError,
  parseDuration,
} from '../../src/engine/index.js';

const env = {
  id: 'e1',
  tenant: 'acme',
  source: 'halo',
  type: 'ticket.updated',
  data: {
    id: 42,
    summary: 'Printer down',
    priority: 1,
    tags: ['a', 'b'],
    client: { name: 'Acme' },
    none: null,
  },
  raw: { Ticket: { Id: 42 } },
};
const run = {
  meta: { run: { id: 'run-1' }, rule: { id: 'r', version: 3 }, attempt: 2, event: { id: 'e1' } },
  custom: { owner: 'kim' },
  steps: { ticket: { output: { id: 991 } } },
};
const render = (t: string) => compileTemplate(t)(contextOf(env, run));

function fails(doc: Record<string, unknown>): EngineError {
  try {
    compileRule({ id: 'r', source: '*', ...doc });
  } catch (e) {
    expect(e).toBeInstanceOf(EngineError);
    return e as EngineError;
  }
  throw new Error('compiled');
}

describe('templates', () => {
  it('one placeholder keeps the type; several are interpolated', () => {
    expect(render('{{ ticket.id }}')).toBe(42);
    expect(render('{{ data.tags }}')).toEqual(['a', 'b']);
    expect(render('{{ ticket.missing }}')).toBeNull();
    expect(render('#{{ ticket.id }}: {{ ticket.summary }}')).toBe('#42: Printer down');
    expect(render('[{{ ticket.none }}]')).toBe('[]');
    expect(render('{{ticket.client}} {{ ticket.priority == 1 }}')).toBe('{"name":"Acme"} true');
    expect(render('no placeholders')).toBe('no placeholders');
    expect(render('{{ "a}}b" }}')).toBe('a}}b');
    expect(render('{{ upper(ticket.summary) }}!')).toBe('PRINTER DOWN!');
  });
  it('reads the run roots and the source alias of raw', () => {
    expect(render('{{ meta.run.id }}/{{ meta.rule.version }}/{{ meta.attempt }}')).toBe('run-1/3/2');
    expect(render('{{ custom.owner }}')).toBe('kim');
    expect(render('{{ steps.ticket.output.id }}')).toBe(991);
    expect(render('{{ halo.Ticket.Id }}')).toBe(42);
    expect(render('{{ autotask.Ticket.Id }}')).toBeNull();
  });
  it('reports errors with their position in the whole string', () => {
    const at = (t: string) => {
      try {
        compileTemplate(t);
      } catch (e) {
        return e as EngineError;
      }
      throw new Error('compiled');
    };
    expect(at('Hello {{ ticket.id').code).toBe('SB_RULE_PARSE');
    expect(at('Hello {{ ticket.id').position?.column).toBe(7);
    const e = at('x {{ ticket.id == }}');
    expect(e.code).toBe('SB_RULE_PARSE');
    expect(e.position?.column).toBeGreaterThan(15);
    expect(at('{{ }}').reason).toMatch(/empty placeholder/);
    expect(at('{{ nosuch(1) }}').code).toBe('SB_RULE_CHECK');
  });
});

describe('run fields of a rule', () => {
  it('compiles steps, strategies and timing', () => {
    const r = compileRule({
      id: 'r',
      source: '*',
      on: 'device.offline',
      onError: 'retry',
      retries: 5,
      debounce: { for: '15m', key: '{{ device.id }}' },
      throttle: { max: 1, per: '1h', key: '{{ device.id }}' },
      actions: [
        {
          id: 'ticket',
          type: 'psa.ticket.create',
          connection: 'halo-main',
          with: { summary: '{{ device.name }}' },
        },
        { type: 'delay', with: { for: '10s' } },
        { type: 'guard', with: { when: 'device.status == "offline" and steps.ticket.output.id != null' } },
        { type: 'slack', onError: 'stop', retries: 1, with: { text: 'Opened {{ steps.ticket.output.id }}' } },
      ],
    });
    const w = r.workflow;
    expect(w.steps.map((s) => [s.type, s.onError, s.retries])).toEqual([
      ['psa.ticket.create', 'retry', 5],
      ['delay', 'retry', 5],
      ['guard', 'retry', 5],
      ['slack', 'stop', 1],
    ]);
    expect(w.steps[1]!.delayMs).toBe(10_000);
    expect(w.debounce?.ms).toBe(900_000);
    expect(w.throttle).toMatchObject({ max: 1, perMs: 3_600_000 });
    const c = contextOf(
      { ...env, type: 'device.offline', data: { id: 'd1', name: 'SRV', status: 'offline' } },
      run,
    );
    expect(w.debounce!.key(c)).toBe('d1');
    expect(w.steps[0]!.params(c)).toEqual({ summary: 'SRV' });
    expect(w.steps[2]!.guard!(c, null)).toBe(true);
  });
  it('a scheduled rule matches no ingested event', () => {
    const r = compileRule({
      id: 'r',
      source: '*',
      schedule: { cron: '0 8 * * 1-5', tz: 'Europe/London' },
      actions: [],
    });
    expect(r.workflow.schedule).toEqual({ cron: '0 8 * * 1-5', tz: 'Europe/London' });
    expect(r.admits('default', 'halo', 'schedule.tick')).toBe(false);
  });
  it('rejects bad run fields with where and position', () => {
    const e = fails({
      actions: [
        { type: 'slack', with: { text: 'x' } },
        { type: 'webhook', with: { url: 'https://x/{{ ticket.id == }}' } },
      ],
    });
    expect(e.code).toBe('SB_RULE_PARSE');
    expect(e.where).toBe('actions[1].with.url');
    expect(e.position?.column).toBeGreaterThan(10);
    expect(fails({ actions: [{ type: 'nope' }] }).where).toBe('actions[0].type');
    expect(fails({ actions: [{ type: 'psa.ticket.create', with: {} }] }).where).toBe('actions[0].connection');
    expect(fails({ actions: [{ type: 'webhook', with: {} }] }).reason).toMatch(/needs "url"/);
    const later = fails({
      actions: [
        { type: 'log', with: { m: '{{ steps.b.output }}' } },
        { id: 'b', type: 'log' },
      ],
    });
    expect([later.code, later.where]).toEqual(['SB_RULE_CHECK', 'actions[0].with.m']);
    expect(fails({ actions: [{ type: 'delay', with: { for: '10 minutes' } }] }).where).toBe(
      'actions[0].with.for',
    );
    expect(fails({ onError: 'ignore' }).where).toBe('onError');
    expect(fails({ debounce: { for: '5m' } }).where).toBe('debounce.key');
    expect(fails({ throttle: { max: 0, per: '1h', key: 'k' } }).where).toBe('throttle.max');
    expect(fails({ on: 'x.y', schedule: { cron: '* * * * *' } }).where).toBe('schedule');
    expect(fails({ schedule: { cron: '* * * * *', tz: 'Mars/Olympus' } }).where).toBe('schedule.tz');
    expect(fails({ actions: [{ type: 'guard', with: { when: 'ticket.x ==' } }] }).where).toBe(
      'actions[0].with.when',
    );
    expect(fails({ actions: [{ type: 'log', extra: 1 }] }).where).toBe('actions[0].extra');
  });
  it('refuses parameters written as they are that no run could use; templates are judged when they run', () => {
    const step = (type: string, w: Record<string, unknown>) => fails({ actions: [{ type, with: w }] });
    const ftp = step('webhook', { url: 'ftp://files.example.com/drop' });
    expect([ftp.where, ftp.reason]).toEqual(['actions[0].with.url', 'must be an http or https URL, not ftp']);
    expect(step('slack', { url: 'hooks.slack.com/services/T0/B0/x' }).reason).toMatch(
      /must be an absolute http/,
    );
    expect(step('teams', { url: 'javascript:alert(1)' }).where).toBe('actions[0].with.url');
    const to = step('email', { to: 'noc@msp.example, helpdesk', subject: 's' });
    expect([to.where, to.reason]).toEqual(['actions[0].with.to', '"helpdesk" is not an email address']);
    expect(step('email', { to: ['noc@msp.example'], cc: ['x@'], subject: 's' }).where).toBe(
      'actions[0].with.cc',
    );
    const ok = (type: string, w: Record<string, unknown>) =>
      expect(() => compileRule({ id: 'r', source: '*', actions: [{ type, with: w }] })).not.toThrow();
    ok('webhook', { url: 'https://hooks.example.com/x?y=1' });
    ok('webhook', { url: '{{ custom.url }}' });
    ok('slack', { url: 'https://hooks.slack.com/services/{{ custom.path }}' });
    ok('email', { to: 'Jane Roe <jane@msp.example>, noc@msp.example', subject: 's' });
    ok('email', {
      to: ['{{ ticket.contact_email }}', 'noc@msp.example'],
      bcc: 'audit@msp.example',
      subject: 's',
    });
  });
  it('refuses parameters nested over 64 levels (SB_RULE_LIMIT), however deep, without overflowing', () => {
    const nest = (n: number) => {
      let v: unknown = 'x';
      for (let i = 0; i < n; i++) v = { a: v };
      return v;
    };
    // `with` itself is the first of the 64 levels: 63 objects inside `extra` pass, 64 do not.
    expect(() =>
      compileRule({ id: 'ok', source: '*', actions: [{ type: 'log', with: { extra: nest(63) } }] }),
    ).not.toThrow();
    for (const n of [64, 50_000]) {
      const e = fails({ actions: [{ type: 'log', with: { extra: nest(n) } }] });
      expect(e.code).toBe('SB_RULE_LIMIT');
      expect(e.where).toMatch(/^actions\[0\]\.with\.extra(\.a)+$/);
    }
  });
  it('conditions cannot read the run roots', () => {
    const r = compileRule({ id: 'r', source: '*', when: 'meta.attempt == 2' });
    expect(r.condition.pred(contextOf(env, run), null)).toBe(false);
  });
  it('parses durations', () => {
    expect([parseDuration('250ms'), parseDuration('2s'), parseDuration('7d'), parseDuration('1.5h')]).toEqual(
      [250, 2000, 604_800_000, undefined],
    );
  });
});

describe('debounce cancellations', () => {
  it('names the debounced rules an event admits without matching', () => {
    const engine = new Engine([
      compileRule({
        id: 'offline',
        tenant: 'acme',
        source: '*',
        on: ['device.offline', 'device.online'],
        when: 'device.status == "offline"',
        debounce: { for: '15m', key: '{{ device.id }}' },
      }),
      compileRule({ id: 'plain', tenant: 'acme', source: '*', on: 'device.*' }),
    ]);
    const ev = (type: string, status: string, tenant = 'acme') => ({
      id: 'e',
      tenant,
      source: 'rmm',
      type,
      data: { id: 'd1', status },
    });
    const online = ev('device.online', 'online');
    expect(engine.cancels(online, engine.match(online))).toEqual(['offline']);
    const offline = ev('device.offline', 'offline');
    expect(engine.match(offline)).toEqual(['offline', 'plain']);
    expect(engine.cancels(offline, engine.match(offline))).toEqual([]);
    const other = ev('device.rebooted', 'online');
    expect(engine.cancels(other, engine.match(other))).toEqual([]);
    expect(engine.cancels(ev('device.online', 'online', 'beta'), [])).toEqual([]);
  });
});
