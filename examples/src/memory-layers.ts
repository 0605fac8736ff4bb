/**
 * Example: a container-style root filesystem composed entirely in memory — two image layers
 * written as tree literals (`@layerfs/testkit`'s `tree`), a writable in-memory upper, and the
 * union used through `Volume`; `dump` reads any layer back as a literal.
 *
 * Run: `node examples/dist/memory-layers.js` (after `pnpm exec tsc -b`).
 */
import { fileURLToPath } from 'node:url';
import { Volume } from '@layerfs/core';
import { OverlayFs } from '@layerfs/overlay';
import { dir, dump, file, symlink, tree, whiteout, type TreeSpec } from '@layerfs/testkit';

/** What the example saw: the merged tree before and after the changes, and the upper layer. */
export interface MemoryLayersResult {
  /** The union as a tree literal before any change. */
  before: TreeSpec;
  /** The union after writing, deleting and renaming. */
  after: TreeSpec;
  /** The upper layer as stored: copied-up files, whiteouts, the new directory. */
  upper: TreeSpec;
}

/** Compose base + app + an empty upper in memory, change the union, and report. */
export async function memoryLayers(): Promise<MemoryLayersResult> {
  const base = await tree({
    bin: dir({ sh: file('#!/bin/true\n', 0o755) }),
    etc: { hostname: 'base\n', motd: 'welcome\n' },
    usr: { lib: { 'libc.so.6': file('ELF…', 0o755), 'libc.so': symlink('libc.so.6') } },
  }, { writable: false });
  const app = await tree({
    etc: { hostname: 'app\n', motd: whiteout() },   // app replaces hostname, deletes motd
    srv: { 'index.html': '<h1>hello</h1>\n' },
  }, { writable: false });
  const upper = await tree({});
  const ov = await OverlayFs.create({ upper, lowers: [app, base] });
  const vol = new Volume(ov);
  try {
    const before = await dump(ov);
    await vol.appendFile('/etc/hostname', 'edited\n');           // copy-up from app
    await vol.rm('/usr/lib/libc.so');                            // whiteout over base
    await vol.mkdir('/var/log', { recursive: true });
    await vol.rename('/srv/index.html', '/srv/home.html');      // copy-up, then whiteout
    const after = await dump(ov);
    return { before, after, upper: await dump(upper, { xattrs: false }) };
  } finally {
    await ov.destroy();
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const r = await memoryLayers();
  const show = (t: TreeSpec): string => JSON.stringify(t, (k, v: unknown) => (k === 'mode' && typeof v === 'number' ? `0o${v.toString(8)}` : v), 2);
  console.log(`union before:\n${show(r.before)}`);
  console.log(`union after:\n${show(r.after)}`);
  console.log(`upper layer as stored:\n${show(r.upper)}`);
}
