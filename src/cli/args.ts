/** What the long-running commands (serve, worker) share: their output streams and `--name value` options. */

export interface CommandIo {
  readonly stdout: NodeJS.WritableStream;
  readonly stderr: NodeJS.WritableStream;
}

/** The value of `--name value` or `--name=value`, if given. */
export function arg(argv: readonly string[], name: string): string | undefined {
  const i = argv.findIndex((a) => a === `--${name}` || a.startsWith(`--${name}=`));
  if (i < 0) return undefined;
  const a = argv[i]!;
  return a.includes('=') ? a.slice(a.indexOf('=') + 1) : argv[i + 1];
}

/** The first `--option` not among `known`, if any. */
export function unknownOption(argv: readonly string[], known: readonly string[]): string | undefined {
  for (const a of argv) {
    const m = /^--([a-z-]+)/.exec(a);
    if (m && !known.includes(m[1]!)) return m[1];
  }
  return undefined;
}
