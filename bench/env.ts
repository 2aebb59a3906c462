/** What every benchmark result records about the run (style.md: Node version, CPU and date). */
import { readdirSync, readFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import type { Queryable } from '../src/store/index.js';

/**
 * The node flags `signalbox` runs with (the shebang of bin/signalbox.js): benchmarks start their
 * servers, workers and baselines with them, so they measure what `npx signalbox` runs. (Read from
 * the working directory: benchmarks run from the repository's root, bundled under var/.)
 */
export function cliNodeFlags(): string[] {
  const first = readFileSync('bin/signalbox.js', 'utf8').split('\n')[0]!;
  return first.split(/\s+/).filter((f) => f.startsWith('--'));
}

export function runInfo(): Record<string, unknown> {
  const cpu = cpus();
  return {
    date: new Date().toISOString(),
    node: process.version,
    v8: process.versions.v8,
    cpu: cpu[0]?.model ?? 'unknown',
    cores: cpu.length,
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    platform: `${process.platform}-${process.arch}`,
  };
}

/** A process's /proc stat line, or undefined once it has exited. */
function procStat(pid: number | string): string | undefined {
  try {
    return readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
}

/** Clock ticks of CPU in a stat line: utime and stime, fields 14 and 15 (11 and 12 after the command). */
function statTicks(stat: string): number {
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(f[11]) + Number(f[12]);
}

/** CPU seconds so far of one process (utime + stime from /proc), 0 once it has exited. */
export function pidCpuSeconds(pid: number): number {
  const stat = procStat(pid);
  return stat === undefined ? 0 : statTicks(stat) / 100;
}

/**
 * CPU seconds so far of every process whose command is `comm` (`redis-server`, `postgres`: all
 * of Postgres's backends and helpers), from /proc. Backends that exited are not counted.
 */
export function commCpuSeconds(comm: string): number {
  let ticks = 0;
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    const stat = procStat(pid); // undefined: exited meanwhile
    if (stat?.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')')) === comm) ticks += statTicks(stat);
  }
  return ticks / 100;
}

/**
 * CPU seconds the hypervisor has taken from this machine's cores so far (steal, from /proc/stat):
 * on this shared VM a run lost 4–5 s of 25 to it (2026-12-07), so each run says how much it lost.
 */
export function stealSeconds(): number {
  const cpu = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!.trim().split(/\s+/);
  return Number(cpu[8] ?? 0) / 100;
}

/**
 * Completed runs in the history so far. The worker benchmark keeps the runs table between its runs
 * (workers.bench.ts says why), so each run counts this before it starts and waits for its own.
 */
export async function completedRuns(db: Queryable): Promise<number> {
  const r = await db.query<{ n: string }>("select count(*) as n from runs where status = 'completed'");
  return Number(r.rows[0]!.n);
}
