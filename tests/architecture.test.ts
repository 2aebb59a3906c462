/**
 * The import rules of design.md: cli ▶ {ingest, workers, admin} ▶ {engine, store}; src/engine
 * imports nothing of the project outside it and no I/O module; no import cycles.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const SRC = resolve(new URL('../src', import.meta.url).pathname);

const MAY_IMPORT: Record<string, string[]> = {
  engine: [],
  store: [],
  config: [],
  ingest: ['engine', 'store', 'config'],
  workers: ['engine', 'store', 'config'],
  admin: ['engine', 'store', 'config'],
  cli: ['engine', 'store', 'config', 'ingest', 'workers', 'admin'],
};

/** Node modules the pure engine may not touch: anything that does I/O, time or processes. */
const ENGINE_FORBIDDEN =
  /^(node:)?(fs|net|http|https|http2|dgram|dns|child_process|worker_threads|cluster|timers|os|process|tls|readline|stream|v8|vm)(\/|$)/;

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    return statSync(p).isDirectory() ? files(p) : /\.ts$/.test(f) && !/\.test\.ts$/.test(f) ? [p] : [];
  });
}

function imports(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  return [
    ...text.matchAll(
      /^\s*(?:import|export)\b[^'"]*?from\s*['"]([^'"]+)['"]|^\s*import\s*['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)/gm,
    ),
  ].map((m) => (m[1] ?? m[2] ?? m[3])!);
}

const all = files(SRC);
const part = (f: string) => relative(SRC, f).split('/')[0]!;

describe('architecture', () => {
  it('every folder under src is a known part', () => {
    for (const f of all) expect(Object.keys(MAY_IMPORT), f).toContain(part(f).replace(/\.ts$/, ''));
  });
  it('imports flow one way between parts', () => {
    for (const f of all) {
      for (const spec of imports(f)) {
        if (!spec.startsWith('.')) continue;
        const target = resolve(dirname(f), spec);
        const from = part(f);
        const to = part(target);
        if (from === to) continue;
        expect(MAY_IMPORT[from], `${relative(SRC, f)} imports ${spec}`).toContain(
          to.replace(/\.(ts|js)$/, ''),
        );
      }
    }
  });
  it('the engine is pure: no I/O modules and no runtime dependencies', () => {
    for (const f of all.filter((f) => part(f) === 'engine')) {
      for (const spec of imports(f)) {
        expect(spec.startsWith('./'), `${relative(SRC, f)} imports ${spec}`).toBe(true);
        expect(ENGINE_FORBIDDEN.test(spec)).toBe(false);
      }
      const text = readFileSync(f, 'utf8');
      expect(
        /\b(setTimeout|setInterval|setImmediate|Date\.now|process\.|console\.|require\()/.test(text),
        relative(SRC, f),
      ).toBe(false);
    }
  });
  it('no import cycles between modules', () => {
    const graph = new Map<string, string[]>();
    for (const f of all) {
      graph.set(
        f,
        imports(f)
          .filter((s) => s.startsWith('.'))
          .map((s) => resolve(dirname(f), s).replace(/\.js$/, '.ts')),
      );
    }
    const state = new Map<string, 'visiting' | 'done'>();
    const visit = (f: string, path: string[]): void => {
      if (state.get(f) === 'done') return;
      if (state.get(f) === 'visiting')
        throw new Error(`import cycle: ${[...path, f].map((p) => relative(SRC, p)).join(' → ')}`);
      state.set(f, 'visiting');
      for (const g of graph.get(f) ?? []) visit(g, [...path, f]);
      state.set(f, 'done');
    };
    for (const f of all) visit(f, []);
  });
});
