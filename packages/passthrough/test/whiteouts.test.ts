/**
 * Whiteouts and opaque markers of both formats on real host directories: what each call
 * leaves on disk (0/0 char devices, `trusted.`/`user.overlay.opaque`, `.wh.<name>` files,
 * `.wh..wh..opq`), and how lookup/readdir/isWhiteout/isOpaque report markers made by other
 * tools (mknod, setfattr, plain files).
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import { execFileSync } from 'node:child_process';
import { OpenFlags, ROOT_INO, RenameFlags, S_IFCHR } from '@layerfs/core';
import { PassthroughLayer, libc } from '../src/index.js';
import { ctx, rejectsWith, removeDir, tempDir, walk } from './helpers.js';

const getfattr = (p: string, name: string) => {
  try {
    return execFileSync('getfattr', ['-h', '--only-values', '-n', name, p], { stdio: ['ignore', 'pipe', 'ignore'] }).toString();
  } catch {
    return undefined;
  }
};

let dir: string;
beforeEach(() => {
  dir = tempDir('wh');
  fs.mkdirSync(`${dir}/d`);
  fs.writeFileSync(`${dir}/f`, 'x');
});
afterEach(() => removeDir(dir));

describe('chardev format', () => {
  it('with a work directory, whiteouts are links to one shared whiteout there (as the kernel overlayfs makes them); it is made again when gone; destroy removes it', async () => {
    const root = `${dir}/root`;
    const work = `${dir}/work`;
    fs.mkdirSync(root);
    fs.mkdirSync(work);
    fs.mkdirSync(`${root}/sub`);
    // Something that is no whiteout already sits at the shared name: it is replaced, never linked.
    fs.writeFileSync(`${work}/#layerfs-whiteout`, 'not a whiteout');
    const L = new PassthroughLayer(root, { whiteoutFormat: 'chardev', workdir: work });
    const sub = await L.lookup(ctx, ROOT_INO, 'sub');
    await L.createWhiteout(ctx, ROOT_INO, 'a');
    await L.createWhiteout(ctx, sub.ino, 'b');
    const [a, b] = [fs.lstatSync(`${root}/a`), fs.lstatSync(`${root}/sub/b`)];
    for (const s of [a, b]) {
      expect(s.isCharacterDevice()).toBe(true);
      expect(s.rdev).toBe(0);
    }
    expect(b.ino).toBe(a.ino);
    expect(fs.readdirSync(work)).toHaveLength(1);
    expect(fs.lstatSync(`${work}/${fs.readdirSync(work)[0]}`).ino).toBe(a.ino);
    expect(a.nlink).toBe(3);
    // Removing one whiteout leaves the others.
    await L.deleteWhiteout(ctx, ROOT_INO, 'a');
    expect(fs.existsSync(`${root}/a`)).toBe(false);
    expect(await L.isWhiteout(ctx, sub.ino, 'b')).toBe(true);
    // The work directory emptied behind the layer's back (a union cleans it): a new shared one.
    for (const n of fs.readdirSync(work)) fs.unlinkSync(`${work}/${n}`);
    await L.createWhiteout(ctx, ROOT_INO, 'c');
    expect(fs.lstatSync(`${root}/c`).isCharacterDevice()).toBe(true);
    expect(fs.lstatSync(`${root}/c`).nlink).toBe(2);
    // A whiteout staged in the work directory is its own inode (the rename moves it out whole).
    await L.createWhiteout(ctx, L.workIno!, 'staged');
    expect(fs.lstatSync(`${work}/staged`).nlink).toBe(1);
    await L.rename(ctx, L.workIno!, 'staged', ROOT_INO, 'd', 0);
    expect(await L.isWhiteout(ctx, ROOT_INO, 'd')).toBe(true);
    await L.forget(ctx, sub.ino, 1);
    expect(L.liveInodes()).toBe(1);
    await L.destroy();
    expect(fs.readdirSync(work)).toEqual([]);
    expect(fs.lstatSync(`${root}/c`).isCharacterDevice()).toBe(true);
    expect(fs.lstatSync(`${root}/sub/b`).nlink).toBe(1);
  });

  it('createWhiteout makes a 0/0 char device; lookup/readdir/isWhiteout report it; deleteWhiteout removes it', async () => {
    const L = new PassthroughLayer(dir, { whiteoutFormat: 'chardev' });
    expect(L.whiteoutFormat).toBe('chardev');
    await L.createWhiteout(ctx, ROOT_INO, 'gone');
    const s = fs.lstatSync(`${dir}/gone`);
    expect(s.isCharacterDevice()).toBe(true);
    expect(s.rdev).toBe(0);
    const e = await L.lookup(ctx, ROOT_INO, 'gone');
    expect(e.whiteout).toBe(true);
    await L.forget(ctx, e.ino, 1);
    expect(await L.isWhiteout(ctx, ROOT_INO, 'gone')).toBe(true);
    expect(await L.isWhiteout(ctx, ROOT_INO, 'f')).toBe(false);
    expect(await L.isWhiteout(ctx, ROOT_INO, 'nothing')).toBe(false);
    const h = await L.opendir(ctx, ROOT_INO);
    const list = await L.readdir(ctx, ROOT_INO, h.fh, 0, false);
    expect(list.find((x) => x.name === 'gone')?.whiteout).toBe(true);
    expect(list.find((x) => x.name === 'f')?.whiteout).toBeUndefined();
    await L.releasedir(ctx, ROOT_INO, h.fh);
    await rejectsWith(L.createWhiteout(ctx, ROOT_INO, 'gone'), 'EEXIST');
    await rejectsWith(L.createWhiteout(ctx, ROOT_INO, 'f'), 'EEXIST');
    await rejectsWith(L.deleteWhiteout(ctx, ROOT_INO, 'f'), 'ENOENT');
    await L.deleteWhiteout(ctx, ROOT_INO, 'gone');
    expect(fs.existsSync(`${dir}/gone`)).toBe(false);
    await rejectsWith(L.deleteWhiteout(ctx, ROOT_INO, 'gone'), 'ENOENT');
    const w = await L.mknod(ctx, ROOT_INO, 'wh2', S_IFCHR, 0);
    expect(w.whiteout).toBe(true);
    await L.forget(ctx, w.ino, 1);
    expect(L.liveInodes()).toBe(1);
    await L.destroy();
  });

  it('setOpaque writes trusted.overlay.opaque=y (user.overlay.opaque with userxattr); isOpaque reads every form', async () => {
    const L = new PassthroughLayer(dir, { whiteoutFormat: 'chardev' });
    const d = await walk(L, 'd');
    expect(await L.isOpaque(ctx, d)).toBe(false);
    await L.setOpaque(ctx, d, true);
    expect(getfattr(`${dir}/d`, 'trusted.overlay.opaque')).toBe('y');
    expect(await L.isOpaque(ctx, d)).toBe(true);
    await L.setOpaque(ctx, d, false);
    expect(getfattr(`${dir}/d`, 'trusted.overlay.opaque')).toBeUndefined();
    expect(await L.isOpaque(ctx, d)).toBe(false);
    expect(await L.isOpaque(ctx, await walk(L, 'f'))).toBe(false);
    const U = new PassthroughLayer(dir, { whiteoutFormat: 'chardev', userxattr: true });
    const ud = await walk(U, 'd');
    await U.setOpaque(ctx, ud, true);
    expect(getfattr(`${dir}/d`, 'user.overlay.opaque')).toBe('y');
    expect(getfattr(`${dir}/d`, 'trusted.overlay.opaque')).toBeUndefined();
    expect(await L.isOpaque(ctx, d)).toBe(true);
    await U.setOpaque(ctx, ud, false);
    execFileSync('setfattr', ['-n', 'user.fuseoverlayfs.opaque', '-v', 'y', `${dir}/d`]);
    expect(await L.isOpaque(ctx, d)).toBe(true);
    execFileSync('setfattr', ['-x', 'user.fuseoverlayfs.opaque', `${dir}/d`]);
    fs.writeFileSync(`${dir}/d/.wh..wh..opq`, '');
    expect(await L.isOpaque(ctx, d)).toBe(true);
    await L.setOpaque(ctx, d, false);
    expect(fs.existsSync(`${dir}/d/.wh..wh..opq`)).toBe(false);
    expect(await L.isOpaque(ctx, ROOT_INO)).toBe(false);
    await L.setOpaque(ctx, ROOT_INO, true);
    expect(getfattr(dir, 'trusted.overlay.opaque')).toBe('y');
    await L.setOpaque(ctx, ROOT_INO, false);
    await L.destroy();
    await U.destroy();
  });

  it('recognises whiteouts made by mknod(1) and renameat2(RENAME_WHITEOUT) outside the layer', async () => {
    execFileSync('mknod', [`${dir}/ext`, 'c', '0', '0']);
    libc.renameat2(libc.AT_FDCWD, `${dir}/f`, libc.AT_FDCWD, `${dir}/f2`, RenameFlags.WHITEOUT);
    const L = new PassthroughLayer(dir, { whiteoutFormat: 'chardev' });
    expect(await L.isWhiteout(ctx, ROOT_INO, 'ext')).toBe(true);
    expect(await L.isWhiteout(ctx, ROOT_INO, 'f')).toBe(true);
    expect(await L.isWhiteout(ctx, ROOT_INO, 'f2')).toBe(false);
    await L.destroy();
  });
});

describe('oci format', () => {
  it('createWhiteout makes an empty .wh.<name>; the marker shows as <name> and never as itself', async () => {
    const L = new PassthroughLayer(dir, { whiteoutFormat: 'oci' });
    await L.createWhiteout(ctx, ROOT_INO, 'gone');
    const s = fs.lstatSync(`${dir}/.wh.gone`);
    expect(s.isFile() && s.size === 0).toBe(true);
    expect(fs.existsSync(`${dir}/gone`)).toBe(false);
    const e = await L.lookup(ctx, ROOT_INO, 'gone');
    expect(e.whiteout).toBe(true);
    await L.forget(ctx, e.ino, 1);
    await rejectsWith(L.lookup(ctx, ROOT_INO, '.wh.gone'), 'ENOENT');
    expect(await L.isWhiteout(ctx, ROOT_INO, 'gone')).toBe(true);
    fs.writeFileSync(`${dir}/d/.wh..wh..opq`, '');
    fs.writeFileSync(`${dir}/.wh.f`, '');
    const h = await L.opendir(ctx, ROOT_INO);
    const names = (await L.readdir(ctx, ROOT_INO, h.fh, 0, true)).map((x) => [x.name, x.whiteout ?? false]);
    expect(names).toEqual([['d', false], ['f', false], ['gone', true]]);
    await L.releasedir(ctx, ROOT_INO, h.fh);
    const d = await walk(L, 'd');
    const hd = await L.opendir(ctx, d);
    expect(await L.readdir(ctx, d, hd.fh, 0, false)).toEqual([]);
    await L.releasedir(ctx, d, hd.fh);
    expect(await L.isOpaque(ctx, d)).toBe(true);
    await rejectsWith(L.mkdir(ctx, ROOT_INO, '.wh.x', 0o755), 'EINVAL');
    await rejectsWith(L.create(ctx, ROOT_INO, '.wh.x', 0o644, OpenFlags.O_WRONLY), 'EINVAL');
    await rejectsWith(L.mkdir(ctx, ROOT_INO, 'gone', 0o755), 'EEXIST');
    await L.deleteWhiteout(ctx, ROOT_INO, 'gone');
    expect(fs.existsSync(`${dir}/.wh.gone`)).toBe(false);
    await L.destroy();
  });

  it('setOpaque creates and removes .wh..wh..opq', async () => {
    const L = new PassthroughLayer(dir, { whiteoutFormat: 'oci' });
    const d = await walk(L, 'd');
    await L.setOpaque(ctx, d, true);
    expect(fs.lstatSync(`${dir}/d/.wh..wh..opq`).size).toBe(0);
    await L.setOpaque(ctx, d, true);
    expect(await L.isOpaque(ctx, d)).toBe(true);
    await L.setOpaque(ctx, d, false);
    expect(fs.readdirSync(`${dir}/d`)).toEqual([]);
    expect(await L.isOpaque(ctx, d)).toBe(false);
    await L.destroy();
  });

  it('rename: WHITEOUT leaves .wh.<old>, renaming onto a whiteout replaces the marker, markers move as markers', async () => {
    const L = new PassthroughLayer(dir, { whiteoutFormat: 'oci' });
    await L.rename(ctx, ROOT_INO, 'f', ROOT_INO, 'g', RenameFlags.WHITEOUT);
    expect(fs.readdirSync(dir).sort()).toEqual(['.wh.f', 'd', 'g']);
    expect(await L.isWhiteout(ctx, ROOT_INO, 'f')).toBe(true);
    await L.rename(ctx, ROOT_INO, 'g', ROOT_INO, 'f', 0);
    expect(fs.readdirSync(dir).sort()).toEqual(['d', 'f']);
    await L.createWhiteout(ctx, ROOT_INO, 'w');
    await rejectsWith(L.rename(ctx, ROOT_INO, 'f', ROOT_INO, 'w', RenameFlags.NOREPLACE), 'EEXIST');
    const d = await walk(L, 'd');
    await L.rename(ctx, ROOT_INO, 'w', d, 'w2', 0);
    expect(fs.readdirSync(`${dir}/d`)).toEqual(['.wh.w2']);
    expect(await L.isWhiteout(ctx, d, 'w2')).toBe(true);
    await L.rename(ctx, ROOT_INO, 'f', d, 'w2', RenameFlags.EXCHANGE);
    expect(fs.readdirSync(dir).sort()).toEqual(['.wh.f', 'd']);
    expect(fs.readdirSync(`${dir}/d`)).toEqual(['w2']);
    await L.destroy();
  });

  it('defaults to chardev as root on Linux', () => {
    const L = new PassthroughLayer(dir);
    expect(L.whiteoutFormat).toBe(process.getuid?.() === 0 && process.platform === 'linux' ? 'chardev' : 'oci');
    return L.destroy();
  });
});
