#!/usr/bin/env bash
# The test command: set up, type-check every package and test, lint, run every test.
# Exits non-zero on any failure; the last line is the runner's summary ("N passed, N failed").
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "test: type-checking tests and examples"
pnpm exec tsc -p tsconfig.test.json
echo "test: lint"
node scripts/lint.mjs
echo "test: running vitest"
set +e
pnpm exec vitest run --reporter=default --reporter=json --outputFile.json=.vitest-results.json "$@"
status=$?
set -e
node scripts/summary.mjs .vitest-results.json
exit $status
