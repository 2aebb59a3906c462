#!/usr/bin/env node
// The `signalbox` command. It runs the esbuild bundle of src/cli (dist/signalbox.mjs), rebuilt
// here first whenever a source file is newer, so the command is always the code in the tree.
import { build, CLI_BUNDLE, isStale } from '../scripts/build-lib.mjs';

if (isStale()) await build();
const { main } = await import(CLI_BUNDLE);
process.exitCode = await main(process.argv.slice(2));
