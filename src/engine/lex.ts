/**
 * The lexer of the rule language (rule-language.md §3). It is pulled by the parser one token at a
 * time, because a `/` means a regex literal only directly after `matches`: the parser asks for
 * that with `regexAt()`.
 */
import { EngineError, positionAt } from './errors.js';

export type TokenKind = 'word' | 'string' | 'number' | 'regex' | 'punct' | 'eof';

export interface Token {
  readonly kind: TokenKind;
  /** Source text of the token (for `punct`, the operator itself: `==`, `(`, `&&` …). */
  readonly text: string;
  /** Decoded value: the string of a string literal, the number of a number literal. */
  readonly value: string | number | undefined;
  /** Regex flags, for `regex` tokens. */
  readonly flags?: string;
  readonly start: number;
  readonly end: number;
}

const KEYWORDS = new Set([
  'and',
  'or',
  'not',
  'in',
  'contains',
  'startsWith',
  'endsWith',
  'matches',
  'true',
  'false',
  'null',
]);

/**
 * Path words (`ticket`, `status`, `company` …) repeat across thousands of rules and are kept by
 * their compiled closures; one shared copy each instead of one per rule (measured: ~50 B per
 * rule at 20k rules). Bounded, so hostile rules cannot grow it without limit.
 */
const WORDS = new Map<string, string>();
const MAX_INTERNED = 20_000;

export function intern(word: string): string {
  if (word.length > 64) return word;
  const had = WORDS.get(word);
  if (had !== undefined) return had;
  if (WORDS.size < MAX_INTERNED) WORDS.set(word, word);
  return word;
}

export function isKeyword(word: string): boolean {
  return KEYWORDS.has(word);
}

const NUMBER = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;
const WORD = /[A-Za-z_][A-Za-z0-9_]*/y;
const IDENT_CHAR = /[A-Za-z0-9_.]/;

const ESCAPES: Record<string, string> = {
  '\\': '\\',
  '"': '"',
  "'": "'",
  '/': '/',
  b: '\b',
  f: '\f',
  n: '\n',
  r: '\r',
  t: '\t',
};

export class Lexer {
  private pos = 0;
  private peeked: Token | undefined;

  constructor(readonly text: string) {}

  error(reason: string, offset: number): EngineError {
    return new EngineError('SB_RULE_PARSE', reason, {
      position: positionAt(this.text, offset),
      text: this.text,
    });
  }

  peek(): Token {
    if (this.peeked === undefined) this.peeked = this.scan();
    return this.peeked;
  }

  next(): Token {
    const t = this.peek();
    this.peeked = undefined;
    return t;
  }

  /** Re-reads the `/` token `slash` (just peeked) as the start of a regex literal. */
  regexAt(slash: Token): Token {
    this.peeked = undefined;
    const t = this.text;
    let i = slash.start + 1;
    let inClass = false;
    let pattern = '';
    for (;;) {
      if (i >= t.length) throw this.error('unterminated regex literal', slash.start);
      const c = t[i]!;
      if (c === '\n' || c === '\r') throw this.error('line break inside a regex literal', i);
      if (c === '\\') {
        const d = t[i + 1];
        if (d === undefined) throw this.error('unterminated regex literal', slash.start);
        if (d === '\n' || d === '\r') throw this.error('line break inside a regex literal', i + 1);
        // `\/` is a slash; every other escape is kept for the regex engine.
        pattern += d === '/' ? '/' : c + d;
        i += 2;
        continue;
      }
      if (c === '[') inClass = true;
      else if (c === ']') inClass = false;
      else if (c === '/' && !inClass) break;
      pattern += c;
      i++;
    }
    i++;
    const flagStart = i;
    while (i < t.length && /[A-Za-z0-9_$]/.test(t[i]!)) i++;
    const flags = t.slice(flagStart, i);
    for (let k = 0; k < flags.length; k++) {
      const f = flags[k]!;
      if (!'imsu'.includes(f))
        throw this.error(`unknown regex flag "${f}" (allowed: i, m, s, u)`, flagStart + k);
      if (flags.indexOf(f) !== k) throw this.error(`regex flag "${f}" given twice`, flagStart + k);
    }
    this.pos = i;
    return {
      kind: 'regex',
      text: t.slice(slash.start, i),
      value: pattern,
      flags,
      start: slash.start,
      end: i,
    };
  }

