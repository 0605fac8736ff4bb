// The invariant checkers themselves: each must throw on the breakage it exists to catch.
import { describe, expect, it } from 'vitest';
import { InodeTable, ROOT_CONTEXT, ROOT_INO, type Filesystem } from '@layerfs/core';
import { MemoryLayer, checkInodeTable, checkLookupBalance, checkNoLeak } from '../src/index.js';

describe('invariant checkers', () => {
  it('checkLookupBalance and checkNoLeak see an undeclared or leaked lookup', async () => {
    const fs = new MemoryLayer();
    const e = await fs.mkdir(ROOT_CONTEXT, ROOT_INO, 'd', 0o755);
    await checkLookupBalance(fs, [e.ino]);
    await expect(checkLookupBalance(fs, [])).rejects.toThrow(/liveInodes/);
    await expect(checkLookupBalance(fs, [e.ino, e.ino])).rejects.toThrow(/holds 1 lookups, the caller holds 2/);
    await expect(checkNoLeak(fs)).rejects.toThrow(/leak/);
    await fs.forget(ROOT_CONTEXT, e.ino, 1);
    await checkNoLeak(fs);
    await checkLookupBalance(fs, []);
  });

  it('checkLookupBalance with pinsAncestors allows live ancestors but not a lost held inode', async () => {
    const fs = new MemoryLayer();
    const d = await fs.mkdir(ROOT_CONTEXT, ROOT_INO, 'd', 0o755);
    const f = await fs.mkdir(ROOT_CONTEXT, d.ino, 'f', 0o755);
    await checkLookupBalance(fs, [f.ino], { pinsAncestors: true });               // d alive beyond what is held
    await expect(checkLookupBalance(fs, [f.ino])).rejects.toThrow(/liveInodes\(\) is 3, expected 2/);
    await fs.forget(ROOT_CONTEXT, f.ino, 1);
    await expect(checkLookupBalance(fs, [d.ino, f.ino], { pinsAncestors: true })).rejects.toThrow(/holds 0 lookups, the caller holds 1/);
    await fs.forget(ROOT_CONTEXT, d.ino, 1);
    await checkNoLeak(fs);
    const countsOnlyLive = { liveInodes: () => 2 } as unknown as Filesystem;   // no per-ino counts
    await expect(checkLookupBalance(countsOnlyLive, [5, 6], { pinsAncestors: true })).rejects.toThrow(/expected at least 3/);
  });

  it('checkInodeTable sees wrong counts, lost identities and changed inos', () => {
    const t = new InodeTable<null>('root', null);
    const a = t.acquire('a', () => null).record;
    checkInodeTable(t, new Map([['a', 1]]), new Map([['a', a.ino]]));
    expect(() => checkInodeTable(t, new Map([['a', 2]]), new Map())).toThrow(/caller holds 2/);
    expect(() => checkInodeTable(t, new Map([['a', 1]]), new Map([['a', a.ino + 1]]))).toThrow(/changed ino/);
    expect(() => checkInodeTable(t, new Map([['a', 0]]), new Map())).toThrow(/no lookups held/);
    expect(() => checkInodeTable(t, new Map([['a', 1], ['b', 1]]), new Map())).toThrow(/lost its ino/);
    t.forget(a.ino, 1);
    checkInodeTable(t, new Map([['a', 0]]), new Map());
  });
});
