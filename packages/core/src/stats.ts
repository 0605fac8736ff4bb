/**
 * The objects the `Volume` returns where `node:fs` returns `fs.Stats`, `fs.BigIntStats` and
 * `fs.Dirent`: the same field names (`mtimeMs`, `mtimeNs`, `parentPath`, …) and the same
 * `isFile()`/`isDirectory()`/… tests, built from an `Attr` with nanosecond times.
 */
import type { Attr, FileType, Timespec } from './types.js';
import { typeOfMode } from './types.js';

/** The `isFile()`, `isDirectory()`, … tests shared by Stats, BigIntStats and Dirent. */
export abstract class FileKind {
  /** The file type these tests answer for. */
  protected abstract fileType(): FileType;
  /** True for a regular file. */
  isFile(): boolean { return this.fileType() === 'file'; }
  /** True for a directory. */
  isDirectory(): boolean { return this.fileType() === 'directory'; }
  /** True for a symbolic link (only from `lstat` or a directory listing). */
  isSymbolicLink(): boolean { return this.fileType() === 'symlink'; }
  /** True for a block device. */
  isBlockDevice(): boolean { return this.fileType() === 'blockdev'; }
  /** True for a character device. */
  isCharacterDevice(): boolean { return this.fileType() === 'chardev'; }
  /** True for a FIFO. */
  isFIFO(): boolean { return this.fileType() === 'fifo'; }
  /** True for a socket. */
  isSocket(): boolean { return this.fileType() === 'socket'; }
}

const EPOCH: Timespec = { sec: 0, nsec: 0 };

function ms(t: Timespec): number {
  return t.sec * 1e3 + t.nsec / 1e6;
}

/** What `stat`/`lstat`/`FileHandle.stat` return: `fs.Stats` fields, times in ms and as Dates. */
export class Stats extends FileKind {
  /** Device of the filesystem. */ dev: number;
  /** Type and permission bits. */ mode: number;
  /** Hard link count. */ nlink: number;
  /** Owner. */ uid: number;
  /** Group. */ gid: number;
  /** Device number of a device file. */ rdev: number;
  /** Preferred I/O size. */ blksize: number;
  /** Inode number. */ ino: number;
  /** Size in bytes. */ size: number;
  /** 512-byte blocks. */ blocks: number;
  /** Access time, ms since the epoch. */ atimeMs: number;
  /** Modification time, ms since the epoch. */ mtimeMs: number;
  /** Status change time, ms since the epoch. */ ctimeMs: number;
  /** Birth time, ms since the epoch (0 when unknown). */ birthtimeMs: number;
  // The Dates are made on first use, as Node's Stats makes them (most callers never read them).
  #atime: Date | undefined;
  #mtime: Date | undefined;
  #ctime: Date | undefined;
  #birthtime: Date | undefined;

  /** Stats of an inode's attributes. */
  constructor(attr: Attr) {
    super();
    this.dev = attr.dev; this.mode = attr.mode; this.nlink = attr.nlink;
    this.uid = attr.uid; this.gid = attr.gid; this.rdev = attr.rdev;
    this.blksize = attr.blksize; this.ino = attr.ino; this.size = attr.size; this.blocks = attr.blocks;
    this.atimeMs = ms(attr.atime); this.mtimeMs = ms(attr.mtime); this.ctimeMs = ms(attr.ctime);
    this.birthtimeMs = ms(attr.birthtime ?? EPOCH);
  }

