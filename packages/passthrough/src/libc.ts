/**
 * The libc calls Node's `fs` lacks (or only offers on string paths), bound through koffi:
 * one function per call, each loaded lazily on first use and each throwing an `FsError`
 * with the real errno (`koffi.errno()`) and the call's name as `syscall`. On a platform
 * without a call the function throws ENOSYS (or EOPNOTSUPP for a missing feature), never
 * crashes. Metadata calls are synchronous: a koffi call costs ~2.4 µs against ~80 µs for
 * `fs.promises.lstat` on this machine (see `bench/fstatat.mjs`); the data calls that can wait
 * on a disk (`fallocateAsync`, `copyFileRangeAsync`) run on libuv's pool. The calls only ever
 * touch host paths, never a FUSE mount served by this process.
 *
 * Linux x86-64/arm64 layouts: `struct statx` (arch independent), `struct statvfs` and
 * `struct rlimit` of 64-bit glibc.
 */
import koffi, { type LibraryHandle } from 'koffi';
import { FsError, codeOf, type ErrnoCode, type Timespec } from '@layerfs/core';

type Fn = (...args: unknown[]) => unknown;

const IS_LINUX = process.platform === 'linux';
const IS_DARWIN = process.platform === 'darwin';

let library: LibraryHandle | null | undefined;
function lib(): LibraryHandle | null {
  if (library === undefined) {
    try {
      library = koffi.load(IS_DARWIN ? '/usr/lib/libSystem.B.dylib' : IS_LINUX ? 'libc.so.6' : 'libc.so');
    } catch {
      library = null;
    }
  }
  return library;
}

const bound = new Map<string, Fn | null>();
/** The koffi function for `decl` (cached; null when the platform lacks it). */
function fn(name: string, decl: string, platforms: 'linux' | 'darwin' | 'any' = 'linux'): Fn {
  let f = bound.get(name);
  if (f === undefined) {
    f = null;
    const ok = platforms === 'any' || (platforms === 'linux' && IS_LINUX) || (platforms === 'darwin' && IS_DARWIN);
    const l = ok ? lib() : null;
    if (l) {
      try { f = l.func(decl) as Fn; } catch { f = null; }
    }
    bound.set(name, f);
  }
  if (f === null) throw new FsError('ENOSYS', { syscall: name, detail: `${name} is not available on ${process.platform}` });
  return f;
}

/**
 * Throw the FsError for the errno of the last koffi call: a bare one (no stack frames), as
 * most are caught inside the layer (ENOENT probes) and cost ~5 µs more with a stack.
 */
function fail(syscall: string): never {
  const e = koffi.errno();
  const code: ErrnoCode = codeOf(e) ?? 'EIO';
  throw FsError.bare(code, { syscall });
}

function check(r: unknown, syscall: string): number {
  const n = Number(r);
  if (n < 0) fail(syscall);
  return n;
}

/** `AT_FDCWD`. */
export const AT_FDCWD = -100;
/** Do not follow a trailing symlink. */
export const AT_SYMLINK_NOFOLLOW = 0x100;
/** `unlinkat`: remove a directory. */
export const AT_REMOVEDIR = 0x200;
/** Operate on the descriptor itself when the path is empty. */
export const AT_EMPTY_PATH = 0x1000;
/** Open flags used by the layer (Linux values). */
export const O = {
  RDONLY: 0, WRONLY: 1, RDWR: 2, CREAT: 0o100, EXCL: 0o200, NOCTTY: 0o400, TRUNC: 0o1000,
  APPEND: 0o2000, NONBLOCK: 0o4000, DIRECTORY: 0o200000, NOFOLLOW: 0o400000, CLOEXEC: 0o2000000,
  PATH: 0o10000000,
} as const;
/** `openat2` resolve flags. */
export const RESOLVE = { NO_XDEV: 0x01, NO_MAGICLINKS: 0x02, NO_SYMLINKS: 0x04, BENEATH: 0x08, IN_ROOT: 0x10 } as const;

