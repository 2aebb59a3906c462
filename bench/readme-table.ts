/**
 * Writes the README's performance table from bench/results/*.json (style.md: the table is
 * generated, never typed). Replaces the text between the perf markers.
 *
 *   npm run bench:readme
 */
import { readFileSync, writeFileSync } from 'node:fs';

interface EngineRow {
  rules: number;
  tenants: number;
  matchesPerEvent: number;
  compileAndIndexMs: number;
  heapBytesPerRule: number;
  eventsPerSec: number;
  coldEventsPerSec: number;
  linearEventsPerSec: number;
  speedupOverLinear: number;
  latencyUs: { p50: number; p99: number };
  throughputVs1k: number | null;
}

const engine = JSON.parse(readFileSync('bench/results/engine.json', 'utf8')) as {
  run: { date: string; node: string; cpu: string; cores: number };
  results: Record<'scaled' | 'dense', EngineRow[]>;
};

const n = (x: number) => x.toLocaleString('en-US');
const k = (x: number) => (x >= 1_000_000 ? `${(x / 1_000_000).toFixed(2)} M` : `${(x / 1000).toFixed(0)} k`);
const pct = (x: number) => `${Math.round(x * 100)}%`;
/** Every round of a measure taken in rounds, after its median. */
const roundsOf = (xs: number[] | undefined, f: (x: number) => string) =>
  xs && xs.length > 1 ? ` (rounds: ${xs.map(f).join(', ')})` : '';

const lines: string[] = [];
lines.push(
  `Engine, match only (\`npm run bench:engine\`; ${engine.run.cpu}, ${engine.run.cores} cores, Node ${engine.run.node}, ${engine.run.date.slice(0, 10)}).`,
  'Baseline: a linear scan of the same compiled rules, measured in the same run.',
  '',
  '| workload | rules | tenants | matches/event | events/s (hot) | events/s (cold) | linear scan events/s | × linear | p50 / p99 µs | vs 1k rules | compile+index | heap/rule |',
  '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
);
for (const shape of ['scaled', 'dense'] as const) {
  for (const r of engine.results[shape]) {
    lines.push(
      `| ${shape} | ${n(r.rules)} | ${r.tenants} | ${r.matchesPerEvent} | ${k(r.eventsPerSec)} | ${k(r.coldEventsPerSec)} | ${n(r.linearEventsPerSec)} | ${r.speedupOverLinear}× | ${r.latencyUs.p50} / ${r.latencyUs.p99} | ${r.throughputVs1k === null ? '–' : `${Math.round(r.throughputVs1k * 100)}%`} | ${n(Math.round(r.compileAndIndexMs))} ms | ${n(r.heapBytesPerRule)} B |`,
    );
  }
}
lines.push(
  '',
  '_scaled_: 500 rules per tenant, tenants grow with the rule count. _dense_: 20 tenants at every size. ' +
    '_hot_: events cycle through 1,000 pre-parsed envelopes (cache-resident, like an event the ingest has just parsed); ' +
    '_cold_: through 20,000 (larger than the CPU caches). Compile+index and heap are measured in a fresh process.',
);

