/**
 * Process-wide V8 settings for every Signalbox entry point. Imported first by the CLI.
 *
 * Rule regexes are checked at compile time (src/engine/regex.ts), but a static check cannot see
 * every slow pattern. V8's experimental linear-time engine can take over any regex that
 * backtracks more than `--regexp-backtracks-before-fallback` times (default 50,000): measured on
 * Node 20, `/(a+)+b/` against 40 "a"s returns in 2 ms with it instead of hanging. The flag only
 * changes what happens past that backtrack count, so ordinary regexes run as before.
 */
import v8 from 'node:v8';

v8.setFlagsFromString('--enable-experimental-regexp-engine-on-excessive-backtracks');
