/**
 * The admin service layer: every operation of the admin API, once. The HTTP JSON and gRPC front
 * ends only authenticate, decode and encode; what an operation does, which role it needs and what
 * it answers is decided here (and in ops.ts, which lists the operations).
 *
 * Tenant confinement: every query names the caller's tenant; an id of another tenant is simply
 * not found, never "forbidden" (that would tell the id exists).
 */
import type { Queue } from 'bullmq';
import { RUN_JOB_KEEP, type RunJob, runJobId } from '../config/runs.js';
import {
  type CompiledRule,
  checkEnvelope,
  compileRule,
  contextOf,
  Engine,
  EngineError,
  type Envelope,
  explain,
  RULE_ID,
  storedRuleProblem,
} from '../engine/index.js';
import {
  audit,
  type ConnectionInfo,
  type ConnectionStore,
  type Db,
  type RuleStatus,
  type RuleStore,
  type StoredRule,
  setTenantSettings,
  tenantSettings,
  VersionConflict,
} from '../store/index.js';
import { connectionProblems } from './connection-kinds.js';
import { AdminError, type FieldError, invalid, notFound } from './errors.js';
import type { ApiKeyInfo, ApiKeys, Caller, Role } from './keys.js';
import { TEMPLATES, template } from './templates.js';

/** Turns a raw PSA body into envelopes, as the ingest adapter would (no signature check). */
export type RawAdapter = (
  source: string,
  tenant: string,
  body: Buffer,
) => Promise<{ envelopes: Envelope[]; errors: Array<{ index: number; error: string }> }>;

/** Calls the PSA (or other) API of a connection with its credentials, to see that they work. */
export type ConnectionChecker = (
  tenant: string,
  id: string,
) => Promise<{ ok: boolean; detail: string; latencyMs: number } | undefined>;

export interface AdminDeps {
  readonly db: Db;
  readonly rules: RuleStore;
  readonly connections: ConnectionStore;
  readonly keys: ApiKeys;
  /** The run queue (trigger, retry, cancel, replay); without it those answer `unavailable`. */
  readonly queue?: Queue<RunJob>;
  readonly adapt?: RawAdapter;
  readonly check?: ConnectionChecker;
  readonly now?: () => number;
}

type Obj = Record<string, unknown>;

const iso = (d: Date | string | null | undefined): string | null =>
  d === null || d === undefined ? null : new Date(d).toISOString();

/** The rule as the API shows it. */
export function ruleView(r: StoredRule): Obj {
  return {
    id: r.id,
    version: r.version,
    status: r.status,
    name: typeof r.document.name === 'string' ? r.document.name : '',
    document: r.document,
    runCount: r.runCount,
    lastRunAt: iso(r.lastRunAt),
    createdAt: iso(r.createdAt),
    updatedAt: iso(r.updatedAt),
  };
}

export function connectionView(c: ConnectionInfo): Obj {
  return {
    id: c.id,
    kind: c.kind,
    name: c.name,
    settings: c.settings,
    hasSecret: c.hasSecret,
    createdAt: iso(c.createdAt),
    updatedAt: iso(c.updatedAt),
  };
}

function keyView(k: ApiKeyInfo): Obj {
  return { ...k };
}

/** An engine error, as field errors of a request (`document` + where it is in the rule). */
export function fieldErrorOf(e: EngineError, prefix: string): FieldError {
  return {
    field: e.where ? `${prefix}.${e.where}` : prefix,
    reason: e.reason,
    code: e.code,
    ...(e.position ? { position: { line: e.position.line, column: e.position.column } } : {}),
    ...(e.snippet ? { snippet: e.snippet } : {}),
  };
}

interface RunRow {
  id: string;
  rule_id: string;
  rule_version: number;
  event_id: string | null;
  status: string;
  reason: string | null;
  created_at: Date;
  started_at: Date | null;
  finished_at: Date | null;
  error: unknown;
}

const RUN_COLUMNS =
  'id, rule_id, rule_version, event_id, status, reason, created_at, started_at, finished_at, error';

function runView(r: RunRow): Obj {
  return {
    id: r.id,
    ruleId: r.rule_id,
    ruleVersion: r.rule_version,
    eventId: r.event_id,
    status: r.status,
    reason: r.reason,
    createdAt: iso(r.created_at),
    startedAt: iso(r.started_at),
    finishedAt: iso(r.finished_at),
    error: r.error ?? null,
  };
}

/** Opaque keyset cursors: the last row's (created_at, id). */
/** Rules a ListRules page holds unless `limit` says otherwise. */
const RULES_PAGE = 500;

/** A ListRules cursor: the last rule id of the page before (base64url). */
function decodeRuleCursor(c: string): string {
  const id = Buffer.from(c, 'base64url').toString('utf8');
  if (!RULE_ID.test(id) || Buffer.from(id).toString('base64url') !== c)
    throw invalid('cursor', 'not a cursor this API returned');
  return id;
}

function encodeCursor(at: Date, id: string): string {
  return Buffer.from(JSON.stringify([new Date(at).toISOString(), id])).toString('base64url');
}

