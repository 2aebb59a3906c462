import { existsSync, readFileSync } from 'node:fs';
import { defineConfig } from 'vitest/config';

// The URLs of the local services that `npm test` brought up (deploy/local/up.sh), unless the
// environment already names servers of its own.
const envFile = new URL('./var/local.env', import.meta.url);
if (existsSync(envFile)) {
  for (const line of readFileSync(envFile, 'utf8').split('\n')) {
    const m = /^([A-Z_]+)=(.*)$/.exec(line.trim());
    if (m && process.env[m[1]!] === undefined) process.env[m[1]!] = m[2];
  }
}

export default defineConfig({
  test: {
    include: ['tests/**/*.test.ts', 'src/**/*.test.ts'],
    setupFiles: ['src/cli/v8-flags.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
});
