/**
 * The run fields of a rule document (workflows.md): actions with their templates, onError and
 * retries, debounce, throttle, schedule and the loop breaker. Validated and compiled when the rule
 * is saved, so that a bad template rejects the rule with the step and position.
 */
import type { Pred } from './compile.js';
import { describe, EngineError, invalid } from './errors.js';
import { compileGuard, compileParams, type Render, type TemplateScope } from './template.js';

export type ErrorStrategy = 'continue' | 'retry' | 'stop';
const STRATEGIES: ReadonlySet<string> = new Set(['continue', 'retry', 'stop']);

/** Parameters each action requires in `with` (the worker checks the rest when it runs). */
export const ACTION_TYPES: Readonly<Record<string, readonly string[]>> = {
  webhook: ['url'],
  slack: [],
  teams: [],
  email: ['to', 'subject'],
  'psa.ticket.create': [],
  'psa.ticket.update': ['id'],
  'psa.note.add': ['ticket_id', 'text'],
  'psa.request': ['method', 'path'],
  delay: ['for'],
  guard: ['when'],
  set: [],
  log: [],
};

/** Actions that call a PSA and need a `connection`. */
const NEEDS_CONNECTION = /^psa\./;

export interface Step {
  readonly index: number;
  readonly id: string | undefined;
  readonly type: string;
  readonly connection: string | undefined;
  /** Renders the step's `with` (always an object). */
  readonly params: Render;
  readonly onError: ErrorStrategy;
  readonly retries: number;
  /** `delay`: how long, in ms. */
  readonly delayMs: number;
  /** `guard`: the condition. */
  readonly guard: Pred | undefined;
  /** The step as written, for history and the admin API. */
  readonly doc: Readonly<Record<string, unknown>>;
}

export interface Debounce {
  readonly ms: number;
  readonly key: Render;
}

export interface Throttle {
  readonly max: number;
  readonly perMs: number;
  readonly key: Render;
}

export interface Schedule {
  readonly cron: string;
  readonly tz: string;
}

export interface LoopBreaker {
  readonly max: number;
  readonly windowMs: number;
}

export interface Workflow {
  readonly steps: readonly Step[];
  readonly onError: ErrorStrategy;
  readonly retries: number;
  readonly debounce: Debounce | undefined;
  readonly throttle: Throttle | undefined;
  readonly schedule: Schedule | undefined;
  readonly loop: LoopBreaker;
}

export const DEFAULT_RETRIES = 3;
export const DEFAULT_LOOP: LoopBreaker = Object.freeze({ max: 5, windowMs: 10 * 60_000 });
const RUN_FIELDS = ['actions', 'onError', 'retries', 'debounce', 'throttle', 'schedule', 'loop'];
/** The workflow of a rule without run fields (most rules in benchmarks), shared. */
const EMPTY: Workflow = Object.freeze({
  steps: [],
  onError: 'continue',
  retries: DEFAULT_RETRIES,
  debounce: undefined,
  throttle: undefined,
  schedule: undefined,
  loop: DEFAULT_LOOP,
});
const MAX_STEPS = 50;
const MAX_RETRIES = 25;
const MAX_DURATION_MS = 366 * 24 * 3600_000;

const UNITS: Readonly<Record<string, number>> = { ms: 1, s: 1000, m: 60_000, h: 3600_000, d: 86_400_000 };

/** `<n>ms|s|m|h|d` → milliseconds, or undefined when malformed. */
export function parseDuration(text: unknown): number | undefined {
  if (typeof text !== 'string') return undefined;
  const m = /^(\d{1,9})(ms|s|m|h|d)$/.exec(text);
  if (!m) return undefined;
  return Number(m[1]) * UNITS[m[2]!]!;
}

function duration(v: unknown, where: string, min = 0): number {
  const ms = parseDuration(v);
  if (ms === undefined) throw invalid(where, `must be a duration like "15m" (<n>ms|s|m|h|d), not ${show(v)}`);
  if (ms < min) throw invalid(where, `must be at least ${min} ms`);
  if (ms > MAX_DURATION_MS) throw invalid(where, 'must be at most 366d');
  return ms;
}

function show(v: unknown): string {
  return typeof v === 'string' ? JSON.stringify(v) : describe(v);
}

function object(v: unknown, where: string): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v))
    throw invalid(where, `must be an object, not ${describe(v)}`);
  return v as Record<string, unknown>;
}

function strategy(v: unknown, where: string): ErrorStrategy {
  if (typeof v !== 'string' || !STRATEGIES.has(v))
    throw invalid(where, 'must be one of continue, retry, stop');
  return v as ErrorStrategy;
}

