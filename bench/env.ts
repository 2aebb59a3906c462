/** What every benchmark result records about the run (style.md: Node version, CPU and date). */
import { readdirSync, readFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';

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

/** CPU seconds so far of one process (utime + stime from /proc), 0 once it has exited. */
export function pidCpuSeconds(pid: number): number {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return 0;
  }
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / 100;
}

/**
 * CPU seconds so far of every process whose command is `comm` (`redis-server`, `postgres`: all
 * of Postgres's backends and helpers), from /proc. Backends that exited are not counted.
 */
export function commCpuSeconds(comm: string): number {
  let ticks = 0;
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    } catch {
      continue; // exited meanwhile
    }
    const close = stat.lastIndexOf(')');
    if (stat.slice(stat.indexOf('(') + 1, close) !== comm) continue;
    // utime and stime: fields 14 and 15 of stat (11 and 12 after the command), in clock ticks
    const f = stat.slice(close + 2).split(' ');
    ticks += Number(f[11]) + Number(f[12]);
  }
  return ticks / 100;
}
