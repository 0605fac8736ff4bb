/**
 * Operation-by-operation tests of PassthroughLayer against real temporary directories: every
 * result and errno is compared with what `node:fs` (or the attr tools) gives on the same host
 * files, on a twin tree where the layer's call and node's call must agree.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import { execFileSync } from 'node:child_process';
import {
  AccessMode, FallocateMode, OpenFlags, ROOT_INO, RenameFlags, S_IFBLK, S_IFCHR, S_IFIFO, S_IFMT,
  S_IFSOCK, UTIME_NOW, UTIME_OMIT, Whence, XattrFlags, makedev, type DirEntry, type RequestContext,
} from '@layerfs/core';
import { PassthroughLayer } from '../src/index.js';
import { ctx, rejectsWith, removeDir, tempDir, walk } from './helpers.js';

const user: RequestContext = { uid: 1000, gid: 1000, pid: 0, umask: 0o022 };

/** The outcome of a call: its value or its error code. */
async function outcome<T>(f: () => Promise<T> | T): Promise<{ ok: T } | { code: string }> {
  try {
    return { ok: await f() };
  } catch (e) {
    return { code: (e as { code: string }).code === 'ENOTSUP' ? 'EOPNOTSUPP' : (e as { code: string }).code };
  }
}

/** Both calls fail with the same code, or both succeed. */
async function agree(nodeCall: () => unknown, layerCall: () => Promise<unknown>): Promise<void> {
  const a = await outcome(nodeCall);
  const b = await outcome(layerCall);
  expect('code' in b ? b.code : 'ok', `node gave ${JSON.stringify('code' in a ? a.code : 'ok')}`).toBe('code' in a ? a.code : 'ok');
}

function seed(dir: string): void {
  fs.mkdirSync(`${dir}/d/sub`, { recursive: true });
  fs.mkdirSync(`${dir}/full/x`, { recursive: true });
  fs.writeFileSync(`${dir}/f`, 'hello world');
  fs.writeFileSync(`${dir}/d/g`, 'gg');
  fs.symlinkSync('f', `${dir}/ln`);
  fs.symlinkSync('/etc/passwd', `${dir}/abs`);
}

let A: string; // twin tree driven through node:fs
let B: string; // twin tree driven through the layer
let L: PassthroughLayer;

beforeEach(() => {
  A = tempDir('ops-node');
  B = tempDir('ops-layer');
  seed(A);
  seed(B);
  L = new PassthroughLayer(B);
});

afterEach(async () => {
  await L.destroy();
  removeDir(A);
  removeDir(B);
});

describe('lookup and getattr', () => {
  it('reports what lstat reports (bigint identity, ns times, mode, nlink, size)', async () => {
    for (const p of ['f', 'd', 'd/sub', 'ln', 'abs', 'd/g']) {
      const ino = await walk(L, p);
      const a = await L.getattr(ctx, ino);
      const s = fs.lstatSync(`${B}/${p}`, { bigint: true });
      expect(a.mode).toBe(Number(s.mode));
      expect(a.nlink).toBe(Number(s.nlink));
      expect(a.size).toBe(Number(s.size));
      expect(a.uid).toBe(Number(s.uid));
      expect(a.blocks).toBe(Number(s.blocks));
      expect(a.dev).toBe(Number(s.dev));
      expect(BigInt(a.mtime.sec) * 1_000_000_000n + BigInt(a.mtime.nsec)).toBe(s.mtimeNs);
      expect(BigInt(a.ctime.sec) * 1_000_000_000n + BigInt(a.ctime.nsec)).toBe(s.ctimeNs);
      expect(a.ino).toBe(Number(s.ino));
    }
  });

  it('gives node errors for missing names, lookups through files, bad names', async () => {
    await agree(() => fs.lstatSync(`${A}/nope`), () => L.lookup(ctx, ROOT_INO, 'nope'));
    const f = await walk(L, 'f');
    await agree(() => fs.lstatSync(`${A}/f/x`), () => L.lookup(ctx, f, 'x'));
    await agree(() => fs.lstatSync(`${A}/${'n'.repeat(256)}`), () => L.lookup(ctx, ROOT_INO, 'n'.repeat(256)));
    await rejectsWith(L.lookup(ctx, ROOT_INO, '..'), 'EINVAL');
    await rejectsWith(L.lookup(ctx, ROOT_INO, 'd/g'), 'EINVAL');
    await rejectsWith(L.getattr(ctx, 999999), 'ESTALE');
  });

  it('one inode per (dev, ino): repeated lookups share the ino and count', async () => {
    const a = await L.lookup(ctx, ROOT_INO, 'f');
    const b = await L.lookup(ctx, ROOT_INO, 'f');
    expect(b.ino).toBe(a.ino);
    expect(L.lookupCount(a.ino)).toBe(2);
    await L.forget(ctx, a.ino, 1);
    expect(L.liveInodes()).toBe(2);
    await L.forget(ctx, a.ino, 1);
    expect(L.liveInodes()).toBe(1);
    await rejectsWith(L.getattr(ctx, a.ino), 'ESTALE');
  });

  it('a table inode number handed out again never comes with a generation it had before', async () => {
    const seen = new Map<number, Set<number>>();
    for (let i = 0; i < 20; i++) {
      fs.writeFileSync(`${B}/g`, `${i}`);
      const e = await L.lookup(ctx, ROOT_INO, 'g');
      const gens = seen.get(e.ino) ?? new Set<number>();
      expect(gens.has(e.generation)).toBe(false);
      gens.add(e.generation);
      seen.set(e.ino, gens);
      await L.forget(ctx, e.ino, 1);
      fs.rmSync(`${B}/g`);
    }
    // The host reuses inode numbers (the table prefers them): some number came back.
    expect([...seen.values()].some((g) => g.size > 1)).toBe(true);
  });
});

