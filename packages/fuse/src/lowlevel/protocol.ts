/**
 * The FUSE kernel protocol as the low-level transport speaks it on `/dev/fuse`: opcodes, INIT
 * flags, open flags, the fixed sizes of the structures (from the kernel's
 * `include/uapi/linux/fuse.h`, protocol 7.31, little-endian x86-64/arm64), a reader of request
 * bodies and the encoders of every reply structure this transport sends.
 */
import type { Attr, DirEntry, Entry, FileType, StatFs } from '@layerfs/core';

/** Request opcodes (`enum fuse_opcode`). */
export const Op = {
  LOOKUP: 1, FORGET: 2, GETATTR: 3, SETATTR: 4, READLINK: 5, SYMLINK: 6, MKNOD: 8, MKDIR: 9,
  UNLINK: 10, RMDIR: 11, RENAME: 12, LINK: 13, OPEN: 14, READ: 15, WRITE: 16, STATFS: 17,
  RELEASE: 18, FSYNC: 20, SETXATTR: 21, GETXATTR: 22, LISTXATTR: 23, REMOVEXATTR: 24,
  FLUSH: 25, INIT: 26, OPENDIR: 27, READDIR: 28, RELEASEDIR: 29, FSYNCDIR: 30, GETLK: 31,
  SETLK: 32, SETLKW: 33, ACCESS: 34, CREATE: 35, INTERRUPT: 36, BMAP: 37, DESTROY: 38,
  IOCTL: 39, POLL: 40, BATCH_FORGET: 42, FALLOCATE: 43, READDIRPLUS: 44, RENAME2: 45,
  LSEEK: 46, COPY_FILE_RANGE: 47,
} as const;

/** Opcode → lower-case name, for statistics and traces. */
export const OP_NAMES: Readonly<Record<number, string>> = Object.fromEntries(
  Object.entries(Op).map(([k, v]) => [v, k.toLowerCase()]),
);

/** INIT flags (`FUSE_*` capability bits of `fuse_init_in/out.flags`). */
export const InitFlag = {
  ASYNC_READ: 1 << 0, ATOMIC_O_TRUNC: 1 << 3, BIG_WRITES: 1 << 5, DONT_MASK: 1 << 6,
  AUTO_INVAL_DATA: 1 << 12, DO_READDIRPLUS: 1 << 13, READDIRPLUS_AUTO: 1 << 14,
  PARALLEL_DIROPS: 1 << 18, MAX_PAGES: 1 << 22, CACHE_SYMLINKS: 1 << 23, NO_OPENDIR_SUPPORT: 1 << 24,
  HANDLE_KILLPRIV_V2: 1 << 28,
} as const;

/** `fuse_open_out.open_flags`. */
export const FOPEN = { DIRECT_IO: 1, KEEP_CACHE: 2, CACHE_DIR: 8, NOFLUSH: 32 } as const;

/** `fuse_setattr_in.valid` bits (`FATTR_*`). */
export const FATTR = {
  MODE: 1 << 0, UID: 1 << 1, GID: 1 << 2, SIZE: 1 << 3, ATIME: 1 << 4, MTIME: 1 << 5,
  FH: 1 << 6, ATIME_NOW: 1 << 7, MTIME_NOW: 1 << 8, CTIME: 1 << 10, KILL_SUIDGID: 1 << 11,
} as const;

/** `fuse_write_in.write_flags` FUSE_WRITE_KILL_SUIDGID: drop the set-id bits after the write. */
export const WRITE_KILL_SUIDGID = 1 << 2;
/** `fuse_open_in.open_flags` FUSE_OPEN_KILL_SUIDGID: drop the set-id bits (an O_TRUNC open). */
export const OPEN_KILL_SUIDGID = 1 << 0;

/** `fuse_getattr_in.getattr_flags`: the request names an open handle. */
export const GETATTR_FH = 1;
/** `fuse_fsync_in.fsync_flags`: data only. */
export const FSYNC_FDATASYNC = 1;

