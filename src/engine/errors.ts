/**
 * Typed errors with stable codes. The list of codes is documented in docs/errors.md, and a test
 * checks that both agree. Callers classify errors by `code`, never by message text.
 */

export const ERROR_CODES = {
  SB_RULE_PARSE: 'the expression text is not valid syntax',
  SB_RULE_CHECK:
    'the expression is well-formed but meaningless (unknown function, wrong arguments, bad changed() path)',
  SB_RULE_LIMIT: 'the expression exceeds a limit of the language (size, nesting, list length)',
  SB_RULE_REGEX: 'a `matches` pattern does not compile, or could backtrack catastrophically',
  SB_RULE_INVALID: 'the rule document is malformed (missing or wrong field)',
  SB_RULE_DUPLICATE: 'two rules of one tenant share an id',
  SB_EVENT_INVALID: 'an event envelope is malformed',
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

/** A position in an expression text: 1-based line and column (UTF-16 code units). */
export interface Position {
  readonly line: number;
  readonly column: number;
  readonly offset: number;
}

export class EngineError extends Error {
  override readonly name = 'EngineError';
  readonly code: ErrorCode;
  /** Where in the rule document the error is, e.g. `when`, `when.all[2].field`, `on[1]`. */
  readonly where: string | undefined;
  readonly position: Position | undefined;
  /** The offending line of the expression with a caret under the column (multi-line). */
  readonly snippet: string | undefined;
  /** The bare reason, without location. */
  readonly reason: string;

  constructor(
    code: ErrorCode,
    reason: string,
    opts: { where?: string; position?: Position; text?: string } = {},
  ) {
    const pos = opts.position;
    const loc = [opts.where, pos ? `line ${pos.line}, column ${pos.column}` : undefined]
      .filter(Boolean)
      .join(': ');
    super(loc ? `${loc}: ${reason}` : reason);
    this.code = code;
    this.reason = reason;
    this.where = opts.where;
    this.position = pos;
    this.snippet = pos && opts.text !== undefined ? caretSnippet(opts.text, pos) : undefined;
  }

  /** The same error, located inside a larger document (`when.all[1]` + this error's where). */
  within(where: string, text?: string): EngineError {
    const inner = this.where ? `${where}.${this.where}` : where;
    const e = new EngineError(this.code, this.reason, {
      where: inner,
      ...(this.position ? { position: this.position } : {}),
      ...(text !== undefined ? { text } : {}),
    });
    if (text === undefined && this.snippet !== undefined)
      (e as { snippet: string | undefined }).snippet = this.snippet;
    return e;
  }

  toJSON(): Record<string, unknown> {
    return {
      code: this.code,
      message: this.message,
      reason: this.reason,
      where: this.where,
      line: this.position?.line,
      column: this.position?.column,
      snippet: this.snippet,
    };
  }
}

/** A malformed rule document field. */
export function invalid(where: string, reason: string): EngineError {
  return new EngineError('SB_RULE_INVALID', reason, { where });
}

/** How a JSON value is named in messages: "null", "an array", "an object", "a string" … */
export function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  return typeof v === 'object' ? 'an object' : `a ${typeof v}`;
}

/** Computes the 1-based line/column of a UTF-16 offset; lines are separated by LF only. */
export function positionAt(text: string, offset: number): Position {
  let line = 1;
  let lineStart = 0;
  for (let i = text.indexOf('\n'); i !== -1 && i < offset; i = text.indexOf('\n', i + 1)) {
    line++;
    lineStart = i + 1;
  }
  return { line, column: offset - lineStart + 1, offset };
}

const MAX_SNIPPET = 120;

/** `  ticket.status == "x" and foo(1)` / `                           ^`, long lines windowed. */
export function caretSnippet(text: string, pos: Position): string {
  const start = pos.offset - (pos.column - 1);
  let end = text.indexOf('\n', start);
  if (end === -1) end = text.length;
  let line = text.slice(start, end);
  let col = pos.column - 1;
  if (line.length > MAX_SNIPPET) {
    const from = Math.max(0, Math.min(col - MAX_SNIPPET / 2, line.length - MAX_SNIPPET));
    line =
      (from > 0 ? '…' : '') +
      line.slice(from, from + MAX_SNIPPET) +
      (from + MAX_SNIPPET < line.length ? '…' : '');
    col = col - from + (from > 0 ? 1 : 0);
  }
  // Control characters would garble a terminal; show them as spaces so the caret stays aligned.
  line = line.replace(/[\u0000-\u001f\u007f\u2028\u2029]/g, ' ');
  return `${line}\n${' '.repeat(col)}^`;
}
