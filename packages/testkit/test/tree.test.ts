// tree()/dump()/dumpHost(): laying literals out in memory and on a host directory, in both
// whiteout formats, and reading them back into the same literal.
import { mkdtemp, rm, lstat, readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { ROOT_CONTEXT, ROOT_INO } from '@layerfs/core';
import {
  DirSpec, WhiteoutSpec, dir, dump, dumpHost, fcRuns, fifo, file, invalidNameArb, link, opaque, symlink, tree, treeArb, whiteout, type TreeSpec,
} from '../src/index.js';
import { validateName } from '@layerfs/core';

const spec: TreeSpec = {
  etc: {
    passwd: 'root:x:0:0\n',
    shadow: file('secret', 0o600),
    tagged: file('x', 0o644, { xattrs: { 'user.tag': 'blue' } }),
    l: symlink('../t'),
    gone: whiteout(),
    sub: opaque({ inner: 'i' }),
  },
  ro: dir({ f: '' }, 0o555),
  bin: new Uint8Array([0xff, 0xfe, 0x00]),
  p: fifo(0o600),
};

function ociStorable(t: TreeSpec): boolean {
  return Object.entries(t).every(([name, n]) => {
    if (n instanceof WhiteoutSpec) return Buffer.byteLength(name) <= 251;
    if (n instanceof DirSpec) return ociStorable(n.children);
    if (typeof n === 'object' && Object.getPrototypeOf(n) === Object.prototype) return ociStorable(n as TreeSpec);
    return true;
  });
}

const isRoot = process.getuid?.() === 0;
const tmp: string[] = [];
afterAll(async () => { for (const d of tmp) await rm(d, { recursive: true, force: true }); });

describe('tree and dump', () => {
  for (const whiteoutFormat of ['chardev', 'oci'] as const) {
    it(`round-trips a literal through a MemoryLayer (${whiteoutFormat})`, async () => {
      const fs = await tree(spec, { whiteoutFormat });
      expect(await dump(fs)).toEqual(spec);
      expect(fs.liveInodes()).toBe(1);
      const ro = await tree(spec, { whiteoutFormat, writable: false });
      expect(ro.writable).toBe(false);
      expect(await dump(ro)).toEqual(spec);
    });
  }

  it('lays out hard links and dumps each name as a file', async () => {
    const fs = await tree({ a: 'data', d: { b: link('a') } });
    expect(await dump(fs)).toEqual({ a: 'data', d: { b: 'data' } });
    const e = await fs.lookup(ROOT_CONTEXT, ROOT_INO, 'a');
    expect(e.attr.nlink).toBe(2);
    await fs.forget(ROOT_CONTEXT, e.ino, 1);
  });

  for (const whiteoutFormat of ['chardev', 'oci'] as const) {
    it(`round-trips random trees with hostile names (${whiteoutFormat})`, async () => {
      // An OCI whiteout is stored as `.wh.<name>`: 4 bytes of the 255 go to the prefix.
      const arb = treeArb({ markers: true, maxDepth: 2 }).filter((t) => whiteoutFormat === 'chardev' || ociStorable(t));
      await fc.assert(fc.asyncProperty(arb, async (spec) => {
        const fs = await tree(spec, { whiteoutFormat });
        expect(await dump(fs)).toEqual(spec);
        expect(fs.liveInodes()).toBe(1);
      }), { numRuns: fcRuns(200) });
    });
  }

  it('invalid names are refused with the kernel errno', () => {
    fc.assert(fc.property(invalidNameArb(), ({ name, code }) => {
      expect(() => validateName(name)).toThrow(expect.objectContaining({ code }));
    }), { numRuns: 100 });
  });

  it('dumps a different tree differently', async () => {
    const fs = await tree(spec);
    expect(await dump(fs)).not.toEqual({ ...spec, extra: 'x' });
  });

  for (const whiteoutFormat of ['chardev', 'oci'] as const) {
    it.skipIf(!isRoot)(`round-trips a literal through a host directory (${whiteoutFormat}; root for mknod/trusted xattrs)`, async () => {
      const root = await mkdtemp(join(tmpdir(), 'layerfs-tree-'));
      tmp.push(root);
      await tree(spec, join(root, 'd'), { whiteoutFormat });
      expect(await dumpHost(join(root, 'd'))).toEqual(spec);
      if (whiteoutFormat === 'oci') {
        expect((await readdir(join(root, 'd', 'etc'))).sort()).toContain('.wh.gone');
        expect((await lstat(join(root, 'd', 'etc', 'sub', '.wh..wh..opq'))).isFile()).toBe(true);
      } else {
        const st = await lstat(join(root, 'd', 'etc', 'gone'));
        expect(st.isCharacterDevice() && st.rdev === 0).toBe(true);
      }
    });
  }
});