// Ingest, against a bare uWebSockets.js server in the same run (bench/ingest/load.bench.ts).
try {
  const ingest = JSON.parse(readFileSync('bench/results/ingest.json', 'utf8')) as {
    run: { date: string };
    setup: { rules: number; connections: number; seconds: number; rounds?: number };
    results: Record<
      string,
      {
        requestsPerSec: number;
        eventsPerSec: number;
        latencyMs: { p50: number; p99: number };
        steady?: {
          eventsPerSec: number;
          latencyMs: { p50: number; p99: number };
          p99Rounds?: number[];
          stealPctRounds?: number[];
          serverWithin10msPct?: number;
        };
      }
    >;
    singleVsBare: number;
    singleVsBareRounds?: number[];
    singleVsBareByConnections?: Record<string, number>;
    batchEventsPerSecRounds?: number[];
  };
  const r = ingest.results;
  lines.push(
    '',
    `Ingest (\`npm run bench:ingest\`; autocannon, ${ingest.setup.connections} connections, ${ingest.setup.seconds} s each, ${n(ingest.setup.rules)} rules, ~5% of events matching, real Redis; ${ingest.run.date.slice(0, 10)}).`,
    `Baseline: a bare uWebSockets.js server that only parses the JSON, same load, same run.${
      (ingest.setup.rounds ?? 1) > 1
        ? ` The 32-connection and NDJSON rows are the median of ${ingest.setup.rounds} rounds, bare and ingest alternating (the ratio: the median round's).`
        : ''
    }`,
    '',
    '| load | bare uWS | Signalbox ingest | ratio | ingest p50 / p99 ms |',
    '|---|---:|---:|---:|---:|',
    `| one event per request | ${n(r['single:bare']!.requestsPerSec)} req/s | ${n(r['single:ingest']!.requestsPerSec)} req/s | ${pct(ingest.singleVsBare)}${roundsOf(ingest.singleVsBareRounds, pct)} | ${r['single:ingest']!.latencyMs.p50} / ${r['single:ingest']!.latencyMs.p99} |`,
    ...Object.keys(ingest.singleVsBareByConnections ?? {})
      .filter((c) => r[`single@${c}:ingest`])
      .map(
        (c) =>
          `| one event per request, ${c} connections | ${n(r[`single@${c}:bare`]!.requestsPerSec)} req/s | ${n(r[`single@${c}:ingest`]!.requestsPerSec)} req/s | ${Math.round(ingest.singleVsBareByConnections![c]! * 100)}% | ${r[`single@${c}:ingest`]!.latencyMs.p50} / ${r[`single@${c}:ingest`]!.latencyMs.p99} |`,
      ),
    `| NDJSON, 100 events per request | ${n(r['batch100:bare']!.eventsPerSec)} ev/s | ${n(r['batch100:ingest']!.eventsPerSec)} ev/s${roundsOf(ingest.batchEventsPerSecRounds, n)} | ${Math.round((r['batch100:ingest']!.eventsPerSec / r['batch100:bare']!.eventsPerSec) * 100)}% | ${r['batch100:ingest']!.latencyMs.p50} / ${r['batch100:ingest']!.latencyMs.p99} |`,
    `| 5,000 events/s, one per request, autocannon (each second's 5,000 sent in a burst at its start) | – | ${n(r['rate5000:ingest']!.eventsPerSec)} ev/s | – | ${r['rate5000:ingest']!.latencyMs.p50} / ${r['rate5000:ingest']!.latencyMs.p99} |`,
  );
  const steady = r['rate5000:ingest']!.steady;
  if (steady)
    lines.push(
      `| 5,000 events/s, one per request, sent at a steady pace (request i at i / 5,000 s)${
        steady.p99Rounds && steady.p99Rounds.length > 1
          ? `; the median of ${steady.p99Rounds.length} runs by p99${roundsOf(steady.p99Rounds, (x) => `${x} ms`)}, the hypervisor's steal in each: ${steady.stealPctRounds!.map((x) => `${x}%`).join(', ')}`
          : ''
      }${steady.serverWithin10msPct !== undefined ? `; at the server (its hand-off histogram), ${steady.serverWithin10msPct}% within 10 ms in the median run` : ''} | – | ${n(steady.eventsPerSec)} ev/s | – | ${steady.latencyMs.p50} / ${steady.latencyMs.p99} |`,
    );
} catch {
  // No ingest results yet.
}

// Workers (bench/workers/workers.bench.ts).
try {
  const w = JSON.parse(readFileSync('bench/results/workers.json', 'utf8')) as {
    run: { date: string };
    throughput: {
      jobs: number;
      concurrency: number;
      rawBullmqJobsPerSec: number;
      signalboxRunsPerSec: number;
      ratio: number;
      signalboxWithoutDrainRunsPerSec: number;
      ratioWithoutDrain: number;
      rounds?: number;
      ratios?: number[];
      rawBesideWithoutDrain?: number;
      ratiosWithoutDrain?: number[];
    };
    endToEnd: {
      offeredEventsPerSec: number;
      acceptedEventsPerSec: number;
      acceptedToFirstStepMs: { p50: number; p99: number };
      rounds?: number;
      p99Rounds?: number[];
    };
    endToEndBursts?: {
      offeredEventsPerSec: number;
      acceptedEventsPerSec: number;
      acceptedToFirstStepMs: { p50: number; p99: number };
    };
    debounce: {
      timers: number;
      redisMB: number;
      bytesPerTimer: number;
      rearmsPerSecAt1k: number;
      rearmsPerSecAt100k: number;
    };
  };
  const t = w.throughput;
  lines.push(
    '',
    `Workers (\`npm run bench:workers\`; ${n(t.jobs)} jobs, concurrency ${t.concurrency}, one worker process each, real Redis and Postgres; ${w.run.date.slice(0, 10)}).`,
    `Baseline: a raw BullMQ worker with a no-op processor on the same Redis, same run.${t.ratios ? ` Throughput rows: the median of ${t.rounds} rounds (raw, Signalbox, Signalbox without the drain, in turn; each round's ratio against its own raw run).` : ''}`,
    '',
    '| measure | baseline | Signalbox | ratio / target |',
    '|---|---:|---:|---:|',
    `| runs of one \`log\` step, history drained in the same process | ${n(t.rawBullmqJobsPerSec)} jobs/s | ${n(t.signalboxRunsPerSec)} runs/s | ${Math.round(t.ratio * 100)}%${roundsOf(t.ratios, pct)} (target 60%) |`,
    `| the same, history drained by another process (not running) | ${n(t.rawBesideWithoutDrain ?? t.rawBullmqJobsPerSec)} jobs/s | ${n(t.signalboxWithoutDrainRunsPerSec)} runs/s | ${Math.round(t.ratioWithoutDrain * 100)}%${roundsOf(t.ratiosWithoutDrain, pct)} (target 60%) |`,
    `| event accepted → first step started, ${n(w.endToEnd.offeredEventsPerSec)} events/s sent at a steady pace (${n(w.endToEnd.acceptedEventsPerSec)} accepted), serve + worker + sender on 2 cores, after a 2 s warm-up at the same rate${w.endToEnd.rounds ? `; the median of ${w.endToEnd.rounds} runs by p99` : ''} | – | p50 ${w.endToEnd.acceptedToFirstStepMs.p50} ms, p99 ${w.endToEnd.acceptedToFirstStepMs.p99} ms${roundsOf(w.endToEnd.p99Rounds, (x) => `${x} ms`)} | target p99 ≤ 25 ms |`,
    ...(w.endToEndBursts
      ? [
          `| the same, sent by autocannon (each second's ${n(w.endToEndBursts.offeredEventsPerSec)} events in a burst at its start; ${n(w.endToEndBursts.acceptedEventsPerSec)} accepted) | – | p50 ${w.endToEndBursts.acceptedToFirstStepMs.p50} ms, p99 ${w.endToEndBursts.acceptedToFirstStepMs.p99} ms | no target: a burst's runs queue for the worker |`,
        ]
      : []),
    `| ${n(w.debounce.timers)} armed debounce timers | – | ${w.debounce.redisMB} MB of Redis (${n(w.debounce.bytesPerTimer)} B each) | target ≤ 100 MB |`,
    `| re-arming a timer at 1k vs 100k armed | ${n(w.debounce.rearmsPerSecAt1k)}/s | ${n(w.debounce.rearmsPerSecAt100k)}/s | O(1): flat |`,
  );
} catch {
  // No worker results yet.
}

// Admin: backtest over the event archive (bench/admin/backtest.bench.ts).
try {
  const a = JSON.parse(readFileSync('bench/results/admin.json', 'utf8')) as {
    run: { date: string };
    setup: { events: number; days: number; types: number };
    results: {
      backtest: { eventsPerSec: number; considered: number; matched: number; ms: number };
      linearScan: { eventsPerSec: number; ms: number };
      speedupOverLinear: number;
    };
  };
  const r = a.results;
  lines.push(
    '',
    `Admin, backtest (\`npm run bench:admin\`; ${n(a.setup.events)} archived events over ${a.setup.days} days, ${a.setup.types} event types, real Postgres; ${a.run.date.slice(0, 10)}).`,
    'Baseline: a linear scan that reads and matches every archived event of the window, same run.',
    '',
    '| measure | linear scan | Signalbox backtest | ratio / target |',
    '|---|---:|---:|---:|',
    `| a draft rule on one event type (5% of events) over the window | ${n(r.linearScan.eventsPerSec)} events/s (${n(Math.round(r.linearScan.ms))} ms) | ${n(r.backtest.eventsPerSec)} events/s (${n(Math.round(r.backtest.ms))} ms; ${n(r.backtest.considered)} read, ${n(r.backtest.matched)} matched) | ${r.speedupOverLinear}× (target ≥ 500,000 events/s) |`,
  );
} catch {
  // No admin results yet.
}

const readme = readFileSync('README.md', 'utf8');
const start = '<!-- perf:start -->';
const end = '<!-- perf:end -->';
const i = readme.indexOf(start);
const j = readme.indexOf(end);
if (i < 0 || j < i) throw new Error('README.md has no perf markers');
writeFileSync('README.md', `${readme.slice(0, i + start.length)}\n${lines.join('\n')}\n${readme.slice(j)}`);
console.log('README performance table updated');
