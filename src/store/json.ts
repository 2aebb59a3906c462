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
 * (`(value)` for the value itself), or undefined when it holds none. Walks with its own stack, so
 * a value nested however deep is answered rather than overflowing (the rule compiler refuses
 * such a document after this, with its own limit).
 */
export function nulPath(value: unknown): string | undefined {
  const stack: Array<[unknown, string]> = [[value, '']];
  while (stack.length > 0) {
    const [v, path] = stack.pop()!;
    if (typeof v === 'string') {
      if (v.includes('\u0000')) return path || '(value)';
    } else if (Array.isArray(v)) {
      for (let i = v.length - 1; i >= 0; i--) stack.push([v[i], `${path}[${i}]`]);
    } else if (v !== null && typeof v === 'object') {
      const entries = Object.entries(v);
      for (const [k] of entries) if (k.includes('\u0000')) return path ? `${path}.${k}` : k;
      for (let i = entries.length - 1; i >= 0; i--) {
        const [k, x] = entries[i]!;
        stack.push([x, path ? `${path}.${k}` : k]);
      }
    }
  }
  return undefined;
}
