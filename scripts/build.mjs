#!/usr/bin/env node
// npm run build: bundles the CLI (or the given entry) with esbuild; see build-lib.mjs.
//   node scripts/build.mjs [entry.ts out.mjs]
import { build, CLI_BUNDLE, CLI_ENTRY } from './build-lib.mjs';

const [entry, out] = process.argv.slice(2);
const file = await build(entry ?? CLI_ENTRY, out ?? CLI_BUNDLE);
console.log(`built ${file}`);
