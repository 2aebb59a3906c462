/**
 * The live rule index of an ingest process: built from the rule store at start, kept current by
 * the store's change notifications, each change swapped in whole (Engine.apply).
 */
import { type CompiledRule, Engine, RuleCompiler } from '../engine/index.js';
import type { RuleStore } from '../store/index.js';

export class LiveRules {
  readonly engine = new Engine();
  private readonly compiler = new RuleCompiler();
  loaded = false;
  /**
   * Active rules whose stored document does not compile, with why: saved before a check of the
   * language was added, or edited in the database. They match nothing.
   */
  readonly broken = new Map<string, string>();
  /** Told when an active rule is found broken, or broken for another reason (once each). */
  onBroken: ((tenant: string, id: string, why: string) => void) | undefined;

  /** Active rule documents by `tenant\u0000id`, for processes and threads that mirror this index. */
  readonly documents = new Map<string, { tenant: string; doc: Record<string, unknown> }>();
  /** Called after each change is applied (doc null: the rule left the index). */
  onChange: ((tenant: string, id: string, doc: Record<string, unknown> | null) => void) | undefined;

  constructor(private readonly store: RuleStore) {}

  async start(): Promise<() => Promise<void>> {
    // Subscribe first, so no change between the load and the subscription is missed.
    const off = await this.store.onChange(
      // Neither may reject unhandled (that ends the process); a failed one is caught up by the
      // next change or resync.
      (n) => void this.refresh(n.tenant, n.id).catch(() => {}),
      () => void this.resync().catch(() => {}),
    );
    const rules: CompiledRule[] = [];
    for (const r of await this.store.active()) {
      const c = this.compile(r.tenant, r.document);
      if (c) {
        rules.push(c);
        this.documents.set(`${r.tenant}\u0000${r.id}`, { tenant: r.tenant, doc: r.document });
      }
    }
    this.engine.replaceAll(rules);
    this.loaded = true;
    return off;
  }

  private compile(tenant: string, doc: Record<string, unknown>): CompiledRule | undefined {
    const key = `${tenant}/${String(doc.id)}`;
    try {
      const compiled = this.compiler.compile({ ...doc, tenant, status: 'active' });
      this.broken.delete(key);
      return compiled;
    } catch (e) {
      const why = (e as Error).message;
      if (this.broken.get(key) !== why) this.onBroken?.(tenant, String(doc.id), why);
      this.broken.set(key, why);
      return undefined;
    }
  }

  /**
   * After notifications were missed (the store's listening connection was lost): the store's
   * active rules, applied as the changes they are against this index. Tried again for a while if
   * the store is not answering yet.
   */
  private async resync(): Promise<void> {
    const active = await this.store.activeWhenReachable();
    if (!active) return;
    const now = new Map(active.map((r) => [`${r.tenant}\u0000${r.id}`, r]));
    for (const [k, r] of now) {
      const cur = this.documents.get(k);
      if (cur && JSON.stringify(cur.doc) === JSON.stringify(r.document)) continue;
      const compiled = this.compile(r.tenant, r.document);
      if (!compiled) continue;
      this.engine.apply({ upsert: [compiled] });
      this.documents.set(k, { tenant: r.tenant, doc: r.document });
      this.onChange?.(r.tenant, r.id, r.document);
    }
    for (const [k, { tenant, doc }] of [...this.documents]) {
      if (now.has(k)) continue;
      const id = String(doc.id);
      this.engine.apply({ remove: [{ tenant, id }] });
      this.documents.delete(k);
      this.onChange?.(tenant, id, null);
    }
  }

  private async refresh(tenant: string, id: string): Promise<void> {
    const r = await this.store.get(tenant, id).catch(() => undefined);
    const compiled = r && r.status === 'active' ? this.compile(tenant, r.document) : undefined;
    if (compiled) {
      this.engine.apply({ upsert: [compiled] });
      this.documents.set(`${tenant}\u0000${id}`, { tenant, doc: r!.document });
    } else {
      this.engine.apply({ remove: [{ tenant, id }] });
      this.documents.delete(`${tenant}\u0000${id}`);
      if (r?.status !== 'active') this.broken.delete(`${tenant}/${id}`);
    }
    this.onChange?.(tenant, id, compiled ? r!.document : null);
  }
}