describe('setattr', () => {
  it('chmod, chown, truncate and nanosecond utimens match the host', async () => {
    const f = await walk(L, 'f');
    const t = { sec: 1_600_000_000, nsec: 123_456_789 };
    const attr = await L.setattr(ctx, f, { mode: 0o4751, uid: 1234, gid: 4321, size: 3, atime: t, mtime: { sec: 5, nsec: 999_999_999 } });
    fs.chownSync(`${A}/f`, 1234, 4321);
    fs.chmodSync(`${A}/f`, 0o4751);
    fs.truncateSync(`${A}/f`, 3);
    const s = fs.lstatSync(`${B}/f`, { bigint: true });
    expect(attr.mode & 0o7777).toBe(Number(s.mode) & 0o7777);
    expect(Number(s.mode) & 0o7777).toBe(fs.lstatSync(`${A}/f`).mode & 0o7777);
    expect([attr.uid, attr.gid, attr.size]).toEqual([1234, 4321, 3]);
    expect(s.atimeNs).toBe(1_600_000_000_123_456_789n);
    expect(s.mtimeNs).toBe(5_999_999_999n);
    expect(fs.readFileSync(`${B}/f`, 'utf8')).toBe('hel');
  });

  it('passes UTIME_OMIT and UTIME_NOW through as they are', async () => {
    const f = await walk(L, 'f');
    await L.setattr(ctx, f, { atime: { sec: 10, nsec: 1 }, mtime: { sec: 20, nsec: 2 } });
    await L.setattr(ctx, f, { atime: { sec: 0, nsec: UTIME_OMIT }, mtime: { sec: 0, nsec: UTIME_NOW } });
    const s = fs.lstatSync(`${B}/f`, { bigint: true });
    expect(s.atimeNs).toBe(10_000_000_001n);
    expect(Number(s.mtimeNs / 1_000_000n)).toBeGreaterThan(Date.now() - 10_000);
    await rejectsWith(L.setattr(ctx, f, { mtime: { sec: 1, nsec: 1e9 } }), 'EINVAL');
  });

  it('symlinks: lchown and times work, chmod is EOPNOTSUPP; errors of node for dirs', async () => {
    const ln = await walk(L, 'ln');
    await L.setattr(ctx, ln, { uid: 7, gid: 8, mtime: { sec: 3, nsec: 4 } });
    const s = fs.lstatSync(`${B}/ln`, { bigint: true });
    expect([Number(s.uid), Number(s.gid), s.mtimeNs]).toEqual([7, 8, 3_000_000_004n]);
    expect(fs.statSync(`${B}/f`).uid).toBe(0);
    await rejectsWith(L.setattr(ctx, ln, { mode: 0o600 }), 'EOPNOTSUPP');
    const d = await walk(L, 'd');
    await agree(() => fs.truncateSync(`${A}/d`, 0), () => L.setattr(ctx, d, { size: 0 }));
  });

  it('checks the caller: chmod by a non-owner is EPERM, truncate without write is EACCES', async () => {
    const f = await walk(L, 'f');
    await rejectsWith(L.setattr(user, f, { mode: 0o777 }), 'EPERM');
    await rejectsWith(L.setattr(user, f, { size: 0 }), 'EACCES');
    await rejectsWith(L.setattr(user, f, { uid: 1000 }), 'EPERM');
    await rejectsWith(L.setattr(user, f, { mtime: { sec: 1, nsec: 0 } }), 'EPERM');
    await L.setattr(ctx, f, { uid: 1000 });
    await L.setattr(user, f, { mode: 0o600, mtime: { sec: 1, nsec: 0 } });
    expect(fs.statSync(`${B}/f`).mode & 0o7777).toBe(0o600);
  });
});

