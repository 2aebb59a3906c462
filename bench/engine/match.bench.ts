/**
 * Engine benchmarks: compile and index time and heap per rule, match-only throughput and latency
 * at 1k, 10k and 100k rules, each beside a linear scan of the same compiled predicates measured
 * in the same run. Every case is validated (indexed result == linear scan result, for every
 * event) before it is timed.
 *
 *   node bench/run.mjs bench/engine/match.bench.ts [ruleCounts…]     (npm run bench:engine)
 *
 * Compile time and heap per rule come from compile.bench.ts, run in a fresh process per rule
 * count (a server compiles its rules at start, JIT cold; and a fresh heap measures only what the
 * rules keep).
 * Writes bench/results/engine.json; `npm run bench:readme` puts the table into the README.
 *
 * Hot and cold events: the ingest matches an event it has just parsed, so the event is in the CPU
 * cache. The headline numbers cycle through 1,000 pre-parsed events (about 1.5 MB, cache-resident
 * like a fresh parse); the "cold" numbers cycle through all 20,000 (about 30 MB, larger than this
 * machine's caches), where every event is a cache miss before any rule runs.
 */
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { Bench } from 'tinybench';
import { build } from '../../scripts/build-lib.mjs';
import '../../src/cli/v8-flags.js';
import {
  type CompiledRule,
  Engine,
  type Envelope,
  EvalContext,
  RuleCompiler,
} from '../../src/engine/index.js';
import { runInfo } from '../env.js';
import { makeWorkload, RULES_PER_TENANT, type Shape } from './workload.js';

const counts = process.argv
  .slice(2)
  .map(Number)
  .filter((n) => n > 0);
const RULE_COUNTS = counts.length > 0 ? counts : [1_000, 10_000, 100_000];
const EVENTS = 20_000;
const BATCH = 1_000;
const HOT = 1_000;

/** The baseline: every rule's gates and predicate, one rule after another. */
function linearScan(rules: readonly CompiledRule[], ctx: EvalContext, env: Envelope): string[] {
  const tenant = env.tenant ?? 'default';
  const dot = env.type.indexOf('.');
  const entity = env.type.slice(0, dot);
  ctx.load(env, entity === 'event' || entity === 'data' ? '' : entity, env.type.endsWith('.created'));
  const out: string[] = [];
  for (let i = 0; i < rules.length; i++) {
    const r = rules[i]!;
    if (r.tenant !== tenant || (r.source !== '*' && r.source !== env.source)) continue;
    const on = r.on;
    if (!(on.star || on.exact.includes(env.type) || on.prefixes.some((p) => env.type.startsWith(p))))
      continue;
    if (env.self === true && !r.allowSelf) continue;
    if (r.condition.pred(ctx, null)) out.push(r.id);
  }
  return out.sort();
}

const compileBench = await build('bench/engine/compile.bench.ts', 'var/bench/compile.bench.mjs');

