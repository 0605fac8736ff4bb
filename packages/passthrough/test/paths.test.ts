/**
 * Inode identity and host paths: hard links are one inode; `hostPath` stays true when the
 * inode or any ancestor is renamed (EXCHANGE too) and when the name it was reached by is
 * unlinked while another link remains (known or found by search); the work directory
 * (`workIno`) and atomic renames between it and the tree; files below paths longer than
 * PATH_MAX.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import { OpenFlags, ROOT_INO, RenameFlags, S_IFREG } from '@layerfs/core';
import { PassthroughLayer, libc } from '../src/index.js';
import { ctx, rejectsWith, removeDir, tempDir, walk } from './helpers.js';

let dir: string;
let L: PassthroughLayer;
beforeEach(() => {
  dir = tempDir('paths');
  fs.mkdirSync(`${dir}/a/b/c`, { recursive: true });
  fs.writeFileSync(`${dir}/a/b/c/file`, 'deep');
  fs.writeFileSync(`${dir}/a/one`, '1');
  L = new PassthroughLayer(dir);
});
afterEach(async () => {
  await L.destroy();
  removeDir(dir);
});

describe('hard links', () => {
  it('two names of one host inode are one layer inode', async () => {
    const a = await walk(L, 'a');
    const one = await L.lookup(ctx, a, 'one');
    const two = await L.link(ctx, one.ino, ROOT_INO, 'two');
    expect(two.ino).toBe(one.ino);
    expect(two.attr.nlink).toBe(2);
    expect(fs.statSync(`${dir}/two`).ino).toBe(fs.statSync(`${dir}/a/one`).ino);
    fs.linkSync(`${dir}/a/one`, `${dir}/three`);
    const three = await L.lookup(ctx, ROOT_INO, 'three');
    expect(three.ino).toBe(one.ino);
    expect(L.lookupCount(one.ino)).toBe(3);
  });

  it('unlinking the name an inode was reached by moves hostPath to a remaining link', async () => {
    const a = await walk(L, 'a');
    const one = await L.lookup(ctx, a, 'one');
    await L.link(ctx, one.ino, ROOT_INO, 'two');
    expect(L.hostPath(one.ino)).toBe(`${dir}/a/one`);
    await L.unlink(ctx, a, 'one');
    expect(L.hostPath(one.ino)).toBe(`${dir}/two`);
    expect((await L.getattr(ctx, one.ino)).nlink).toBe(1);
    const h = await L.open(ctx, one.ino, OpenFlags.O_RDONLY);
    expect(Buffer.from(await L.read(ctx, one.ino, h.fh, 10, 0)).toString()).toBe('1');
    await L.release(ctx, one.ino, h.fh);
  });

  it('finds a link it never saw by searching the tree', async () => {
    fs.linkSync(`${dir}/a/one`, `${dir}/a/b/hidden`);
    const a = await walk(L, 'a');
    const one = await L.lookup(ctx, a, 'one');
    await L.unlink(ctx, a, 'one');
    const attr = await L.getattr(ctx, one.ino);
    expect(attr.nlink).toBe(1);
    expect(L.hostPath(one.ino)).toBe(`${dir}/a/b/hidden`);
    await L.setattr(ctx, one.ino, { mode: 0o600 });
    expect(fs.statSync(`${dir}/a/b/hidden`).mode & 0o777).toBe(0o600);
  });
});

describe('renames keep host paths true', () => {
  it('renaming an ancestor fixes every path below it', async () => {
    const file = await walk(L, 'a/b/c/file');
    const c = await walk(L, 'a/b/c');
    const a = await walk(L, 'a');
    await L.rename(ctx, ROOT_INO, 'a', ROOT_INO, 'z', 0);
    expect(L.hostPath(file)).toBe(`${dir}/z/b/c/file`);
    expect(L.hostPath(c)).toBe(`${dir}/z/b/c`);
    expect(L.hostPath(a)).toBe(`${dir}/z`);
    const b = await walk(L, 'z/b');
    await L.rename(ctx, b, 'c', ROOT_INO, 'c2', 0);
    expect(L.hostPath(file)).toBe(`${dir}/c2/file`);
    expect(L.hostPath(a)).toBe(`${dir}/z`);
    const e = await L.lookup(ctx, c, 'file');
    expect(e.ino).toBe(file);
    await L.mkdir(ctx, c, 'new', 0o755);
    expect(fs.existsSync(`${dir}/c2/new`)).toBe(true);
    expect(fs.readFileSync(L.hostPath(file)!, 'utf8')).toBe('deep');
  });

  it('renaming a directory moves the records below it after its index of such directories was rebuilt', async () => {
    // The layer keeps the directories that may have records below them; past its bound it
    // rebuilds that set from the live records (here after a few more directories).
    (L as unknown as { recordDirsMax: number }).recordDirsMax = 4;
    const file = await walk(L, 'a/b/c/file');
    for (let i = 0; i < 6; i++) {
      fs.mkdirSync(`${dir}/m${i}/n`, { recursive: true });
      await L.forget(ctx, await walk(L, `m${i}/n`), 1);
    }
    await L.rename(ctx, ROOT_INO, 'a', ROOT_INO, 'z', 0);
    expect(L.hostPath(file)).toBe(`${dir}/z/b/c/file`);
    const fresh = await L.mkdir(ctx, ROOT_INO, 'fresh', 0o755);   // nothing below: no scan needed
    await L.rename(ctx, ROOT_INO, 'fresh', ROOT_INO, 'fresh2', 0);
    expect(L.hostPath(fresh.ino)).toBe(`${dir}/fresh2`);
    expect(L.hostPath(file)).toBe(`${dir}/z/b/c/file`);
  });

  it('EXCHANGE swaps the paths of both subtrees', async () => {
    fs.mkdirSync(`${dir}/x/y`, { recursive: true });
    const file = await walk(L, 'a/b/c/file');
    const y = await walk(L, 'x/y');
    await L.rename(ctx, ROOT_INO, 'a', ROOT_INO, 'x', RenameFlags.EXCHANGE);
    expect(L.hostPath(file)).toBe(`${dir}/x/b/c/file`);
    expect(L.hostPath(y)).toBe(`${dir}/a/y`);
    expect(fs.existsSync(`${dir}/a/y`)).toBe(true);
  });

  it('a path changed behind the layer\'s back is noticed (ESTALE), and the inode found again', async () => {
    const file = await walk(L, 'a/b/c/file');
    fs.renameSync(`${dir}/a/b/c/file`, `${dir}/a/moved`);
    const attr = await L.getattr(ctx, file);
    expect(attr.size).toBe(4);
    expect(L.hostPath(file)).toBe(`${dir}/a/moved`);
    fs.unlinkSync(`${dir}/a/moved`);
    await rejectsWith(L.getattr(ctx, file), 'ESTALE');
  });

  it('a directory replaced behind the layer\'s back is not mistaken for the old one, and is found where it went', async () => {
    const L2 = new PassthroughLayer(dir, { maxOpenFds: 4 });
    const c2 = await walk(L2, 'a/b/c');
    for (const p of ['x1', 'x2', 'x3', 'x4', 'x5']) { fs.mkdirSync(`${dir}/${p}`); await walk(L2, p); await L2.opendir(ctx, await walk(L2, p)); }
    fs.renameSync(`${dir}/a/b/c`, `${dir}/a/b/c-old`);
    fs.mkdirSync(`${dir}/a/b/c`);
    // The held inode is the directory now called c-old: found again by identity.
    const made = await L2.mkdir(ctx, c2, 'made', 0o755);
    expect(fs.existsSync(`${dir}/a/b/c-old/made`)).toBe(true);
    expect(fs.existsSync(`${dir}/a/b/c/made`)).toBe(false);
    expect(L2.hostPath(c2)).toBe(`${dir}/a/b/c-old`);
    expect(L2.hostPath(made.ino)).toBe(`${dir}/a/b/c-old/made`);
    fs.rmSync(`${dir}/a/b/c-old`, { recursive: true });
    await rejectsWith(L2.mkdir(ctx, c2, 'again', 0o755), 'ENOENT');
    await L2.destroy();
  });
});

describe('work directory', () => {
  it('is exposed as workIno, outside the tree, with atomic renames into the tree', async () => {
    const base = tempDir('paths-work');
    fs.mkdirSync(`${base}/root`);
    fs.mkdirSync(`${base}/work`);
    const W = new PassthroughLayer(`${base}/root`, { workdir: `${base}/work` });
    expect(W.workIno).toBeDefined();
    expect(W.liveInodes()).toBe(1);
    expect(W.hostPath(W.workIno!)).toBe(`${base}/work`);
    const c = await W.create(ctx, W.workIno!, 'staged', 0o644, OpenFlags.O_WRONLY);
    await W.write(ctx, c.entry.ino, c.fh, Buffer.from('data'), 0);
    await W.release(ctx, c.entry.ino, c.fh);
    expect(W.hostPath(c.entry.ino)).toBe(`${base}/work/staged`);
    await W.rename(ctx, W.workIno!, 'staged', ROOT_INO, 'final', 0);
    expect(fs.readFileSync(`${base}/root/final`, 'utf8')).toBe('data');
    expect(W.hostPath(c.entry.ino)).toBe(`${base}/root/final`);
    await W.createWhiteout(ctx, W.workIno!, 'wo');
    await W.rename(ctx, W.workIno!, 'wo', ROOT_INO, 'final', RenameFlags.EXCHANGE);
    expect(await W.isWhiteout(ctx, ROOT_INO, 'final')).toBe(true);
    await W.forget(ctx, c.entry.ino, 1);
    await W.forget(ctx, W.workIno!, 1);
    expect(W.excessForgets).toBe(1);
    expect(W.liveInodes()).toBe(1);
    await W.destroy();
    expect(() => new PassthroughLayer(`${base}/root`, { workdir: `${base}/root/sub` })).toThrow();
    fs.mkdirSync(`${base}/root/sub`);
    expect(() => new PassthroughLayer(`${base}/root`, { workdir: `${base}/root/sub` })).toThrow(/EINVAL/);
    removeDir(base);
  });
});

describe('long paths', () => {
  it('works 4,000+ bytes below the root, beyond PATH_MAX from /, and refuses 256-byte names', async () => {
    const comp = 'p'.repeat(200);
    let ino = ROOT_INO;
    const held: number[] = [];
    for (let i = 0; i < 21; i++) {
      const e = await L.mkdir(ctx, ino, `${comp}${i % 10}`, 0o755);
      held.push(e.ino);
      ino = e.ino;
    }
    const rel = Array.from({ length: 21 }, (_, i) => `${comp}${i % 10}`).join('/');
    expect(Buffer.byteLength(`${dir}/${rel}`)).toBeGreaterThan(4096);
    const c = await L.create(ctx, ino, 'leaf', 0o644, OpenFlags.O_RDWR);
    await L.write(ctx, c.entry.ino, c.fh, Buffer.from('far down'), 0);
    await L.release(ctx, c.entry.ino, c.fh);
    expect(() => fs.statSync(`${dir}/${rel}/leaf`)).toThrow(/ENAMETOOLONG/);
    await L.setxattr(ctx, c.entry.ino, 'user.deep', Buffer.from('y'), 0);
    await L.setattr(ctx, c.entry.ino, { mode: 0o600, mtime: { sec: 42, nsec: 42 } });
    // A fresh layer with a tiny descriptor budget reaches it by walking from the root.
    const F = new PassthroughLayer(dir, { maxOpenFds: 4 });
    const leaf = await walk(F, `${rel}/leaf`);
    const attr = await F.getattr(ctx, leaf);
    expect([attr.size, attr.mode & 0o777, attr.mtime.sec, attr.mtime.nsec]).toEqual([8, 0o600, 42, 42]);
    const h = await F.open(ctx, leaf, OpenFlags.O_RDONLY);
    expect(Buffer.from(await F.read(ctx, leaf, h.fh, 100, 0)).toString()).toBe('far down');
    await F.release(ctx, leaf, h.fh);
    expect(Buffer.from(await F.getxattr(ctx, leaf, 'user.deep')).toString()).toBe('y');
    await rejectsWith(F.lookup(ctx, ino, 'n'.repeat(256)), 'ENAMETOOLONG');
    await rejectsWith(F.create(ctx, ino, 'n'.repeat(256), 0o644, OpenFlags.O_WRONLY), 'ENAMETOOLONG');
    // The same bytes through a descriptor-relative walk on the host side agree.
    let fd = libc.openat(libc.AT_FDCWD, dir, libc.O.PATH | libc.O.DIRECTORY);
    for (const p of rel.split('/')) { const n = libc.openat(fd, p, libc.O.PATH | libc.O.DIRECTORY); fs.closeSync(fd); fd = n; }
    expect(fs.readFileSync(`/proc/self/fd/${fd}/leaf`, 'utf8')).toBe('far down');
    fs.closeSync(fd);
    // Renaming the top directory keeps the deep inode reachable.
    await L.rename(ctx, ROOT_INO, `${comp}0`, ROOT_INO, 'top', 0);
    expect((await L.getattr(ctx, c.entry.ino)).size).toBe(8);
    expect(L.hostPath(c.entry.ino)!.startsWith(`${dir}/top/`)).toBe(true);
    await F.destroy();
  });
});

describe('forget releases what an inode held', () => {
  it('closes the descriptor kept for an unlinked inode; a directory\'s descriptor stays cached for the next lookup', async () => {
    const fds = () => fs.readdirSync('/proc/self/fd').length;
    const a = await walk(L, 'a');
    const one = await L.lookup(ctx, a, 'one');
    const start = fds();
    await L.unlink(ctx, a, 'one');
    expect(fds()).toBe(start + 1);
    expect((await L.getattr(ctx, one.ino)).nlink).toBe(0);
    await L.forget(ctx, one.ino, 1);
    expect(fds()).toBe(start);
    const b = await walk(L, 'a/b');
    await L.mkdir(ctx, b, 'x', 0o755).then((e) => L.forget(ctx, e.ino, 1));
    const before = L.fdStats();
    await L.forget(ctx, b, 1);
    const open = fds();
    // Forgotten: the descriptor stays in the LRU (bounded), and looking `b` up again and
    // using it opens nothing new.
    expect(L.fdStats().cached).toBe(before.cached);
    const again = await walk(L, 'a/b');
    await L.mkdir(ctx, again, 'y', 0o755).then((e) => L.forget(ctx, e.ino, 1));
    expect(L.fdStats().opened).toBe(before.opened);
    expect(fds()).toBe(open);
    await L.forget(ctx, again, 1);
  });

  it('never uses a cached descriptor of a directory that was replaced at its path', async () => {
    const a = await walk(L, 'a');
    await L.mkdir(ctx, a, 'swap', 0o755).then((e) => L.forget(ctx, e.ino, 1));
    const old = await L.lookup(ctx, a, 'swap');
    await L.mknod(ctx, old.ino, 'in-old', S_IFREG | 0o644, 0).then((e) => L.forget(ctx, e.ino, 1));
    await L.forget(ctx, old.ino, 1);
    // Behind the layer's back: the name now leads to another directory.
    fs.renameSync(`${dir}/a/swap`, `${dir}/a/swap-old`);
    fs.mkdirSync(`${dir}/a/swap`);
    const neu = await L.lookup(ctx, a, 'swap');
    expect(neu.ino).not.toBe(old.ino);
    await L.mknod(ctx, neu.ino, 'in-new', S_IFREG | 0o644, 0).then((e) => L.forget(ctx, e.ino, 1));
    expect(fs.readdirSync(`${dir}/a/swap`)).toEqual(['in-new']);
    expect(fs.readdirSync(`${dir}/a/swap-old`)).toEqual(['in-old']);
    await L.forget(ctx, neu.ino, 1);
    await L.forget(ctx, a, 1);
  });
});

describe('opening a layer', () => {
  it('names the directory when it cannot be opened', async () => {
    const missing = `/nonexistent-${process.pid}/layer`;
    await expect(PassthroughLayer.open(missing)).rejects.toMatchObject({
      code: 'ENOENT', path: missing, message: expect.stringContaining(missing),
    });
  });
});