describe('creating and removing', () => {
  it('mkdir/mknod/symlink/create make what node makes, owned by the caller, umask applied', async () => {
    const c: RequestContext = { uid: 0, gid: 0, pid: 0, umask: 0o027 };
    await L.mkdir(c, ROOT_INO, 'nd', 0o777);
    fs.mkdirSync(`${A}/nd`, { mode: 0o750 });
    expect(fs.statSync(`${B}/nd`).mode).toBe(fs.statSync(`${A}/nd`).mode);
    const fifo = await L.mknod(ctx, ROOT_INO, 'fifo', S_IFIFO | 0o644, 0);
    expect(fifo.attr.mode & S_IFMT).toBe(S_IFIFO);
    expect(fs.lstatSync(`${B}/fifo`).isFIFO()).toBe(true);
    await L.mknod(ctx, ROOT_INO, 'sock', S_IFSOCK | 0o600, 0);
    expect(fs.lstatSync(`${B}/sock`).isSocket()).toBe(true);
    const dev = makedev(1, 3);
    const cd = await L.mknod(ctx, ROOT_INO, 'null', S_IFCHR | 0o666, dev);
    expect(cd.whiteout).toBeUndefined();
    expect(fs.lstatSync(`${B}/null`).rdev).toBe(dev);
    await L.mknod(ctx, ROOT_INO, 'blk', S_IFBLK | 0o600, makedev(7, 0));
    expect(fs.lstatSync(`${B}/blk`).isBlockDevice()).toBe(true);
    const reg = await L.mknod(ctx, ROOT_INO, 'reg', 0o640, 0);
    expect(reg.attr.mode).toBe(0o100640);
    const sl = await L.symlink(ctx, ROOT_INO, 'sl', '../x/y');
    expect(fs.readlinkSync(`${B}/sl`)).toBe('../x/y');
    expect(await L.readlink(ctx, sl.ino)).toBe('../x/y');
    const u = await L.mkdir(user, await walk(L, 'nd'), 'byuser', 0o755).catch((e: { code: string }) => e.code);
    expect(u).toBe('EACCES');
    fs.chmodSync(`${B}/nd`, 0o777);
    const owned = await L.mkdir(user, await walk(L, 'nd'), 'byuser', 0o755);
    expect([owned.attr.uid, owned.attr.gid]).toEqual([1000, 1000]);
    expect(fs.statSync(`${B}/nd/byuser`).uid).toBe(1000);
  });

  it('setgid directories pass their group on, as the kernel does', async () => {
    fs.chownSync(`${B}/d`, 0, 55);
    fs.chmodSync(`${B}/d`, 0o2777);
    const d = await walk(L, 'd');
    const sub = await L.mkdir(user, d, 'sg', 0o755);
    expect(sub.attr.gid).toBe(55);
    expect(sub.attr.mode & 0o2000).toBe(0o2000);
    const c = await L.create(user, d, 'file', 0o2755, OpenFlags.O_WRONLY);
    await L.release(user, c.entry.ino, c.fh);
    expect(c.entry.attr.gid).toBe(55);
    expect(c.entry.attr.mode & 0o2000).toBe(0);
  });

  it.skipIf(process.getuid?.() !== 0)('create by the process\'s own ids and by others: group from a set-gid directory or the caller, ENOENT in a removed directory (needs root to chown)', async () => {
    fs.chownSync(`${B}/d`, 0, 55);
    fs.chmodSync(`${B}/d`, 0o2777);
    const d = await walk(L, 'd');
    const rootOther: RequestContext = { uid: 0, gid: 77, pid: 0, umask: 0o022 };
    const made: Array<[RequestContext, number, string, number, [number, number, number]]> = [
      [ctx, d, 'a', 0o644, [0, 55, 0o644]],
      [ctx, ROOT_INO, 'b', 0o666, [0, 0, 0o644]],
      [rootOther, d, 'c', 0o644, [0, 55, 0o644]],
      [rootOther, ROOT_INO, 'e', 0o644, [0, 77, 0o644]],
      [ctx, d, 'g2', 0o2755, [0, 55, 0o2755]],
      [user, d, 'u', 0o644, [1000, 55, 0o644]],
    ];
    for (const [c, dir, name, mode, want] of made) {
      const r = await L.create(c, dir, name, mode, OpenFlags.O_WRONLY | OpenFlags.O_CREAT | OpenFlags.O_EXCL);
      await L.release(c, r.entry.ino, r.fh);
      const st = fs.statSync(`${B}/${dir === d ? 'd/' : ''}${name}`);
      expect([r.entry.attr.uid, r.entry.attr.gid, r.entry.attr.mode & 0o7777], name).toEqual(want);
      expect([st.uid, st.gid, st.mode & 0o7777], name).toEqual(want);
      await L.forget(c, r.entry.ino, 1);
    }
    const gone = await walk(L, 'full/x');
    await L.rmdir(ctx, await walk(L, 'full'), 'x');
    await rejectsWith(L.create(ctx, gone, 'n', 0o644, OpenFlags.O_WRONLY | OpenFlags.O_CREAT | OpenFlags.O_EXCL), 'ENOENT');
    await rejectsWith(L.create(ctx, gone, 'n', 0o644, OpenFlags.O_WRONLY | OpenFlags.O_CREAT), 'ENOENT');
  });

  it('errors of mkdir/mknod/symlink/link/unlink/rmdir are node\'s', async () => {
    const d = await walk(L, 'd');
    const f = await walk(L, 'f');
    await agree(() => fs.mkdirSync(`${A}/d`), () => L.mkdir(ctx, ROOT_INO, 'd', 0o755));
    await agree(() => fs.mkdirSync(`${A}/f/x`), () => L.mkdir(ctx, f, 'x', 0o755));
    await agree(() => fs.symlinkSync('t', `${A}/f`), () => L.symlink(ctx, ROOT_INO, 'f', 't'));
    await agree(() => fs.linkSync(`${A}/d`, `${A}/dl`), () => L.link(ctx, d, ROOT_INO, 'dl'));
    await agree(() => fs.linkSync(`${A}/f`, `${A}/d/g`), () => L.link(ctx, f, d, 'g'));
    await agree(() => fs.unlinkSync(`${A}/d`), () => L.unlink(ctx, ROOT_INO, 'd'));
    await agree(() => fs.unlinkSync(`${A}/nope`), () => L.unlink(ctx, ROOT_INO, 'nope'));
    await agree(() => fs.rmdirSync(`${A}/full`), () => L.rmdir(ctx, ROOT_INO, 'full'));
    await agree(() => fs.rmdirSync(`${A}/f`), () => L.rmdir(ctx, ROOT_INO, 'f'));
    await agree(() => fs.rmdirSync(`${A}/ln`), () => L.rmdir(ctx, ROOT_INO, 'ln'));
    await agree(() => fs.rmdirSync(`${A}/d/sub`), () => L.rmdir(ctx, d, 'sub'));
    await agree(() => fs.unlinkSync(`${A}/ln`), () => L.unlink(ctx, ROOT_INO, 'ln'));
    expect(fs.existsSync(`${B}/f`)).toBe(true);
    expect(fs.readdirSync(B).sort()).toEqual(fs.readdirSync(A).sort());
    await rejectsWith(L.mkdir(ctx, ROOT_INO, 'a/b', 0o755), 'EINVAL');
    await rejectsWith(L.mkdir(ctx, ROOT_INO, 'x'.repeat(256), 0o755), 'ENAMETOOLONG');
    await rejectsWith(L.symlink(ctx, ROOT_INO, 'e', ''), 'ENOENT');
    await rejectsWith(L.mknod(ctx, ROOT_INO, 'dd', 0o040755, 0), 'EPERM');
  });

  it('an unlinked inode still looked up keeps its attributes and xattrs until forgotten', async () => {
    fs.writeFileSync(`${B}/gone`, 'abc');
    const e = await L.lookup(ctx, ROOT_INO, 'gone');
    await L.setxattr(ctx, e.ino, 'user.k', Buffer.from('v'), 0);
    await L.unlink(ctx, ROOT_INO, 'gone');
    const a = await L.getattr(ctx, e.ino);
    expect(a.nlink).toBe(0);
    expect(a.size).toBe(3);
    expect(Buffer.from(await L.getxattr(ctx, e.ino, 'user.k')).toString()).toBe('v');
    expect(L.hostPath(e.ino)).toBeUndefined();
    await L.forget(ctx, e.ino, 1);
    expect(L.liveInodes()).toBe(1);
  });
});

