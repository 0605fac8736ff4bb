// tree()/dump()/dumpHost(): laying literals out in memory and on a host directory, in both
// whiteout formats, and reading them back into the same literal.
import { mkdtemp, rm, lstat, readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ROOT_CONTEXT, ROOT_INO } from '@layerfs/core';
import { dir, dump, dumpHost, fifo, file, link, opaque, symlink, tree, whiteout, type TreeSpec } from '../src/index.js';

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
