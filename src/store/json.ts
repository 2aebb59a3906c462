/**
 * JSON on its way into Postgres, which stores neither U+0000 nor a lone UTF-16 surrogate: `text`
 * refuses the NUL byte, `jsonb` the escapes `\u0000` ("unsupported Unicode escape sequence") and
 * `\ud800` without its pair ("invalid input syntax"), and one such character fails the whole
 * statement. JSON.parse accepts both, so a PSA payload or an API's answer can carry them. What
 * comes from outside (archived events, run history) is written with U+FFFD in their place
 * (pgJson), so the row is kept; what users configure (rules, connections) is refused with the path
 * of the string (unstorablePath), so nothing they wrote is silently changed.
 */

/**
 * An escape JSON.stringify writes for a character Postgres refuses: `\u0000`, or a surrogate (it
 * writes a paired surrogate as the character itself, so an escaped one is always lone), when the
 * escape is not itself escaped (an even number of backslashes before it).
 */
const UNSTORABLE_ESCAPE = /(?<!\\)((?:\\\\)*)\\u(?:0000|d[89a-f][0-9a-f]{2})/g;

/** JSON.stringify(value), with U+0000 and lone surrogates written as U+FFFD (the replacement character). */
export function pgJson(value: unknown): string {
  return pgJsonText(JSON.stringify(value));
}

/** pgJson for what JSON.stringify already wrote (the run records of the history stream). */
export function pgJsonText(s: string): string {
  return s.includes('\\u') ? s.replace(UNSTORABLE_ESCAPE, '$1\\ufffd') : s;
}

/**
 * The most characters of JSON a drain puts in one statement (a row alone past it goes alone). By
 * count alone, 2,000 archived events of up to 1 MiB each (the ingest's body limit), or run records
 * holding many steps' outputs, could pass V8's longest string (about 512 MiB): the statement's
 * JSON could not be built, every try would fail the same way, and the drain would stop there.
 */
export const STATEMENT_CHARS = 16 * 1024 * 1024;

/**
 * `texts` (rows' JSON) in order, in slices of at most `count` and, unless one alone is longer,
 * `chars` characters (joined with commas).
 */
export function batches(texts: readonly string[], count: number, chars: number): string[][] {
  const out: string[][] = [];
  let cur: string[] = [];
  let size = 0;
  for (const t of texts) {
    if (cur.length > 0 && (cur.length >= count || size + t.length > chars)) {
      out.push(cur);
      cur = [];
      size = 0;
    }
    cur.push(t);
    size += t.length + 1;
  }
  if (cur.length > 0) out.push(cur);
  return out;
}

/**
 * Writes rows given as their JSON (`texts`), `rows` and at most `chars` characters to a statement
 * (`write` of a slice's json array; batches). When Postgres refuses a statement's data, its rows alone, handing
 * a refused row's error to `refused` and going on. Anything else (Postgres not answering) is
 * thrown, so that the caller acknowledges nothing and the rows are written later.
 */
export async function writeDroppingRefused(
  texts: readonly string[],
  limits: { readonly rows: number; readonly chars: number },
  write: (jsonArray: string) => Promise<void>,
  refused: (e: Error) => void,
): Promise<void> {
  for (const batch of batches(texts, limits.rows, limits.chars)) {
    try {
      await write(`[${batch.join(',')}]`);
    } catch (e) {
      if (!refusedData(e)) throw e;
      for (const t of batch) {
        try {
          await write(`[${t}]`);
        } catch (e1) {
          if (!refusedData(e1)) throw e1;
          refused(e1 as Error);
        }
      }
    }
  }
}

/**
 * Whether Postgres refused the data itself (SQLSTATE class 22, data exception; 23, integrity
 * constraint violation; 54, program limit exceeded), rather than not answering (a connection
 * error, a server shutting down or out of resources), after which the same statement succeeds.
 * A drain drops a refused row and goes on; when Postgres does not answer it must acknowledge
 * nothing, so that the stream keeps the rows until it does.
 */
export function refusedData(e: unknown): boolean {
  const code = (e as { code?: unknown } | null)?.code;
  return typeof code === 'string' && /^(22|23|54)[0-9A-Z]{3}$/.test(code);
}

/** U+0000, a high surrogate without its low one, or a low one without its high one. */
const UNSTORABLE_CHAR = /\u0000|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/** What the refusals of unstorablePath say. */
export const UNSTORABLE_REASON = 'holds a character Postgres cannot store (U+0000 or a lone surrogate)';

/** Throws a TypeError naming `what` and the path when `value` holds what Postgres cannot store. */
export function assertStorable(what: string, value: unknown): void {
  const path = unstorablePath(value);
  if (path !== undefined) throw new TypeError(`${what}: ${path} ${UNSTORABLE_REASON}`);
}

/**
 * Where a value holds U+0000 or a lone surrogate, in a string or in a key: a path such as
 * `steps[2].params.body` (`(value)` for the value itself), or undefined when it holds none. Walks
 * with its own stack, so a value nested however deep is answered rather than overflowing (the rule
 * compiler refuses such a document after this, with its own limit).
 */
export function unstorablePath(value: unknown): string | undefined {
  const stack: Array<[unknown, string]> = [[value, '']];
  while (stack.length > 0) {
    const [v, path] = stack.pop()!;
    if (typeof v === 'string') {
      if (UNSTORABLE_CHAR.test(v)) return path || '(value)';
    } else if (Array.isArray(v)) {
      for (let i = v.length - 1; i >= 0; i--) stack.push([v[i], `${path}[${i}]`]);
    } else if (v !== null && typeof v === 'object') {
      const entries = Object.entries(v);
      for (const [k] of entries) if (UNSTORABLE_CHAR.test(k)) return path ? `${path}.${k}` : k;
      for (let i = entries.length - 1; i >= 0; i--) {
        const [k, x] = entries[i]!;
        stack.push([x, path ? `${path}.${k}` : k]);
      }
    }
  }
  return undefined;
}
