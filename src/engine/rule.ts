/**
 * Rule documents (rule-language.md §6): validation and compilation to a CompiledRule, and the
 * checks of a whole rule set (ids unique per tenant).
 */
import type { Node } from './ast.js';
import { CompileCache, CompiledCondition } from './compile.js';
import { describe, EngineError, invalid } from './errors.js';
import { parseExpression } from './parse.js';
import { treeToNode } from './tree.js';
import { compileWorkflow, type Workflow } from './workflow.js';

export const RULE_ID = /^[a-z0-9][a-z0-9_-]{0,127}$/;
export const NAME = /^[a-z0-9][a-z0-9_-]{0,63}$/;
export const TYPE = /^[a-z0-9_]+(?:\.[a-z0-9_]+)+$/;
const PREFIX = /^[a-z0-9_]+(?:\.[a-z0-9_]+)*$/;

export type RuleStatus = 'active' | 'draft' | 'paused' | 'archived';
const STATUSES: ReadonlySet<string> = new Set(['active', 'draft', 'paused', 'archived']);

/** The `on` patterns of a rule, split by kind for the index. */
export interface OnPatterns {
  readonly star: boolean;
  readonly exact: readonly string[];
  /** Prefixes with their trailing dot: `ticket.*` → `ticket.`. */
  readonly prefixes: readonly string[];
}

export class CompiledRule {
  constructor(
    readonly id: string,
    readonly tenant: string,
    readonly source: string,
    readonly on: OnPatterns,
    readonly status: RuleStatus,
    readonly allowSelf: boolean,
    readonly condition: CompiledCondition,
    /** The document as given, for explain() and the admin API. */
    readonly doc: Readonly<Record<string, unknown>>,
    /** Actions, templates and timing (workflows.md), compiled. */
    readonly workflow: Workflow,
  ) {}

  get active(): boolean {
    return this.status === 'active';
  }

  /** Whether the rule's tenant, source and `on` patterns admit an event (not its condition). */
  admits(tenant: string, source: string, type: string): boolean {
    if (tenant !== this.tenant) return false;
    if (this.source !== '*' && this.source !== source) return false;
    return this.on.star || this.on.exact.includes(type) || this.on.prefixes.some((p) => type.startsWith(p));
  }
}

/** Parses the `when` of a rule document (text, tree, absent or null) into the checked tree. */
export function parseWhen(when: unknown): Node | null {
  if (when === undefined || when === null) return null;
  if (typeof when === 'string') {
    try {
      return parseExpression(when);
    } catch (e) {
      throw e instanceof EngineError ? e.within('when') : e;
    }
  }
  if (typeof when === 'object' && !Array.isArray(when)) return treeToNode(when, 'when');
  throw invalid(
    'when',
    `"when" must be an expression string, a condition tree object or null, not ${describe(when)}`,
  );
}

function parseOn(on: unknown): OnPatterns {
  if (on === undefined) return { star: true, exact: [], prefixes: [] };
  const list = typeof on === 'string' ? [on] : on;
  if (!Array.isArray(list))
    throw invalid('on', `"on" must be a type pattern or a list of them, not ${describe(on)}`);
  if (list.length === 0) throw invalid('on', '"on" must not be an empty list (omit it to mean every type)');
  let star = false;
  const exact = new Set<string>();
  const prefixes = new Set<string>();
  list.forEach((p, i) => {
    const where = typeof on === 'string' ? 'on' : `on[${i}]`;
    if (typeof p !== 'string') throw invalid(where, `a type pattern must be a string, not ${describe(p)}`);
    if (p === '*') star = true;
    else if (p.endsWith('.*') && PREFIX.test(p.slice(0, -2))) prefixes.add(p.slice(0, -1));
    else if (TYPE.test(p)) exact.add(p);
    else {
      throw invalid(
        where,
        `invalid type pattern ${JSON.stringify(p)}: use an exact type like "ticket.updated", a prefix like "ticket.*", or "*"`,
      );
    }
  });
  return { star, exact: [...exact], prefixes: [...prefixes] };
}

const NO_EVENTS: OnPatterns = Object.freeze({
  star: false,
  exact: Object.freeze([]),
  prefixes: Object.freeze([]),
});

/** `on` lists repeat across rules; share one frozen object per distinct list (bounded). */
const ON_CACHE = new Map<string, OnPatterns>();

function internOn(on: OnPatterns): OnPatterns {
  const key = `${on.star}|${on.exact.join(',')}|${on.prefixes.join(',')}`;
  const hit = ON_CACHE.get(key);
  if (hit) return hit;
  const frozen = Object.freeze({
    star: on.star,
    exact: Object.freeze([...on.exact]),
    prefixes: Object.freeze([...on.prefixes]),
  });
  if (ON_CACHE.size < 10_000) ON_CACHE.set(key, frozen);
  return frozen;
}

/**
 * Compiles rule documents with one shared cache, so identical conditions across rules share
 * their compiled closures. Keep one per process (or per rule set) for all rules it compiles.
 */
export class RuleCompiler {
  readonly cache = new CompileCache();

  compile(doc: unknown): CompiledRule {
    return compileRule(doc, this.cache);
  }
}

