/**
 * The rules a worker runs: compiled per (tenant, id, version), versions being immutable, and the
 * active version of each rule kept current by the store's change notifications.
 */
import { type CompiledRule, compileRule } from '../engine/index.js';
import type { RuleStore } from '../store/index.js';

export interface RunnableRule {
  readonly version: number;
  readonly rule: CompiledRule;
}

const MAX_COMPILED = 50_000;

/**
 * A stored rule version that no longer compiles (saved before a check of the language was added,
 * or edited in the database): its runs fail with this, recorded, rather than being retried.
 */
export class BrokenRuleError extends Error {
  constructor(
    readonly version: number,
    why: string,
  ) {
    super(`rule version ${version} does not compile: ${why}`);
  }
}

export class RuleCache {
  private readonly compiled = new Map<string, RunnableRule>();
  /** tenant\0id → the active version; absent: unknown (ask the store). */
  private readonly active = new Map<string, number>();
  private off: (() => Promise<void>) | undefined;
  /** Called after a change notification (schedules follow rule changes). */
  onChange: ((tenant: string, id: string) => void) | undefined;

  constructor(private readonly store: RuleStore) {}

  async start(): Promise<void> {
    this.off = await this.store.onChange(
      (n) => {
        const k = `${n.tenant}\u0000${n.id}`;
        if (n.status === 'active') this.active.set(k, n.version);
        else this.active.set(k, 0);
        this.onChange?.(n.tenant, n.id);
      },
      () => void this.resync().catch(() => {}),
    );
    for (const r of await this.store.active()) this.active.set(`${r.tenant}\u0000${r.id}`, r.version);
  }

  /**
   * After notifications were missed (the store's listening connection was lost): which versions
   * are active is asked again; rules this process knew of are told to onChange (schedules follow).
   */
  private async resync(): Promise<void> {
    const active = await this.store.activeWhenReachable();
    if (!active) return;
    const before = [...this.active.keys()];
    // Unknown is asked of the store when needed; known-inactive would be wrong if it changed.
    this.active.clear();
    for (const r of active) this.active.set(`${r.tenant}\u0000${r.id}`, r.version);
    for (const k of new Set([...before, ...this.active.keys()])) {
      const [tenant, id] = k.split('\u0000') as [string, string];
      this.onChange?.(tenant, id);
    }
  }

  async stop(): Promise<void> {
    await this.off?.();
  }

  /** Every active rule (tenant, id), as far as this process knows. */
  activeIds(): Array<{ tenant: string; id: string; version: number }> {
    return [...this.active]
      .filter(([, v]) => v > 0)
      .map(([k, version]) => {
        const [tenant, id] = k.split('\u0000') as [string, string];
        return { tenant, id, version };
      });
  }

  /** The active version of a rule, compiled; undefined when the rule is not active. */
  async current(tenant: string, id: string): Promise<RunnableRule | undefined> {
    const k = `${tenant}\u0000${id}`;
    let v = this.active.get(k);
    if (v === undefined) {
      const r = await this.store.get(tenant, id);
      v = r && r.status === 'active' ? r.version : 0;
      this.active.set(k, v);
    }
    return v > 0 ? this.version(tenant, id, v) : undefined;
  }

  /** One version of a rule, compiled (whatever its status now: runs keep the version they started with). */
  async version(tenant: string, id: string, version: number): Promise<RunnableRule | undefined> {
    const k = `${tenant}\u0000${id}\u0000${version}`;
    const hit = this.compiled.get(k);
    if (hit) return hit;
    const r = await this.store.get(tenant, id, version);
    if (!r) return undefined;
    let rule: CompiledRule;
    try {
      rule = compileRule({ ...r.document, tenant, status: 'active' });
    } catch (e) {
      throw new BrokenRuleError(version, (e as Error).message);
    }
    const got = { version, rule };
    if (this.compiled.size >= MAX_COMPILED) this.compiled.delete(this.compiled.keys().next().value!);
    this.compiled.set(k, got);
    return got;
  }
}
