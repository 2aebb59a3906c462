/**
 * The `signalbox` command. Wiring only: each subcommand lives in its own module.
 */
import './v8-flags.js';
import { isMainThread, workerData } from 'node:worker_threads';
import { runAdmin } from './admin.js';
import { runArchive } from './archive.js';
import { runDemo } from './demo.js';
import { StartupError } from './env.js';
import { isIngestThread, runIngestThread } from './ingest-thread.js';
import { runMatch } from './match.js';
import { runRules } from './rules.js';
import { runServe } from './serve.js';
import { runWorker } from './worker.js';

// For tests that run the whole service in their own process from this bundle (extra threads
// load the bundle, so the service must come from it too).
export { startService } from './serve.js';

const USAGE = `usage: signalbox <command> [options]

commands:
  demo [--keep]                                     the whole service and a tour of its admin API: connections,
                                                    templates, PSA webhooks, runs, explain (--keep: stay up)
  serve [--port 8080] [--connections FILE]          run the ingest server (Redis: REDIS_URL or deploy/local)
        [--admin-port 8081] [--grpc-port 8082]      and the admin API (HTTP JSON, gRPC), unless --no-admin
        [--no-worker] [--no-admin]                  and the workers, unless --no-worker
        [--host 127.0.0.1] [--admin-host HOST]      where the ingest and the admin API listen
  admin keys create|list|revoke --tenant T ...      manage API keys (first admin key: var/admin.key)
  worker [--concurrency 50]                         run workflows from the run queue (needs DATABASE_URL)
  match --rules RULES.json --events EVENTS.ndjson   match a file of events against a file of rules
  rules apply -f PATH [--tenant T] [--dry-run]      save rule files (JSON/YAML) to the rule store
              [--prune]                             (and archive the stored rules no file holds)
  rules export [--tenant T]                         print the stored rules as JSON
  rules check [--tenant T]                          list the stored rules this version cannot compile
  backtest -f RULE_FILE --from TIME [--to TIME]     a draft rule (or a stored one: --rule ID) over the
                                                    archived events of a window: per day, matches, samples
  replay --from TIME [--to TIME] [--live]           archived events through the active rules (or --id ID …):
                                                    which rules match (dry run), or queue their runs (--live)
  help                                              show this help
`;

// Loaded as an extra ingest thread of `serve --threads N`: run that, not the command line.
if (!isMainThread && isIngestThread(workerData)) void runIngestThread(workerData);

export async function main(argv: readonly string[]): Promise<number> {
  try {
    return await command(argv);
  } catch (e) {
    if (!(e instanceof StartupError)) throw e;
    process.stderr.write(`signalbox ${argv[0]}: ${e.message}\n`);
    return 2;
  }
}

async function command(argv: readonly string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  switch (cmd) {
    case 'demo':
      return runDemo({ stdout: process.stdout, stderr: process.stderr }, rest);
    case 'serve':
      return runServe(rest, { stdout: process.stdout, stderr: process.stderr });
    case 'worker':
      return runWorker(rest, { stdout: process.stdout, stderr: process.stderr });
    case 'admin':
      return runAdmin(rest, { stdout: process.stdout, stderr: process.stderr });
    case 'rules':
      return runRules(rest, { stdout: process.stdout, stderr: process.stderr });
    case 'backtest':
    case 'replay':
      return runArchive(cmd, rest, { stdout: process.stdout, stderr: process.stderr });
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
