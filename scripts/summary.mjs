// Prints the plain closing line CI reads ("N passed, N failed, N skipped") from vitest's
// JSON report, so the test command ends with the runner's summary in a known form.
import { readFileSync, existsSync } from 'node:fs';

const file = process.argv[2] ?? '.vitest-results.json';
if (!existsSync(file)) {
  console.log('0 passed, 1 failed');
  process.exit(0);
}
const r = JSON.parse(readFileSync(file, 'utf8'));
// A failed test counts once; a file that failed without a failed test (it did not load, or a
// hook threw) counts as one more failure. (numFailedTestSuites counts describe blocks too.)
const brokenFiles = (r.testResults ?? []).filter((t) => t.status === 'failed' && !(t.assertionResults ?? []).some((a) => a.status === 'failed')).length;
const failed = r.numFailedTests + brokenFiles + (r.success === false && r.numFailedTests + brokenFiles === 0 ? 1 : 0);
const skipped = (r.numPendingTests ?? 0) + (r.numTodoTests ?? 0);
console.log(`${r.numPassedTests} passed, ${failed} failed, ${skipped} skipped`);