function decodeCursor(c: string): [string, string] {
  try {
    const v = JSON.parse(Buffer.from(c, 'base64url').toString('utf8')) as unknown;
    if (Array.isArray(v) && v.length === 2 && typeof v[0] === 'string' && typeof v[1] === 'string') {
      if (!Number.isNaN(Date.parse(v[0]))) return [v[0], v[1]];
    }
  } catch {
    // fall through
  }
  throw invalid('cursor', 'not a cursor this API returned');
}

function parseTime(field: string, v: unknown): string | undefined {
  if (v === undefined || v === null || v === '') return undefined;
  if (typeof v !== 'string' || Number.isNaN(Date.parse(v)))
    throw invalid(field, 'must be an ISO 8601 time, like 2026-11-02T09:30:00Z');
  return new Date(v).toISOString();
}

/**
 * The [from, to) window of an input's times, `defaults` standing in for those not given. A window
 * that ends before it starts (or where it starts) is refused: it would match nothing, silently.
 */
function parseWindow(
  i: { from?: unknown; to?: unknown },
  defaults: { from?: string; to?: string } = {},
): { from: string | undefined; to: string | undefined } {
  const givenTo = parseTime('to', i.to);
  const from = parseTime('from', i.from) ?? defaults.from;
  const to = givenTo ?? defaults.to;
  if (from !== undefined && to !== undefined && Date.parse(to) <= Date.parse(from)) {
    throw givenTo !== undefined
      ? invalid('to', `must be after from (${from})`)
      : invalid('from', `must be before to, which defaults to ${to}`);
  }
  return { from, to };
}

const MAX_TEST_EVENTS = 100;

/** SQL conditions joined by `and`, each `?` numbered as the next parameter, in order. */
class Where {
  readonly args: unknown[] = [];
  private readonly parts: string[] = [];

  and(sql: string, ...values: unknown[]): this {
    let k = 0;
    this.parts.push(sql.replace(/\?/g, () => this.param(values[k++])));
    return this;
  }

  /** Adds a parameter; its placeholder. */
  param(v: unknown): string {
    this.args.push(v);
    return `$${this.args.length}`;
  }

  copy(): Where {
    const w = new Where();
    w.args.push(...this.args);
    w.parts.push(...this.parts);
    return w;
  }

  get sql(): string {
    return this.parts.join(' and ');
  }
}

/** Rule versions whose compile problem (or none) an AdminService keeps. */
const MAX_PROBLEMS = 100_000;

export class AdminService {
  private readonly now: () => number;
  private readonly problems = new Map<string, string | null>();

  constructor(private readonly d: AdminDeps) {
    this.now = d.now ?? Date.now;
  }

  // ── rules ────────────────────────────────────────────────────────────────────────────────

  async listRules(c: Caller, i: { status?: RuleStatus; limit?: number; cursor?: string }): Promise<Obj> {
    const limit = i.limit ?? RULES_PAGE;
    const rules = await this.d.rules.list(c.tenant, {
      ...(i.status ? { status: i.status } : {}),
      ...(i.cursor ? { after: decodeRuleCursor(i.cursor) } : {}),
      limit: limit + 1,
    });
    const page = rules.slice(0, limit);
    return {
      rules: page.map((r) => ({ ...ruleView(r), problem: this.problem(c.tenant, r) })),
      nextCursor: rules.length > limit ? Buffer.from(page.at(-1)!.id).toString('base64url') : null,
    };
  }

  async getRule(c: Caller, i: { id: string; version?: number }): Promise<Obj> {
    const r = await this.d.rules.get(c.tenant, i.id, i.version);
    if (!r) throw notFound(i.version ? `rule "${i.id}" version ${i.version}` : `rule "${i.id}"`);
    return { ...ruleView(r), problem: this.problem(c.tenant, r) };
  }

  /**
   * Why a stored version does not compile, or null (a version stored before a check of the
   * language was added may fail it). Versions never change, so the answer is kept: listing
   * 10,000 rules compiles each once per process.
   */
  private problem(tenant: string, r: StoredRule): string | null {
    const k = `${tenant}\u0000${r.id}\u0000${r.version}`;
    const hit = this.problems.get(k);
    if (hit !== undefined) return hit;
    const why = storedRuleProblem(tenant, r.id, r.document);
    if (this.problems.size >= MAX_PROBLEMS) this.problems.delete(this.problems.keys().next().value!);
    this.problems.set(k, why);
    return why;
  }

  async listRuleVersions(c: Caller, i: { id: string }): Promise<Obj> {
    const versions = await this.d.rules.versions(c.tenant, i.id);
    if (versions.length === 0) throw notFound(`rule "${i.id}"`);
    return {
      versions: versions.map((v) => ({
        version: v.version,
        createdAt: iso(v.createdAt),
        createdBy: v.createdBy,
      })),
    };
  }

