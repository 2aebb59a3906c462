/**
 * The run executor (workflows.md): one BullMQ job per run, its steps executed in order with the
 * rule version the run started with.
 *
 * Durability: the run's state (next step, attempt, outputs, `custom`) lives in the job's data and
 * is written back after every step that is not the last, before the next one starts. A worker
 * killed mid-step leaves the job stalled; BullMQ hands it to another worker, which resumes at the
 * step in flight (never a completed one) with the same idempotency key. Retries and `delay` move
 * the job to BullMQ's delayed set (durable in Redis) and resume it there, so they survive restarts.
 */
import { DelayedError, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import {
  ADMIT_LUA,
  loopEntity,
  loopKey,
  orderingTime,
  type RunEvent,
  type RunJob,
  windowKey,
} from '../config/runs.js';
import { type CompiledRule, contextOf, type Envelope, type Step } from '../engine/index.js';
import type { Action, ActionContext } from './actions.js';
import { ActionError, WaitError } from './errors.js';
import { bounded, type HistoryLog, type RunRecord, type RunStatus, type StepRecord } from './history.js';
import { BrokenRuleError, type RuleCache, type RunnableRule } from './rules.js';
import { Timers } from './timers.js';

/** The run's progress, kept in the job's data. */
export interface RunState {
  readonly id: string;
  readonly version: number;
  step: number;
  /** Retries of the current step so far. */
  attempt: number;
  custom: Record<string, unknown>;
  outputs: Record<string, unknown>;
  /** `delay`: when the current delay ends. */
  waitUntil?: number;
  record: RunRecord;
}

export type RunJobData = RunJob & { state?: RunState };

/** The history record of a run starting now. */
function newRecord(job: Job<RunJobData>, d: RunJobData, version: number, now: number): RunRecord {
  return {
    id: String(job.id),
    tenant: d.tenant,
    ruleId: d.ruleId,
    version,
    eventId: d.event.id,
    rev: 0,
    status: 'running',
    reason: null,
    createdAt: d.event.receivedAt ? Date.parse(d.event.receivedAt) || now : now,
    startedAt: now,
    finishedAt: null,
    error: null,
    steps: [],
  };
}

export interface ExecutorOptions {
  readonly redis: Redis;
  readonly prefix: string;
  readonly rules: Pick<RuleCache, 'current' | 'version'>;
  readonly history: HistoryLog;
  readonly timers: Timers;
  readonly actions: Readonly<Record<string, Action>>;
  /** Tenant settings the executor needs (cached by the caller). */
  readonly tenant: (tenant: string) => Promise<{ allowPrivateNetworks: boolean }>;
  readonly now?: () => number;
  readonly random?: () => number;
  /** The first retry's delay (workflows.md: 1 s); each next one doubles. */
  readonly retryBaseMs?: number;
  readonly maxBackoffMs?: number;
}

/** Exponential backoff with ±20% jitter: base, 2×base, 4×base … capped. */
export function backoffMs(retry: number, baseMs: number, random: () => number, capMs = 3600_000): number {
  const exp = Math.min(capMs, baseMs * 2 ** (retry - 1));
  return Math.round(exp * (0.8 + 0.4 * random()));
}

/** KEYS: window zset. ARGV: now, window ms, max, member. → 1 admitted (or already admitted), 0 not. */
const ADMIT = `${ADMIT_LUA}
return admit(KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4])
`;

type ExecRedis = Redis & {
  sbAdmit(key: string, now: number, window: number, max: number, member: string): Promise<number>;
};

/** The time that orders an event among its entity's for debounce timers (config/runs.ts). */
function eventOrder(e: RunEvent, now: number): number {
  const t = orderingTime(e.time, Date.parse(e.receivedAt ?? '') || now);
  return Number.isFinite(t) ? t : now;
}

export class Executor {
  private readonly now: () => number;
  private readonly random: () => number;
  private readonly retryBaseMs: number;
  private readonly maxBackoffMs: number;
  private readonly redis: ExecRedis;

  constructor(private readonly o: ExecutorOptions) {
    this.now = o.now ?? Date.now;
    this.random = o.random ?? Math.random;
    this.retryBaseMs = o.retryBaseMs ?? 1000;
    this.maxBackoffMs = o.maxBackoffMs ?? 3600_000;
    if (!('sbAdmit' in o.redis)) o.redis.defineCommand('sbAdmit', { lua: ADMIT, numberOfKeys: 1 });
    this.redis = o.redis as ExecRedis;
  }

  /** The BullMQ processor. */
  readonly process = async (job: Job<RunJobData>, token?: string): Promise<unknown> => {
    let d = job.data;
    if (d.kind === 'cancel') return this.cancelTimer(d);
    if (d.kind === 'schedule' && d.state === undefined) {
      // Each tick is its own event: the scheduler's job template carries a fixed one.
      const at = new Date(job.timestamp).toISOString();
      d = { ...d, event: { ...d.event, id: `tick-${d.ruleId}-${job.timestamp}`, time: at, receivedAt: at } };
    }
    try {
      return await this.run(job, token, d);
    } catch (e) {
      if (!(e instanceof BrokenRuleError)) throw e;
      return this.broken(job, d, e);
    }
  };

  private async run(job: Job<RunJobData>, token: string | undefined, d: RunJobData): Promise<unknown> {
    let st = d.state;
    let rule: RunnableRule | undefined;
    if (st === undefined) {
      // A debounce timer that fires for a rule paused, archived or deleted meanwhile starts nothing.
      if (d.kind === 'debounced' && !(await this.o.rules.current(d.tenant, d.ruleId)))
        return { status: 'not-run' };
      rule =
        d.version !== undefined
          ? await this.o.rules.version(d.tenant, d.ruleId, d.version)
          : await this.o.rules.current(d.tenant, d.ruleId);
      const begun = await this.begin(job, d, rule);
      if (begun === undefined) return { status: 'not-run' };
      if ('status' in begun) return begun;
      st = begun;
    } else {
      rule = await this.o.rules.version(d.tenant, d.ruleId, st.version);
      if (!rule) {
        return this.finish(st, 'failed', `rule version ${st.version} no longer exists`);
      }
    }
    return this.steps(job, token, d, rule!.rule, st);
  }

  /** A run of a rule version that does not compile: recorded as failed, with why, not retried. */
  private async broken(job: Job<RunJobData>, d: RunJobData, e: BrokenRuleError): Promise<unknown> {
    const now = this.now();
    const record = d.state?.record ?? newRecord(job, d, e.version, now);
    record.status = 'failed';
    record.reason = e.message;
    record.error = { code: 'SB_RULE_BROKEN', message: e.message };
    record.finishedAt = now;
    await this.o.history.record(record);
    return { status: 'failed', reason: e.message };
  }

  /** Debounce, the loop breaker and throttle; then a new run's state (or why there is no run). */
  private async begin(
    job: Job<RunJobData>,
    d: RunJobData,
    rule: RunnableRule | undefined,
  ): Promise<RunState | { status: string } | undefined> {
    // The rule was paused, archived or deleted between the match and now: no run.
    if (!rule) return undefined;
    const now = this.now();
    const record = newRecord(job, d, rule.version, now);
    const w = rule.rule.workflow;
    const kind = d.kind ?? 'match';
    if (w.debounce && kind === 'match') {
      const key = String(w.debounce.key(contextOf(d.event as Envelope)) ?? '');
      const t = eventOrder(d.event, now);
      const armed = await this.o.timers.arm(Timers.id(d.tenant, d.ruleId, key), now + w.debounce.ms, t, {
        tenant: d.tenant,
        ruleId: d.ruleId,
        event: d.event,
        kind: 'debounced',
        version: rule.version,
        ...(d.snapshot ? { snapshot: d.snapshot } : {}),
      });
      return { status: armed ? 'debounce-armed' : 'debounce-older-event' };
    }
    if (kind !== 'schedule') {
      const entity = loopEntity(d.event);
      const reason = () =>
        `loop breaker: more than ${w.loop.max} runs of this rule for ${entity} within ${w.loop.windowMs / 60_000} minutes`;
      // A match the ingest already counted (in the COMMIT that accepted the event) carries the
      // verdict: no round trip here. Other runs are counted now.
      const refused =
        d.loop === 'ok'
          ? undefined
          : d.loop === 'over'
            ? await this.refuse(record, 'skipped', reason())
            : await this.admit(
                record,
                loopKey(this.o.prefix, d.tenant, d.ruleId, entity),
                w.loop.windowMs,
                w.loop.max,
                'skipped',
                reason,
              );
      if (refused) return refused;
    }
    if (w.throttle) {
      const key = String(w.throttle.key(contextOf(d.event as Envelope)) ?? '');
      const refused = await this.admit(
        record,
        windowKey(this.o.prefix, 'throttle', d.tenant, d.ruleId, key),
        w.throttle.perMs,
        w.throttle.max,
        'throttled',
        () =>
          `throttle: at most ${w.throttle!.max} runs per ${w.throttle!.perMs / 1000} s for key ${JSON.stringify(key)}`,
      );
      if (refused) return refused;
    }
    // No history record yet: a run that finishes in one go is written once, when it ends (a
    // suspended or checkpointed run is written then).
    return { id: record.id, version: rule.version, step: 0, attempt: 0, custom: {}, outputs: {}, record };
  }

  /**
   * Counts the run in a sliding window (loop breaker, throttle); past `max`, records the run as
   * `status` with the reason and answers so.
   */
  private async admit(
    record: RunRecord,
    key: string,
    windowMs: number,
    max: number,
    status: RunStatus,
    reason: () => string,
  ): Promise<{ status: string } | undefined> {
    if ((await this.redis.sbAdmit(key, this.now(), windowMs, max, record.id)) === 1) return undefined;
    return this.refuse(record, status, reason());
  }

  /** Records a run that does not go (loop breaker, throttle) with the reason. */
  private async refuse(record: RunRecord, status: RunStatus, reason: string): Promise<{ status: string }> {
    record.status = status;
    record.reason = reason;
    record.finishedAt = this.now();
    await this.o.history.record(record);
    return { status };
  }

  private async cancelTimer(d: RunJobData): Promise<unknown> {
    const rule = await this.o.rules.current(d.tenant, d.ruleId);
    const deb = rule?.rule.workflow.debounce;
    if (!deb) return { status: 'no-debounce' };
    const key = String(deb.key(contextOf(d.event as Envelope)) ?? '');
    const t = eventOrder(d.event, this.now());
    const done = await this.o.timers.cancel(Timers.id(d.tenant, d.ruleId, key), t);
    return { status: done ? 'debounce-cancelled' : 'no-timer' };
  }

  private roots(d: RunJobData, st: RunState): Record<string, unknown> {
    const steps: Record<string, unknown> = {};
    for (const [id, output] of Object.entries(st.outputs)) steps[id] = { output };
    return {
      meta: {
        run: { id: st.id },
        rule: { id: d.ruleId, version: st.version },
        attempt: st.attempt + 1,
        event: { id: d.event.id },
      },
      custom: st.custom,
      steps,
    };
  }

  private async steps(
    job: Job<RunJobData>,
    token: string | undefined,
    d: RunJobData,
    rule: CompiledRule,
    st: RunState,
  ): Promise<unknown> {
    const steps = rule.workflow.steps;
    const settings = await this.o.tenant(d.tenant);
    while (st.step < steps.length) {
      const s = steps[st.step]!;
      const rec: StepRecord = (st.record.steps[st.step] ??= {
        idx: st.step,
        type: s.type,
        status: 'running',
        attempts: 0,
        startedAt: this.now(),
        finishedAt: null,
        output: null,
        error: null,
      });
      rec.status = 'running';
      if (s.type === 'delay') {
        if (st.waitUntil === undefined) {
          st.waitUntil = this.now() + s.delayMs;
          rec.attempts = 1;
          return this.suspend(job, token, d, st, st.waitUntil, 'delayed');
        }
        if (this.now() < st.waitUntil) return this.suspend(job, token, d, st, st.waitUntil, 'delayed');
        st.waitUntil = undefined;
        this.complete(st, s, rec, { waitedMs: s.delayMs });
        await this.checkpoint(job, d, st, steps.length);
        continue;
      }
      if (s.type === 'guard') {
        const ok = await this.guard(d, st, s);
        rec.attempts++;
        if (!ok) {
          rec.status = 'completed';
          rec.finishedAt = this.now();
          rec.output = { passed: false };
          for (let i = st.step + 1; i < steps.length; i++) {
            st.record.steps[i] = {
              idx: i,
              type: steps[i]!.type,
              status: 'skipped',
              attempts: 0,
              startedAt: null,
              finishedAt: null,
              output: null,
              error: null,
            };
          }
          return this.finish(st, 'skipped', `guard at step ${st.step} was false`);
        }
        this.complete(st, s, rec, { passed: true });
        await this.checkpoint(job, d, st, steps.length);
        continue;
      }
      const params = s.params(contextOf(d.event as Envelope, this.roots(d, st))) as Record<string, unknown>;
      const actx: ActionContext = {
        tenant: d.tenant,
        runId: st.id,
        stepIndex: st.step,
        idempotencyKey: `${st.id}:${st.step}`,
        connection: s.connection,
        event: d.event,
        allowPrivate: settings.allowPrivateNetworks,
        now: this.now,
      };
      rec.attempts++;
      rec.startedAt ??= this.now();
      let out: unknown;
      try {
        const action = this.o.actions[s.type];
        if (!action) throw new ActionError(`no action "${s.type}" in this worker`, { retryable: false });
        out = await action(params, actx);
      } catch (e) {
        if (e instanceof WaitError) {
          // A spent budget is not a failure: wait for it without counting an attempt.
          rec.attempts--;
          rec.error = { code: 'SB_WAIT', message: e.why };
          return this.suspend(job, token, d, st, this.now() + e.ms, 'delayed');
        }
        const err =
          e instanceof ActionError
            ? e
            : new ActionError((e as Error)?.message ?? String(e), { retryable: true, code: 'SB_ERROR' });
        rec.error = err.toJSON();
        if (s.onError === 'retry' && err.retryable && st.attempt < s.retries) {
          st.attempt++;
          const wait = Math.max(
            err.retryAfterMs ?? 0,
            backoffMs(st.attempt, this.retryBaseMs, this.random, this.maxBackoffMs),
          );
          return this.suspend(job, token, d, st, this.now() + wait, 'running');
        }
        rec.status = 'failed';
        rec.finishedAt = this.now();
        st.attempt = 0;
        if (s.onError === 'stop') {
          return this.finish(
            st,
            'failed',
            `step ${st.step} (${s.type}) failed: ${err.message}`,
            err.toJSON(),
          );
        }
        // continue (and retry once its retries are spent): record the failure, go on.
        st.step++;
        await this.checkpoint(job, d, st, steps.length);
        continue;
      }
      if (s.type === 'set') st.custom = { ...st.custom, ...params };
      if (s.type === 'log')
        (st.record.logs ??= []).push({ idx: s.index, at: this.now(), record: bounded(params) });
      this.complete(st, s, rec, out);
      await this.checkpoint(job, d, st, steps.length);
    }
    const failed = st.record.steps.filter((r) => r.status === 'failed').length;
    return this.finish(
      st,
      'completed',
      failed > 0 ? `${failed} step(s) failed and the run went on (onError: continue)` : null,
    );
  }

  private complete(st: RunState, s: Step, rec: StepRecord, out: unknown): void {
    rec.status = 'completed';
    rec.finishedAt = this.now();
    rec.output = bounded(out);
    rec.error = null;
    if (s.id) st.outputs[s.id] = rec.output;
    st.step++;
    st.attempt = 0;
  }

  /** Saves progress before the next step runs (not after the last: the job completes then). */
  private async checkpoint(job: Job<RunJobData>, d: RunJobData, st: RunState, total: number): Promise<void> {
    if (st.step >= total) return;
    await job.updateData({ ...d, state: st });
    const logs = st.record.logs;
    void this.o.history.record(st.record).catch(() => {});
    // Log records are written once: the next history record carries only new ones.
    if (logs) st.record.logs = [];
  }

  /** Moves the job to the delayed set until `at`, with its state; resumes in `process`. */
  private async suspend(
    job: Job<RunJobData>,
    token: string | undefined,
    d: RunJobData,
    st: RunState,
    at: number,
    status: RunStatus,
  ): Promise<never> {
    st.record.status = status;
    await job.updateData({ ...d, state: st });
    await this.o.history.record(st.record);
    if (st.record.logs) st.record.logs = [];
    await job.moveToDelayed(at, token);
    throw new DelayedError();
  }

  private async finish(
    st: RunState,
    status: RunStatus,
    reason: string | null,
    error: unknown = null,
  ): Promise<unknown> {
    st.record.status = status;
    st.record.reason = reason;
    st.record.error = error;
    st.record.finishedAt = this.now();
    await this.o.history.record(st.record);
    return { status, reason, steps: st.record.steps.length };
  }

  /** A guard sees the entity's latest snapshot as its data (the event's own data when there is none). */
  private async guard(d: RunJobData, st: RunState, s: Step): Promise<boolean> {
    let data = d.event.data;
    if (d.snapshot) {
      const h = await this.o.redis.hgetall(d.snapshot);
      const snap: Record<string, unknown> = {};
      let any = false;
      for (const [f, v] of Object.entries(h)) {
        if (!f.startsWith('k:')) continue;
        snap[f.slice(2)] = JSON.parse(v);
        any = true;
      }
      if (any) data = snap;
    }
    return s.guard!(contextOf({ ...(d.event as Envelope), data }, this.roots(d, st)), null);
  }
}