function compileInFreshProcess(
  n: number,
  shape: Shape,
): { compileMs: number; indexMs: number; compileAndIndexMs: number; heapBytesPerRule: number } {
  const r = spawnSync(process.execPath, ['--expose-gc', compileBench, String(n), shape], {
    encoding: 'utf8',
  });
  if (r.status !== 0) throw new Error(`compile bench failed: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').at(-1)!);
}

async function measure(n: number, shape: Shape) {
  // Through JSON, as rules and events arrive from the store or the wire (flat strings, plain objects).
  const { rules: docs, events } = JSON.parse(
    JSON.stringify(makeWorkload(n, EVENTS, 42, shape)),
  ) as ReturnType<typeof makeWorkload>;
  const envs = events as unknown as Envelope[];

  const built = compileInFreshProcess(n, shape);
  const compiler = new RuleCompiler();
  const compiled = docs.map((d) => compiler.compile(d));
  const engine = new Engine(compiled);

  // Validate before timing: the index gives exactly the linear scan's answer for every event.
  const ctx = new EvalContext();
  let matches = 0;
  for (const e of envs) {
    const got = engine.match(e);
    const want = linearScan(compiled, ctx, e);
    if (got.join() !== want.join()) throw new Error(`mismatch at ${n} rules on ${e.id}: ${got} vs ${want}`);
    matches += got.length;
  }

  // Throughput: batches of events, so the timer's cost is spread over many matches.
  let cursor = 0;
  const linearBatch = n >= 100_000 ? 20 : n >= 10_000 ? 100 : BATCH;
  const bench = new Bench({ time: 3_000, warmupTime: 500, iterations: 20 });
  let sink = 0;
  bench.add('indexed', () => {
    for (let i = 0; i < BATCH; i++) sink += engine.match(envs[cursor++ % HOT]!).length;
  });
  bench.add('linear', () => {
    for (let i = 0; i < linearBatch; i++) sink += linearScan(compiled, ctx, envs[cursor++ % HOT]!).length;
  });
  // Latency: one event per sample (tinybench subtracts the timer's own cost).
  bench.add('latency', () => {
    sink += engine.match(envs[cursor++ % HOT]!).length;
  });
  bench.add('indexed-cold', () => {
    for (let i = 0; i < BATCH; i++) sink += engine.match(envs[cursor++ % EVENTS]!).length;
  });
  await bench.run();
  const [indexed, linear, latency, cold] = bench.tasks.map((t) => t.result);
  for (const r of [indexed, linear, latency, cold])
    if (r?.state !== 'completed') throw new Error(`bench task failed: ${JSON.stringify(r)}`);
  const done = (r: typeof indexed) => r as Extract<typeof indexed, { state: 'completed' }>;
  const indexedEps = done(indexed).throughput.mean * BATCH;
  const linearEps = done(linear).throughput.mean * linearBatch;
  const coldEps = done(cold).throughput.mean * BATCH;
  const lat = done(latency).latency;
  if (sink < 0) console.log(sink);
  return {
    rules: n,
    tenants: new Set(docs.map((d) => d.tenant)).size,
    events: EVENTS,
    matchesPerEvent: +(matches / EVENTS).toFixed(3),
    ...built,
    eventsPerSec: Math.round(indexedEps),
    coldEventsPerSec: Math.round(coldEps),
    linearEventsPerSec: Math.round(linearEps),
    speedupOverLinear: +(indexedEps / linearEps).toFixed(1),
    latencyUs: {
      p50: +(lat.p50 * 1000).toFixed(3),
      p99: +(lat.p99 * 1000).toFixed(3),
      p999: +(lat.p999 * 1000).toFixed(3),
    },
  };
}

const results: Record<
  Shape,
  Array<Awaited<ReturnType<typeof measure>> & { throughputVs1k: number | null }>
> = { scaled: [], dense: [] };
for (const shape of ['scaled', 'dense'] as const) {
  for (const n of RULE_COUNTS) {
    const r = await measure(n, shape);
    console.log(shape, JSON.stringify(r));
    results[shape].push({ ...r, throughputVs1k: null });
  }
  const base = results[shape].find((r) => r.rules === 1_000);
  for (const r of results[shape])
    r.throughputVs1k = base ? +(r.eventsPerSec / base.eventsPerSec).toFixed(3) : null;
}
const out = {
  run: runInfo(),
  command: 'npm run bench:engine',
  workload: {
    scaled: `${RULES_PER_TENANT} rules per tenant; tenants grow with the rule count`,
    dense: '20 tenants at every size; rules per tenant grow with the rule count',
    hotEvents: HOT,
    coldEvents: EVENTS,
  },
  results,
};
if (counts.length === 0) {
  writeFileSync('bench/results/engine.json', `${JSON.stringify(out, null, 2)}\n`);
  console.log('wrote bench/results/engine.json');
}