  /** Checks a document for the caller's tenant; the compiled rule, or field errors. */
  private compile(c: Caller, doc: Obj, field = 'document'): CompiledRule {
    if (doc.tenant !== undefined && doc.tenant !== c.tenant)
      throw invalid(
        `${field}.tenant`,
        `a rule of this API key belongs to tenant "${c.tenant}"; omit "tenant"`,
      );
    try {
      return compileRule({ ...doc, tenant: c.tenant });
    } catch (e) {
      if (e instanceof EngineError) {
        const fe = fieldErrorOf(e, field);
        const at = fe.position ? `: line ${fe.position.line}, column ${fe.position.column}` : '';
        throw new AdminError('invalid_argument', `${fe.field}${at}: ${fe.reason}`, [fe]);
      }
      throw e;
    }
  }

  /** The stored form of a document: without tenant (the key's) and status (the rule's). */
  private stored(doc: Obj): Obj {
    const { tenant: _t, status: _s, ...rest } = doc;
    return rest;
  }

  async validateRule(c: Caller, i: { document: Obj }): Promise<Obj> {
    try {
      const r = this.compile(c, i.document);
      return {
        valid: true,
        errors: [],
        actions: r.workflow.steps.map((s) => ({ index: s.index, type: s.type, id: s.id ?? null })),
      };
    } catch (e) {
      if (e instanceof AdminError && e.code === 'invalid_argument')
        return { valid: false, errors: e.details, actions: [] };
      throw e;
    }
  }

  async createRule(c: Caller, i: { document: Obj; status?: RuleStatus }): Promise<Obj> {
    this.compile(c, i.document);
    const id = i.document.id as string;
    if (await this.d.rules.get(c.tenant, id)) {
      throw new AdminError('already_exists', `rule "${id}" exists; update it with PUT /v1/rules/${id}`);
    }
    await this.d.rules.ensureTenant(c.tenant);
    const status = i.status ?? this.docStatus(i.document) ?? 'draft';
    return ruleView(await this.d.rules.save(c.tenant, this.stored(i.document), { actor: c.keyId, status }));
  }

  /**
   * A new version. A document that does not compile changes nothing: the old version stays. With
   * `expectedVersion` (the version the editor read), a rule changed by someone else since is not
   * overwritten: `failed_precondition`, with the version it is at now.
   */
  async updateRule(
    c: Caller,
    i: { id: string; document: Obj; status?: RuleStatus; expectedVersion?: number },
  ): Promise<Obj> {
    if (i.document.id !== undefined && i.document.id !== i.id)
      throw invalid('document.id', `must be "${i.id}" (the rule being updated) or absent`);
    const doc = { ...i.document, id: i.id };
    this.compile(c, doc);
    const cur = await this.d.rules.get(c.tenant, i.id);
    if (!cur) throw notFound(`rule "${i.id}"`);
    const status = i.status ?? this.docStatus(doc) ?? cur.status;
    try {
      return ruleView(
        await this.d.rules.save(c.tenant, this.stored(doc), {
          actor: c.keyId,
          status,
          ...(i.expectedVersion !== undefined ? { expectedVersion: i.expectedVersion } : {}),
        }),
      );
    } catch (e) {
      if (!(e instanceof VersionConflict)) throw e;
      const reason = `the rule is at version ${e.current} now; get it again and apply your change to that`;
      throw new AdminError('failed_precondition', `${e.message}: someone else saved it since`, [
        { field: 'expectedVersion', reason },
      ]);
    }
  }

  private docStatus(doc: Obj): RuleStatus | undefined {
    return typeof doc.status === 'string' ? (doc.status as RuleStatus) : undefined;
  }

  async setRuleStatus(c: Caller, i: { id: string }, status: RuleStatus): Promise<Obj> {
    const cur = await this.d.rules.get(c.tenant, i.id);
    if (!cur) throw notFound(`rule "${i.id}"`);
    if (status === 'active') {
      // A rule saved before a language change, or edited in the database: never activate it broken.
      this.compile(c, { ...cur.document, id: cur.id });
    }
    await this.d.rules.setStatus(c.tenant, i.id, status, { actor: c.keyId });
    return ruleView((await this.d.rules.get(c.tenant, i.id))!);
  }

  async deleteRule(c: Caller, i: { id: string }): Promise<Obj> {
    if (!(await this.d.rules.delete(c.tenant, i.id, { actor: c.keyId }))) throw notFound(`rule "${i.id}"`);
    return { deleted: true };
  }

  /** Runs an active rule now, with the given event (or a `manual.trigger` event). */
  async triggerRule(c: Caller, i: { id: string; event?: Obj }): Promise<Obj> {
    const queue = this.queue();
    const r = await this.d.rules.get(c.tenant, i.id);
    if (!r) throw notFound(`rule "${i.id}"`);
    if (r.status !== 'active')
      throw new AdminError('failed_precondition', `rule "${i.id}" is ${r.status}, not active`);
    const at = new Date(this.now()).toISOString();
    const event = this.envelope(
      c,
      i.event ?? {
        id: `manual-${this.now()}-${Math.random().toString(36).slice(2, 10)}`,
        source: 'signalbox',
        type: 'manual.trigger',
        data: {},
      },
      'event',
    );
    const job: RunJob = {
      tenant: c.tenant,
      ruleId: r.id,
      version: r.version,
      kind: 'replay',
      event: {
        ...event,
        tenant: c.tenant,
        time: event.time ?? at,
        receivedAt: at,
        previous: event.previous ?? null,
      },
    };
    const runId = runJobId(c.tenant, `${event.id}\u0000trigger\u0000${this.now()}`, r.id, 'replay');
    await queue.add('run', job, { jobId: runId, ...RUN_JOB_KEEP });
    await this.audit(c, 'rule.trigger', 'rule', r.id, { runId, version: r.version, eventId: event.id });
    return { runId, ruleVersion: r.version };
  }

