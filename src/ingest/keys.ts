/**
 * ConnectWise signing keys. A callback names the URL of its signing key (Metadata.key_url),
 * which is attacker-controlled input: it is fetched only from an official ConnectWise origin or
 * the origin configured on the connection, never following redirects, with a timeout and a size
 * cap, and keys are cached per URL.
 */

export const OFFICIAL_ORIGINS: ReadonlySet<string> = new Set(
  ['api-na', 'api-eu', 'api-au', 'na', 'eu', 'au', 'sandbox-na', 'sandbox-eu', 'sandbox-au'].map(
    (h) => `https://${h}.myconnectwise.net`,
  ),
);

export class KeyFetchError extends Error {
  override readonly name = 'KeyFetchError';
}

export interface KeyFetcherOptions {
  readonly timeoutMs?: number;
  readonly ttlMs?: number;
  readonly maxEntries?: number;
  /** For tests: the clock. */
  readonly now?: () => number;
}

const MAX_BODY = 16 * 1024;

export class KeyFetcher {
  private readonly cache = new Map<string, { key: string; until: number }>();
  private readonly inflight = new Map<string, Promise<string>>();
  private readonly timeoutMs: number;
  private readonly ttlMs: number;
  private readonly maxEntries: number;
  private readonly now: () => number;

  constructor(opts: KeyFetcherOptions = {}) {
    this.timeoutMs = opts.timeoutMs ?? 3_000;
    this.ttlMs = opts.ttlMs ?? 60 * 60 * 1000;
    this.maxEntries = opts.maxEntries ?? 10_000;
    this.now = opts.now ?? Date.now;
  }

  /** Whether a key URL may be fetched for a connection that allows `extraOrigin`. */
  static allowed(keyUrl: string, extraOrigin?: string): boolean {
    let u: URL;
    try {
      u = new URL(keyUrl);
    } catch {
      return false;
    }
    if (u.username || u.password) return false;
    // A stored origin that is not a URL (saved before the admin API checked it) allows nothing extra.
    return (
      OFFICIAL_ORIGINS.has(u.origin) ||
      (extraOrigin !== undefined && URL.canParse(extraOrigin) && u.origin === new URL(extraOrigin).origin)
    );
  }

  async get(keyUrl: string, extraOrigin?: string): Promise<string> {
    if (!KeyFetcher.allowed(keyUrl, extraOrigin)) {
      throw new KeyFetchError(
        `key_url origin is not a ConnectWise host nor the connection's configured origin: ${safeOrigin(keyUrl)}`,
      );
    }
    const hit = this.cache.get(keyUrl);
    if (hit && hit.until > this.now()) return hit.key;
    let p = this.inflight.get(keyUrl);
    if (!p) {
      p = this.fetchKey(keyUrl).finally(() => this.inflight.delete(keyUrl));
      this.inflight.set(keyUrl, p);
    }
    const key = await p;
    if (this.cache.size >= this.maxEntries) this.cache.delete(this.cache.keys().next().value!);
    this.cache.set(keyUrl, { key, until: this.now() + this.ttlMs });
    return key;
  }

  /** Drops a cached key (after a signature mismatch, the key may have been rotated). */
  forget(keyUrl: string): void {
    this.cache.delete(keyUrl);
  }

  private async fetchKey(keyUrl: string): Promise<string> {
    let res: Response;
    try {
      res = await fetch(keyUrl, {
        redirect: 'manual',
        signal: AbortSignal.timeout(this.timeoutMs),
        headers: { accept: 'application/json' },
      });
    } catch (e) {
      throw new KeyFetchError(`fetching the signing key failed: ${(e as Error).message}`);
    }
    if (res.status >= 300 && res.status < 400)
      throw new KeyFetchError(`key_url answered a redirect (${res.status}); redirects are not followed`);
    if (!res.ok) throw new KeyFetchError(`key_url answered ${res.status}`);
    let text: string | undefined;
    try {
      text = await readCapped(res, MAX_BODY);
    } catch (e) {
      // The timeout covers the body too: a slow answer ends here, as a refusal, not a crash.
      throw new KeyFetchError(`reading the signing key failed: ${(e as Error).message}`);
    }
    if (text === undefined) throw new KeyFetchError('key_url answer is too large');
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      throw new KeyFetchError('key_url answer is not JSON');
    }
    const key = (body as { signing_key?: unknown }).signing_key;
    if (typeof key !== 'string' || key.length === 0)
      throw new KeyFetchError('key_url answer has no signing_key');
    return key;
  }
}

/** The body as text, or undefined past `max` bytes (read no further: the connection is dropped). */
async function readCapped(res: Response, max: number): Promise<string | undefined> {
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const c of res.body ?? []) {
    size += c.length;
    if (size > max) {
      await res.body?.cancel().catch(() => {});
      return undefined;
    }
    chunks.push(c);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function safeOrigin(url: string): string {
  try {
    return new URL(url).origin;
  } catch {
    return '(not a URL)';
  }
}
