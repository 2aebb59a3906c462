/**
 * JSON on its way into Postgres. Postgres stores no U+0000 character: `text` refuses the byte and
 * `jsonb` the escape `\u0000` ("unsupported Unicode escape sequence"), and one such character
 * fails the whole statement. JSON.parse accepts it, so a PSA payload or an API's answer can carry
 * one. What comes from outside (archived events, run history) is written with U+FFFD in its place
 * (pgJson), so the row is kept; what users configure (rules, connections) is refused with the
 * path of the string (nulPath), so nothing they wrote is silently changed.
 */

/** An escape `\u0000` that is not itself escaped (preceded by an even number of backslashes). */
const NUL_ESCAPE = /(?<!\\)((?:\\\\)*)\\u0000/g;

/** JSON.stringify(value), with U+0000 written as U+FFFD (the replacement character). */
export function pgJson(value: unknown): string {
  const s = JSON.stringify(value);
  return s.includes('\\u0000') ? s.replace(NUL_ESCAPE, '$1\\ufffd') : s;
}

/**
 * Where a value holds U+0000, in a string or in a key: a path such as `steps[2].params.body`
 * (`(value)` for the value itself), or undefined when it holds none.
 */
export function nulPath(value: unknown, path = ''): string | undefined {
  if (typeof value === 'string') return value.includes('\u0000') ? path || '(value)' : undefined;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const p = nulPath(value[i], `${path}[${i}]`);
      if (p !== undefined) return p;
    }
    return undefined;
  }
  if (value !== null && typeof value === 'object') {
    for (const [k, v] of Object.entries(value)) {
      const at = path ? `${path}.${k}` : k;
      if (k.includes('\u0000')) return at;
      const p = nulPath(v, at);
      if (p !== undefined) return p;
    }
  }
  return undefined;
}