/** What `statx` reports, with host ids (not mapped) and nanosecond times. */
export interface HostStat {
  /** Device of the filesystem holding the inode (glibc `dev_t` encoding). */
  dev: number;
  /** Host inode number (exact up to 2^53; see `inoKey`). */
  ino: number;
  /** Host inode number as an exact decimal string (part of the identity key). */
  inoKey: string;
  /** Type and permission bits. */
  mode: number;
  /** Hard links. */
  nlink: number;
  /** Host owner. */
  uid: number;
  /** Host group. */
  gid: number;
  /** Device number of a char/block device (glibc encoding). */
  rdev: number;
  /** Size in bytes. */
  size: number;
  /** 512-byte blocks. */
  blocks: number;
  /** Preferred I/O size. */
  blksize: number;
  /** Access time. */
  atime: Timespec;
  /** Modification time. */
  mtime: Timespec;
  /** Status change time. */
  ctime: Timespec;
  /** Birth time, when the filesystem reports one. */
  birthtime?: Timespec;
}

/** glibc's `makedev`. */
export function gnuMakedev(major: number, minor: number): number {
  return (major & 0xfffff000) * 2 ** 32 + (major & 0xfff) * 256 + (minor & 0xffffff00) * 4096 + (minor & 0xff);
}

const STATX_BUF = Buffer.alloc(256);
/** ENOENT (2 on Linux and macOS). */
const ENOENT = 2;
const STATX_BASIC_AND_BTIME = 0xfff;
const STATX_BTIME = 0x800;

function ts(buf: Buffer, off: number): Timespec {
  return { sec: buf.readInt32LE(off + 4) * 4294967296 + buf.readUInt32LE(off), nsec: buf.readUInt32LE(off + 8) };
}

/** An unsigned 64-bit field as a number (exact below 2^53). */
function u64(buf: Buffer, off: number): number {
  return buf.readUInt32LE(off + 4) * 4294967296 + buf.readUInt32LE(off);
}

let statxFn: Fn | undefined;
/** Call statx into STATX_BUF; returns the raw result (-1 with errno set on failure). */
function rawStatx(dirfd: number, path: string, flags: number): number {
  statxFn ??= fn('statx', 'int statx(int dirfd, const char *path, int flags, unsigned int mask, _Out_ uint8_t *buf)');
  return statxFn(dirfd, path, flags, STATX_BASIC_AND_BTIME, STATX_BUF) as number;
}

function decodeStatx(b: Buffer): HostStat {
  const mask = b.readUInt32LE(0);
  const st: HostStat = {
    blksize: b.readUInt32LE(4),
    nlink: b.readUInt32LE(16),
    uid: b.readUInt32LE(20),
    gid: b.readUInt32LE(24),
    mode: b.readUInt16LE(28),
    ino: u64(b, 32),
    inoKey: b.readUInt32LE(36) < 0x200000 ? String(u64(b, 32)) : b.readBigUInt64LE(32).toString(),
    size: u64(b, 40),
    blocks: u64(b, 48),
    atime: ts(b, 64),
    ctime: ts(b, 96),
    mtime: ts(b, 112),
    rdev: gnuMakedev(b.readUInt32LE(128), b.readUInt32LE(132)),
    dev: gnuMakedev(b.readUInt32LE(136), b.readUInt32LE(140)),
  };
  if (mask & STATX_BTIME) st.birthtime = ts(b, 80);
  return st;
}

/** `statx(dirfd, path, flags)` decoded; `flags` usually AT_SYMLINK_NOFOLLOW or AT_EMPTY_PATH. */
export function statx(dirfd: number, path: string, flags: number): HostStat {
  if (rawStatx(dirfd, path, flags) < 0) fail('statx');
  return decodeStatx(STATX_BUF);
}

/**
 * `statx` that returns undefined for a name that does not exist (ENOENT) instead of throwing:
 * the probe a union makes in every layer for every name, so the common miss makes no error.
 */
export function statxIfExists(dirfd: number, path: string, flags: number): HostStat | undefined {
  if (rawStatx(dirfd, path, flags) < 0) {
    if (koffi.errno() === ENOENT) return undefined;
    fail('statx');
  }
  return decodeStatx(STATX_BUF);
}

/** `d_type` values of `getdents64`. */
export const DT = { UNKNOWN: 0, FIFO: 1, CHR: 2, DIR: 4, BLK: 6, REG: 8, LNK: 10, SOCK: 12 } as const;