/** Size of `fuse_in_header`. */
export const IN_HEADER = 40;
/** Size of `fuse_out_header`. */
export const OUT_HEADER = 16;
/** Size of `fuse_attr`. */
export const ATTR_SIZE = 88;
/** Size of `fuse_entry_out`. */
export const ENTRY_OUT = 40 + ATTR_SIZE;
/** Size of `fuse_attr_out`. */
export const ATTR_OUT = 16 + ATTR_SIZE;
/** Size of `fuse_open_out`. */
export const OPEN_OUT = 16;
/** Size of `fuse_init_out` (7.23+). */
export const INIT_OUT = 64;
/** Size of `fuse_kstatfs` (`fuse_statfs_out`). */
export const STATFS_OUT = 80;
/** Size of the fixed part of `fuse_dirent` (name follows, padded to 8). */
export const DIRENT_BASE = 24;
/** Size of `fuse_write_in` (data follows). */
export const WRITE_IN = 40;

/** DT_* type of a dirent for a file type. */
export function direntType(t: FileType): number {
  switch (t) {
    case 'file': return 8;
    case 'directory': return 4;
    case 'symlink': return 10;
    case 'chardev': return 2;
    case 'blockdev': return 6;
    case 'fifo': return 1;
    case 'socket': return 12;
  }
}

/** The fixed header of one request, and a cursor over its body. */
export class Request {
  /** The whole request (header and body). */
  readonly bytes: Uint8Array;
  /** A DataView over `bytes`. */
  readonly view: DataView;
  /** `fuse_in_header.len`. */
  readonly len: number;
  /** `fuse_in_header.opcode`. */
  readonly opcode: number;
  /** `fuse_in_header.unique` (a bigint: it is echoed back unchanged). */
  readonly unique: bigint;
  /** `fuse_in_header.nodeid`. */
  readonly nodeid: number;
  /** Caller's uid. */
  readonly uid: number;
  /** Caller's gid. */
  readonly gid: number;
  /** Caller's pid. */
  readonly pid: number;
  /** Read position in the body (absolute offset in `bytes`). */
  pos = IN_HEADER;

  /** Parse the header of `bytes` (one complete request as read from /dev/fuse). */
  constructor(bytes: Uint8Array) {
    this.bytes = bytes;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const v = this.view;
    this.len = v.getUint32(0, true);
    this.opcode = v.getUint32(4, true);
    this.unique = v.getBigUint64(8, true);
    this.nodeid = Number(v.getBigUint64(16, true));
    this.uid = v.getUint32(24, true);
    this.gid = v.getUint32(28, true);
    this.pid = v.getUint32(32, true);
  }

  /** Next u32 of the body. */
  u32(): number { const x = this.view.getUint32(this.pos, true); this.pos += 4; return x; }
  /** Next u64 of the body, as a number (exact up to 2^53). */
  u64(): number { const x = Number(this.view.getBigUint64(this.pos, true)); this.pos += 8; return x; }
  /** Next signed 64-bit value of the body (times), as a number. */
  i64(): number { const x = Number(this.view.getBigInt64(this.pos, true)); this.pos += 8; return x; }
  /** Skip `n` bytes. */
  skip(n: number): void { this.pos += n; }
  /** Next NUL-terminated string (UTF-8). */
  cstr(): string {
    const end = this.bytes.indexOf(0, this.pos);
    const stop = end < 0 || end > this.len ? this.len : end;
    const s = Buffer.from(this.bytes.buffer, this.bytes.byteOffset + this.pos, stop - this.pos).toString('utf8');
    this.pos = stop + 1;
    return s;
  }
  /** The next `n` bytes as a view (no copy). */
  take(n: number): Uint8Array {
    const b = this.bytes.subarray(this.pos, this.pos + n);
    this.pos += n;
    return b;
  }
}

/** Write a `fuse_out_header` at offset 0 of `b`. */
export function writeOutHeader(b: Buffer, len: number, error: number, unique: bigint): void {
  b.writeUInt32LE(len, 0);
  b.writeInt32LE(error, 4);
  b.writeBigUInt64LE(unique, 8);
}

function writeU64(b: Buffer, v: number, at: number): void {
  // Values up to 2^53: low and high halves (faster than BigInt conversion).
  b.writeUInt32LE(v % 0x100000000 >>> 0, at);
  b.writeUInt32LE(Math.floor(v / 0x100000000) >>> 0, at + 4);
}