  private envelope(c: Caller, v: Obj, field: string): Envelope {
    if (v.tenant !== undefined && v.tenant !== c.tenant)
      throw invalid(`${field}.tenant`, `events of this API key belong to tenant "${c.tenant}"`);
    const chk = checkEnvelope({ ...v, tenant: c.tenant });
    if (!chk.ok) throw invalid(field, chk.reason);
    return chk.envelope;
  }

  private queue(): Queue<RunJob> {
    if (!this.d.queue) throw new AdminError('unavailable', 'this admin server has no run queue (Redis)');
    return this.d.queue;
  }

  /**
   * Tests a saved or draft rule against sample envelopes or a raw PSA body: whether it matches,
   * why (the explain trace), and its actions rendered for that event. Nothing is stored, queued
   * or sent.
   */
  async testRule(
    c: Caller,
    i: {
      ruleId?: string;
      version?: number;
      document?: Obj;
      envelope?: Obj;
      envelopes?: Obj[];
      raw?: { source: string; body: string };
    },
  ): Promise<Obj> {
    let rule: CompiledRule;
    if (i.document !== undefined) {
      if (i.ruleId !== undefined) throw invalid('ruleId', 'give either ruleId or document, not both');
      rule = this.compile(c, { id: 'draft', ...i.document, status: 'active' });
    } else if (i.ruleId !== undefined) {
      const r = await this.d.rules.get(c.tenant, i.ruleId, i.version);
      if (!r) throw notFound(`rule "${i.ruleId}"`);
      rule = this.compile(c, { ...r.document, id: r.id, status: 'active' }, 'rule');
    } else {
      throw invalid('document', 'give a draft rule (document) or a saved one (ruleId)');
    }
    const given = [i.envelope !== undefined, i.envelopes !== undefined, i.raw !== undefined].filter(Boolean);
    if (given.length !== 1) throw invalid('envelope', 'give exactly one of envelope, envelopes, raw');
    let envelopes: Envelope[] = [];
    let adaptErrors: Array<{ index: number; error: string }> = [];
    if (i.raw) {
      if (!this.d.adapt)
        throw new AdminError('unavailable', 'raw PSA bodies cannot be tested on this server');
      const body = Buffer.from(i.raw.body, 'utf8');
      try {
        ({ envelopes, errors: adaptErrors } = await this.d.adapt(i.raw.source, c.tenant, body));
      } catch (e) {
        throw invalid('raw.body', (e as Error).message);
      }
    } else {
      const list = i.envelopes ?? [i.envelope!];
      if (list.length > MAX_TEST_EVENTS) throw invalid('envelopes', `at most ${MAX_TEST_EVENTS} events`);
      envelopes = list.map((e, n) => this.envelope(c, e, i.envelopes ? `envelopes[${n}]` : 'envelope'));
    }
    const results = envelopes.map((env) => this.testOne(rule, env));
    return { results, errors: adaptErrors };
  }

  private testOne(rule: CompiledRule, env: Envelope): Obj {
    const scheduled = rule.workflow.schedule !== undefined;
    const ex = explain(rule, env);
    // A scheduled rule runs on its ticks: a `schedule.tick` event stands for one.
    const matched = scheduled ? env.type === 'schedule.tick' : ex.matched;
    const roots = {
      meta: { run: { id: 'test' }, rule: { id: rule.id, version: 0 }, attempt: 1, event: { id: env.id } },
      custom: {},
      steps: {},
    };
    const actions = rule.workflow.steps.map((s) => {
      const base = { index: s.index, type: s.type, id: s.id ?? null, connection: s.connection ?? null };
      try {
        return { ...base, params: s.params(contextOf(env, roots)), error: null };
      } catch (e) {
        return { ...base, params: null, error: (e as Error).message };
      }
    });
    return { envelope: env, matched, explanation: ex, actions };
  }

  // ── runs ─────────────────────────────────────────────────────────────────────────────────

  async listRuns(
    c: Caller,
    i: {
      status?: string;
      ruleId?: string;
      eventId?: string;
      from?: string;
      to?: string;
      limit?: number;
      cursor?: string;
    },
  ): Promise<Obj> {
    const w = new Where().and('tenant_id = ?', c.tenant);
    if (i.status) w.and('status = ?', i.status);
    if (i.ruleId) w.and('rule_id = ?', i.ruleId);
    if (i.eventId) w.and('event_id = ?', i.eventId);
    const { from, to } = parseWindow(i);
    if (from) w.and('created_at >= ?', from);
    if (to) w.and('created_at < ?', to);
    if (i.cursor) w.and('(created_at, id) < (?::timestamptz, ?)', ...decodeCursor(i.cursor));
    const limit = i.limit ?? 50;
    const r = await this.d.db.query<RunRow>(
      `select ${RUN_COLUMNS} from runs where ${w.sql} order by created_at desc, id desc limit ${w.param(limit + 1)}`,
      w.args,
    );
    const rows = r.rows.slice(0, limit);
    const last = rows[rows.length - 1];
    return {
      runs: rows.map(runView),
      nextCursor: r.rows.length > limit && last ? encodeCursor(last.created_at, last.id) : null,
    };
  }

