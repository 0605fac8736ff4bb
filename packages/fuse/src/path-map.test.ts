/**
 * PathMap without a mount: every cached path holds one lookup; LRU eviction, drop and clear
 * forget it (after the last pin), move keeps it under the new name, and concurrent resolves
 * of one path take a single lookup.
 */
import { describe, expect, it } from 'vitest';
import { ROOT_CONTEXT } from '@layerfs/core';
import { MemoryLayer } from '@layerfs/testkit';
import { PathMap } from './path-map.js';

async function layerWith(names: string[]): Promise<MemoryLayer> {
  const l = new MemoryLayer();
  const d = await l.mkdir(ROOT_CONTEXT, 1, 'd', 0o755);
  for (const n of names) {
    const e = await l.mknod(ROOT_CONTEXT, d.ino, n, 0o100644, 0);
    await l.forget(ROOT_CONTEXT, e.ino, 1);
  }
  await l.forget(ROOT_CONTEXT, d.ino, 1);
  return l;
}

describe('PathMap', () => {
  it('holds one lookup per cached path and forgets on eviction, drop and clear', async () => {
    const l = await layerWith(Array.from({ length: 40 }, (_, i) => `f${i}`));
    const m = new PathMap(l, () => ROOT_CONTEXT, 16);
    for (let i = 0; i < 40; i++) m.unpin(await m.resolve(`/d/f${i}`));
    await m.settle();
    expect(m.size).toBe(16);
    expect(l.liveInodes()).toBe(1 + 16);
    m.drop('/d');
    await m.settle();
    expect(l.liveInodes()).toBe(1 + m.size);
    await m.clear();
    expect(m.size).toBe(0);
    expect(l.liveInodes()).toBe(1);
  });

  it('defers the forget of a pinned entry until its last unpin', async () => {
    const l = await layerWith(['a']);
    const m = new PathMap(l, () => ROOT_CONTEXT, 16);
    const e = await m.resolve('/d/a');
    m.drop('/d/a');
    await m.settle();
    expect(l.liveInodes()).toBeGreaterThan(1);
    expect((await l.getattr(ROOT_CONTEXT, e.ino)).ino).toBe(e.ino);
    m.unpin(e);
    await m.clear();
    expect(l.liveInodes()).toBe(1);
  });

  it('moves cached subtrees on rename and resolves concurrent lookups once', async () => {
    const l = await layerWith(['a', 'b']);
    const m = new PathMap(l, () => ROOT_CONTEXT, 64);
    const [x, y] = await Promise.all([m.resolve('/d/a'), m.resolve('/d/a')]);
    expect(x).toBe(y);
    m.unpin(x); m.unpin(y);
    const before = l.liveInodes();
    m.move('/d', '/e');
    await m.settle();
    expect(l.liveInodes()).toBe(before);
    const moved = await m.resolve('/e/a');
    expect(moved.ino).toBe(x.ino);
    m.unpin(moved);
    expect(m.size).toBe(2);
    await m.clear();
    expect(l.liveInodes()).toBe(1);
  });
});
