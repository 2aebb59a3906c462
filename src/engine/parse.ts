/**
 * The parser of the text form (rule-language.md §3): a recursive-descent parser over the pulled
 * lexer. Recursion happens only through parentheses, calls and list brackets, which the depth
 * limit bounds at 64, so hostile input cannot overflow the stack: chains of `not`, `and` and `or`
 * are built with loops. Semantic checks run as the parser goes, and the error reported is the
 * first offending token in reading order.
 */
import type { CmpOp, Json, Node, PathNode, Segment } from './ast.js';
import { type CheckProblem, checkCall, checkFunctionName } from './check.js';
import { EngineError, positionAt } from './errors.js';
import { intern, isKeyword, Lexer, type Token } from './lex.js';
import { MAX_DEPTH, MAX_EXPR_BYTES, MAX_LIST } from './limits.js';
import { compileRegex } from './regex.js';

const CMP_PUNCT: ReadonlyMap<string, CmpOp> = new Map([
  ['==', '=='],
  ['!=', '!='],
  ['<', '<'],
  ['<=', '<='],
  ['>', '>'],
  ['>=', '>='],
]);
const CMP_WORDS: ReadonlyMap<string, CmpOp> = new Map([
  ['contains', 'contains'],
  ['startsWith', 'startsWith'],
  ['endsWith', 'endsWith'],
]);

export interface ParseOptions {
  /** Nesting already used by the enclosing condition tree (each tree level counts one). */
  readonly baseDepth?: number;
}

/** Parses an expression text. Returns null for an empty or all-whitespace text ("always"). */
export function parseExpression(text: string, opts: ParseOptions = {}): Node | null {
  checkSize(text);
  const p = new Parser(text, opts.baseDepth ?? 0);
  return p.run(() => {
    if (p.lx.peek().kind === 'eof') return null;
    const n = p.expression();
    p.expectEnd();
    return n;
  });
}

/** Parses a path alone (the `field` of a condition tree node). */
export function parsePath(text: string): PathNode {
  checkSize(text);
  const p = new Parser(text, 0);
  return p.run(() => {
    const t = p.lx.next();
    if (t.kind !== 'word' || isKeyword(t.text)) throw p.unexpected(t, 'a path (like ticket.status)');
    const n = p.path(t);
    p.expectEnd();
    return n;
  });
}

function checkSize(text: string): void {
  if (text.length > MAX_EXPR_BYTES / 3 && Buffer.byteLength(text, 'utf8') > MAX_EXPR_BYTES) {
    throw new EngineError(
      'SB_RULE_LIMIT',
      `expression is ${Buffer.byteLength(text, 'utf8')} bytes long, over the limit of ${MAX_EXPR_BYTES} UTF-8 bytes`,
      { position: positionAt(text, 0), text },
    );
  }
}

class Parser {
  readonly lx: Lexer;
  private depth: number;
  private firstProblem: CheckProblem | undefined;

  constructor(
    readonly text: string,
    baseDepth: number,
  ) {
    this.lx = new Lexer(text);
    this.depth = baseDepth;
  }

  run<T>(body: () => T): T {
    let result: T;
    try {
      result = body();
    } catch (e) {
      // A semantic problem found earlier in reading order wins over the syntax error.
      if (
        e instanceof EngineError &&
        this.firstProblem &&
        e.position &&
        this.firstProblem.offset < e.position.offset
      ) {
        throw this.problemError(this.firstProblem);
      }
      throw e;
    }
    if (this.firstProblem) throw this.problemError(this.firstProblem);
    return result;
  }

  private problemError(p: CheckProblem): EngineError {
    return new EngineError('SB_RULE_CHECK', p.reason, {
      position: positionAt(this.text, p.offset),
      text: this.text,
    });
  }

  private problem(p: CheckProblem | undefined): void {
    if (p && (!this.firstProblem || p.offset < this.firstProblem.offset)) this.firstProblem = p;
  }

  private error(
    code: 'SB_RULE_PARSE' | 'SB_RULE_LIMIT' | 'SB_RULE_REGEX',
    reason: string,
    offset: number,
  ): EngineError {
    return new EngineError(code, reason, { position: positionAt(this.text, offset), text: this.text });
  }

  unexpected(t: Token, expected: string): EngineError {
    const what =
      t.kind === 'eof' ? 'end of expression' : `"${t.text.length > 40 ? `${t.text.slice(0, 40)}…` : t.text}"`;
    return this.error('SB_RULE_PARSE', `unexpected ${what}, expected ${expected}`, t.start);
  }