  private async run(c: Caller, id: string): Promise<RunRow> {
    const r = await this.d.db.query<RunRow>(
      `select ${RUN_COLUMNS} from runs where tenant_id = $1 and id = $2`,
      [c.tenant, id],
    );
    if (!r.rows[0]) throw notFound(`run "${id}"`);
    return r.rows[0];
  }

  async getRun(c: Caller, i: { id: string }): Promise<Obj> {
    const run = await this.run(c, i.id);
    const s = await this.d.db.query<{
      idx: number;
      type: string;
      status: string;
      attempts: number;
      started_at: Date | null;
      finished_at: Date | null;
      output: unknown;
      error: unknown;
    }>(
      'select idx, type, status, attempts, started_at, finished_at, output, error from steps where run_id = $1 order by idx',
      [run.id],
    );
    return {
      ...runView(run),
      steps: s.rows.map((x) => ({
        index: x.idx,
        type: x.type,
        status: x.status,
        attempts: x.attempts,
        startedAt: iso(x.started_at),
        finishedAt: iso(x.finished_at),
        output: x.output ?? null,
        error: x.error ?? null,
      })),
    };
  }

  /**
   * Runs a failed run again from its failed step: the completed steps are not repeated (their
   * outputs and `custom` are kept), the rule version stays the one the run started with. Needs
   * the run's job, which Redis keeps for the last 50,000 failed and 10,000 completed runs.
   */
  async retryRun(c: Caller, i: { id: string }): Promise<Obj> {
    const queue = this.queue();
    const run = await this.run(c, i.id);
    if (run.status !== 'failed')
      throw new AdminError(
        'failed_precondition',
        `run "${i.id}" is ${run.status}; only a failed run can be retried`,
      );
    const job = await queue.getJob(run.id);
    const data = job?.data as (RunJob & { state?: Obj & { step: number; record: Obj } }) | undefined;
    if (!job || !data || data.tenant !== c.tenant) {
      throw new AdminError(
        'failed_precondition',
        `run "${i.id}" is too old to retry (its job is no longer kept); replay its event instead`,
      );
    }
    const steps = await this.d.db.query<{ idx: number; status: string }>(
      'select idx, status from steps where run_id = $1 order by idx',
      [run.id],
    );
    const failedAt = steps.rows.find((s) => s.status === 'failed')?.idx ?? data.state?.step ?? 0;
    const state = data.state
      ? {
          ...data.state,
          step: failedAt,
          attempt: 0,
          record: { ...data.state.record, status: 'running', reason: null, error: null, finishedAt: null },
        }
      : undefined;
    const retryId = `${run.id}-retry-${this.now()}`;
    await queue.add('run', { ...data, version: run.rule_version, ...(state ? { state } : {}) } as RunJob, {
      jobId: retryId,
      ...RUN_JOB_KEEP,
    });
    await this.d.db.query(
      `update runs set status = 'pending', reason = $3 where tenant_id = $1 and id = $2`,
      [c.tenant, run.id, `retry from step ${failedAt} requested by ${c.keyId}`],
    );
    await this.audit(c, 'run.retry', 'run', run.id, { fromStep: failedAt, job: retryId });
    return { runId: run.id, fromStep: failedAt, job: retryId };
  }

  /** Cancels a run that is waiting (a delay, a retry backoff, an API budget) or not yet started. */
  async cancelRun(c: Caller, i: { id: string }): Promise<Obj> {
    const queue = this.queue();
    const run = await this.run(c, i.id);
    if (!['pending', 'delayed', 'running'].includes(run.status))
      throw new AdminError('failed_precondition', `run "${i.id}" is ${run.status}; it has ended`);
    const job = await queue.getJob(run.id);
    if (job && job.data.tenant === c.tenant) {
      const state = await job.getState();
      if (state === 'active')
        throw new AdminError(
          'failed_precondition',
          `run "${i.id}" is executing a step right now; cancel it again once the step is done`,
        );
      if (state === 'delayed' || state === 'waiting' || state === 'prioritized') await job.remove();
    }
    await this.d.db.query(
      `update runs set status = 'cancelled', reason = $3, finished_at = now(),
         started_at = coalesce(started_at, now()), revision = $4
       where tenant_id = $1 and id = $2`,
      [c.tenant, run.id, `cancelled by ${c.keyId}`, Number.MAX_SAFE_INTEGER],
    );
    await this.audit(c, 'run.cancel', 'run', run.id, {});
    return { runId: run.id, status: 'cancelled' };
  }

  // ── events ───────────────────────────────────────────────────────────────────────────────

