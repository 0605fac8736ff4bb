/**
 * Helpers for tests that mount filesystems: whether real mounts can run here, temporary
 * directories named `layerfs-*`, a child-process shell runner (a process that serves a mount
 * must never touch it with synchronous calls), and a Filesystem wrapper that counts calls,
 * records write sizes and can delay reads and writes to make concurrency observable.
 */
import { execFile } from 'node:child_process';
import { access, mkdtemp } from 'node:fs/promises';
import { constants } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { Filesystem } from '@layerfs/core';

const execFileP = promisify(execFile);

/** True when this process can mount FUSE filesystems (root and /dev/fuse). */
export async function canMount(): Promise<boolean> {
  if (process.platform !== 'linux' || process.getuid?.() !== 0) return false;
  try { await access('/dev/fuse', constants.R_OK | constants.W_OK); return true; } catch { return false; }
}

/** A fresh temporary directory `layerfs-<tag>-*` (mount points of tests go below one). */
export function tempDir(tag: string): Promise<string> {
  return mkdtemp(join(tmpdir(), `layerfs-${tag}-`));
}

/**
 * Run a shell script in a child process; resolves with stdout (rejects with stderr on failure).
 * Never pass a `cwd` inside a mount this process serves: libuv's spawn blocks the serving
 * thread until the child has exec'd, and the child's chdir waits for it (deadlock); `cd` in
 * the script instead.
 */
export async function sh(script: string, cwd?: string): Promise<string> {
  const r = await execFileP('bash', ['-c', script], { cwd, maxBuffer: 64 << 20 });
  return r.stdout;
}

/** Run a shell script; resolves with its exit code, stdout and stderr (never rejects). */
export async function shResult(script: string, cwd?: string): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await execFileP('bash', ['-c', script], { cwd, maxBuffer: 64 << 20 });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const x = e as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof x.code === 'number' ? x.code : 1, stdout: x.stdout ?? '', stderr: x.stderr ?? '' };
  }
}

/** Calls recorded by `recording()`. */
export interface Recorder {
  /** Sizes of every write, in order. */
  readonly writeSizes: number[];
  /** Calls by operation name. */
  readonly calls: Record<string, number>;
  /** Most calls in flight at once. */
  maxConcurrent: number;
  /** Delay added to every read and write (ms); may be changed at any time. */
  delayMs: number;
}

/** The Filesystem's synchronous members: `recording()` passes them through unchanged. */
const SYNC_MEMBERS = new Set(['watchAttrs', 'liveInodes', 'hostPath']);

/**
 * Wrap a Filesystem so every call is counted, write sizes recorded, and (optionally) reads
 * and writes delayed by `delayMs`, to make concurrency observable. Its synchronous members
 * (`SYNC_MEMBERS`: `watchAttrs` must return its stop function, not a promise) pass through.
 */
export function recording<T extends Filesystem>(fs: T, delayMs = 0): { fs: T; rec: Recorder } {
  const rec: Recorder = { writeSizes: [], calls: {}, maxConcurrent: 0, delayMs };
  let inFlight = 0;
  const proxy = new Proxy(fs, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver) as unknown;
      if (typeof v !== 'function' || typeof prop !== 'string') return v;
      if (SYNC_MEMBERS.has(prop)) return (v as (...a: unknown[]) => unknown).bind(target);
      return async (...args: unknown[]) => {
        rec.calls[prop] = (rec.calls[prop] ?? 0) + 1;
        if (prop === 'write') rec.writeSizes.push((args[3] as Uint8Array).length);
        inFlight++;
        rec.maxConcurrent = Math.max(rec.maxConcurrent, inFlight);
        try {
          if (rec.delayMs && (prop === 'read' || prop === 'write')) await new Promise((r) => setTimeout(r, rec.delayMs));
          return await (v as (...a: unknown[]) => unknown).apply(target, args);
        } finally {
          inFlight--;
        }
      };
    },
  });
  return { fs: proxy, rec };
}