/** One directory entry as `getdents64` reports it (no `.` or `..`). */
export interface HostDirent {
  /** The name (UTF-8 decoded, as `fs.readdir` gives it). */
  name: string;
  /** `d_ino` (exact up to 2^53; see `inoKey`). */
  ino: number;
  /** `d_ino` as an exact decimal string. */
  inoKey: string;
  /** `d_type` (`DT.*`; `DT.UNKNOWN` where the filesystem does not say). */
  type: number;
}

const DENTS_BUF = Buffer.alloc(64 * 1024);
/**
 * The entries of the directory `dirfd` (an `O_PATH` descriptor is fine: `.` is opened from
 * it for reading; a removed directory lists as empty) with their inode numbers and types, from `getdents64`: the same cost as
 * `fs.readdirSync`, plus what lets a listing skip a `statx` per entry.
 */
export function readdirAt(dirfd: number): HostDirent[] {
  const f = fn('getdents64', 'intptr_t getdents64(int fd, _Out_ uint8_t *buf, size_t count)');
  const fd = openat(dirfd, '.', O.RDONLY | O.DIRECTORY);
  const out: HostDirent[] = [];
  try {
    const b = DENTS_BUF;
    for (;;) {
      const n = Number(f(fd, b, b.length));
      // A removed directory reads as ENOENT: it is empty (glibc's readdir says the same).
      if (n < 0 && koffi.errno() === ENOENT) break;
      if (n < 0) fail('scandir');
      if (n === 0) break;
      for (let off = 0; off < n;) {
        const reclen = b.readUInt16LE(off + 16);
        const start = off + 19;
        let end = b.indexOf(0, start);
        if (end < 0 || end > off + reclen) end = off + reclen;
        // '.' and '..' (0x2e, 0x2e 0x2e)
        const dot = b[start] === 0x2e && (end === start + 1 || (end === start + 2 && b[start + 1] === 0x2e));
        if (!dot) {
          const hi = b.readUInt32LE(off + 4);
          out.push({
            name: b.toString('utf8', start, end),
            ino: hi * 4294967296 + b.readUInt32LE(off),
            inoKey: hi < 0x200000 ? String(hi * 4294967296 + b.readUInt32LE(off)) : b.readBigUInt64LE(off).toString(),
            type: b[off + 18]!,
          });
        }
        off += reclen;
      }
    }
  } finally {
    closeFd(fd);
  }
  return out;
}

let closeFn: Fn | undefined;
/** `close(fd)`, ignoring errors (the descriptor is gone either way on Linux). */
function closeFd(fd: number): void {
  closeFn ??= fn('close', 'int close(int fd)', 'any');
  closeFn(fd);
}

/** `openat(dirfd, path, flags, mode)`; returns the descriptor. */
export function openat(dirfd: number, path: string, flags: number, mode = 0): number {
  const f = fn('openat', 'int openat(int dirfd, const char *path, int flags, uint32_t mode)');
  return check(f(dirfd, path, flags | O.CLOEXEC, mode), 'openat');
}

let openat2Missing = false;
const HOW = Buffer.alloc(24);
/**
 * `openat2(dirfd, path, {flags, mode, resolve})`; returns the descriptor. ENOSYS where the
 * kernel (< 5.6) or platform lacks it.
 */
export function openat2(dirfd: number, path: string, flags: number, resolve: number, mode = 0): number {
  if (openat2Missing) throw new FsError('ENOSYS', { syscall: 'openat2' });
  const f = fn('syscall_openat2', 'long syscall(long nr, int dirfd, const char *path, void *how, size_t size)');
  HOW.writeBigUInt64LE(BigInt(flags | O.CLOEXEC), 0);
  HOW.writeBigUInt64LE(BigInt(mode), 8);
  HOW.writeBigUInt64LE(BigInt(resolve), 16);
  const nr = process.arch === 'x64' || process.arch === 'arm64' ? 437 : -1;
  if (nr < 0) { openat2Missing = true; throw new FsError('ENOSYS', { syscall: 'openat2' }); }
  const r = Number(f(nr, dirfd, path, HOW, 24));
  if (r < 0) {
    if (koffi.errno() === 38) openat2Missing = true;
    fail('openat2');
  }
  return r;
}