  private async event(c: Caller, id: string): Promise<{ envelope: Envelope; receivedAt: string }> {
    const r = await this.d.db.query<{ envelope: Envelope; received_at: Date }>(
      'select envelope, received_at from events where tenant_id = $1 and id = $2 order by received_at desc limit 1',
      [c.tenant, id],
    );
    const row = r.rows[0];
    if (!row) throw notFound(`event "${id}"`);
    return { envelope: row.envelope, receivedAt: iso(row.received_at)! };
  }

  async getEvent(c: Caller, i: { id: string }): Promise<Obj> {
    const e = await this.event(c, i.id);
    const runs = await this.d.db.query<RunRow>(
      `select ${RUN_COLUMNS} from runs where tenant_id = $1 and event_id = $2 order by created_at`,
      [c.tenant, i.id],
    );
    return { envelope: e.envelope, receivedAt: e.receivedAt, runs: runs.rows.map(runView) };
  }

  /** Why each rule of the tenant did or did not match an archived event (as the rules are now). */
  async explainEvent(c: Caller, i: { id: string; ruleId?: string; all?: boolean }): Promise<Obj> {
    const { envelope } = await this.event(c, i.id);
    const stored = i.ruleId
      ? [await this.d.rules.get(c.tenant, i.ruleId)].filter((r): r is StoredRule => r !== undefined)
      : await this.d.rules.list(c.tenant, i.all ? {} : { status: 'active' });
    if (i.ruleId && stored.length === 0) throw notFound(`rule "${i.ruleId}"`);
    const rules = stored.map((r) => {
      const compiled = this.compile(c, { ...r.document, id: r.id, status: r.status }, 'rule');
      const ex = explain(compiled, envelope);
      return { ruleId: r.id, version: r.version, status: r.status, matched: ex.matched, explanation: ex };
    });
    return { envelope, rules };
  }

  /** Archived events of the tenant, filtered; at most `limit`, oldest first. */
  private async events(
    c: Caller,
    i: { ids?: string[]; from?: string; to?: string; source?: string; type?: string; limit?: number },
  ): Promise<Envelope[]> {
    const w = new Where().and('tenant_id = ?', c.tenant);
    if (i.ids) w.and('id = any(?)', i.ids);
    const { from, to } = parseWindow(i);
    if (from) w.and('received_at >= ?', from);
    if (to) w.and('received_at < ?', to);
    if (i.source) w.and('source = ?', i.source);
    if (i.type) w.and(i.type.endsWith('.*') ? "type like replace(?, '*', '%')" : 'type = ?', i.type);
    if (!i.ids && !from) throw invalid('from', 'give the ids of the events, or a time window (from, to)');
    const r = await this.d.db.query<{ envelope: Envelope }>(
      `select envelope from events where ${w.sql} order by received_at, id limit ${w.param(i.limit ?? 1000)}`,
      w.args,
    );
    return r.rows.map((x) => x.envelope);
  }

  /**
   * Replays archived events through the tenant's current active rules. Dry run (the default):
   * which rules each event matches now. Live: one run per match, pinned to the rule's current
   * version, marked `replay` (a replayed event runs again even if it ran before).
   */
  async replayEvents(
    c: Caller,
    i: {
      ids?: string[];
      from?: string;
      to?: string;
      source?: string;
      type?: string;
      ruleId?: string;
      limit?: number;
      dryRun?: boolean;
    },
  ): Promise<Obj> {
    const dry = i.dryRun !== false;
    const queue = dry ? undefined : this.queue();
    const stored = i.ruleId
      ? [await this.d.rules.get(c.tenant, i.ruleId)].filter((r): r is StoredRule => r?.status === 'active')
      : await this.d.rules.list(c.tenant, { status: 'active' });
    if (i.ruleId && stored.length === 0)
      throw new AdminError('failed_precondition', `rule "${i.ruleId}" is not active`);
    const versions = new Map(stored.map((r) => [r.id, r.version]));
    const engine = new Engine(
      stored.map((r) => this.compile(c, { ...r.document, id: r.id, status: 'active' }, 'rule')),
    );
    const list = await this.events(c, i);
    const at = new Date(this.now()).toISOString();
    const results: Obj[] = [];
    const jobs: Parameters<Queue<RunJob>['addBulk']>[0] = [];
    for (const env of list) {
      const matched = engine.match({ ...env, tenant: c.tenant });
      const runs = matched.map((ruleId) =>
        runJobId(c.tenant, `${env.id}\u0000replay\u0000${at}`, ruleId, 'replay'),
      );
      results.push({ eventId: env.id, type: env.type, rules: matched, ...(dry ? {} : { runs }) });
      if (!dry) {
        for (const [n, ruleId] of matched.entries()) {
          jobs.push({
            name: 'run',
            data: {
              tenant: c.tenant,
              ruleId,
              version: versions.get(ruleId)!,
              kind: 'replay',
              event: { ...env, tenant: c.tenant },
            },
            opts: { jobId: runs[n]!, ...RUN_JOB_KEEP },
          });
        }
      }
    }
    if (queue && jobs.length > 0) {
      await queue.addBulk(jobs);
      await this.audit(c, 'events.replay', 'event', list.length === 1 ? list[0]!.id : '*', {
        events: list.length,
        runs: jobs.length,
        ...(i.ruleId ? { ruleId: i.ruleId } : {}),
      });
    }
    return {
      dryRun: dry,
      events: list.length,
      matched: results.filter((r) => (r.rules as string[]).length > 0).length,
      runs: dry ? 0 : jobs.length,
      results,
    };
  }

