/**
 * Outbox entry encoding: JSON against @msgpack/msgpack (design.md: msgpack where it is smaller and
 * faster, measured). Entries are the ingest's own: a PSA-like envelope with previous, data and
 * matched rules. Encode and decode timed apart; sizes reported.
 *
 *   node bench/run.mjs bench/ingest/encoding.bench.ts
 */
import { writeFileSync } from 'node:fs';
import { decode, encode } from '@msgpack/msgpack';
import { Bench } from 'tinybench';
import { makeWorkload } from '../engine/workload.js';
import { runInfo } from '../env.js';

const { events } = makeWorkload(1_000, 1_000);
const entries = events.map((e) => ({
  envelope: { ...e, receivedAt: '2026-11-20T10:00:00.123Z' },
  outcome: 'accepted',
  rules: ['rule-1', 'rule-2'],
}));
const json = entries.map((e) => JSON.stringify(e));
const packed = entries.map((e) => encode(e));
// Validate before timing: both round-trip to the same value.
for (let i = 0; i < entries.length; i++) {
  if (JSON.stringify(decode(packed[i]!)) !== json[i]) throw new Error(`msgpack round trip differs at ${i}`);
}
let k = 0;
let sink = 0;
const bench = new Bench({ time: 2_000, warmupTime: 300 });
bench
  .add('encode json', () => {
    sink += JSON.stringify(entries[k++ % entries.length]).length;
  })
  .add('encode msgpack', () => {
    sink += encode(entries[k++ % entries.length]).length;
  })
  .add('decode json', () => {
    sink += JSON.parse(json[k++ % json.length]!) ? 1 : 0;
  })
  .add('decode msgpack', () => {
    sink += decode(packed[k++ % packed.length]!) ? 1 : 0;
  });
await bench.run();
const ops = Object.fromEntries(
  bench.tasks.map((t) => [
    t.name,
    t.result.state === 'completed' ? Math.round(t.result.throughput.mean) : null,
  ]),
);
const avg = (xs: number[]) => Math.round(xs.reduce((a, b) => a + b, 0) / xs.length);
const out = {
  run: runInfo(),
  command: 'node bench/run.mjs bench/ingest/encoding.bench.ts',
  bytesPerEntry: {
    json: avg(json.map((s) => Buffer.byteLength(s))),
    msgpack: avg(packed.map((b) => b.length)),
  },
  opsPerSec: ops,
  sink: sink > 0,
};
writeFileSync('bench/results/encoding.json', `${JSON.stringify(out, null, 2)}\n`);
console.log(JSON.stringify(out.bytesPerEntry), JSON.stringify(ops));
