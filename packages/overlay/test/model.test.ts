// Differential property test over MemoryLayers: random stacks (two lowers and an upper with
// whiteouts and opaque dirs) and random operation sequences, applied through Volume to the
// OverlayFs and to one plain MemoryLayer holding the same merged tree. Every call must give
// the same result or errno (EXDEV for a lower directory's rename is the one documented
// difference), the final visible trees must be equal, and after the session every lookup is
// given back (overlay and layers hold only their roots).
import { ROOT_CONTEXT, ROOT_INO, Volume } from '@layerfs/core';
import { dump, tree } from '@layerfs/testkit';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { OverlayFs } from '../src/index.js';
import { USER, opArb, outcome, treeArb } from './model-helpers.js';


/** Take (and return) lookups on every name of the tree down to `depth`, as a kernel keeps dentries. */
async function holdTree(ov: OverlayFs, ino: number, depth: number, held: number[] = []): Promise<number[]> {
  const { fh } = await ov.opendir(ROOT_CONTEXT, ino);
  const list = await ov.readdir(ROOT_CONTEXT, ino, fh, 0, false);
  await ov.releasedir(ROOT_CONTEXT, ino, fh);
  for (const e of list) {
    const ent = await ov.lookup(ROOT_CONTEXT, ino, e.name);
    held.push(ent.ino);
    if (e.type === 'directory' && depth > 0) await holdTree(ov, ent.ino, depth - 1, held);
  }
  return held;
}

describe('OverlayFs against a flat reference (MemoryLayer)', () => {
  it('same results, same final tree, no leaked lookups', async () => {
    await fc.assert(fc.asyncProperty(
      treeArb(false, 2), treeArb(true, 2), treeArb(true, 2), fc.array(opArb, { maxLength: 25 }),
      fc.array(fc.constantFrom('chardev' as const, 'oci' as const), { minLength: 3, maxLength: 3 }),
      fc.array(fc.constantFrom(0, 1), { minLength: 1, maxLength: 4 }), fc.boolean(),
      async (bottom, top, upperSpec, ops, formats, users, holdNames) => {
        const lowers = [
          await tree(top, { writable: true, whiteoutFormat: formats[1]! }),
          await tree(bottom, { writable: true, whiteoutFormat: formats[2]! }),
        ];
        const upper = await tree(upperSpec, { whiteoutFormat: formats[0]! });
        const ov = await OverlayFs.create({ upper, lowers });
        const merged = await dump(ov);
        const ref = await tree(merged);
        const vo = [new Volume(ov, { context: ROOT_CONTEXT }), new Volume(ov, { context: USER })];
        const vr = [new Volume(ref, { context: ROOT_CONTEXT }), new Volume(ref, { context: USER })];
        // Half the runs hold lookups on the initial tree (name caches populated, as under FUSE).
        const held = holdNames ? await holdTree(ov, ROOT_INO, 2) : [];
        for (let i = 0; i < ops.length; i++) {
          const o = ops[i]!;
          const who = users[i % users.length] ?? 0;
          const a = await outcome(vo[who]!, o);
          if ('err' in a && a.err === 'EXDEV') continue;
          const b = await outcome(vr[who]!, o);
          // MemoryLayer checks may_create before the kernel's protected-hardlink rule (which
          // fails first with EPERM on this machine); the overlay follows the kernel.
          if (o.op === 'link' && 'err' in a && a.err === 'EPERM' && 'err' in b && b.err === 'EACCES') continue;
          expect({ op: o, result: a }).toEqual({ op: o, result: b });
        }
        expect(await dump(ov)).toEqual(await dump(ref));
        for (const ino of held) await ov.forget(ROOT_CONTEXT, ino, 1);
        expect(ov.liveInodes()).toBe(1);
        await ov.dropCaches();
        expect(upper.liveInodes()).toBe(1);
        for (const l of lowers) expect(l.liveInodes()).toBe(1);
        // A fresh overlay on the same layers shows the same tree.
        const again = await OverlayFs.create({ upper, lowers });
        expect(await dump(again)).toEqual(await dump(ref));
      },
    ), { numRuns: Number(process.env.LAYERFS_RUNS ?? 300), seed: Number(process.env.LAYERFS_SEED ?? 4242) });
  });

  it('concurrent random operations leave consistent state and no leaked lookups', async () => {
    await fc.assert(fc.asyncProperty(
      treeArb(false, 2), treeArb(true, 2), treeArb(true, 2), fc.array(fc.array(opArb, { minLength: 1, maxLength: 6 }), { maxLength: 8 }),
      async (bottom, top, upperSpec, batches) => {
        const lowers = [await tree(top, { writable: true }), await tree(bottom, { writable: true })];
        const upper = await tree(upperSpec);
        const ov = await OverlayFs.create({ upper, lowers });
        const v = new Volume(ov, { context: ROOT_CONTEXT });
        // Hold lookups on the whole initial tree, so the overlay's name caches stay populated
        // (as under a kernel that keeps dentries) while the operations race.
        const held = await holdTree(ov, ROOT_INO, 2);
        for (const batch of batches) await Promise.all(batch.map((o) => outcome(v, o)));
        const cachedView = await dump(ov);
        expect(cachedView).toEqual(await dump(await OverlayFs.create({ upper, lowers, options: { inodeCache: 0 } })));
        for (const ino of held) await ov.forget(ROOT_CONTEXT, ino, 1);
        expect(ov.liveInodes()).toBe(1);
        await ov.dropCaches();
        expect(upper.liveInodes()).toBe(1);
        for (const l of lowers) expect(l.liveInodes()).toBe(1);
        const seen = await dump(ov);
        const again = await OverlayFs.create({ upper, lowers });
        expect(await dump(again)).toEqual(seen);
      },
    ), { numRuns: Number(process.env.LAYERFS_RUNS ?? 150), seed: Number(process.env.LAYERFS_SEED ?? 777) });
  });
});
