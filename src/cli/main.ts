/**
 * The `signalbox` command. Wiring only: each subcommand lives in its own module.
 */
import './v8-flags.js';
import { runMatch } from './match.js';
import { runServe } from './serve.js';

const USAGE = `usage: signalbox <command> [options]

commands:
  serve [--port 8080] [--connections FILE]          run the ingest server (Redis: REDIS_URL or deploy/local)
  match --rules RULES.json --events EVENTS.ndjson   match a file of events against a file of rules
  help                                              show this help
`;

export async function main(argv: readonly string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  switch (cmd) {
    case 'serve':
      return runServe(rest, { stdout: process.stdout, stderr: process.stderr });
    case 'match':
      return runMatch(rest, { stdout: process.stdout, stderr: process.stderr, stdin: process.stdin });
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(USAGE);
      return 0;
    case undefined:
      process.stderr.write(USAGE);
      return 2;
    default:
      process.stderr.write(`signalbox: unknown command ${JSON.stringify(cmd)}\n${USAGE}`);
      return 2;
  }
}
