/**
 * The koffi libc bindings: each call returns what the syscall returns and throws an FsError
 * with the real errno and the call's name; calls the platform lacks throw ENOSYS instead of
 * crashing; statx decodes the same attributes Node's lstat reports; rlimits round-trip.
 */
import { afterAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import { execFileSync } from 'node:child_process';
import { FsError } from '@layerfs/core';
import { libc } from '../src/index.js';
import { removeDir, tempDir } from './helpers.js';

const dir = tempDir('libc');
afterAll(() => removeDir(dir));

function thrown(f: () => unknown): FsError {
  try { f(); } catch (e) { expect(e).toBeInstanceOf(FsError); return e as FsError; }
  throw new Error('did not throw');
}

describe('libc bindings', () => {
  it('statx decodes what lstat reports', () => {
    fs.writeFileSync(`${dir}/f`, 'abc');
    fs.utimesSync(`${dir}/f`, 1, 2.5);
    const s = libc.statx(libc.AT_FDCWD, `${dir}/f`, libc.AT_SYMLINK_NOFOLLOW);
    const n = fs.lstatSync(`${dir}/f`, { bigint: true });
    expect([BigInt(s.inoKey), BigInt(s.dev), BigInt(s.mode), BigInt(s.size), BigInt(s.nlink), BigInt(s.blocks)]).toEqual([n.ino, n.dev, n.mode, n.size, n.nlink, n.blocks]);
    expect(BigInt(s.mtime.sec) * 1_000_000_000n + BigInt(s.mtime.nsec)).toBe(n.mtimeNs);
    expect(s.mtime).toEqual({ sec: 2, nsec: 500_000_000 });
    expect(s.ino).toBe(Number(n.ino));
    libc.utimensat(libc.AT_FDCWD, `${dir}/f`, { sec: -2, nsec: 750_000_000 }, { sec: 2 ** 33, nsec: 0 }, 0);
    const t = libc.statx(libc.AT_FDCWD, `${dir}/f`, 0);
    expect([t.atime, t.mtime]).toEqual([{ sec: -2, nsec: 750_000_000 }, { sec: 2 ** 33, nsec: 0 }]);
  });

  it('errors carry the real errno and the call', () => {
    const e = thrown(() => libc.mkdirat(libc.AT_FDCWD, `${dir}/nope/x`, 0o755));
    expect([e.code, e.errno, e.syscall]).toEqual(['ENOENT', -2, 'mkdirat']);
    fs.mkdirSync(`${dir}/d`);
    expect(thrown(() => libc.mkdirat(libc.AT_FDCWD, `${dir}/d`, 0o755)).code).toBe('EEXIST');
    expect(thrown(() => libc.unlinkat(libc.AT_FDCWD, `${dir}/d`, 0)).code).toBe('EISDIR');
    expect(thrown(() => libc.lgetxattr(`${dir}/f`, 'user.none')).code).toBe('ENODATA');
    expect(thrown(() => libc.renameat2(libc.AT_FDCWD, `${dir}/f`, libc.AT_FDCWD, `${dir}/d`, 1)).code).toBe('EEXIST');
    expect(thrown(() => libc.openat2(libc.AT_FDCWD, '/etc', libc.O.PATH, libc.RESOLVE.BENEATH)).code).toBe('EXDEV');
    expect(thrown(() => libc.readlinkat(libc.AT_FDCWD, `${dir}/f`)).code).toBe('EINVAL');
  });

  it('a call the platform lacks is ENOSYS, not a crash', () => {
    const e = thrown(() => libc.clonefile(`${dir}/f`, `${dir}/g`));
    expect(e.code).toBe(process.platform === 'darwin' ? e.code : 'ENOSYS');
  });

  it('statxIfExists is undefined for a missing name and throws every other error', () => {
    fs.writeFileSync(`${dir}/present`, 'x');
    expect(libc.statxIfExists(libc.AT_FDCWD, `${dir}/absent`, libc.AT_SYMLINK_NOFOLLOW)).toBeUndefined();
    expect(libc.statxIfExists(libc.AT_FDCWD, `${dir}/present`, libc.AT_SYMLINK_NOFOLLOW)?.size).toBe(1);
    const e = thrown(() => libc.statxIfExists(libc.AT_FDCWD, `${dir}/present/x`, libc.AT_SYMLINK_NOFOLLOW));
    expect([e.code, e.syscall]).toEqual(['ENOTDIR', 'statx']);
  });

  it('readdirAt lists what readdir(3) lists, with d_ino and d_type, over many getdents64 batches', () => {
    const d = `${dir}/list`;
    fs.mkdirSync(d);
    // ~3,000 entries of ~220 bytes each: several 64 KiB getdents64 batches.
    const many = Array.from({ length: 3000 }, (_, i) => `${String(i).padStart(5, '0')}-${'é'.repeat(100)}`);
    for (const n of many) fs.writeFileSync(`${d}/${n}`, '');
    fs.mkdirSync(`${d}/sub`);
    fs.symlinkSync('nowhere', `${d}/link`);
    execFileSync('mkfifo', [`${d}/fifo`]);
    const fd = libc.openat(libc.AT_FDCWD, d, libc.O.PATH | libc.O.DIRECTORY);
    try {
      const ents = libc.readdirAt(fd);
      expect(ents.map((x) => x.name).sort()).toEqual(fs.readdirSync(d).sort());
      const types: Record<string, number> = { sub: libc.DT.DIR, link: libc.DT.LNK, fifo: libc.DT.FIFO, [many[7]!]: libc.DT.REG };
      for (const x of ents) {
        const st = fs.lstatSync(`${d}/${x.name}`, { bigint: true });
        expect(BigInt(x.inoKey)).toBe(st.ino);
        expect(x.ino).toBe(Number(st.ino));
        if (types[x.name] !== undefined) expect(x.type).toBe(types[x.name]);
      }
      fs.rmSync(d, { recursive: true });
      // Removed while we hold a descriptor: empty, as readdir(3) reports it.
      expect(libc.readdirAt(fd)).toEqual([]);
    } finally {
      fs.closeSync(fd);
    }
  });

  it('xattrs, utimensat with nanoseconds, rlimits', () => {
    libc.lsetxattr(`${dir}/f`, 'user.k', Buffer.from('v'), 0);
    expect(libc.llistxattr(`${dir}/f`)).toContain('user.k');
    expect(libc.lgetxattr(`${dir}/f`, 'user.k').toString()).toBe('v');
    libc.lremovexattr(`${dir}/f`, 'user.k');
    libc.utimensat(libc.AT_FDCWD, `${dir}/f`, { sec: 3, nsec: 4 }, { sec: 5, nsec: 6 }, 0);
    expect(fs.statSync(`${dir}/f`, { bigint: true }).mtimeNs).toBe(5_000_000_006n);
    const lim = libc.getrlimit(libc.RLIMIT_NOFILE);
    expect(lim.soft).toBeLessThanOrEqual(lim.hard);
    libc.setrlimit(libc.RLIMIT_NOFILE, lim);
    expect(libc.getrlimit(libc.RLIMIT_NOFILE)).toEqual(lim);
  });
});