function writeI64(b: Buffer, v: number, at: number): void {
  if (v >= 0) writeU64(b, v, at);
  else b.writeBigInt64LE(BigInt(v), at);
}

/** Encode `fuse_attr` at `at`. */
export function writeAttr(b: Buffer, a: Attr, at: number): void {
  writeU64(b, a.ino, at);
  writeU64(b, a.size, at + 8);
  writeU64(b, a.blocks, at + 16);
  writeI64(b, a.atime.sec, at + 24);
  writeI64(b, a.mtime.sec, at + 32);
  writeI64(b, a.ctime.sec, at + 40);
  b.writeUInt32LE(a.atime.nsec, at + 48);
  b.writeUInt32LE(a.mtime.nsec, at + 52);
  b.writeUInt32LE(a.ctime.nsec, at + 56);
  b.writeUInt32LE(a.mode >>> 0, at + 60);
  b.writeUInt32LE(a.nlink >>> 0, at + 64);
  b.writeUInt32LE(a.uid >>> 0, at + 68);
  b.writeUInt32LE(a.gid >>> 0, at + 72);
  b.writeUInt32LE(a.rdev >>> 0, at + 76);
  b.writeUInt32LE(a.blksize >>> 0, at + 80);
  b.writeUInt32LE(0, at + 84);
}

/** Split seconds (may be fractional) into whole seconds and nanoseconds. */
function splitTimeout(s: number): [number, number] {
  const sec = Math.floor(s);
  return [sec, Math.round((s - sec) * 1e9)];
}

/** Encode `fuse_entry_out` at `at` (nodeid = ino; timeouts in seconds). */
export function writeEntry(b: Buffer, e: Entry, entryTimeout: number, attrTimeout: number, at: number): void {
  writeU64(b, e.ino, at);
  writeU64(b, e.generation, at + 8);
  const [es, en] = splitTimeout(e.entryTimeout ?? entryTimeout);
  const [as, an] = splitTimeout(e.attrTimeout ?? attrTimeout);
  writeU64(b, es, at + 16);
  writeU64(b, as, at + 24);
  b.writeUInt32LE(en, at + 32);
  b.writeUInt32LE(an, at + 36);
  writeAttr(b, e.attr, at + 40);
}

/** Encode `fuse_attr_out` at `at`. */
export function writeAttrOut(b: Buffer, a: Attr, attrTimeout: number, at: number): void {
  const [s, n] = splitTimeout(attrTimeout);
  writeU64(b, s, at);
  b.writeUInt32LE(n, at + 8);
  b.writeUInt32LE(0, at + 12);
  writeAttr(b, a, at + 16);
}

/** Encode `fuse_open_out` at `at`. */
export function writeOpenOut(b: Buffer, fh: number, openFlags: number, at: number): void {
  writeU64(b, fh, at);
  b.writeUInt32LE(openFlags, at + 8);
  b.writeUInt32LE(0, at + 12);
}

/** Encode `fuse_kstatfs` at `at`. */
export function writeStatfs(b: Buffer, s: StatFs, at: number): void {
  b.fill(0, at, at + STATFS_OUT);
  writeU64(b, s.blocks, at);
  writeU64(b, s.bfree, at + 8);
  writeU64(b, s.bavail, at + 16);
  writeU64(b, s.files, at + 24);
  writeU64(b, s.ffree, at + 32);
  b.writeUInt32LE(s.bsize, at + 40);
  b.writeUInt32LE(s.namemax, at + 44);
  b.writeUInt32LE(s.frsize, at + 48);
}

/** Bytes one `fuse_dirent` takes for a name of `nameLen` bytes (8-byte aligned). */
export function direntSize(nameLen: number): number {
  return (DIRENT_BASE + nameLen + 7) & ~7;
}

/** Encode one `fuse_dirent` at `at`; returns its size. */
export function writeDirent(b: Buffer, d: DirEntry, name: Buffer, at: number): number {
  const size = direntSize(name.length);
  writeU64(b, d.ino, at);
  writeU64(b, d.offset, at + 8);
  b.writeUInt32LE(name.length, at + 16);
  b.writeUInt32LE(direntType(d.type), at + 20);
  name.copy(b, at + DIRENT_BASE);
  b.fill(0, at + DIRENT_BASE + name.length, at + size);
  return size;
}