  expectEnd(): void {
    const t = this.lx.peek();
    if (t.kind === 'eof') return;
    if (t.kind === 'punct' && t.text === ')') throw this.error('SB_RULE_PARSE', 'unmatched ")"', t.start);
    if (CMP_PUNCT.has(t.text) || CMP_WORDS.has(t.text) || t.text === 'in' || t.text === 'matches') {
      throw this.error(
        'SB_RULE_PARSE',
        `comparisons do not chain: "${t.text}" cannot follow a comparison`,
        t.start,
      );
    }
    throw this.unexpected(t, '"and", "or" or the end of the expression');
  }

  private enter(t: Token): void {
    if (++this.depth > MAX_DEPTH) {
      throw this.error('SB_RULE_LIMIT', `nesting deeper than ${MAX_DEPTH} levels`, t.start);
    }
  }

  private leave(): void {
    this.depth--;
  }

  private isWord(t: Token, w: string): boolean {
    return t.kind === 'word' && t.text === w;
  }

  private isPunct(t: Token, p: string): boolean {
    return t.kind === 'punct' && t.text === p;
  }

  expression(): Node {
    const first = this.andExpr();
    let t = this.lx.peek();
    if (!(this.isWord(t, 'or') || this.isPunct(t, '||'))) return first;
    const xs = [first];
    while (this.isWord(t, 'or') || this.isPunct(t, '||')) {
      this.lx.next();
      xs.push(this.andExpr());
      t = this.lx.peek();
    }
    return { k: 'or', xs, src: this.text, start: first.start, end: xs[xs.length - 1]!.end };
  }

  private andExpr(): Node {
    const first = this.unary();
    let t = this.lx.peek();
    if (!(this.isWord(t, 'and') || this.isPunct(t, '&&'))) return first;
    const xs = [first];
    while (this.isWord(t, 'and') || this.isPunct(t, '&&')) {
      this.lx.next();
      xs.push(this.unary());
      t = this.lx.peek();
    }
    return { k: 'and', xs, src: this.text, start: first.start, end: xs[xs.length - 1]!.end };
  }

  /** `not`/`!` chains are folded by parity: `not not x` keeps its meaning (x is exactly true). */
  private unary(): Node {
    let count = 0;
    let start = -1;
    for (let t = this.lx.peek(); this.isWord(t, 'not') || this.isPunct(t, '!'); t = this.lx.peek()) {
      if (start < 0) start = t.start;
      this.lx.next();
      count++;
    }
    let n = this.comparison();
    if (count === 0) return n;
    if (count % 2 === 0) n = { k: 'not', x: n, src: this.text, start: n.start, end: n.end };
    return { k: 'not', x: n, src: this.text, start, end: n.end };
  }

  private comparison(): Node {
    const l = this.value();
    const t = this.lx.peek();
    let op: CmpOp | undefined = t.kind === 'punct' ? CMP_PUNCT.get(t.text) : CMP_WORDS.get(t.text);
    if (t.kind === 'word' && t.text === 'in') op = 'in';
    if (t.kind === 'word' && t.text === 'not') {
      this.lx.next();
      const u = this.lx.peek();
      if (!this.isWord(u, 'in')) throw this.unexpected(u, '"in" after "not" (as in: x not in [1, 2])');
      op = 'nin';
    }
    if (t.kind === 'word' && t.text === 'matches') {
      this.lx.next();
      return this.matches(l);
    }
    if (op === undefined) return l;
    this.lx.next();
    const r = this.value();
    return { k: 'cmp', op, l, r, src: this.text, start: l.start, end: r.end };
  }

  private matches(l: Node): Node {
    let t = this.lx.peek();
    if (this.isPunct(t, '/')) t = this.lx.regexAt(t);
    else this.lx.next();
    if (t.kind !== 'regex' && t.kind !== 'string')
      throw this.unexpected(t, 'a regex (/…/) or a string after "matches"');
    const pattern = t.value as string;
    const flags = t.flags ?? '';
    const c = compileRegex(pattern, flags);
    if (!c.ok) throw this.error('SB_RULE_REGEX', c.reason, t.start);
    return { k: 'match', l, pattern, flags, re: c.re, src: this.text, start: l.start, end: t.end };
  }