describe('rename', () => {
  it('matches rename(2) errors and results', async () => {
    const d = await walk(L, 'd');
    await agree(() => fs.renameSync(`${A}/f`, `${A}/d`), () => L.rename(ctx, ROOT_INO, 'f', ROOT_INO, 'd', 0));
    await agree(() => fs.renameSync(`${A}/d`, `${A}/f`), () => L.rename(ctx, ROOT_INO, 'd', ROOT_INO, 'f', 0));
    await agree(() => fs.renameSync(`${A}/d`, `${A}/full`), () => L.rename(ctx, ROOT_INO, 'd', ROOT_INO, 'full', 0));
    const sub = await walk(L, 'd/sub');
    await agree(() => fs.renameSync(`${A}/d`, `${A}/d/sub/in`), () => L.rename(ctx, ROOT_INO, 'd', sub, 'in', 0));
    await agree(() => fs.renameSync(`${A}/nope`, `${A}/x`), () => L.rename(ctx, ROOT_INO, 'nope', ROOT_INO, 'x', 0));
    await agree(() => fs.renameSync(`${A}/f`, `${A}/d/g`), () => L.rename(ctx, ROOT_INO, 'f', d, 'g', 0));
    await agree(() => fs.renameSync(`${A}/d/sub`, `${A}/sub2`), () => L.rename(ctx, d, 'sub', ROOT_INO, 'sub2', 0));
    expect(fs.readFileSync(`${B}/d/g`, 'utf8')).toBe('hello world');
    expect(fs.readdirSync(B).sort()).toEqual(fs.readdirSync(A).sort());
    await rejectsWith(L.rename(ctx, ROOT_INO, 'ln', ROOT_INO, 'abs', RenameFlags.NOREPLACE), 'EEXIST');
    await rejectsWith(L.rename(ctx, ROOT_INO, 'ln', ROOT_INO, 'zz', RenameFlags.EXCHANGE), 'ENOENT');
    await rejectsWith(L.rename(ctx, ROOT_INO, 'ln', ROOT_INO, 'zz', RenameFlags.EXCHANGE | RenameFlags.NOREPLACE), 'EINVAL');
    await rejectsWith(L.rename(ctx, ROOT_INO, 'ln', ROOT_INO, 'zz', 64), 'EINVAL');
  });

  it('EXCHANGE swaps, WHITEOUT leaves a 0/0 char device (chardev format)', async () => {
    const L2 = new PassthroughLayer(B, { whiteoutFormat: 'chardev' });
    await L2.rename(ctx, ROOT_INO, 'f', ROOT_INO, 'd', RenameFlags.EXCHANGE);
    expect(fs.statSync(`${B}/f`).isDirectory()).toBe(true);
    expect(fs.readFileSync(`${B}/d`, 'utf8')).toBe('hello world');
    await L2.rename(ctx, ROOT_INO, 'd', ROOT_INO, 'moved', RenameFlags.WHITEOUT);
    const s = fs.lstatSync(`${B}/d`);
    expect(s.isCharacterDevice() && s.rdev === 0).toBe(true);
    expect(await L2.isWhiteout(ctx, ROOT_INO, 'd')).toBe(true);
    await L2.destroy();
  });

  it('checks the sticky bit for other callers', async () => {
    fs.chmodSync(`${B}/d`, 0o1777);
    const d = await walk(L, 'd');
    await rejectsWith(L.rename(user, d, 'g', d, 'h', 0), 'EPERM');
    await rejectsWith(L.unlink(user, d, 'g'), 'EPERM');
    fs.chownSync(`${B}/d/g`, 1000, 1000);
    await L.rename(user, d, 'g', d, 'h', 0);
    await L.unlink(user, d, 'h');
  });
});