function integer(v: unknown, where: string, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max)
    throw invalid(where, `must be an integer from ${min} to ${max}`);
  return v;
}

function retries(v: unknown, where: string): number {
  return integer(v, where, 0, MAX_RETRIES);
}

/** A template key (debounce, throttle): required, and a template or a constant string. */
function keyTemplate(v: unknown, where: string): Render {
  if (typeof v !== 'string' || v.length === 0)
    throw invalid(where, 'must be a non-empty string, usually a template like "{{ device.id }}"');
  return compileParams(v, where);
}

const STEP_ID = /^[a-z0-9][a-z0-9_-]{0,63}$/;

function compileStep(
  raw: unknown,
  index: number,
  ruleOnError: ErrorStrategy,
  ruleRetries: number,
  scope: TemplateScope,
): Step {
  const where = `actions[${index}]`;
  const d = object(raw, where);
  for (const k of Object.keys(d)) {
    if (!['id', 'type', 'with', 'onError', 'retries', 'connection', 'name'].includes(k))
      throw invalid(
        `${where}.${k}`,
        `unknown step field "${k}" (a step has type, id, with, connection, onError, retries)`,
      );
  }
  if (typeof d.type !== 'string' || !Object.hasOwn(ACTION_TYPES, d.type)) {
    throw invalid(
      `${where}.type`,
      `unknown action ${show(d.type)}: one of ${Object.keys(ACTION_TYPES).join(', ')}`,
    );
  }
  const type = d.type;
  let id: string | undefined;
  if (d.id !== undefined) {
    if (typeof d.id !== 'string' || !STEP_ID.test(d.id))
      throw invalid(`${where}.id`, 'must be a string of [a-z0-9][a-z0-9_-]{0,63}');
    if (scope.earlierSteps.has(d.id)) throw invalid(`${where}.id`, `duplicate step id "${d.id}"`);
    id = d.id;
  }
  const w = d.with === undefined ? {} : object(d.with, `${where}.with`);
  for (const k of ACTION_TYPES[type]!) {
    if (!Object.hasOwn(w, k)) throw invalid(`${where}.with`, `${type} needs "${k}"`);
  }
  let connection: string | undefined;
  if (d.connection !== undefined) {
    if (typeof d.connection !== 'string' || !STEP_ID.test(d.connection))
      throw invalid(`${where}.connection`, 'must be a connection id');
    connection = d.connection;
  } else if (NEEDS_CONNECTION.test(type)) {
    throw invalid(`${where}.connection`, `${type} needs a "connection" (the id of a PSA connection)`);
  }
  let delayMs = 0;
  let guard: Pred | undefined;
  let params: Render;
  if (type === 'delay') {
    delayMs = duration(w.for, `${where}.with.for`, 1);
    params = () => ({ for: w.for });
  } else if (type === 'guard') {
    if (typeof w.when !== 'string') throw invalid(`${where}.with.when`, 'must be an expression string');
    try {
      guard = compileGuard(w.when, scope);
    } catch (e) {
      throw e instanceof EngineError ? e.within(`${where}.with.when`) : e;
    }
    params = () => ({ when: w.when });
  } else {
    literalProblems(type, w, `${where}.with`);
    params = compileParams(w, `${where}.with`, scope);
  }
  return {
    index,
    id,
    type,
    connection,
    params,
    onError: d.onError === undefined ? ruleOnError : strategy(d.onError, `${where}.onError`),
    retries: d.retries === undefined ? ruleRetries : retries(d.retries, `${where}.retries`),
    delayMs,
    guard,
    doc: d,
  };
}

