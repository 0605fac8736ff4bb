// Test runner configuration: sources resolved through the `source` export condition, and
// the `forks` pool (fuse-native crashes under `threads`, see shared/research/style.md).
import { defineConfig } from 'vitest/config';

export default defineConfig({
  ssr: { resolve: { conditions: ['source'] } },
  resolve: { conditions: ['source'] },
  test: {
    pool: 'forks',
    include: ['packages/*/src/**/*.test.ts', 'packages/*/test/**/*.test.ts', 'examples/**/*.test.ts'],
    exclude: ['**/node_modules/**', '**/dist/**'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    globalSetup: ['./scripts/vitest-global-setup.ts'],
  },
});
