/**
 * Compile and index N rules in a fresh process (as a server does at start, JIT cold), and the
 * heap they keep. Run by match.bench.ts once per rule count; prints one JSON line.
 *
 *   node --expose-gc --import tsx bench/engine/compile.bench.ts N
 */
import { Engine, RuleCompiler } from '../../src/engine/index.js';
import { makeWorkload, type Shape } from './workload.js';

const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('run with node --expose-gc');
const n = Number(process.argv[2]);
const shape = (process.argv[3] ?? 'scaled') as Shape;
if (!(n > 0)) throw new Error('usage: compile.bench.ts RULES [scaled|dense]');

// Through JSON, as documents arrive from the store or the admin API (flat strings, plain objects).
const { rules: docs } = JSON.parse(JSON.stringify(makeWorkload(n, 1, 42, shape))) as { rules: unknown[] };
const heap = () => {
  gc!();
  gc!();
  return process.memoryUsage().heapUsed;
};
const h0 = heap();
const t0 = performance.now();
const compiler = new RuleCompiler();
const rules = docs.map((d) => compiler.compile(d));
const t1 = performance.now();
const engine = new Engine(rules);
const t2 = performance.now();
rules.length = 0; // the engine holds what it needs
const h1 = heap();
if (engine.size !== n) throw new Error(`indexed ${engine.size} of ${n} rules`);
console.log(
  JSON.stringify({
    rules: n,
    compileMs: +(t1 - t0).toFixed(1),
    indexMs: +(t2 - t1).toFixed(1),
    compileAndIndexMs: +(t2 - t0).toFixed(1),
    heapBytesPerRule: Math.round((h1 - h0) / n),
  }),
);