/** `mkdirat(dirfd, path, mode)`. */
export function mkdirat(dirfd: number, path: string, mode: number): void {
  check(fn('mkdirat', 'int mkdirat(int dirfd, const char *path, uint32_t mode)')(dirfd, path, mode), 'mkdirat');
}

/** `mknodat(dirfd, path, mode, dev)` (fifos, sockets, devices, 0/0 whiteouts). */
export function mknodat(dirfd: number, path: string, mode: number, dev: number): void {
  check(fn('mknodat', 'int mknodat(int dirfd, const char *path, uint32_t mode, uint64_t dev)')(dirfd, path, mode, dev), 'mknodat');
}

/** `unlinkat(dirfd, path, flags)` (AT_REMOVEDIR for directories). */
export function unlinkat(dirfd: number, path: string, flags: number): void {
  check(fn('unlinkat', 'int unlinkat(int dirfd, const char *path, int flags)')(dirfd, path, flags), flags & AT_REMOVEDIR ? 'rmdir' : 'unlink');
}

/** `renameat2(olddirfd, oldpath, newdirfd, newpath, flags)` (NOREPLACE, EXCHANGE, WHITEOUT). */
export function renameat2(olddirfd: number, oldpath: string, newdirfd: number, newpath: string, flags: number): void {
  const f = fn('renameat2', 'int renameat2(int olddirfd, const char *oldpath, int newdirfd, const char *newpath, unsigned int flags)');
  check(f(olddirfd, oldpath, newdirfd, newpath, flags), 'rename');
}

/** `symlinkat(target, dirfd, path)`. */
export function symlinkat(target: string, dirfd: number, path: string): void {
  check(fn('symlinkat', 'int symlinkat(const char *target, int dirfd, const char *path)')(target, dirfd, path), 'symlink');
}

/** `linkat(olddirfd, oldpath, newdirfd, newpath, flags)`. */
export function linkat(olddirfd: number, oldpath: string, newdirfd: number, newpath: string, flags: number): void {
  const f = fn('linkat', 'int linkat(int olddirfd, const char *oldpath, int newdirfd, const char *newpath, int flags)');
  check(f(olddirfd, oldpath, newdirfd, newpath, flags), 'link');
}

const LINK_BUF = Buffer.alloc(4097);
/** `readlinkat(dirfd, path)` as a UTF-8 string ("" path with an O_PATH symlink descriptor). */
export function readlinkat(dirfd: number, path: string): string {
  const f = fn('readlinkat', 'intptr_t readlinkat(int dirfd, const char *path, _Out_ uint8_t *buf, size_t size)');
  const n = check(f(dirfd, path, LINK_BUF, LINK_BUF.length), 'readlink');
  return LINK_BUF.toString('utf8', 0, n);
}

/** `fchmodat(dirfd, path, mode, flags)`; with AT_SYMLINK_NOFOLLOW a symlink gives EOPNOTSUPP. */
export function fchmodat(dirfd: number, path: string, mode: number, flags: number): void {
  check(fn('fchmodat', 'int fchmodat(int dirfd, const char *path, uint32_t mode, int flags)')(dirfd, path, mode, flags), 'chmod');
}

/** `fchownat(dirfd, path, uid, gid, flags)`; -1 leaves an id unchanged. */
export function fchownat(dirfd: number, path: string, uid: number, gid: number, flags: number): void {
  const f = fn('fchownat', 'int fchownat(int dirfd, const char *path, uint32_t uid, uint32_t gid, int flags)');
  check(f(dirfd, path, uid >>> 0, gid >>> 0, flags), 'chown');
}

const TIMES = Buffer.alloc(32);
/** `utimensat(dirfd, path, [atime, mtime], flags)`; nsec may be UTIME_NOW or UTIME_OMIT. */
export function utimensat(dirfd: number, path: string, atime: Timespec, mtime: Timespec, flags: number): void {
  const f = fn('utimensat', 'int utimensat(int dirfd, const char *path, const uint8_t *times, int flags)');
  TIMES.writeBigInt64LE(BigInt(atime.sec), 0);
  TIMES.writeBigInt64LE(BigInt(atime.nsec), 8);
  TIMES.writeBigInt64LE(BigInt(mtime.sec), 16);
  TIMES.writeBigInt64LE(BigInt(mtime.nsec), 24);
  check(f(dirfd, path, TIMES, flags), 'utime');
}

