#!/usr/bin/env node
/**
 * Runs a benchmark the way production runs code: bundled by esbuild (scripts/build.mjs), not
 * through the TypeScript loader, with --expose-gc for heap measurements.
 *
 *   node bench/run.mjs bench/engine/match.bench.ts [args…]
 */
import { spawnSync } from 'node:child_process';
import { basename, join } from 'node:path';
import { build } from '../scripts/build-lib.mjs';

const [entry, ...args] = process.argv.slice(2);
if (!entry) {
  console.error('usage: node bench/run.mjs BENCH.ts [args…]');
  process.exit(2);
}
const out = join('var', 'bench', basename(entry).replace(/\.ts$/, '.mjs'));
await build(entry, out);
const r = spawnSync(process.execPath, ['--expose-gc', out, ...args], { stdio: 'inherit' });
process.exit(r.status ?? 1);