  /**
   * Evaluates a draft rule over the archived events of a window: counts per day and sample
   * matches. Only events the rule's source and `on` admit are read and parsed (the archive is
   * indexed by source and type); the others are counted, never loaded.
   */
  async backtest(c: Caller, i: { document: Obj; from: string; to?: string; samples?: number }): Promise<Obj> {
    const rule = this.compile(c, { id: 'backtest', ...i.document, status: 'active' });
    const window = parseWindow(i, { to: new Date(this.now()).toISOString() });
    const from = window.from!;
    const to = window.to!;
    if (Date.parse(to) - Date.parse(from) > 92 * 86_400_000)
      throw invalid('to', 'a backtest window is at most 92 days');
    const t0 = performance.now();
    const totals = await this.d.db.query<{ day: string; n: string }>(
      `select to_char(received_on, 'YYYY-MM-DD') as day, count(*)::text as n from events
        where tenant_id = $1 and received_at >= $2 and received_at < $3 group by received_on order by received_on`,
      [c.tenant, from, to],
    );
    const days = new Map(
      totals.rows.map((r) => [r.day, { day: r.day, events: Number(r.n), considered: 0, matched: 0 }]),
    );
    const on = rule.on;
    const where = new Where().and(
      'tenant_id = ? and received_at >= ? and received_at < ?',
      c.tenant,
      from,
      to,
    );
    if (rule.source !== '*') where.and('source = ?', rule.source);
    if (!on.star) {
      const prefixes = on.prefixes.map((p) => `${p.replace(/[\\%_]/g, '\\$&')}%`);
      where.and('(type = any(?) or type like any(?))', on.exact, prefixes);
    }
    const engine = new Engine([rule]);
    const samples: Obj[] = [];
    const maxSamples = i.samples ?? 20;
    let considered = 0;
    let matched = 0;
    // Keyset pages: bounded memory whatever the window.
    let after: [string, string, string] | undefined;
    const page = 5000;
    for (;;) {
      const w = where.copy();
      if (after) w.and('(received_on, received_at, id) > (?::date, ?::timestamptz, ?)', ...after);
      const r = await this.d.db.query<{ day: string; received_at: Date; id: string; envelope: Envelope }>(
        `select to_char(received_on, 'YYYY-MM-DD') as day, received_at, id, envelope from events where ${w.sql}
          order by received_on, received_at, id limit ${w.param(page)}`,
        w.args,
      );
      for (const row of r.rows) {
        considered++;
        const d = days.get(row.day);
        if (d) d.considered++;
        if (engine.match({ ...row.envelope, tenant: c.tenant }).length > 0) {
          matched++;
          if (d) d.matched++;
          if (samples.length < maxSamples)
            samples.push({
              id: row.envelope.id,
              type: row.envelope.type,
              time: row.envelope.time ?? null,
              receivedAt: iso(row.received_at),
            });
        }
      }
      if (r.rows.length < page) break;
      const last = r.rows[r.rows.length - 1]!;
      after = [last.day, iso(last.received_at)!, last.id];
    }
    const events = [...days.values()].reduce((n, d) => n + d.events, 0);
    const ms = performance.now() - t0;
    return {
      from,
      to,
      events,
      considered,
      matched,
      days: [...days.values()],
      samples,
      elapsedMs: Math.round(ms),
      eventsPerSecond: ms > 0 ? Math.round((events / ms) * 1000) : 0,
    };
  }

  /** An audit record of a change that is not a store write of its own (runs, replays, triggers). */
  private async audit(c: Caller, action: string, entity: string, id: string, details: Obj): Promise<void> {
    await audit(this.d.db, { tenant: c.tenant, actor: c.keyId, action, entity, id, details });
  }

  // ── connections ──────────────────────────────────────────────────────────────────────────

  async listConnections(c: Caller): Promise<Obj> {
    return { connections: (await this.d.connections.list(c.tenant)).map(connectionView) };
  }

  async getConnection(c: Caller, i: { id: string }): Promise<Obj> {
    const x = await this.d.connections.get(c.tenant, i.id);
    if (!x) throw notFound(`connection "${i.id}"`);
    return connectionView(x);
  }

  async putConnection(
    c: Caller,
    i: {
      id: string;
      kind: ConnectionInfo['kind'];
      name?: string;
      settings?: Obj;
      secret?: Record<string, string>;
    },
  ): Promise<Obj> {
    const problems = connectionProblems(i.kind, i.settings, i.secret);
    if (problems.length > 0) {
      throw new AdminError(
        'invalid_argument',
        problems.map((p) => `${p.field}: ${p.reason}`).join('; '),
        problems,
      );
    }
    await this.d.rules.ensureTenant(c.tenant);
    const saved = await this.d.connections.put(
      c.tenant,
      {
        id: i.id,
        kind: i.kind,
        ...(i.name !== undefined ? { name: i.name } : {}),
        ...(i.settings !== undefined ? { settings: i.settings } : {}),
        ...(i.secret !== undefined ? { secret: i.secret } : {}),
      },
      c.keyId,
    );
    return connectionView(saved);
  }

