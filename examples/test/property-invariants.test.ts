/**
 * Example of mission 3: property-testing the inode and lookup-count invariants of a
 * filesystem built on the layerfs contracts with fast-check. `runModel` applies random
 * operation sequences (create, write, rename, link, hold and forget lookups, open handles…)
 * to the filesystem and to a reference model, compares every result, checks that lookup
 * counts balance, and that only the root is left once every lookup is forgotten (an overlay
 * inode keeps its parent directory alive, as a kernel dentry does: `pinsAncestors`). Swap in
 * your own `Filesystem` factory to test it the same way.
 */
import { describe, it } from 'vitest';
import fc from 'fast-check';
import { InodeTable } from '@layerfs/core';
import { OverlayFs } from '@layerfs/overlay';
import { fcRuns, runModel, tree } from '@layerfs/testkit';

describe('property-testing a filesystem built on the contracts', () => {
  it('an overlay of in-memory layers agrees with the model and leaks no inode', async () => {
    await runModel(async () => OverlayFs.create({ upper: await tree({}), lowers: [await tree({}, { writable: false })] }), { numRuns: fcRuns(50), pinsAncestors: true });
  });

  it('InodeTable: an identity keeps its ino while referenced; only the root survives forgetting', () => {
    fc.assert(fc.property(fc.array(fc.tuple(fc.constantFrom('a', 'b', 'c', 'd'), fc.boolean())), (ops) => {
      const table = new InodeTable<string>('/', '/');
      const held = new Map<string, { ino: number; n: number }>();
      for (const [key, acquire] of ops) {
        const h = held.get(key);
        if (acquire || !h) {
          const ino = table.acquire(key, () => key).record.ino;
          if (h && h.ino !== ino) throw new Error(`${key} changed ino while referenced`);
          held.set(key, { ino, n: (h?.n ?? 0) + 1 });
        } else {
          table.forget(h.ino, 1);
          if (h.n === 1) held.delete(key); else held.set(key, { ino: h.ino, n: h.n - 1 });
        }
      }
      for (const { ino, n } of held.values()) table.forget(ino, n);
      if (table.size !== 1) throw new Error(`table holds ${table.size} inodes after every forget`);
    }), { numRuns: fcRuns(200) });
  });
});