describe('files', () => {
  it('open/read/write/append/truncate behave as node', async () => {
    const f = await walk(L, 'f');
    const h = await L.open(ctx, f, OpenFlags.O_RDWR | OpenFlags.O_APPEND);
    expect(await L.write(ctx, f, h.fh, Buffer.from('!'), 0)).toBe(1);
    await L.release(ctx, f, h.fh);
    fs.appendFileSync(`${A}/f`, '!');
    expect(fs.readFileSync(`${B}/f`, 'utf8')).toBe(fs.readFileSync(`${A}/f`, 'utf8'));
    const t = await L.open(ctx, f, OpenFlags.O_WRONLY | OpenFlags.O_TRUNC);
    await L.write(ctx, f, t.fh, Buffer.from('abc'), 5);
    await L.release(ctx, f, t.fh);
    expect(fs.readFileSync(`${B}/f`)).toEqual(Buffer.from('\0\0\0\0\0abc'));
    const r = await L.open(ctx, f, OpenFlags.O_RDONLY);
    expect(Buffer.from(await L.read(ctx, f, r.fh, 3, 5)).toString()).toBe('abc');
    expect((await L.read(ctx, f, r.fh, 10, 100)).length).toBe(0);
    await agree(() => fs.writeSync(fs.openSync(`${A}/f`, 'r'), 'x'), () => L.write(ctx, f, r.fh, Buffer.from('x'), 0));
    await L.release(ctx, f, r.fh);
    await rejectsWith(L.read(ctx, f, r.fh, 1, 0), 'EBADF');
    const d = await walk(L, 'd');
    await agree(() => fs.openSync(`${A}/d`, 'w'), () => L.open(ctx, d, OpenFlags.O_WRONLY));
    await rejectsWith(L.open(ctx, await walk(L, 'ln'), OpenFlags.O_RDONLY), 'ELOOP');
    await rejectsWith(L.open(user, f, OpenFlags.O_WRONLY), 'EACCES');
  });

  it('create honours O_EXCL and opens an existing file otherwise', async () => {
    await agree(() => fs.openSync(`${A}/f`, 'wx'), () => L.create(ctx, ROOT_INO, 'f', 0o644, OpenFlags.O_WRONLY | OpenFlags.O_CREAT | OpenFlags.O_EXCL));
    const c = await L.create(ctx, ROOT_INO, 'f', 0o644, OpenFlags.O_RDWR | OpenFlags.O_CREAT);
    expect(Buffer.from(await L.read(ctx, c.entry.ino, c.fh, 5, 0)).toString()).toBe('hello');
    await L.release(ctx, c.entry.ino, c.fh);
    await agree(() => fs.openSync(`${A}/d`, 'w'), () => L.create(ctx, ROOT_INO, 'd', 0o644, OpenFlags.O_WRONLY));
    const n = await L.create(ctx, ROOT_INO, 'new', 0o600, OpenFlags.O_WRONLY);
    expect(fs.statSync(`${B}/new`).mode & 0o777).toBe(0o600);
    await L.release(ctx, n.entry.ino, n.fh);
  });

  it('create, mkdir, mknod and symlink give EEXIST for every kind of existing name, before EACCES and EROFS, and make nothing', async () => {
    fs.chmodSync(B, 0o755);
    for (const dir of [A, B]) fs.symlinkSync('missing', `${dir}/dangling`);
    const excl = OpenFlags.O_WRONLY | OpenFlags.O_CREAT | OpenFlags.O_EXCL;
    const names = ['f', 'd', 'ln', 'abs', 'dangling'];
    const R = new PassthroughLayer(B, { writable: false });
    try {
      for (const name of names) {
        await agree(() => fs.openSync(`${A}/${name}`, 'wx'), () => L.create(ctx, ROOT_INO, name, 0o644, excl));
        // A caller who may not write the directory, and a read-only layer: EEXIST first.
        await rejectsWith(L.create(user, ROOT_INO, name, 0o644, excl), 'EEXIST');
        await rejectsWith(R.create(ctx, ROOT_INO, name, 0o644, excl), 'EEXIST');
        await agree(() => fs.mkdirSync(`${A}/${name}`), () => L.mkdir(ctx, ROOT_INO, name, 0o755));
        await agree(() => fs.symlinkSync('t', `${A}/${name}`), () => L.symlink(ctx, ROOT_INO, name, 't'));
        for (const who of [ctx, user]) {
          for (const layer of who === ctx ? [L, R] : [L]) {
            await rejectsWith(layer.mkdir(who, ROOT_INO, name, 0o755), 'EEXIST');
            await rejectsWith(layer.symlink(who, ROOT_INO, name, 't'), 'EEXIST');
            await rejectsWith(layer.mknod(who, ROOT_INO, name, S_IFIFO | 0o644, 0), 'EEXIST');
          }
        }
      }
      await rejectsWith(L.create(user, ROOT_INO, 'absent', 0o644, excl), 'EACCES');
      await rejectsWith(R.create(ctx, ROOT_INO, 'absent', 0o644, excl), 'EROFS');
      await rejectsWith(L.mkdir(user, ROOT_INO, 'absent', 0o755), 'EACCES');
      await rejectsWith(R.mkdir(ctx, ROOT_INO, 'absent', 0o755), 'EROFS');
      // Without O_EXCL a symlink is not followed and a directory is not opened for writing.
      await rejectsWith(L.create(ctx, ROOT_INO, 'dangling', 0o644, OpenFlags.O_WRONLY | OpenFlags.O_CREAT), 'ELOOP');
      await rejectsWith(L.create(ctx, ROOT_INO, 'd', 0o644, OpenFlags.O_WRONLY | OpenFlags.O_CREAT), 'EISDIR');
      if (process.getuid?.() === 0) {
        await L.createWhiteout(ctx, ROOT_INO, 'w');
        await rejectsWith(L.create(ctx, ROOT_INO, 'w', 0o644, excl), 'EEXIST');
        await rejectsWith(L.mkdir(ctx, ROOT_INO, 'w', 0o755), 'EEXIST');
        await rejectsWith(L.symlink(ctx, ROOT_INO, 'w', 't'), 'EEXIST');
        expect(await L.isWhiteout(ctx, ROOT_INO, 'w')).toBe(true);
        fs.unlinkSync(`${B}/w`);
      }
    } finally {
      await R.destroy();
    }
    expect(fs.readdirSync(B).sort()).toEqual(fs.readdirSync(A).sort());
    expect(fs.readlinkSync(`${B}/dangling`)).toBe('missing');
    expect(fs.statSync(`${B}/f`).size).toBe(11);
  });

  it.skipIf(process.getuid?.() !== 0)('a truncating open or create of an existing set-id file by its unprivileged owner drops the set-id bits (needs root to chown)', async () => {
    fs.chmodSync(B, 0o755);
    fs.writeFileSync(`${B}/s`, 'data');
    fs.chownSync(`${B}/s`, 1000, 1000);
    fs.chmodSync(`${B}/s`, 0o6755);
    const s = await walk(L, 's');
    const o = await L.open(user, s, OpenFlags.O_WRONLY | OpenFlags.O_TRUNC);
    await L.release(user, s, o.fh);
    expect(fs.statSync(`${B}/s`).mode & 0o7777).toBe(0o755);
    expect(fs.statSync(`${B}/s`).size).toBe(0);
    fs.writeFileSync(`${B}/s`, 'data');
    fs.chmodSync(`${B}/s`, 0o6755);
    const c = await L.create(user, ROOT_INO, 's', 0o644, OpenFlags.O_WRONLY | OpenFlags.O_CREAT | OpenFlags.O_TRUNC);
    await L.release(user, c.entry.ino, c.fh);
    expect(c.entry.attr.mode & 0o7777).toBe(0o755);
    expect(fs.statSync(`${B}/s`).mode & 0o7777).toBe(0o755);
    expect(fs.statSync(`${B}/s`).size).toBe(0);
  });

  it('fallocate, lseek SEEK_DATA/SEEK_HOLE and copyFileRange on the host', async () => {
    const c = await L.create(ctx, ROOT_INO, 'sparse', 0o644, OpenFlags.O_RDWR);
    const ino = c.entry.ino;
    await L.fallocate(ctx, ino, c.fh, 0, 0, 1 << 20);
    expect(fs.statSync(`${B}/sparse`).size).toBe(1 << 20);
    await L.write(ctx, ino, c.fh, Buffer.alloc(131072, 7), 0);
    await L.fallocate(ctx, ino, c.fh, FallocateMode.PUNCH_HOLE | FallocateMode.KEEP_SIZE, 65536, 65536);
    expect(await L.lseek(ctx, ino, c.fh, 0, Whence.SEEK_DATA)).toBe(0);
    expect(await L.lseek(ctx, ino, c.fh, 0, Whence.SEEK_HOLE)).toBe(65536);
    await rejectsWith(L.lseek(ctx, ino, c.fh, 2 << 20, Whence.SEEK_DATA), 'ENXIO');
    await rejectsWith(L.fallocate(ctx, ino, c.fh, FallocateMode.PUNCH_HOLE, 0, 10), 'EOPNOTSUPP');
    const o = await L.create(ctx, ROOT_INO, 'copy', 0o644, OpenFlags.O_RDWR);
    expect(await L.copyFileRange(ctx, ino, c.fh, 0, o.entry.ino, o.fh, 10, 4096, 0)).toBe(4096);
    expect(fs.readFileSync(`${B}/copy`).subarray(10, 4106)).toEqual(Buffer.alloc(4096, 7));
    await L.fsync(ctx, ino, c.fh, false);
    await L.fsync(ctx, ino, c.fh, true);
    await L.flush(ctx, ino, c.fh);
    await L.release(ctx, ino, c.fh);
    await L.release(ctx, o.entry.ino, o.fh);
  });
});