/**
 * Why a stored rule version does not compile with this engine, or null when it does. A version
 * saved before a check of the language was added may fail it: the store keeps documents as they
 * were saved, whatever their status. The tenant and id are the store's, the status `active`
 * (what activating it, or a process loading it, compiles).
 */
export function storedRuleProblem(
  tenant: string,
  id: string,
  document: Readonly<Record<string, unknown>>,
  cache?: CompileCache,
): string | null {
  try {
    compileRule({ ...document, id, tenant, status: 'active' }, cache);
    return null;
  } catch (e) {
    return (e as Error).message;
  }
}

/**
 * Validates and compiles one rule document. Throws an EngineError whose `where` names the field;
 * the caller adds which rule it was (its id, or its position in a list).
 */
export function compileRule(doc: unknown, cache?: CompileCache): CompiledRule {
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) {
    throw invalid('', `a rule must be a JSON object, not ${describe(doc)}`);
  }
  const d = doc as Record<string, unknown>;
  if (!Object.hasOwn(d, 'id')) throw invalid('id', 'missing "id"');
  if (typeof d.id !== 'string' || !RULE_ID.test(d.id)) {
    throw invalid(
      'id',
      '"id" must be a string of [a-z0-9][a-z0-9_-]{0,127} (lowercase letters, digits, "_" and "-")',
    );
  }
  let tenant = 'default';
  if (Object.hasOwn(d, 'tenant')) {
    if (typeof d.tenant !== 'string' || !NAME.test(d.tenant)) {
      throw invalid(
        'tenant',
        '"tenant" must be a string of [a-z0-9][a-z0-9_-]{0,63} (omit it for "default")',
      );
    }
    tenant = d.tenant;
  }
  if (!Object.hasOwn(d, 'source'))
    throw invalid('source', 'missing "source" (a source name, or "*" for every source)');
  if (typeof d.source !== 'string' || (d.source !== '*' && !NAME.test(d.source))) {
    throw invalid('source', '"source" must be "*" or a name of [a-z0-9][a-z0-9_-]{0,63}');
  }
  const on = parseOn(d.on);
  let status: RuleStatus = 'active';
  if (Object.hasOwn(d, 'status')) {
    if (typeof d.status !== 'string' || !STATUSES.has(d.status)) {
      throw invalid('status', '"status" must be one of active, draft, paused, archived');
    }
    status = d.status as RuleStatus;
  }
  if (Object.hasOwn(d, 'allowSelf') && typeof d.allowSelf !== 'boolean') {
    throw invalid('allowSelf', '"allowSelf" must be true or false');
  }
  if (Object.hasOwn(d, 'name') && typeof d.name !== 'string')
    throw invalid('name', '"name" must be a string');
  const workflow = compileWorkflow(d);
  const node = parseWhen(d.when);
  return new CompiledRule(
    d.id,
    tenant,
    d.source,
    // A scheduled rule runs on its schedule (schedule.tick), never on an ingested event.
    workflow.schedule ? NO_EVENTS : internOn(on),
    status,
    d.allowSelf === true,
    new CompiledCondition(node, cache),
    d,
    workflow,
  );
}

/** Where a rule stands in a list, for messages: its id when it has a valid one, else its index. */
export function ruleLabel(doc: unknown, index: number): string {
  const id = typeof doc === 'object' && doc !== null ? (doc as Record<string, unknown>).id : undefined;
  return typeof id === 'string' && RULE_ID.test(id) ? `rule "${id}"` : `rule at index ${index}`;
}

export interface RuleSetError {
  readonly index: number;
  readonly label: string;
  readonly error: EngineError;
}

/**
 * Compiles a list of rule documents. Returns the compiled rules, or every bad rule's first error
 * (the set is all or nothing: one bad rule makes the set invalid).
 */
export function compileRuleSet(
  docs: readonly unknown[],
  compiler: RuleCompiler = new RuleCompiler(),
): { rules: CompiledRule[]; errors: RuleSetError[] } {
  const rules: CompiledRule[] = [];
  const errors: RuleSetError[] = [];
  const seen = new Map<string, number>();
  docs.forEach((doc, index) => {
    const label = ruleLabel(doc, index);
    // Duplicates are found from the document itself, so that a second rule with the id of a rule
    // that does not compile is reported too.
    const d =
      typeof doc === 'object' && doc !== null && !Array.isArray(doc) ? (doc as Record<string, unknown>) : {};
    const tenant = d.tenant === undefined ? 'default' : d.tenant;
    if (typeof d.id === 'string' && RULE_ID.test(d.id) && typeof tenant === 'string' && NAME.test(tenant)) {
      const key = `${tenant}\u0000${d.id}`;
      const first = seen.get(key);
      if (first !== undefined) {
        errors.push({
          index,
          label,
          error: new EngineError(
            'SB_RULE_DUPLICATE',
            `duplicate id "${d.id}" for tenant "${tenant}" (first defined at index ${first})`,
            { where: 'id' },
          ),
        });
        return;
      }
      seen.set(key, index);
    }
    try {
      rules.push(compiler.compile(doc));
    } catch (e) {
      if (!(e instanceof EngineError)) throw e;
      errors.push({ index, label, error: e });
    }
  });
  return { rules, errors };
}
