/**
 * Test helpers for the passthrough package: temporary `layerfs-` directories, a root
 * request context, and small wrappers that look up paths through a layer.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT_CONTEXT, ROOT_INO, type Filesystem, type RequestContext } from '@layerfs/core';

/** The root caller used by most tests. */
export const ctx: RequestContext = ROOT_CONTEXT;

/** A fresh temporary directory under os.tmpdir() named `layerfs-<tag>-…`. */
export function tempDir(tag: string): string {
  return mkdtempSync(join(tmpdir(), `layerfs-${tag}-`));
}

/** Remove a temporary directory tree. */
export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

/** Look up a slash-separated path from the root, one lookup per component (caller forgets). */
export async function walk(fs: Filesystem, path: string, c: RequestContext = ctx): Promise<number> {
  let ino = ROOT_INO;
  for (const name of path.split('/').filter((p) => p.length > 0)) {
    ino = (await fs.lookup(c, ino, name)).ino;
  }
  return ino;
}

/** Expect `p` to reject with an error whose code is `code`; returns the error. */
export async function rejectsWith(p: Promise<unknown>, code: string): Promise<{ code: string; errno: number }> {
  try {
    await p;
  } catch (e) {
    const err = e as { code: string; errno: number };
    if (err.code !== code) throw new Error(`expected ${code}, got ${err.code}: ${String((e as Error).message)}`);
    return err;
  }
  throw new Error(`expected ${code}, but the call succeeded`);
}
