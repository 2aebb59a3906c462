/**
 * A PSA connection as the ingest sees it: which tenant its events belong to, how to verify the
 * sender, and which PSA identities are Signalbox itself (the loop guard). Secrets here are the
 * decrypted values, held in memory only.
 */

export type PsaSource = 'connectwise' | 'autotask' | 'halo';

export interface Connection {
  readonly tenant: string;
  readonly id: string;
  readonly source: PsaSource;
  /** ConnectWise: a fixed signing key, and/or an extra origin allowed for Metadata.key_url. */
  readonly connectwise?: { readonly signingKey?: string; readonly keyOrigin?: string };
  /** Autotask: the webhook's secret key. */
  readonly autotask?: { readonly secret: string };
  /** Halo: Basic auth credentials and/or a secret that must appear in the hook URL. */
  readonly halo?: { readonly username?: string; readonly password?: string; readonly urlSecret?: string };
  /** The PSA identities (member, resource, agent ids) Signalbox acts as: their events are `self`. */
  readonly selfActors?: readonly string[];
}

/** What the HTTP layer hands an adapter: the raw bytes, lower-cased headers, the path after the
 * connection id and the query string. */
export interface HookRequest {
  /** The bytes as sent: what signatures are checked on. */
  readonly body: Buffer;
  /** The charset Content-Type names, when not UTF-8 (body.ts); how parseJson reads `body`. */
  readonly charset?: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly rest: string;
  readonly query: string;
  /** When the request was received (ms since the epoch). */
  readonly receivedAt: number;
}

/** An event as an adapter makes it, before dedupe and snapshots (design.md steps 3–4). */
export interface AdaptedEvent {
  readonly envelope: {
    readonly id: string;
    readonly tenant: string;
    readonly source: PsaSource;
    readonly type: string;
    readonly time: string;
    readonly data: Record<string, unknown>;
    readonly raw: unknown;
    readonly self: boolean;
    /** Generic sources may send `previous` themselves; PSA adapters never do (snapshots give it). */
    readonly previous?: Record<string, unknown> | null;
  };
  /** The snapshot key: entity name and id. */
  readonly entity: string;
  readonly entityId: string;
  /**
   * How `data` relates to the stored snapshot: `replace` (the PSA sent the whole record),
   * `patch` (only some fields: merge them over the snapshot), `delete` (drop the snapshot; data
   * is the last snapshot when there is one), `none` (no record was sent).
   */
  readonly merge: 'replace' | 'patch' | 'delete' | 'none';
  readonly actor: string | null;
  /**
   * The event's JSON text as it was received, when it came as one line of its own (a generic
   * event of NDJSON, or a single-event body without a newline): the archive keeps an event that
   * starts no run as this text (config/archive.ts) instead of serializing its envelope again.
   * As the request's own bytes (a view of its body) when they are that text's UTF-8, so the archive
   * copies them as they are; as a string otherwise.
   */
  readonly line?: string | Uint8Array;
}

export type Verified = { readonly ok: true } | { readonly ok: false; readonly reason: string };

export class AdapterError extends Error {
  override readonly name = 'AdapterError';
  constructor(
    readonly status: 400 | 401 | 422,
    message: string,
  ) {
    super(message);
  }
}
