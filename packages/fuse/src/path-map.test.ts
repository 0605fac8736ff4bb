/**
 * PathMap without a mount: every cached path holds one lookup; LRU eviction, drop and clear
 * forget it (after the last pin), move keeps it under the new name, concurrent resolves of
 * one path take a single lookup, and non-directories have their own short LRU (a scan of
 * many files neither evicts the directories nor keeps a lookup per file).
 */
import { describe, expect, it } from 'vitest';
import { ROOT_CONTEXT } from '@layerfs/core';
import { MemoryLayer } from '@layerfs/testkit';
import { MAX_OTHER_PATHS, PathMap, othersFor } from './path-map.js';

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
    // `/d` and the most recent files: directories and other objects share the bound of 16.
    expect(othersFor(16)).toBe(8);
    expect(m.size).toBe(1 + 8);
    expect(m.peek('/d/f39')).toBeDefined();
    expect(m.peek('/d/f31')).toBeUndefined();
    expect(l.liveInodes()).toBe(1 + 1 + 8);
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

  it('keeps directories apart from files: a long scan of files evicts only files', async () => {
    const l = new MemoryLayer();
    const dirs: number[] = [];
    for (let d = 0; d < 20; d++) {
      const e = await l.mkdir(ROOT_CONTEXT, 1, `d${d}`, 0o755);
      dirs.push(e.ino);
      for (let f = 0; f < 10; f++) {
        const x = await l.mknod(ROOT_CONTEXT, e.ino, `f${f}`, 0o100644, 0);
        await l.forget(ROOT_CONTEXT, x.ino, 1);
      }
      await l.forget(ROOT_CONTEXT, e.ino, 1);
    }
    const m = new PathMap(l, () => ROOT_CONTEXT, 64);
    const others = othersFor(64);
    expect(others).toBe(16);
    expect(othersFor(1 << 20)).toBe(MAX_OTHER_PATHS);
    for (let d = 0; d < 20; d++) for (let f = 0; f < 10; f++) m.unpin(await m.resolve(`/d${d}/f${f}`));
    await m.settle();
    expect(m.size).toBe(20 + others);
    for (let d = 0; d < 20; d++) expect(m.peek(`/d${d}`)?.ino).toBe(dirs[d]);
    expect(l.liveInodes()).toBe(1 + 20 + others);
    // A name that becomes a directory moves to the directories' LRU (the old lookup is forgotten).
    await l.unlink(ROOT_CONTEXT, dirs[19]!, 'f9');
    const made = await l.mkdir(ROOT_CONTEXT, dirs[19]!, 'f9', 0o755);
    m.drop('/d19/f9');
    m.unpin(m.adopt('/d19/f9', made.ino, m.epoch, true));
    m.move('/d19', '/e');
    await m.settle();
    expect(m.peek('/e/f9')?.ino).toBe(made.ino);
    expect(m.peek('/e')?.ino).toBe(dirs[19]);
    expect(l.liveInodes()).toBe(1 + m.size);
    await m.clear();
    expect(l.liveInodes()).toBe(1);
  });
});
