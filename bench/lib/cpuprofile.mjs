// Summarises a V8 .cpuprofile (from `node --cpu-prof`): self time per function and per
// file, and inclusive time of the project's own functions (packages/…), top first, with
// percentages of the busy (non-idle) time and paths shown relative to the repository.
import { readFileSync } from 'node:fs';

/** Summary of a .cpuprofile: { totalMs, busyMs, functions, files, inclusive }. */
export function summarize(file, repo) {
  const prof = JSON.parse(readFileSync(file, 'utf8'));
  const byId = new Map(prof.nodes.map((n) => [n.id, n]));
  const self = new Map();
  for (let i = 0; i < prof.samples.length; i++) {
    const id = prof.samples[i];
    self.set(id, (self.get(id) ?? 0) + (prof.timeDeltas[i] ?? 0));
  }
  const label = (cf) => {
    const url = (cf.url || '').replace('file://', '').replace(repo + '/', '');
    if (!url) return { fn: cf.functionName || '(native)', file: cf.functionName ? (cf.functionName.startsWith('(') ? cf.functionName : `(${cf.functionName})`) : '(native)', url };
    return { fn: `${cf.functionName || '(anonymous)'} ${url}:${cf.lineNumber + 1}`, file: url, url };
  };
  const fn = new Map();
  const files = new Map();
  let total = 0;
  let idle = 0;
  for (const [id, us] of self) {
    const l = label(byId.get(id).callFrame);
    if (l.fn === '(idle)') idle += us;
    fn.set(l.fn, (fn.get(l.fn) ?? 0) + us);
    files.set(l.file, (files.get(l.file) ?? 0) + us);
    total += us;
  }
  // Inclusive time of project functions (recursion counted once per stack).
  const incl = new Map();
  const walk = (id, onStack) => {
    const n = byId.get(id);
    let t = self.get(id) ?? 0;
    const l = label(n.callFrame);
    const mine = l.url.startsWith('packages/') && !onStack.has(l.fn);
    if (mine) onStack.add(l.fn);
    for (const c of n.children ?? []) t += walk(c, onStack);
    if (mine) { onStack.delete(l.fn); incl.set(l.fn, (incl.get(l.fn) ?? 0) + t); }
    return t;
  };
  walk(prof.nodes[0].id, new Set());
  const busy = total - idle;
  const top = (m) => [...m].sort((a, b) => b[1] - a[1]).map(([k, us]) => ({ name: k, ms: us / 1000, pct: (100 * us) / busy }));
  return { totalMs: total / 1000, busyMs: busy / 1000, functions: top(fn).filter((f) => f.name !== '(idle)'), files: top(files).filter((f) => f.name !== '(idle)'), inclusive: top(incl) };
}
