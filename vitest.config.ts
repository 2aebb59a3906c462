import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['tests/**/*.test.ts', 'src/**/*.test.ts'],
    setupFiles: ['src/cli/v8-flags.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
});