/** `lgetxattr(path, name)` (or `getxattr` with `follow`); ENODATA when absent. */
export function lgetxattr(path: string, name: string, follow = false): Buffer {
  const call = follow ? 'getxattr' : 'lgetxattr';
  const f = fn(call, `intptr_t ${call}(const char *path, const char *name, _Out_ uint8_t *value, size_t size)`, 'linux');
  for (let attempt = 0; ; attempt++) {
    const size = check(f(path, name, null, 0), call);
    const buf = Buffer.alloc(Math.max(size, 1));
    const r = Number(f(path, name, buf, size));
    if (r >= 0) return buf.subarray(0, r);
    if (koffi.errno() !== 34 || attempt > 3) fail(call);
  }
}

/** `lsetxattr(path, name, value, flags)` (or `setxattr` with `follow`). */
export function lsetxattr(path: string, name: string, value: Uint8Array, flags: number, follow = false): void {
  const call = follow ? 'setxattr' : 'lsetxattr';
  const f = fn(call, `int ${call}(const char *path, const char *name, const uint8_t *value, size_t size, int flags)`, 'linux');
  check(f(path, name, value.length === 0 ? Buffer.alloc(1) : value, value.length, flags), call);
}

/** `llistxattr(path)` as names (or `listxattr` with `follow`). */
export function llistxattr(path: string, follow = false): string[] {
  const call = follow ? 'listxattr' : 'llistxattr';
  const f = fn(call, `intptr_t ${call}(const char *path, _Out_ uint8_t *list, size_t size)`, 'linux');
  for (let attempt = 0; ; attempt++) {
    const size = check(f(path, null, 0), call);
    if (size === 0) return [];
    const buf = Buffer.alloc(size);
    const r = Number(f(path, buf, size));
    if (r >= 0) return buf.toString('utf8', 0, r).split('\0').filter((s) => s.length > 0);
    if (koffi.errno() !== 34 || attempt > 3) fail(call);
  }
}

/** `lremovexattr(path, name)` (or `removexattr` with `follow`). */
export function lremovexattr(path: string, name: string, follow = false): void {
  const call = follow ? 'removexattr' : 'lremovexattr';
  check(fn(call, `int ${call}(const char *path, const char *name)`, 'linux')(path, name), call);
}

/** `fallocate(fd, mode, offset, len)`. */
export function fallocate(fd: number, mode: number, offset: number, len: number): void {
  check(fn('fallocate', 'int fallocate(int fd, int mode, int64_t offset, int64_t len)')(fd, mode, offset, len), 'fallocate');
}

/**
 * Call `f` on libuv's pool (koffi `.async`, N-API async work): the non-negative result, or an
 * `FsError` with the errno the worker thread saw (koffi ≥ 3.2 hands it to the callback).
 */
function callAsync(f: Fn, syscall: string, args: unknown[]): Promise<number> {
  return new Promise((resolve, reject) => {
    (f as unknown as { async: (...a: unknown[]) => void }).async(...args, (e: unknown, r: unknown) => {
      if (e) { reject(e); return; }
      const n = Number(r);
      if (n < 0) reject(FsError.bare(codeOf(koffi.errno()) ?? 'EIO', { syscall }));
      else resolve(n);
    });
  });
}

/** `fallocate` on libuv's pool (allocating or zeroing a range can wait on the disk). */
export async function fallocateAsync(fd: number, mode: number, offset: number, len: number): Promise<void> {
  await callAsync(fn('fallocate', 'int fallocate(int fd, int mode, int64_t offset, int64_t len)'), 'fallocate', [fd, mode, offset, len]);
}

