/** What every benchmark result records about the run (style.md: Node version, CPU and date). */
import { cpus, totalmem } from 'node:os';

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