describe('directories, statfs, access', () => {
  it('readdir without attributes reports the numbers, types and whiteouts readdir plus and lookup report', async () => {
    const d = await walk(L, 'd');
    fs.symlinkSync('f', `${B}/d/ln`);
    execFileSync('mkfifo', [`${B}/d/pipe`]);
    await L.createWhiteout(ctx, d, 'gone');
    const held = await L.lookup(ctx, d, 'sub');
    const list = async (plus: boolean) => {
      const h = await L.opendir(ctx, d);
      try { return await L.readdir(ctx, d, h.fh, 0, plus); } finally { await L.releasedir(ctx, d, h.fh); }
    };
    const bare = await list(false);
    const plus = await list(true);
    const strip = (e: DirEntry) => ({ name: e.name, ino: e.ino, type: e.type, whiteout: e.whiteout ?? false, offset: e.offset });
    expect(bare.map(strip)).toEqual(plus.map(strip));
    expect(bare.map((e) => [e.name, e.type, e.whiteout ?? false])).toEqual(expect.arrayContaining([
      ['sub', 'directory', false], ['ln', 'symlink', false], ['pipe', 'fifo', false], ['gone', 'chardev', true],
    ]));
    expect(bare.find((e) => e.name === 'sub')!.ino).toBe(held.ino);
    for (const e of bare) {
      const x = await L.lookup(ctx, d, e.name);
      expect([e.name, x.ino]).toEqual([e.name, e.ino]);
      await L.forget(ctx, x.ino, 1);
    }
  });


  it('readdir lists what readdir(3) lists, with attrs for plus, stable offsets', async () => {
    fs.writeFileSync(`${B}/d/h`, '');
    const d = await walk(L, 'd');
    const h = await L.opendir(ctx, d);
    const all = await L.readdir(ctx, d, h.fh, 0, true);
    expect(all.map((e) => e.name)).toEqual(fs.readdirSync(`${B}/d`).sort());
    for (const e of all) {
      const s = fs.lstatSync(`${B}/d/${e.name}`);
      expect(e.attr!.ino).toBe(s.ino);
      expect(e.ino).toBe(s.ino);
      expect(e.type).toBe(s.isDirectory() ? 'directory' : 'file');
    }
    const rest = await L.readdir(ctx, d, h.fh, all[0]!.offset, false);
    expect(rest.map((e) => e.name)).toEqual(all.slice(1).map((e) => e.name));
    expect(await L.readdir(ctx, d, h.fh, all.length, false)).toEqual([]);
    await L.fsyncdir(ctx, d, h.fh, false);
    await L.releasedir(ctx, d, h.fh);
    await rejectsWith(L.opendir(ctx, await walk(L, 'f')), 'ENOTDIR');
    fs.chmodSync(`${B}/d`, 0o700);
    await rejectsWith(L.opendir(user, d), 'EACCES');
    await rejectsWith(L.lookup(user, d, 'g'), 'EACCES');
  });

  it('statfs is the host statfs; access checks the caller', async () => {
    const s = await L.statfs(ctx, ROOT_INO);
    const n = fs.statfsSync(B);
    expect(s.bsize).toBe(n.bsize);
    expect(s.blocks).toBe(n.blocks);
    expect(s.files).toBe(n.files);
    expect(s.namemax).toBe(255);
    const f = await walk(L, 'f');
    fs.chmodSync(`${B}/f`, 0o640);
    await L.access(ctx, f, AccessMode.R_OK | AccessMode.W_OK);
    await rejectsWith(L.access(ctx, f, AccessMode.X_OK), 'EACCES');
    await rejectsWith(L.access(user, f, AccessMode.R_OK), 'EACCES');
    await L.access(user, f, AccessMode.F_OK);
  });
});

