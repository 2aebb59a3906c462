/**
 * `signalbox match --rules RULES.json --events EVENTS.ndjson` (rule-language.md §7).
 *
 * Exit 2 with nothing on stdout for bad arguments or any bad rule (one stderr line per bad rule);
 * otherwise one output line per non-blank event line, in order, and exit 1 when any event line
 * was invalid, else 0. Events are streamed: a file of millions of lines runs in constant memory.
 */
import { open, readFile } from 'node:fs/promises';
import { StringDecoder } from 'node:string_decoder';
import { stripBom } from '../config/body.js';
import { checkEnvelope, compileRuleSet, Engine } from '../engine/index.js';

export interface Io {
  readonly stdout: NodeJS.WritableStream;
  readonly stderr: NodeJS.WritableStream;
  readonly stdin: NodeJS.ReadableStream;
}

export class UsageError extends Error {}

export const MATCH_USAGE =
  'usage: signalbox match --rules RULES.json --events EVENTS.ndjson   (EVENTS may be - for standard input)';

export function parseMatchArgs(argv: readonly string[]): { rules: string; events: string } {
  const got: Record<string, string> = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const m = /^--(rules|events)(?:=(.*))?$/s.exec(a);
    if (!m) throw new UsageError(`unknown argument ${JSON.stringify(a)}`);
    const name = m[1]!;
    let value = m[2];
    if (value === undefined) {
      value = argv[++i];
      if (value === undefined) throw new UsageError(`--${name} needs a file path`);
    }
    if (value === '') throw new UsageError(`--${name} needs a file path`);
    if (Object.hasOwn(got, name)) throw new UsageError(`--${name} given twice`);
    got[name] = value;
  }
  if (got.rules === undefined) throw new UsageError('missing --rules');
  if (got.events === undefined) throw new UsageError('missing --events');
  return { rules: got.rules, events: got.events };
}

/** Formats one output line: `{"event":"<id>","rules":[…]}`. */
export function resultLine(id: string, rules: readonly string[]): string {
  return `{"event":${JSON.stringify(id)},"rules":${JSON.stringify(rules)}}\n`;
}

export function errorLine(line: number, reason: string): string {
  return `{"line":${line},"error":${JSON.stringify(reason)}}\n`;
}

/** Loads and compiles the rules file; returns the engine, or the stderr lines of every bad rule. */
export async function loadRulesFile(path: string): Promise<{ engine: Engine } | { errors: string[] }> {
  let text: string;
  try {
    text = stripBom(await readFile(path, 'utf8'));
  } catch (e) {
    return {
      errors: [
        `cannot read rules file ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
      ],
    };
  }
  let docs: unknown;
  try {
    docs = JSON.parse(text);
  } catch (e) {
    return { errors: [`rules file ${path} is not valid JSON: ${(e as Error).message}`] };
  }
  if (!Array.isArray(docs)) return { errors: [`rules file ${path} must hold a JSON array of rules`] };
  const { rules, errors } = compileRuleSet(docs);
  if (errors.length > 0) return { errors: errors.map((e) => `${e.label}: ${e.error.message}`) };
  return { engine: new Engine(rules) };
}

const WHITESPACE_ONLY = /^\s*$/;

/** Matches one event line; returns the output line. */
export function matchLine(engine: Engine, text: string, lineNo: number): { out: string; bad: boolean } {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    return { out: errorLine(lineNo, `invalid JSON: ${(e as Error).message}`), bad: true };
  }
  const c = checkEnvelope(value);
  if (!c.ok) return { out: errorLine(lineNo, c.reason), bad: true };
  return { out: resultLine(c.envelope.id, engine.match(c.envelope)), bad: false };
}

export async function runMatch(argv: readonly string[], io: Io): Promise<number> {
  let args: { rules: string; events: string };
  try {
    args = parseMatchArgs(argv);
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    io.stderr.write(`signalbox match: ${e.message}\n${MATCH_USAGE}\n`);
    return 2;
  }
  const loaded = await loadRulesFile(args.rules);
  if ('errors' in loaded) {
    for (const line of loaded.errors) io.stderr.write(`${line.replace(/[\r\n]+/g, ' ')}\n`);
    return 2;
  }
  let input: NodeJS.ReadableStream;
  if (args.events === '-') {
    input = io.stdin;
  } else {
    // Open before any output, so an unreadable events file is a usage error with nothing on stdout.
    try {
      const fh = await open(args.events, 'r');
      const st = await fh.stat();
      if (st.isDirectory()) {
        await fh.close();
        throw Object.assign(new Error('is a directory'), { code: 'EISDIR' });
      }
      input = fh.createReadStream({ autoClose: true });
    } catch (e) {
      io.stderr.write(
        `signalbox match: cannot read events file ${args.events}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}\n`,
      );
      return 2;
    }
  }
  return streamEvents(loaded.engine, input, io.stdout);
}

async function streamEvents(
  engine: Engine,
  input: NodeJS.ReadableStream,
  stdout: NodeJS.WritableStream,
): Promise<number> {
  const decoder = new StringDecoder('utf8');
  let carry = '';
  let lineNo = 0;
  let anyBad = false;
  let first = true;
  let buf = '';
  const flush = async () => {
    if (buf.length === 0) return;
    const ok = stdout.write(buf);
    buf = '';
    if (!ok) await new Promise<void>((resolve) => stdout.once('drain', resolve));
  };
  const handle = (raw: string) => {
    lineNo++;
    const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    if (WHITESPACE_ONLY.test(line)) return;
    const r = matchLine(engine, line, lineNo);
    anyBad ||= r.bad;
    buf += r.out;
  };
  for await (const chunk of input) {
    let text = carry + decoder.write(chunk as Buffer);
    if (first && text.length > 0) {
      text = stripBom(text);
      first = false;
    }
    let start = 0;
    for (let nl = text.indexOf('\n'); nl !== -1; nl = text.indexOf('\n', start)) {
      handle(text.slice(start, nl));
      start = nl + 1;
    }
    carry = text.slice(start);
    if (buf.length > 1 << 16) await flush();
  }
  carry += decoder.end();
  if (first) carry = stripBom(carry);
  if (carry.length > 0) handle(carry);
  await flush();
  return anyBad ? 1 : 0;
}
