/**
 * Limits of the rule language (rule-language.md §4). Each is a compile error with a clear message.
 * They exist so that a rule, which is untrusted input from the admin API, can never make the
 * compiler or the matcher hang, overflow the stack or exhaust memory.
 */

/** Maximum size of one expression text (a `when` text or an `expr` leaf), in UTF-8 bytes. */
export const MAX_EXPR_BYTES = 65_536;

/**
 * Maximum nesting: each parenthesis pair (group or call), each list bracket pair and each
 * condition-tree level counts one. 64 levels are allowed, 65 are not.
 */
export const MAX_DEPTH = 64;

/**
 * Maximum nesting of objects and arrays in an event's `data`, `previous` and `raw`, and in a
 * step's parameters (`with`). Real payloads nest a few levels; one nested thousands deep overflows
 * JSON.stringify and the compiler's recursion wherever it goes next.
 */
export const MAX_JSON_DEPTH = 64;

/**
 * Whether v nests objects or arrays more than `levels` deep (the recursion stops there, so a value
 * nested however deep is answered).
 */
export function nestedDeeper(v: unknown, levels: number): boolean {
  if (typeof v !== 'object' || v === null) return false;
  if (levels === 0) return true;
  if (Array.isArray(v)) {
    for (const x of v) if (nestedDeeper(x, levels - 1)) return true;
  } else {
    for (const k in v) if (nestedDeeper((v as Record<string, unknown>)[k], levels - 1)) return true;
  }
  return false;
}

/** Maximum elements of one list literal, or of one `in`/`nin` value array of a condition tree. */
export const MAX_LIST = 10_000;

/**
 * A bounded quantifier whose upper bound is above this counts as unbounded in the regex safety
 * check: `(a{1,1000}){1,1000}` backtracks as badly as `(a+)+` on real inputs.
 */
export const REGEX_BIG_REPEAT = 16;

/** Maximum length of a regex pattern source, in UTF-16 code units. */
export const MAX_REGEX_SOURCE = 4_096;
