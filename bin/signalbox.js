#!/usr/bin/env -S node --max-semi-space-size=64
// The `signalbox` command. It runs the esbuild bundle of src/cli (dist/signalbox.mjs), rebuilt
// here first whenever a source file is newer, so the command is always the code in the tree.
//
// --max-semi-space-size=64 (V8's default here is 16 MB): the ingest holds a micro-batch of events
// across a Redis round trip and BullMQ makes many short-lived objects per job; in a small young
// generation they survive scavenges, get copied and promoted. Measured on the ingest batch
// benchmark (2 cores, alternating runs): 53–60k events/s at 16 MB, 61–66k at 64 MB. V8 reads it
// only at start (v8.setFlagsFromString later changed nothing, measured), hence the shebang; the
// benchmarks start their processes with the same flags (bench/env.ts: cliNodeFlags).
import { build, CLI_BUNDLE, isStale } from '../scripts/build-lib.mjs';

if (isStale()) await build();
const { main } = await import(CLI_BUNDLE);
process.exitCode = await main(process.argv.slice(2));