/** Compiles the run fields of a rule document (the rest is rule.ts's). */
export function compileWorkflow(d: Readonly<Record<string, unknown>>): Workflow {
  if (!RUN_FIELDS.some((f) => Object.hasOwn(d, f))) return EMPTY;
  const onError = d.onError === undefined ? 'continue' : strategy(d.onError, 'onError');
  const ruleRetries = d.retries === undefined ? DEFAULT_RETRIES : retries(d.retries, 'retries');
  const list = d.actions === undefined ? [] : d.actions;
  if (!Array.isArray(list)) throw invalid('actions', '"actions" must be an array');
  if (list.length > MAX_STEPS) throw invalid('actions', `at most ${MAX_STEPS} steps`);
  const earlier = new Set<string>();
  const steps = list.map((s, i) => {
    const step = compileStep(s, i, onError, ruleRetries, { earlierSteps: new Set(earlier) });
    if (step.id) earlier.add(step.id);
    return step;
  });
  let debounce: Debounce | undefined;
  if (d.debounce !== undefined) {
    const o = object(d.debounce, 'debounce');
    debounce = { ms: duration(o.for, 'debounce.for', 1000), key: keyTemplate(o.key, 'debounce.key') };
  }
  let throttle: Throttle | undefined;
  if (d.throttle !== undefined) {
    const o = object(d.throttle, 'throttle');
    throttle = {
      max: integer(o.max, 'throttle.max', 1, 1_000_000),
      perMs: duration(o.per, 'throttle.per', 1000),
      key: keyTemplate(o.key, 'throttle.key'),
    };
  }
  let schedule: Schedule | undefined;
  if (d.schedule !== undefined) {
    const o = object(d.schedule, 'schedule');
    if (Object.hasOwn(d, 'on'))
      throw invalid('schedule', 'a scheduled rule has no "on" (its events are schedule.tick)');
    if (debounce) throw invalid('schedule', 'a scheduled rule cannot also be debounced');
    const cron = o.cron;
    const why = typeof cron === 'string' ? cronProblem(cron) : 'not a string';
    if (typeof cron !== 'string' || why !== undefined)
      throw invalid(
        'schedule.cron',
        `must be a cron expression of 5 or 6 fields, like "0 8 * * 1-5", not ${show(o.cron)}: ${why}`,
      );
    const tz = o.tz === undefined ? 'UTC' : o.tz;
    if (typeof tz !== 'string' || !validZone(tz))
      throw invalid('schedule.tz', `must be an IANA time zone like "Europe/London", not ${show(o.tz)}`);
    schedule = { cron, tz };
  }
  let loop = DEFAULT_LOOP;
  if (d.loop !== undefined) {
    const o = object(d.loop, 'loop');
    loop = {
      max: integer(o.max, 'loop.max', 1, 10_000),
      windowMs: o.within === undefined ? DEFAULT_LOOP.windowMs : duration(o.within, 'loop.within', 1000),
    };
  }
  return { steps, onError, retries: ruleRetries, debounce, throttle, schedule, loop };
}

/** A parameter written as it is, with no `{{ }}`: what it will be at run time. */
const literal = (v: unknown): v is string => typeof v === 'string' && !v.includes('{{');

/**
 * Parameters written as they are that no run could use, refused when the rule is saved rather
 * than failing every run: a URL that is not http or https, an email address without a domain.
 */
function literalProblems(type: string, w: Readonly<Record<string, unknown>>, where: string): void {
  if ((type === 'webhook' || type === 'slack' || type === 'teams') && literal(w.url)) {
    let protocol = '';
    try {
      protocol = new URL(w.url).protocol;
    } catch {
      throw invalid(`${where}.url`, `must be an absolute http or https URL, not ${show(w.url)}`);
    }
    if (protocol !== 'http:' && protocol !== 'https:')
      throw invalid(`${where}.url`, `must be an http or https URL, not ${protocol.slice(0, -1)}`);
  }
  if (type === 'email') {
    for (const k of ['to', 'cc', 'bcc']) {
      const v = w[k];
      for (const one of Array.isArray(v) ? v : [v]) {
        if (!literal(one)) continue;
        for (const part of one.split(',')) {
          // `Jane Roe <jane@example.com>` or `jane@example.com`
          const address = /<([^<>]*)>\s*$/.exec(part)?.[1] ?? part.trim();
          if (!/^[^\s@]+@[^\s@]+$/.test(address))
            throw invalid(`${where}.${k}`, `${show(part.trim())} is not an email address`);
        }
      }
    }
  }
}

/** A cron field: its name, its values' range, and the names it takes (the first one is `min`). */
interface CronField {
  readonly name: string;
  readonly min: number;
  readonly max: number;
  readonly names?: readonly string[];
}

