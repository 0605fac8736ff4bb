// Local test configuration for working on this package alone: the root configuration minus
// its global teardown, which unmounts every `layerfs-` mount it finds and would tear down
// other packages' test mounts running at the same time. `pnpm test` uses the root config.
import { defineConfig } from 'vitest/config';

export default defineConfig({
  root: new URL('../..', import.meta.url).pathname,
  ssr: { resolve: { conditions: ['source'] } },
  resolve: { conditions: ['source'] },
  test: {
    pool: 'forks',
    include: ['packages/passthrough/test/**/*.test.ts', 'packages/passthrough/src/**/*.test.ts'],
    exclude: ['**/node_modules/**', '**/dist/**'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
  },
});
