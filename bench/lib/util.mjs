// Shared helpers of the benchmark harness: running commands, waiting for mounts, cleanup
// on exit or signal, statistics and formatting. No workload or system logic lives here.
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';

/** Run a command to completion (async, never blocks the event loop); throws on non-zero exit. */
export function run(cmd, args, opts = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], ...opts });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => { out += d; });
    child.stderr.on('data', (d) => { err += d; });
    child.on('error', reject);
    child.on('close', (code, signal) => {
      if (code === 0 || opts.allowFail) resolve({ code, out, err });
      else reject(new Error(`${[cmd, ...args].join(' ').slice(0, 120)} exited ${code ?? signal}: ${err.trim().slice(-800)}`));
    });
  });
}

/** Run a shell snippet with bash and return its wall time in ms (spawn included). */
export async function timeShell(script, cwd) {
  const t0 = process.hrtime.bigint();
  await run('bash', ['-c', script], { cwd });
  return Number(process.hrtime.bigint() - t0) / 1e6;
}

/** Synchronous command for cleanup paths only (never on a live FUSE mount's own process). */
export function runSync(cmd, args) {
  return spawnSync(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8' });
}

/** Mount points currently listed in /proc/self/mountinfo (octal escapes decoded). */
export function mountPoints() {
  const text = readFileSync('/proc/self/mountinfo', 'utf8');
  return text.split('\n').filter(Boolean).map((l) => {
    const f = l.split(' ');
    const sep = f.indexOf('-');
    return {
      point: f[4].replace(/\\([0-7]{3})/g, (_, o) => String.fromCharCode(parseInt(o, 8))),
      dev: f[2], fstype: f[sep + 1], source: f[sep + 2],
    };
  });
}

/** The mountinfo record of `point`, or undefined. */
export function mountAt(point) {
  return mountPoints().filter((m) => m.point === point).pop();
}

/** Wait until `point` is a mount point (of `fstype` prefix if given); throw after `ms`. */
export async function waitMounted(point, { ms = 30_000, fstype, child } = {}) {
  const t0 = Date.now();
  for (;;) {
    const m = mountAt(point);
    if (m && (!fstype || m.fstype.startsWith(fstype))) return m;
    if (child && child.exitCode !== null) throw new Error(`mount process exited ${child.exitCode} before ${point} was mounted`);
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for a mount at ${point}`);
    await sleep(20);
  }
}

/** Unmount `point` if mounted (normal, then lazy as a last resort). */
export async function unmount(point) {
  for (let i = 0; i < 50 && mountAt(point); i++) {
    const r = await run('umount', [point], { allowFail: true });
    if (r.code === 0) break;
    await sleep(100);
  }
  if (mountAt(point)) await run('umount', ['-l', point], { allowFail: true });
}

const cleanups = new Map();
let cleanupSeq = 0;

/** Register a synchronous cleanup step (runs at exit/signal unless removed); returns its remover. */
export function onCleanup(fn) {
  const id = ++cleanupSeq;
  cleanups.set(id, fn);
  return () => cleanups.delete(id);
}

/** Run every registered cleanup step, newest first. */
export function runCleanups() {
  for (const [id, fn] of [...cleanups].reverse()) {
    cleanups.delete(id);
    try { fn(); } catch (e) { console.error(`cleanup: ${e.message}`); }
  }
}

process.on('exit', runCleanups);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => {
    console.error(`\nbench: ${sig}, cleaning up`);
    runCleanups();
    process.exit(130);
  });
}

/** Median of numbers. */
export function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const n = s.length;
  if (!n) return NaN;
  return n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

/** Human time from ms: "812 µs", "12.3 ms", "4.56 s". */
export function fmtMs(ms) {
  if (!Number.isFinite(ms)) return '—';
  if (ms < 1) return `${(ms * 1000).toFixed(0)} µs`;
  if (ms < 100) return `${ms.toFixed(1)} ms`;
  if (ms < 10_000) return `${ms.toFixed(0)} ms`;
  return `${(ms / 1000).toFixed(1)} s`;
}

/** Human bytes: "1.2 MiB". */
export function fmtBytes(b) {
  if (!Number.isFinite(b)) return '—';
  const u = ['B', 'KiB', 'MiB', 'GiB'];
  let i = 0;
  while (Math.abs(b) >= 1024 && i < u.length - 1) { b /= 1024; i++; }
  return `${b.toFixed(i ? 1 : 0)} ${u[i]}`;
}

/** Pad a table (rows of strings) into aligned text; `align` per column ('l'/'r'), default first left, rest right. */
export function table(rows, align) {
  const w = [];
  for (const r of rows) r.forEach((c, i) => { w[i] = Math.max(w[i] ?? 0, [...c].length); });
  const left = (i) => (align ? align[i] === 'l' : i === 0);
  return rows.map((r) => r.map((c, i) => (left(i) ? c.padEnd(w[i]) : c.padStart(w[i]))).join('  ').trimEnd()).join('\n');
}

/** VmRSS of a process in bytes (undefined if gone). */
export function rssOf(pid) {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : undefined;
  } catch { return undefined; }
}

export { sleep };
