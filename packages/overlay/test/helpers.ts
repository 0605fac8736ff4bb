// Test helpers: build an OverlayFs over MemoryLayers laid out from tree literals, and check
// that every lookup was given back.
import { ROOT_CONTEXT, Volume, type Layer } from '@layerfs/core';
import { MemoryLayer, tree, type TreeSpec } from '@layerfs/testkit';
import { expect } from 'vitest';
import { OverlayFs, type OverlayOptions } from '../src/index.js';

/** An overlay over in-memory layers, with a Volume on it. */
export interface MemOverlay {
  ov: OverlayFs;
  vol: Volume;
  upper: MemoryLayer;
  lowers: MemoryLayer[];
}

/** Build an overlay: `lowers` top first, an upper (unless `upper === null`). */
export async function memOverlay(
  lowers: TreeSpec[], upper: TreeSpec | null = {}, options: OverlayOptions & { formats?: Array<'chardev' | 'oci'> } = {},
): Promise<MemOverlay> {
  const fmts = options.formats ?? [];
  const ls: MemoryLayer[] = [];
  for (let i = 0; i < lowers.length; i++) {
    ls.push(await tree(lowers[i]!, { whiteoutFormat: fmts[i + 1] ?? 'chardev', writable: true }));
  }
  const up = upper === null ? undefined : await tree(upper, { whiteoutFormat: fmts[0] ?? 'chardev' });
  const ov = await OverlayFs.create({ ...(up ? { upper: up } : {}), lowers: ls as Layer[], options });
  return { ov, vol: new Volume(ov, { context: ROOT_CONTEXT }), upper: up ?? new MemoryLayer(), lowers: ls };
}

/**
 * After everything is forgotten only the root is live in the overlay; once its inode cache
 * is dropped, only the roots remain in every layer too.
 */
export async function expectNoLeaks(o: MemOverlay): Promise<void> {
  expect(o.ov.liveInodes()).toBe(1);
  await o.ov.dropCaches();
  expect(o.ov.cachedInodes()).toBe(0);
  expect(o.upper.liveInodes()).toBe(1);
  for (const l of o.lowers) expect(l.liveInodes()).toBe(1);
}

/** Inode numbers of `/a` and `/b` as `stat`, `readdir` and `readdir` plus report them. */
async function inosOfAB(ov: OverlayFs): Promise<{ a: number; b: number; aNlink: number; bNlink: number }> {
  const vol = new Volume(ov, { context: ROOT_CONTEXT });
  const [sa, sb] = [await vol.stat('/a'), await vol.stat('/b')];
  for (const plus of [false, true]) {
    const { fh } = await ov.opendir(ROOT_CONTEXT, 1);
    const list = await ov.readdir(ROOT_CONTEXT, 1, fh, 0, plus);
    await ov.releasedir(ROOT_CONTEXT, 1, fh);
    const byName = new Map(list.map((e) => [e.name, e]));
    expect([byName.get('a')?.ino, byName.get('b')?.ino]).toEqual([sa.ino, sb.ino]);
    if (plus) expect([byName.get('a')?.attr?.ino, byName.get('b')?.attr?.ino]).toEqual([sa.ino, sb.ino]);
  }
  return { a: sa.ino, b: sb.ino, aNlink: sa.nlink, bNlink: sb.nlink };
}

/**
 * A lower hard link `/a`, `/b` (one object, nlink 2; no upper copy yet) through copy-up of
 * `/a` and re-creation, as the kernel without index: before, both names report one ino;
 * after `/a` is appended to, `/b` (still the lower object) keeps that ino and `/a` reports
 * another one, the one a re-created overlay gives it; a lookup of `/a` taken before the
 * copy-up stays valid. `reopen` re-creates the overlay on the same layers.
 */
export async function checkBrokenHardLinkInos(ov: OverlayFs, reopen: () => Promise<OverlayFs>): Promise<void> {
  const vol = new Volume(ov, { context: ROOT_CONTEXT });
  const before = await inosOfAB(ov);
  expect(before.b).toBe(before.a);
  expect([before.aNlink, before.bNlink]).toEqual([2, 2]);
  const held = await ov.lookup(ROOT_CONTEXT, 1, 'a');
  await vol.appendFile('/a', '+');
  const after = await inosOfAB(ov);
  expect(after.b).toBe(before.a);
  expect(after.a).not.toBe(after.b);
  expect([after.aNlink, after.bNlink]).toEqual([1, 2]);
  // The lookup held from before the copy-up names the copied-up object, reporting its new ino.
  const ha = await ov.getattr(ROOT_CONTEXT, held.ino);
  expect([ha.ino, ha.size]).toEqual([after.a, (await vol.stat('/a')).size]);
  await ov.forget(ROOT_CONTEXT, held.ino, 1);
  expect((await vol.readFile('/b', 'utf8')) + '+').toBe(await vol.readFile('/a', 'utf8'));
  await ov.dropCaches();
  const again = await inosOfAB(ov);
  expect(again).toEqual(after);
  expect(ov.liveInodes()).toBe(1);
  await ov.dropCaches();
  const ov2 = await reopen();
  try {
    expect(await inosOfAB(ov2)).toEqual(after);
    // And `/b` copied up in its turn: both names are separate objects with distinct inos.
    await new Volume(ov2, { context: ROOT_CONTEXT }).appendFile('/b', '-');
    const both = await inosOfAB(ov2);
    expect(both.a).toBe(after.a);
    expect(both.b).not.toBe(both.a);
    expect(ov2.liveInodes()).toBe(1);
    await ov2.dropCaches();
  } finally {
    await ov2.destroy();
  }
}
