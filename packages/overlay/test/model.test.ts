// Differential property test over MemoryLayers: random stacks (two lowers and an upper with
// whiteouts and opaque dirs) and random operation sequences, applied through Volume to the
// OverlayFs and to one plain MemoryLayer holding the same merged tree. Every call must give
// the same result or errno (EXDEV for a lower directory's rename is the one documented
// difference), the final visible trees must be equal, and after the session every lookup is
// given back (overlay and layers hold only their roots).
import { ROOT_CONTEXT, Volume } from '@layerfs/core';
import { dir, dump, file, opaque, tree, whiteout, type TreeNode, type TreeSpec } from '@layerfs/testkit';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { OverlayFs } from '../src/index.js';

const NAMES = ['a', 'b', 'c'];
const USER = { uid: 1000, gid: 1000, pid: 1, umask: 0o022 };
const nameArb = fc.constantFrom(...NAMES);
const contentArb = fc.constantFrom('', 'x', 'hello', 'lower data');

const fileArb: fc.Arbitrary<TreeNode> = fc.oneof(
  contentArb, fc.tuple(contentArb, fc.constantFrom(0o600, 0o666, 0o444)).map(([c, m]) => file(c, m)),
);

function treeArb(withMarkers: boolean, depth: number): fc.Arbitrary<TreeSpec> {
  const leaf: fc.Arbitrary<TreeNode>[] = [fileArb];
  if (withMarkers) leaf.push(fc.constant(whiteout()));
  const node: fc.Arbitrary<TreeNode> = depth <= 0
    ? fc.oneof(...leaf)
    : fc.oneof(
      ...leaf,
      treeArb(withMarkers, depth - 1),
      fc.tuple(treeArb(withMarkers, depth - 1), fc.constantFrom(0o777, 0o1777, 0o555)).map(([c, m]) => dir(c, m)),
      ...(withMarkers ? [treeArb(withMarkers, depth - 1).map((c) => opaque(c))] : []),
    );
  return fc.dictionary(nameArb, node, { maxKeys: 3 });
}

const pathArb = fc.array(nameArb, { minLength: 1, maxLength: 3 }).map((p) => '/' + p.join('/'));

type Op =
  | { op: 'writeFile'; p: string; data: string }
  | { op: 'appendFile'; p: string; data: string }
  | { op: 'truncate'; p: string; len: number }
  | { op: 'mkdir'; p: string }
  | { op: 'rmdir'; p: string }
  | { op: 'unlink'; p: string }
  | { op: 'rename'; p: string; q: string }
  | { op: 'symlink'; p: string; target: string }
  | { op: 'link'; p: string; q: string }
  | { op: 'chmod'; p: string; mode: number }
  | { op: 'setxattr'; p: string; name: string }
  | { op: 'readFile'; p: string }
  | { op: 'readdir'; p: string }
  | { op: 'lstat'; p: string };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ op: fc.constant('writeFile' as const), p: pathArb, data: contentArb }),
  fc.record({ op: fc.constant('appendFile' as const), p: pathArb, data: contentArb }),
  fc.record({ op: fc.constant('truncate' as const), p: pathArb, len: fc.nat(6) }),
  fc.record({ op: fc.constant('mkdir' as const), p: pathArb }),
  fc.record({ op: fc.constant('rmdir' as const), p: pathArb }),
  fc.record({ op: fc.constant('unlink' as const), p: pathArb }),
  fc.record({ op: fc.constant('rename' as const), p: pathArb, q: pathArb }),
  fc.record({ op: fc.constant('symlink' as const), p: pathArb, target: fc.constantFrom('a', '../b', '/c') }),
  fc.record({ op: fc.constant('link' as const), p: pathArb, q: pathArb }),
  fc.record({ op: fc.constant('chmod' as const), p: pathArb, mode: fc.constantFrom(0o600, 0o755, 0o640) }),
  fc.record({ op: fc.constant('setxattr' as const), p: pathArb, name: fc.constantFrom('user.a', 'user.b') }),
  fc.record({ op: fc.constant('readFile' as const), p: pathArb }),
  fc.record({ op: fc.constant('readdir' as const), p: pathArb }),
  fc.record({ op: fc.constant('lstat' as const), p: pathArb }),
);

async function apply(v: Volume, o: Op): Promise<unknown> {
  switch (o.op) {
    case 'writeFile': return v.writeFile(o.p, o.data);
    case 'appendFile': return v.appendFile(o.p, o.data);
    case 'truncate': return v.truncate(o.p, o.len);
    case 'mkdir': return v.mkdir(o.p);
    case 'rmdir': return v.rmdir(o.p);
    case 'unlink': return v.unlink(o.p);
    case 'rename': return v.rename(o.p, o.q);
    case 'symlink': return v.symlink(o.target, o.p);
    case 'link': return v.link(o.p, o.q);
    case 'chmod': return v.chmod(o.p, o.mode);
    case 'setxattr': return v.setxattr(o.p, o.name, 'v');
    case 'readFile': return v.readFile(o.p, 'utf8');
    case 'readdir': return (await v.readdir(o.p)).sort();
    case 'lstat': {
      const s = await v.lstat(o.p);
      return { mode: s.mode, size: s.size, ...(s.isDirectory() ? {} : { nlink: s.nlink }) };
    }
  }
}

async function outcome(v: Volume, o: Op): Promise<{ ok: unknown } | { err: string }> {
  try {
    return { ok: await apply(v, o) };
  } catch (e) {
    return { err: String((e as { code?: string }).code ?? e) };
  }
}

describe('OverlayFs against a flat reference (MemoryLayer)', () => {
  it('same results, same final tree, no leaked lookups', async () => {
    await fc.assert(fc.asyncProperty(
      treeArb(false, 2), treeArb(true, 2), treeArb(true, 2), fc.array(opArb, { maxLength: 25 }),
      fc.array(fc.constantFrom('chardev' as const, 'oci' as const), { minLength: 3, maxLength: 3 }),
      fc.array(fc.constantFrom(0, 1), { minLength: 1, maxLength: 4 }),
      async (bottom, top, upperSpec, ops, formats, users) => {
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
        expect(ov.liveInodes()).toBe(1);
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
        for (const batch of batches) await Promise.all(batch.map((o) => outcome(v, o)));
        expect(ov.liveInodes()).toBe(1);
        expect(upper.liveInodes()).toBe(1);
        for (const l of lowers) expect(l.liveInodes()).toBe(1);
        const seen = await dump(ov);
        const again = await OverlayFs.create({ upper, lowers });
        expect(await dump(again)).toEqual(seen);
      },
    ), { numRuns: Number(process.env.LAYERFS_RUNS ?? 150), seed: Number(process.env.LAYERFS_SEED ?? 777) });
  });
});