describe('xattrs', () => {
  const getfattr = (p: string, name: string) => execFileSync('getfattr', ['-h', '--only-values', '-n', name, p]).toString();

  it('user., trusted. and security. round-trip with the host (attr tools agree)', async () => {
    const f = await walk(L, 'f');
    await L.setxattr(ctx, f, 'user.a', Buffer.from('1'), 0);
    await L.setxattr(ctx, f, 'trusted.b', Buffer.from('2'), 0);
    await L.setxattr(ctx, f, 'security.c', Buffer.from('3'), 0);
    expect(getfattr(`${B}/f`, 'user.a')).toBe('1');
    expect(getfattr(`${B}/f`, 'trusted.b')).toBe('2');
    execFileSync('setfattr', ['-n', 'user.z', '-v', 'zz', `${B}/f`]);
    expect(Buffer.from(await L.getxattr(ctx, f, 'user.z')).toString()).toBe('zz');
    expect((await L.listxattr(ctx, f)).sort()).toEqual(expect.arrayContaining(['security.c', 'trusted.b', 'user.a', 'user.z']));
    await rejectsWith(L.setxattr(ctx, f, 'user.a', Buffer.from('x'), XattrFlags.CREATE), 'EEXIST');
    await rejectsWith(L.setxattr(ctx, f, 'user.q', Buffer.from('x'), XattrFlags.REPLACE), 'ENODATA');
    await rejectsWith(L.getxattr(ctx, f, 'user.nope'), 'ENODATA');
    await L.removexattr(ctx, f, 'user.a');
    await rejectsWith(L.removexattr(ctx, f, 'user.a'), 'ENODATA');
    await rejectsWith(L.setxattr(ctx, f, 'bogus.a', Buffer.from('x'), 0), 'EOPNOTSUPP');
    const ln = await walk(L, 'ln');
    await L.setxattr(ctx, ln, 'trusted.l', Buffer.from('on-link'), 0);
    expect(getfattr(`${B}/ln`, 'trusted.l')).toBe('on-link');
    await rejectsWith(L.getxattr(ctx, await walk(L, 'abs'), 'user.a'), 'ENODATA');
    const root = await L.listxattr(ctx, ROOT_INO);
    expect(Array.isArray(root)).toBe(true);
  });

  it('checks the caller: trusted. is root-only, user. needs write permission', async () => {
    const f = await walk(L, 'f');
    await L.setxattr(ctx, f, 'trusted.t', Buffer.from('x'), 0);
    await rejectsWith(L.setxattr(user, f, 'trusted.t', Buffer.from('x'), 0), 'EPERM');
    await rejectsWith(L.getxattr(user, f, 'trusted.t'), 'ENODATA');
    expect(await L.listxattr(user, f)).not.toContain('trusted.t');
    await rejectsWith(L.setxattr(user, f, 'user.t', Buffer.from('x'), 0), 'EACCES');
  });
});