  private scan(): Token {
    const t = this.text;
    let i = this.pos;
    while (i < t.length) {
      const c = t.charCodeAt(i);
      if (c === 32 || c === 9 || c === 10 || c === 13) i++;
      else break;
    }
    this.pos = i;
    if (i >= t.length) return { kind: 'eof', text: '', value: undefined, start: i, end: i };
    const c = t[i]!;
    if (c === '"' || c === "'") return this.scanString(c);
    if ((c >= '0' && c <= '9') || (c === '-' && i + 1 < t.length && t[i + 1]! >= '0' && t[i + 1]! <= '9')) {
      return this.scanNumber();
    }
    if (c === '-') throw this.error('"-" must be directly followed by a number (there is no arithmetic)', i);
    WORD.lastIndex = i;
    const w = WORD.exec(t);
    if (w) {
      this.pos = i + w[0].length;
      const word = intern(w[0]);
      return { kind: 'word', text: word, value: word, start: i, end: this.pos };
    }
    const two = t.slice(i, i + 2);
    if (two === '==' || two === '!=' || two === '<=' || two === '>=' || two === '&&' || two === '||') {
      this.pos = i + 2;
      return { kind: 'punct', text: two, value: undefined, start: i, end: i + 2 };
    }
    if ('()[],.<>!/'.includes(c)) {
      this.pos = i + 1;
      return { kind: 'punct', text: c, value: undefined, start: i, end: i + 1 };
    }
    if (c === '=') throw this.error('unexpected "=" (equality is "==")', i);
    if (c === '&') throw this.error('unexpected "&" (logical and is "&&" or "and")', i);
    if (c === '|') throw this.error('unexpected "|" (logical or is "||" or "or")', i);
    const cp = t.codePointAt(i)!;
    const shown =
      cp < 0x20 || cp === 0x7f || cp === 0x2028 || cp === 0x2029
        ? `U+${hex4(cp)}`
        : `"${String.fromCodePoint(cp)}"`;
    throw this.error(`unexpected character ${shown}`, i);
  }

  private scanNumber(): Token {
    const t = this.text;
    const i = this.pos;
    NUMBER.lastIndex = i;
    const m = NUMBER.exec(t)!;
    let end = i + m[0].length;
    // `01`, `1.`, `1e`, `1x`: the literal runs on into something that is not part of a number.
    if (end < t.length && IDENT_CHAR.test(t[end]!)) {
      while (end < t.length && /[A-Za-z0-9_.+-]/.test(t[end]!)) end++;
      throw this.error(`invalid number "${t.slice(i, end)}"`, i);
    }
    this.pos = end;
    return { kind: 'number', text: m[0], value: Number(m[0]), start: i, end };
  }

  private scanString(quote: string): Token {
    const t = this.text;
    const start = this.pos;
    let i = start + 1;
    let out = '';
    let run = i;
    for (;;) {
      if (i >= t.length) throw this.error('unterminated string', start);
      const code = t.charCodeAt(i);
      if (code < 0x20) {
        throw this.error(
          code === 10 || code === 13
            ? 'line break inside a string (use \\n)'
            : `raw control character U+${hex4(code)} inside a string (use an escape)`,
          i,
        );
      }
      const c = t[i]!;
      if (c === quote) break;
      if (c !== '\\') {
        i++;
        continue;
      }
      out += t.slice(run, i);
      const d = t[i + 1];
      if (d === undefined) throw this.error('unterminated string', start);
      if (d === 'u') {
        const h = t.slice(i + 2, i + 6);
        if (!/^[0-9A-Fa-f]{4}$/.test(h)) throw this.error('"\\u" must be followed by four hex digits', i);
        out += String.fromCharCode(Number.parseInt(h, 16));
        i += 6;
      } else {
        const e = ESCAPES[d];
        if (e === undefined) throw this.error(`unknown escape "\\${d}" in string`, i);
        out += e;
        i += 2;
      }
      run = i;
    }
    out += t.slice(run, i);
    this.pos = i + 1;
    return { kind: 'string', text: t.slice(start, i + 1), value: out, start, end: i + 1 };
  }
}

function hex4(n: number): string {
  return n.toString(16).toUpperCase().padStart(4, '0');
}