  async deleteConnection(c: Caller, i: { id: string }): Promise<Obj> {
    if (!(await this.d.connections.delete(c.tenant, i.id, c.keyId))) throw notFound(`connection "${i.id}"`);
    return { deleted: true };
  }

  async checkConnection(c: Caller, i: { id: string }): Promise<Obj> {
    if (!(await this.d.connections.get(c.tenant, i.id))) throw notFound(`connection "${i.id}"`);
    if (!this.d.check)
      throw new AdminError('unavailable', 'connection checks are not available on this server');
    const r = await this.d.check(c.tenant, i.id);
    if (!r)
      throw new AdminError(
        'failed_precondition',
        `connection "${i.id}" is not a PSA connection: there is no API to check (send a test run with TriggerRule)`,
      );
    return { ...r };
  }

  // ── templates ────────────────────────────────────────────────────────────────────────────

  async listTemplates(_c: Caller, i: { category?: string }): Promise<Obj> {
    return {
      templates: TEMPLATES.filter((t) => !i.category || t.category === i.category).map((t) => ({
        id: t.id,
        name: t.name,
        category: t.category,
        description: t.description,
        setup: t.setup,
        rule: { id: t.id, name: t.name, ...t.rule },
        sample: t.sample,
      })),
    };
  }

  /** Saves a template into the tenant as a draft rule (under its id, or the given one). */
  async installTemplate(c: Caller, i: { id: string; ruleId?: string }): Promise<Obj> {
    const t = template(i.id);
    if (!t) throw notFound(`template "${i.id}"`);
    const doc = { id: i.ruleId ?? t.id, name: t.name, ...t.rule };
    return this.createRule(c, { document: doc, status: 'draft' });
  }

  // ── stats, settings, keys ────────────────────────────────────────────────────────────────

  async stats(c: Caller, i: { from?: string; to?: string }): Promise<Obj> {
    const window = parseWindow(i, {
      from: new Date(this.now() - 7 * 86_400_000).toISOString(),
      to: new Date(this.now() + 60_000).toISOString(),
    });
    const from = window.from!;
    const to = window.to!;
    const r = await this.d.db.query<{ rule_id: string; status: string; n: string }>(
      `select rule_id, status, count(*)::text as n from runs
        where tenant_id = $1 and created_at >= $2 and created_at < $3 group by rule_id, status`,
      [c.tenant, from, to],
    );
    const rules = new Map<string, { ruleId: string; runs: number; byStatus: Record<string, number> }>();
    const total: Record<string, number> = {};
    for (const row of r.rows) {
      const n = Number(row.n);
      const s = rules.get(row.rule_id) ?? { ruleId: row.rule_id, runs: 0, byStatus: {} };
      s.runs += n;
      s.byStatus[row.status] = (s.byStatus[row.status] ?? 0) + n;
      rules.set(row.rule_id, s);
      total[row.status] = (total[row.status] ?? 0) + n;
    }
    const counts = await this.d.db.query<{ status: string; n: string }>(
      'select status, count(*)::text as n from rules where tenant_id = $1 group by status',
      [c.tenant],
    );
    return {
      from,
      to,
      tenant: {
        runs: Object.values(total).reduce((a, b) => a + b, 0),
        byStatus: total,
        rules: Object.fromEntries(counts.rows.map((x) => [x.status, Number(x.n)])),
      },
      rules: [...rules.values()].sort((a, b) => b.runs - a.runs || a.ruleId.localeCompare(b.ruleId)),
    };
  }

  async getSettings(c: Caller): Promise<Obj> {
    return { settings: await tenantSettings(this.d.db, c.tenant) };
  }

  async putSettings(c: Caller, i: { settings: Obj }): Promise<Obj> {
    await this.d.db.transaction(async (tx) => {
      await setTenantSettings(tx, c.tenant, i.settings);
      await audit(tx, {
        tenant: c.tenant,
        actor: c.keyId,
        action: 'tenant.settings',
        entity: 'tenant',
        id: c.tenant,
        details: i.settings,
      });
    });
    return { settings: await tenantSettings(this.d.db, c.tenant) };
  }

  async listKeys(c: Caller): Promise<Obj> {
    return { keys: (await this.d.keys.list(c.tenant)).map(keyView) };
  }

  async createKey(c: Caller, i: { role: Role; name?: string }): Promise<Obj> {
    const { key, info } = await this.d.keys.create(c.tenant, i.role, i.name ?? '', c.keyId);
    return { key, ...keyView(info) };
  }

  async revokeKey(c: Caller, i: { id: string }): Promise<Obj> {
    if (!(await this.d.keys.revoke(c.tenant, i.id, c.keyId))) throw notFound(`API key "${i.id}"`);
    return { revoked: true };
  }
}
