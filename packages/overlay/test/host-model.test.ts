// The differential property test of model.test.ts over host directories: random layer trees
// laid out on disk (chardev whiteouts, trusted.overlay.opaque), an OverlayFs over
// PassthroughLayers (overlayFromDirs), random operations through Volume compared call by call
// with a flat MemoryLayer holding the same merged tree; at the end the visible trees agree, a
// re-created overlay shows the same tree, and the overlay and every PassthroughLayer hold
// only their roots.
import { promises as fsp } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT_CONTEXT, Volume } from '@layerfs/core';
import { dump, tree } from '@layerfs/testkit';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OverlayFs, overlayFromDirs } from '../src/index.js';
import { USER, opArb, outcome, treeArb } from './model-helpers.js';

const isRoot = process.getuid?.() === 0;
let base: string;
let n = 0;

beforeAll(async () => { base = await fsp.mkdtemp(join(tmpdir(), 'layerfs-overlay-hostmodel-')); });
afterAll(async () => { await fsp.rm(base, { recursive: true, force: true }); });

describe.skipIf(!isRoot)('OverlayFs over PassthroughLayers against a flat reference (root: chardev whiteouts)', () => {
  it('same results, same final tree, every lookup given back', async () => {
    await fc.assert(fc.asyncProperty(
      treeArb(false, 2), treeArb(true, 2), treeArb(true, 2), fc.array(opArb, { maxLength: 20 }),
      fc.array(fc.constantFrom(0, 1), { minLength: 1, maxLength: 4 }),
      async (bottom, top, upperSpec, ops, users) => {
        const d = join(base, `c${n++}`);
        const [l0, l1, u, w] = ['l0', 'l1', 'u', 'w'].map((x) => join(d, x)) as [string, string, string, string];
        await tree(top, l0);
        await tree(bottom, l1);
        await tree(upperSpec, u);
        await fsp.mkdir(w);
        const ov = await overlayFromDirs({ lowerdir: [l0, l1], upperdir: u, workdir: w });
        try {
          const ref = await tree(await dump(ov));
          const vo = [new Volume(ov, { context: ROOT_CONTEXT }), new Volume(ov, { context: USER })];
          const vr = [new Volume(ref, { context: ROOT_CONTEXT }), new Volume(ref, { context: USER })];
          for (let i = 0; i < ops.length; i++) {
            const o = ops[i]!;
            const who = users[i % users.length] ?? 0;
            const a = await outcome(vo[who]!, o);
            if ('err' in a && a.err === 'EXDEV') continue;
            const b = await outcome(vr[who]!, o);
            if (o.op === 'link' && 'err' in a && a.err === 'EPERM' && 'err' in b && b.err === 'EACCES') continue;
            expect({ op: o, result: a }).toEqual({ op: o, result: b });
          }
          expect(await dump(ov)).toEqual(await dump(ref));
          expect(ov.liveInodes()).toBe(1);
          await ov.dropCaches();
          for (const l of ov.layers) expect(l.liveInodes?.()).toBe(1);
        } finally {
          await ov.destroy();
        }
        const again = await overlayFromDirs({ lowerdir: [l0, l1], upperdir: u, workdir: w });
        try {
          const fresh = await OverlayFs.create({ upper: again.upper!, lowers: again.lowers });
          expect(await dump(fresh)).toEqual(await dump(again));
        } finally {
          await again.destroy();
        }
        await fsp.rm(d, { recursive: true, force: true });
      },
    ), { numRuns: Number(process.env.LAYERFS_HOST_RUNS ?? 40), seed: Number(process.env.LAYERFS_SEED ?? 99) });
  }, 240_000);
});