  /** Access time. */
  get atime(): Date { return this.#atime ??= new Date(Math.round(this.atimeMs)); }
  set atime(v: Date) { this.#atime = v; }
  /** Modification time. */
  get mtime(): Date { return this.#mtime ??= new Date(Math.round(this.mtimeMs)); }
  set mtime(v: Date) { this.#mtime = v; }
  /** Status change time. */
  get ctime(): Date { return this.#ctime ??= new Date(Math.round(this.ctimeMs)); }
  set ctime(v: Date) { this.#ctime = v; }
  /** Birth time (the epoch when unknown). */
  get birthtime(): Date { return this.#birthtime ??= new Date(Math.round(this.birthtimeMs)); }
  set birthtime(v: Date) { this.#birthtime = v; }

  /** The type from the mode bits. */
  protected fileType(): FileType { return typeOfMode(this.mode); }
}

function ns(t: Timespec): bigint {
  return BigInt(t.sec) * 1_000_000_000n + BigInt(t.nsec);
}

/** What `stat(path, { bigint: true })` returns: `fs.BigIntStats`, with exact `*Ns` times. */
export class BigIntStats extends FileKind {
  /** Device of the filesystem. */ dev: bigint;
  /** Type and permission bits. */ mode: bigint;
  /** Hard link count. */ nlink: bigint;
  /** Owner. */ uid: bigint;
  /** Group. */ gid: bigint;
  /** Device number of a device file. */ rdev: bigint;
  /** Preferred I/O size. */ blksize: bigint;
  /** Inode number. */ ino: bigint;
  /** Size in bytes. */ size: bigint;
  /** 512-byte blocks. */ blocks: bigint;
  /** Access time, whole ms. */ atimeMs: bigint;
  /** Modification time, whole ms. */ mtimeMs: bigint;
  /** Status change time, whole ms. */ ctimeMs: bigint;
  /** Birth time, whole ms. */ birthtimeMs: bigint;
  /** Access time, ns since the epoch. */ atimeNs: bigint;
  /** Modification time, ns since the epoch. */ mtimeNs: bigint;
  /** Status change time, ns since the epoch. */ ctimeNs: bigint;
  /** Birth time, ns since the epoch. */ birthtimeNs: bigint;
  /** Access time. */ atime: Date;
  /** Modification time. */ mtime: Date;
  /** Status change time. */ ctime: Date;
  /** Birth time. */ birthtime: Date;

  /** BigIntStats of an inode's attributes. */
  constructor(attr: Attr) {
    super();
    this.dev = BigInt(attr.dev); this.mode = BigInt(attr.mode); this.nlink = BigInt(attr.nlink);
    this.uid = BigInt(attr.uid); this.gid = BigInt(attr.gid); this.rdev = BigInt(attr.rdev);
    this.blksize = BigInt(attr.blksize); this.ino = BigInt(attr.ino); this.size = BigInt(attr.size);
    this.blocks = BigInt(attr.blocks);
    this.atimeNs = ns(attr.atime); this.mtimeNs = ns(attr.mtime); this.ctimeNs = ns(attr.ctime);
    this.birthtimeNs = ns(attr.birthtime ?? EPOCH);
    this.atimeMs = this.atimeNs / 1_000_000n; this.mtimeMs = this.mtimeNs / 1_000_000n;
    this.ctimeMs = this.ctimeNs / 1_000_000n; this.birthtimeMs = this.birthtimeNs / 1_000_000n;
    this.atime = new Date(Number(this.atimeMs)); this.mtime = new Date(Number(this.mtimeMs));
    this.ctime = new Date(Number(this.ctimeMs)); this.birthtime = new Date(Number(this.birthtimeMs));
  }

  /** The type from the mode bits. */
  protected fileType(): FileType { return typeOfMode(Number(this.mode)); }
}

/** What `readdir(path, { withFileTypes: true })` returns for each entry, as `fs.Dirent`. */
export class Dirent extends FileKind {
  /** The entry's name. */
  readonly name: string;
  /** The directory the entry was listed from, as the caller named it. */
  readonly parentPath: string;
  /** Alias of `parentPath` (Node's older name). */
  readonly path: string;
  readonly #type: FileType;

  /** An entry `name` of type `type` listed from `parentPath`. */
  constructor(name: string, parentPath: string, type: FileType) {
    super();
    this.name = name;
    this.parentPath = parentPath;
    this.path = parentPath;
    this.#type = type;
  }

  /** The entry's type. */
  protected fileType(): FileType { return this.#type; }
}