/** `copy_file_range` on libuv's pool (offsets in buffers of its own); resolves bytes copied. */
export function copyFileRangeAsync(fdIn: number, offIn: number, fdOut: number, offOut: number, len: number, flags: number): Promise<number> {
  const f = fn('copy_file_range', 'intptr_t copy_file_range(int fd_in, void *off_in, int fd_out, void *off_out, size_t len, unsigned int flags)');
  const offs = Buffer.alloc(16);
  offs.writeBigInt64LE(BigInt(offIn), 0);
  offs.writeBigInt64LE(BigInt(offOut), 8);
  return callAsync(f, 'copy_file_range', [fdIn, offs.subarray(0, 8), fdOut, offs.subarray(8), len, flags]);
}

/** `lseek(fd, offset, whence)` (SEEK_DATA = 3, SEEK_HOLE = 4 on Linux). */
export function lseek(fd: number, offset: number, whence: number): number {
  return check(fn('lseek', 'int64_t lseek(int fd, int64_t offset, int whence)', 'any')(fd, offset, whence), 'lseek');
}

const OFF_IN = Buffer.alloc(8);
const OFF_OUT = Buffer.alloc(8);
/** `copy_file_range(fdIn, &offIn, fdOut, &offOut, len, flags)`; returns bytes copied. */
export function copyFileRange(fdIn: number, offIn: number, fdOut: number, offOut: number, len: number, flags: number): number {
  const f = fn('copy_file_range', 'intptr_t copy_file_range(int fd_in, void *off_in, int fd_out, void *off_out, size_t len, unsigned int flags)');
  OFF_IN.writeBigInt64LE(BigInt(offIn));
  OFF_OUT.writeBigInt64LE(BigInt(offOut));
  return check(f(fdIn, OFF_IN, fdOut, OFF_OUT, len, flags), 'copy_file_range');
}

/** What `fstatvfs` reports. */
export interface HostStatvfs {
  /** Block size. */
  bsize: number;
  /** Fragment size. */
  frsize: number;
  /** Total blocks. */
  blocks: number;
  /** Free blocks. */
  bfree: number;
  /** Free blocks for unprivileged users. */
  bavail: number;
  /** Total inodes. */
  files: number;
  /** Free inodes. */
  ffree: number;
  /** Longest name. */
  namemax: number;
}

/** `fstatvfs(fd)` (an O_PATH descriptor is fine). */
export function fstatvfs(fd: number): HostStatvfs {
  const b = Buffer.alloc(112);
  check(fn('fstatvfs', 'int fstatvfs(int fd, _Out_ uint8_t *buf)')(fd, b), 'statfs');
  const u = (o: number) => Number(b.readBigUInt64LE(o));
  return { bsize: u(0), frsize: u(8), blocks: u(16), bfree: u(24), bavail: u(32), files: u(40), ffree: u(48), namemax: u(80) };
}

/** `RLIMIT_NOFILE` on this platform. */
export const RLIMIT_NOFILE = IS_DARWIN ? 8 : 7;

/** `getrlimit(resource)` as `{ soft, hard }` (Infinity for RLIM_INFINITY). */
export function getrlimit(resource: number): { soft: number; hard: number } {
  const b = Buffer.alloc(16);
  check(fn('getrlimit', 'int getrlimit(int resource, _Out_ uint8_t *rlim)', 'any')(resource, b), 'getrlimit');
  const v = (o: number) => { const x = b.readBigUInt64LE(o); return x >= 0x7fffffffffffffffn ? Infinity : Number(x); };
  return { soft: v(0), hard: v(8) };
}

/** `setrlimit(resource, { soft, hard })` (Infinity for RLIM_INFINITY). */
export function setrlimit(resource: number, limit: { soft: number; hard: number }): void {
  const b = Buffer.alloc(16);
  const w = (o: number, x: number) => b.writeBigUInt64LE(x === Infinity ? 0xffffffffffffffffn : BigInt(x), o);
  w(0, limit.soft);
  w(8, limit.hard);
  check(fn('setrlimit', 'int setrlimit(int resource, const uint8_t *rlim)', 'any')(resource, b), 'setrlimit');
}

/** macOS `clonefile(src, dst, flags)` (APFS copy-on-write clone); ENOSYS elsewhere. */
export function clonefile(src: string, dst: string, flags = 0): void {
  check(fn('clonefile', 'int clonefile(const char *src, const char *dst, uint32_t flags)', 'darwin')(src, dst, flags), 'clonefile');
}
