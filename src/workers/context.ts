/** What an action sees of its run and of the stores (shared by actions.ts and psa.ts). */
import type { ConnectionInfo, ConnectionStore } from '../store/index.js';

export interface ActionContext {
  readonly tenant: string;
  readonly runId: string;
  readonly stepIndex: number;
  /** Run id + step index: the same for every attempt of one step of one run. */
  readonly idempotencyKey: string;
  /** The connection named by the step, when it names one. */
  readonly connection: string | undefined;
  /** The event, as a webhook's default body. */
  readonly event: unknown;
  readonly allowPrivate: boolean;
  readonly now: () => number;
}

export interface Connections {
  info(tenant: string, id: string): Promise<ConnectionInfo | undefined>;
  secret(tenant: string, id: string): Promise<Record<string, string>>;
}

/** The connections of the store as actions read them (info, and decrypted secrets). */
export function storeConnections(store: ConnectionStore): Connections {
  return { info: (t, id) => store.get(t, id), secret: (t, id) => store.secret(t, id) };
}
