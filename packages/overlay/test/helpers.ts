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
