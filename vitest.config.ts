import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 20_000,
    hookTimeout: 20_000,
    // Tests bind real sockets and time real timeouts: run files in parallel
    // processes but keep each file's tests sequential.
    pool: 'forks',
    fileParallelism: true,
    maxWorkers: 2,
  },
});
