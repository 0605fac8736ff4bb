/**
 * Both transports over host directories (an OverlayFs over PassthroughLayers served in this
 * process, touched only from child processes):
 * - after a copy-up: the kernel caches attributes for a long `attr_timeout`, and a copy-up
 *   changes the directories above the changed object (copied up, or given a new subdirectory)
 *   without the kernel seeing a change in them. The overlay reports them through `watchAttrs`,
 *   and the transport drops the kernel's attributes before it replies;
 * - O_DIRECT reads and writes work (the host file is opened without it).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { ROOT_CONTEXT, type Filesystem } from '@layerfs/core';
import { mount, mountLowLevel, type MountHandle } from '../src/index.js';
import { mountHostOverlay, mountSkip, sh, type HostOverlay } from './helpers.js';

const q = (p: string) => JSON.stringify(p);

const TRANSPORTS: ReadonlyArray<[string, (fs: Filesystem, mnt: string) => Promise<MountHandle>]> = [
  ['mount()', (fs, mnt) => mount(fs, mnt, { handleSignals: false })],
  ['mountLowLevel()', (fs, mnt) => mountLowLevel(fs, mnt, { handleSignals: false })],
];

for (const [transport, serve] of TRANSPORTS) {
  describe.skipIf(mountSkip)(`${transport} of an OverlayFs over host directories: ancestors of a copy-up, O_DIRECT (needs root and /dev/fuse)`, () => {
    let m: HostOverlay | undefined;

    beforeAll(async () => {
      m = await mountHostOverlay('fuse-overlay-host', serve, async (dir) => {
        await sh(`cd ${q(join(dir, 'lower'))} && mkdir -p anc/b c/d && touch anc/b/a c/d/e && touch -d 2001-01-01 anc anc/b c c/d`);
      });
    });

    afterAll(async () => {
      await m?.close();
    });

    /** What the overlay itself reports now for the path `names` (nlink, mtime, ctime per step). */
    async function fresh(names: string[]): Promise<string> {
      let parent = 1;
      const out: string[] = [];
      for (const n of names) {
        const e = await m!.overlay.lookup(ROOT_CONTEXT, parent, n);
        await m!.overlay.forget(ROOT_CONTEXT, e.ino, 1);
        out.push(`${e.attr.nlink} ${e.attr.mtime.sec} ${e.attr.ctime.sec}`);
        parent = e.ino;
      }
      return `${out.join('\n')}\n`;
    }

    it('shows fresh attributes of the ancestors after a change in place copied them up (setxattr)', async () => {
      const shown = () => sh(`cd ${q(m!.mnt)} && stat -c '%h %Y %Z' anc anc/b`);
      const before = await shown();
      expect(m!.handle.stats().attrCaching).toBe(true);
      await sh(`setfattr -n user.k -v 1 ${q(join(m!.mnt, 'anc', 'b', 'a'))}`);   // copies up anc and anc/b
      const want = await fresh(['anc', 'b']);
      expect(want).not.toBe(before);   // the copy-up changed what the overlay reports
      expect(await shown()).toBe(want);
    });

    it('shows fresh attributes of the ancestors after a namespace change copied them up (create)', async () => {
      const shown = () => sh(`cd ${q(m!.mnt)} && stat -c '%h %Y %Z' c c/d`);
      const before = await shown();
      await sh(`touch ${q(join(m!.mnt, 'c', 'd', 'new'))}`);   // copies up c and c/d, then creates in c/d
      const want = await fresh(['c', 'd']);
      expect(want).not.toBe(before);
      expect(await shown()).toBe(want);
    });

    it('reads and writes with O_DIRECT (4 KiB blocks and 1 MiB) and reads back the same bytes', async () => {
      const f = q(join(m!.mnt, 'direct'));
      await sh(`head -c 300000 /dev/urandom > ${f}.src && dd if=${f}.src of=${f} bs=4k oflag=direct status=none && sync`);
      expect(await sh(`cmp ${f}.src ${f} && echo same`)).toBe('same\n');
      for (const bs of ['4k', '1M']) {
        expect(await sh(`dd if=${f} of=${f}.${bs} bs=${bs} iflag=direct status=none && cmp ${f}.src ${f}.${bs} && echo same`)).toBe('same\n');
      }
      await sh(`rm -f ${f} ${f}.*`);
    });
  });
}