  private value(): Node {
    const t = this.lx.next();
    switch (t.kind) {
      case 'string':
      case 'number':
        return { k: 'lit', v: t.value as Json, src: this.text, start: t.start, end: t.end };
      case 'word':
        if (t.text === 'true' || t.text === 'false' || t.text === 'null') {
          return {
            k: 'lit',
            v: t.text === 'null' ? null : t.text === 'true',
            src: this.text,
            start: t.start,
            end: t.end,
          };
        }
        if (isKeyword(t.text)) throw this.unexpected(t, 'a value');
        if (this.isPunct(this.lx.peek(), '(')) return this.call(t);
        return this.path(t);
      case 'punct':
        if (t.text === '(') {
          this.enter(t);
          const inner = this.expression();
          const close = this.lx.next();
          if (!this.isPunct(close, ')')) throw this.unexpected(close, '")"');
          this.leave();
          this.noPostfix('a parenthesised expression');
          return { ...inner, start: t.start, end: close.end };
        }
        if (t.text === '[')
          return { k: 'lit', v: this.list(t), src: this.text, start: t.start, end: this.lastEnd };
        throw this.unexpected(t, 'a value');
      default:
        throw this.unexpected(t, 'a value');
    }
  }

  private lastEnd = 0;

  /** `[` already consumed. Elements are literals only, lists may nest. */
  private list(open: Token): Json[] {
    this.enter(open);
    const out: Json[] = [];
    let t = this.lx.next();
    if (!this.isPunct(t, ']')) {
      for (;;) {
        if (out.length === MAX_LIST) {
          throw this.error('SB_RULE_LIMIT', `list has more than ${MAX_LIST} elements`, t.start);
        }
        out.push(this.literal(t));
        t = this.lx.next();
        if (this.isPunct(t, ']')) break;
        if (!this.isPunct(t, ',')) throw this.unexpected(t, '"," or "]"');
        t = this.lx.next();
      }
    }
    this.leave();
    this.lastEnd = t.end;
    return out.slice();
  }

  private literal(t: Token): Json {
    if (t.kind === 'string' || t.kind === 'number') return t.value as Json;
    if (t.kind === 'word' && (t.text === 'true' || t.text === 'false')) return t.text === 'true';
    if (t.kind === 'word' && t.text === 'null') return null;
    if (this.isPunct(t, '[')) return this.list(t);
    throw this.unexpected(t, 'a literal (list elements are strings, numbers, true, false, null or lists)');
  }

  private call(name: Token): Node {
    this.problem(checkFunctionName(name.text, name.start));
    const open = this.lx.next();
    this.enter(open);
    const args: Node[] = [];
    let t = this.lx.peek();
    if (this.isPunct(t, ')')) {
      this.lx.next();
    } else {
      for (;;) {
        args.push(this.expression());
        t = this.lx.next();
        if (this.isPunct(t, ')')) break;
        if (!this.isPunct(t, ',')) throw this.unexpected(t, '"," or ")"');
      }
    }
    this.leave();
    this.problem(checkCall(name.text, args, name.start));
    this.noPostfix('a function call');
    const fn = name.text;
    const node: Node = { k: 'call', fn, args, src: this.text, start: name.start, end: t.end };
    return node;
  }

  private noPostfix(what: string): void {
    const t = this.lx.peek();
    if (this.isPunct(t, '.') || this.isPunct(t, '[')) {
      throw this.error('SB_RULE_PARSE', `only a path takes "${t.text}": it cannot follow ${what}`, t.start);
    }
  }

  /** `root` (a non-keyword word) already consumed. */
  path(root: Token): PathNode {
    const segs: Segment[] = [];
    let end = root.end;
    for (;;) {
      const t = this.lx.peek();
      if (this.isPunct(t, '.')) {
        this.lx.next();
        const k = this.lx.next();
        // Directly after ".", any word is a key, keywords included (data.in, ticket.type).
        if (k.kind !== 'word') throw this.unexpected(k, 'a key after "."');
        segs.push(k.text);
        end = k.end;
      } else if (this.isPunct(t, '[')) {
        this.lx.next();
        const k = this.lx.next();
        if (k.kind === 'string') segs.push(intern(k.value as string));
        else if (k.kind === 'number' && /^(0|[1-9][0-9]*)$/.test(k.text)) segs.push(k.value as number);
        else throw this.unexpected(k, 'a string key or a non-negative integer index (without leading zeros)');
        const close = this.lx.next();
        if (!this.isPunct(close, ']')) throw this.unexpected(close, '"]"');
        end = close.end;
      } else {
        break;
      }
    }
    // slice(): an array grown by push() keeps spare capacity; paths are kept by compiled rules.
    return { k: 'path', root: root.text, segs: segs.slice(), src: this.text, start: root.start, end };
  }
}
