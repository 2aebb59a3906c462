/** What every benchmark result records about the run (style.md: Node version, CPU and date). */
import { readFileSync } from 'node:fs';
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
