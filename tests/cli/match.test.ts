/**
 * `signalbox match` as rule-language.md §7 says, through the real command (bin/signalbox.js).
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const BIN = new URL('../../bin/signalbox.js', import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), 'sb-match-'));
let n = 0;

function file(content: string | Buffer): string {
  const p = join(dir, `f${n++}`);
  writeFileSync(p, content);
  return p;
}

function run(args: string[], stdin?: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile(process.execPath, [BIN, ...args], { encoding: 'utf8' }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
    if (stdin !== undefined) child.stdin!.end(stdin);
    else child.stdin!.end();
  });
}

const RULES = JSON.stringify([
  { id: 'b-rule', source: 'halo', on: 'ticket.updated', when: 'changed(ticket.status)' },
  { id: 'a-rule', source: '*', when: 'ticket.priority == 1' },
  { id: 'paused', source: '*', status: 'paused' },
]);
const ev = (id: string, extra: object = {}) =>
  JSON.stringify({
    id,
    source: 'halo',
    type: 'ticket.updated',
    data: { status: 'B', priority: 1 },
    previous: { status: 'A' },
    ...extra,
  });

describe('signalbox match', () => {
  it('prints one sorted line per event and exits 0', async () => {
    const r = await run([
      'match',
      '--rules',
      file(RULES),
      '--events',
      file(`${ev('e1')}\n${ev('e2', { previous: { status: 'B' } })}\n`),
    ]);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('{"event":"e1","rules":["a-rule","b-rule"]}\n{"event":"e2","rules":["a-rule"]}\n');
    expect(r.stderr).toBe('');
  });
  it('accepts --rules=PATH and --events=PATH', async () => {
    const r = await run(['match', `--events=${file(ev('e1'))}`, `--rules=${file(RULES)}`]);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('{"event":"e1","rules":["a-rule","b-rule"]}\n');
  });
  it('skips blank lines but counts them, drops CR, reads a last line without LF, and matches a repeated id twice', async () => {
    const events = `\r\n${ev('e1')}\r\n   \t\n{bad\n\n${ev('e1')}`;
    const r = await run(['match', '--rules', file(RULES), '--events', file(events)]);
    expect(r.code).toBe(1);
    const lines = r.stdout
      .trimEnd()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(lines).toHaveLength(3);
    expect(lines[0]).toEqual({ event: 'e1', rules: ['a-rule', 'b-rule'] });
    expect(lines[1]).toMatchObject({ line: 4 });
    expect(lines[1].error).toMatch(/^invalid JSON/);
    expect(lines[2]).toEqual({ event: 'e1', rules: ['a-rule', 'b-rule'] });
  });
  it('reports each bad envelope with its line and reason, and goes on', async () => {
    const bad = [
      '[]',
      '{"source":"halo","type":"ticket.updated","data":{}}',
      '{"id":"","source":"halo","type":"ticket.updated","data":{}}',
      '{"id":"x","tenant":null,"source":"halo","type":"ticket.updated","data":{}}',
      '{"id":"x","source":"Halo","type":"ticket.updated","data":{}}',
      '{"id":"x","source":"halo","type":"ticket","data":{}}',
      '{"id":"x","source":"halo","type":"ticket.updated","data":[]}',
      '{"id":"x","source":"halo","type":"ticket.updated","data":{},"previous":[]}',
      '{"id":"x","source":"halo","type":"ticket.updated","data":{},"time":5}',
      '{"id":"x","source":"halo","type":"ticket.updated","data":{},"self":"yes"}',
      '{"id":"x","source":"halo","type":"ticket.updated"}',
    ];
    const r = await run([
      'match',
      '--rules',
      file(RULES),
      '--events',
      file(`${bad.join('\n')}\n${ev('ok')}\n`),
    ]);
    expect(r.code).toBe(1);
    const lines = r.stdout
      .trimEnd()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(lines).toHaveLength(bad.length + 1);
    lines.slice(0, -1).forEach((l, i) => {
      expect(l.line).toBe(i + 1);
      expect(typeof l.error).toBe('string');
      expect(l.error.length).toBeGreaterThan(5);
    });
    expect(lines.at(-1)).toEqual({ event: 'ok', rules: ['a-rule', 'b-rule'] });
  });
  it('accepts previous null, absent tenant, extra fields and a UTF-8 BOM', async () => {
    const line = JSON.stringify({
      id: 'é\u2028"',
      source: 'halo',
      type: 'ticket.updated',
      data: { priority: 1 },
      previous: null,
      extra: 1,
    });
    const r = await run(['match', '--rules', file(`\ufeff${RULES}`), '--events', file(`\ufeff${line}\n`)]);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({ event: 'é\u2028"', rules: ['a-rule'] });
  });
  it('reads events from standard input with --events -', async () => {
    const r = await run(['match', '--rules', file(RULES), '--events', '-'], `${ev('s1')}\n`);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('{"event":"s1","rules":["a-rule","b-rule"]}\n');
  });
  it('an empty events file gives no output and exit 0', async () => {
    const r = await run(['match', '--rules', file(RULES), '--events', file('')]);
    expect(r).toMatchObject({ code: 0, stdout: '' });
  });
  it('exits 2 with nothing on stdout and one stderr line per bad rule', async () => {
    const rules = JSON.stringify([
      { id: 'good', source: '*' },
      { id: 'syntax', source: '*', when: 'ticket.a ==\n  == 1' },
      { source: '*' },
      { id: 'tree', source: '*', when: { all: [{ expr: 'foo(1)' }] } },
      { id: 'good', source: '*' },
      'not a rule',
      { id: 'on', source: '*', on: 'ticket' },
    ]);
    const r = await run(['match', '--rules', file(rules), '--events', file(ev('e1'))]);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    const lines = r.stderr.trimEnd().split('\n');
    expect(lines).toHaveLength(6);
    expect(lines[0]).toMatch(/^rule "syntax": when: line 2, column 3: /);
    expect(lines[1]).toMatch(/^rule at index 2: /);
    expect(lines[2]).toMatch(/^rule "tree": when\.all\[0\]\.expr: line 1, column 1: unknown function "foo"/);
    expect(lines[3]).toMatch(/^rule "good".*duplicate id "good"/);
    expect(lines[4]).toMatch(/^rule at index 5: /);
    expect(lines[5]).toMatch(/^rule "on": on: /);
  });
  it('exits 2 for a rules file that is not a JSON array, is not JSON, or cannot be read', async () => {
    for (const rules of [file('{"id":"x"}'), file('[{'), join(dir, 'missing.json'), dir]) {
      const r = await run(['match', '--rules', rules, '--events', file(ev('e1'))]);
      expect(r.code).toBe(2);
      expect(r.stdout).toBe('');
      expect(r.stderr.trimEnd().split('\n')).toHaveLength(1);
    }
  });
  it('exits 2 for bad arguments and unreadable events files', async () => {
    const rules = file(RULES);
    for (const args of [
      [],
      ['--rules', rules],
      ['--events', file('')],
      ['--rules', rules, '--events'],
      ['--rules', rules, '--events', 'x', '--bogus'],
      ['--rules', rules, '--rules', rules, '--events', 'x'],
      ['--rules', rules, '--events', join(dir, 'nope')],
      ['--rules', rules, '--events', dir],
    ]) {
      const r = await run(['match', ...args]);
      expect(r.code, JSON.stringify(args)).toBe(2);
      expect(r.stdout).toBe('');
      expect(r.stderr).not.toBe('');
    }
  });
  it('handles a large file in constant memory, in order', async () => {
    const lines = Array.from({ length: 20_000 }, (_, i) =>
      ev(`e${i}`, i % 2 ? { data: { priority: 2 } } : {}),
    );
    const r = await run(['match', '--rules', file(RULES), '--events', file(lines.join('\n'))]);
    expect(r.code).toBe(0);
    const out = r.stdout.trimEnd().split('\n');
    expect(out).toHaveLength(20_000);
    expect(JSON.parse(out[19_999]!)).toEqual({ event: 'e19999', rules: ['b-rule'] });
  });
  it('answers unknown commands with usage and exit 2', async () => {
    const r = await run(['frobnicate']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/unknown command/);
  });
});
