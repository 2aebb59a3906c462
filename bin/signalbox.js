#!/usr/bin/env node
// The `signalbox` command. Sources are TypeScript, run through tsx's loader (no build step, so
// the command is always the code in the tree).
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../src/cli/main.ts');
const code = await main(process.argv.slice(2));
// Let stdout drain before exiting (a pipe may still hold output).
process.exitCode = code;
