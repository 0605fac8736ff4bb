// Summarises a V8 .cpuprofile (from `node --cpu-prof`): self time per function and per
// file, top first, with paths shown relative to the repository.
import { readFileSync } from 'node:fs';

/** Self-time summary of a .cpuprofile: { totalMs, functions: [...], files: [...] }. */
export function summarize(file, repo) {
  const prof = JSON.parse(readFileSync(file, 'utf8'));
  const byId = new Map(prof.nodes.map((n) => [n.id, n]));
  const self = new Map();
  for (let i = 0; i < prof.samples.length; i++) {
    const id = prof.samples[i];
    self.set(id, (self.get(id) ?? 0) + (prof.timeDeltas[i] ?? 0));
  }
  const fn = new Map();
  const files = new Map();
  let total = 0;
  for (const [id, us] of self) {
    const cf = byId.get(id).callFrame;
    const url = (cf.url || '').replace('file://', '').replace(repo + '/', '');
    const name = cf.functionName || (url ? '(anonymous)' : cf.functionName || '(program)');
    const key = `${name} ${url ? `${url}:${cf.lineNumber + 1}` : ''}`.trim();
    const label = url ? key : (cf.functionName || '(native)');
    fn.set(label, (fn.get(label) ?? 0) + us);
    const fk = url || `(${cf.functionName || 'native'})`;
    files.set(fk, (files.get(fk) ?? 0) + us);
    total += us;
  }
  const top = (m) => [...m].sort((a, b) => b[1] - a[1]).map(([k, us]) => ({ name: k, ms: us / 1000, pct: (100 * us) / total }));
  return { totalMs: total / 1000, functions: top(fn), files: top(files) };
}