describe('read-only layers', () => {
  it('refuse every change with EROFS and still read', async () => {
    const R = new PassthroughLayer(B, { writable: false });
    const f = await walk(R, 'f');
    const d = await walk(R, 'd');
    expect(R.writable).toBe(false);
    await rejectsWith(R.mkdir(ctx, ROOT_INO, 'x', 0o755), 'EROFS');
    await rejectsWith(R.mkdir(ctx, ROOT_INO, 'd', 0o755), 'EEXIST');
    await rejectsWith(R.unlink(ctx, ROOT_INO, 'f'), 'EROFS');
    await rejectsWith(R.rmdir(ctx, d, 'sub'), 'EROFS');
    await rejectsWith(R.rename(ctx, ROOT_INO, 'f', ROOT_INO, 'g', 0), 'EROFS');
    await rejectsWith(R.setattr(ctx, f, { mode: 0o600 }), 'EROFS');
    await rejectsWith(R.setxattr(ctx, f, 'user.x', Buffer.from('1'), 0), 'EROFS');
    await rejectsWith(R.open(ctx, f, OpenFlags.O_WRONLY), 'EROFS');
    await rejectsWith(R.create(ctx, ROOT_INO, 'n', 0o644, OpenFlags.O_WRONLY), 'EROFS');
    await rejectsWith(R.link(ctx, f, ROOT_INO, 'f2'), 'EROFS');
    await rejectsWith(R.symlink(ctx, ROOT_INO, 's', 't'), 'EROFS');
    await rejectsWith(R.createWhiteout(ctx, ROOT_INO, 'w'), 'EROFS');
    await rejectsWith(R.setOpaque(ctx, d, true), 'EROFS');
    await rejectsWith(R.access(ctx, f, AccessMode.W_OK), 'EROFS');
    const h = await R.open(ctx, f, OpenFlags.O_RDONLY);
    expect(Buffer.from(await R.read(ctx, f, h.fh, 5, 0)).toString()).toBe('hello');
    await R.release(ctx, f, h.fh);
    await R.destroy();
  });
});

describe('regressions found by the model-based suite', () => {
  it('renaming a directory onto a file inside itself is EINVAL before ENOTDIR (as rename(2))', async () => {
    fs.mkdirSync(`${A}/a`);
    fs.writeFileSync(`${A}/a/c`, '');
    fs.mkdirSync(`${B}/a`);
    fs.writeFileSync(`${B}/a/c`, '');
    const a = await walk(L, 'a');
    await agree(() => fs.renameSync(`${A}/a`, `${A}/a/c`), () => L.rename(ctx, ROOT_INO, 'a', a, 'c', 0));
    await agree(() => fs.renameSync(`${A}/a/c`, `${A}/a`), () => L.rename(ctx, a, 'c', ROOT_INO, 'a', 0));
    await rejectsWith(L.rename(ctx, ROOT_INO, 'a', a, 'c', 0), 'EINVAL');
  });
});