const CRON_SECOND: CronField = { name: 'second', min: 0, max: 59 };
const CRON_FIELDS: readonly CronField[] = [
  { name: 'minute', min: 0, max: 59 },
  { name: 'hour', min: 0, max: 23 },
  { name: 'day of month', min: 1, max: 31 },
  {
    name: 'month',
    min: 1,
    max: 12,
    names: ['jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec'],
  },
  { name: 'day of week', min: 0, max: 7, names: ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'] },
];
const CRON_ALIASES = new Set(['@yearly', '@annually', '@monthly', '@weekly', '@daily', '@hourly']);
/** Days in each month, February in a leap year. */
const MONTH_DAYS = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

/**
 * Why a cron expression will not run, or undefined when it will: five fields (minute hour
 * day-of-month month day-of-week) or six (a second first), each a list of `*`, values, ranges and
 * steps within the field's range (names for months and weekdays), `?` for either day field, `L`
 * (the month's last day), `5L` (its last Friday), `1#2` (its second Monday); or @yearly, @monthly,
 * @weekly, @daily, @hourly. Whatever it accepts, the scheduler's parser (cron-parser, through
 * BullMQ) takes too: tests/engine/cron.test.ts checks both on the same expressions.
 */
export function cronProblem(text: string): string | undefined {
  const t = text.trim();
  if (t.startsWith('@')) return CRON_ALIASES.has(t.toLowerCase()) ? undefined : `unknown shorthand ${t}`;
  const parts = t.split(/\s+/);
  if (parts.length !== 5 && parts.length !== 6) return `${parts.length} fields`;
  const fields = parts.length === 6 ? [CRON_SECOND, ...CRON_FIELDS] : CRON_FIELDS;
  const explicit: number[][] = [];
  for (let i = 0; i < parts.length; i++) {
    const f = fields[i]!;
    const why = cronFieldProblem(parts[i]!, f);
    if (why !== undefined) return `${f.name} ${JSON.stringify(parts[i])}: ${why}`;
    explicit.push(/^[0-9a-z,]+$/i.test(parts[i]!) ? parts[i]!.split(',').map((v) => cronValue(v, f)!) : []);
  }
  // A day of month that no month named has (30 February): it would never run.
  const [days, months] = [explicit[fields.length - 3]!, explicit[fields.length - 2]!];
  if (
    days.length > 0 &&
    months.length > 0 &&
    Math.min(...days) > Math.max(...months.map((m) => MONTH_DAYS[m - 1]!))
  )
    return `no month named has day ${Math.min(...days)}`;
  return undefined;
}

function cronValue(v: string, f: CronField): number | undefined {
  if (/^\d{1,2}$/.test(v)) {
    const n = Number(v);
    return n >= f.min && n <= f.max ? n : undefined;
  }
  const i = f.names?.indexOf(v.toLowerCase()) ?? -1;
  return i < 0 ? undefined : f.min + i;
}

function cronFieldProblem(field: string, f: CronField): string | undefined {
  const range = `values are ${f.min}–${f.max}${f.names ? ` or ${f.names[0]}–${f.names.at(-1)}` : ''}`;
  const dayField = f.name === 'day of month' || f.name === 'day of week';
  if (field.includes('#')) {
    const m = /^([0-9a-z]+)#([1-5])$/i.exec(field);
    if (f.name !== 'day of week' || !m || cronValue(m[1]!, f) === undefined)
      return '"#" goes in the day of week alone, as weekday#1 to weekday#5';
    return undefined;
  }
  // The values each item stands for: cron-parser refuses a list whose items share one.
  const seen = new Set<number>();
  const items = field.split(',');
  for (const item of items) {
    if (item === '') return 'an empty list item';
    if (item === 'L' && f.name === 'day of month') continue;
    const last = /^([0-9a-z]+)L$/i.exec(item);
    if (last && f.name === 'day of week') {
      if (cronValue(last[1]!, f) === undefined) return `${item}: ${range}`;
      continue;
    }
    const m = /^(\*|\?|[0-9a-z]+)(?:-([0-9a-z]+))?(?:\/(\d{1,3}))?$/i.exec(item);
    if (!m || (m[1] === '?' && !dayField) || ((m[1] === '*' || m[1] === '?') && m[2] !== undefined))
      return `${item}: not a value, range or step`;
    const step = m[3] === undefined ? 1 : Number(m[3]);
    if (step < 1) return `${item}: a step is at least 1`;
    let from: number | undefined = f.min;
    let to: number | undefined = f.max;
    if (m[1] !== '*' && m[1] !== '?') {
      from = cronValue(m[1]!, f);
      // `5/10`: from 5 to the field's end
      to = m[2] !== undefined ? cronValue(m[2], f) : m[3] !== undefined ? f.max : from;
      if (from === undefined || to === undefined) return `${item}: ${range}`;
      if (from > to) return `${item}: a range runs from low to high`;
    }
    if (items.length === 1) continue;
    for (let v = from; v <= to; v += step) {
      // 7 and 0 are both Sunday
      const day = f.name === 'day of week' && v === 7 ? 0 : v;
      if (seen.has(day)) return `${item}: repeats a value of the list (${v})`;
      seen.add(day);
    }
  }
  return undefined;
}

function validZone(tz: string): boolean {
  try {
    new Intl.DateTimeFormat('en', { timeZone: tz });
    return true;
  } catch {
    return false;
  }
}
