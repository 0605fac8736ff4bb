/**
 * The value types of the layerfs contracts: request context, file types and mode bits,
 * attributes with nanosecond times, entries, directory entries, open/rename/setattr flags,
 * statfs results. Plain data only; the operations live in `filesystem.ts`.
 */

/** Who is asking: the caller's credentials and umask, as FUSE passes them per request. */
export interface RequestContext {
  /** Effective user id of the caller. */
  readonly uid: number;
  /** Effective group id of the caller. */
  readonly gid: number;
  /** Supplementary groups of the caller (checked for group permissions when present). */
  readonly groups?: readonly number[];
  /** Process id of the caller (0 when unknown). */
  readonly pid: number;
  /** The caller's umask, applied by the filesystem to the mode of created objects. */
  readonly umask: number;
}

/** The context of the current process (its uid, gid and a umask of 0o022). */
export function processContext(umask = 0o022): RequestContext {
  const uid = typeof process.getuid === 'function' ? process.getuid() : 0;
  const gid = typeof process.getgid === 'function' ? process.getgid() : 0;
  const groups = typeof process.getgroups === 'function' ? process.getgroups() : [];
  return { uid, gid, groups, pid: process.pid, umask };
}

/** A root caller with umask 0o022. */
export const ROOT_CONTEXT: RequestContext = Object.freeze({ uid: 0, gid: 0, pid: 0, umask: 0o022 });

/** What kind of object an inode is. */
export type FileType = 'file' | 'directory' | 'symlink' | 'chardev' | 'blockdev' | 'fifo' | 'socket';

/** Mode bits, as in `<sys/stat.h>` (identical on Linux and macOS). */
export const S_IFMT = 0o170000;
/** Socket type bits. */
export const S_IFSOCK = 0o140000;
/** Symlink type bits. */
export const S_IFLNK = 0o120000;
/** Regular file type bits. */
export const S_IFREG = 0o100000;
/** Block device type bits. */
export const S_IFBLK = 0o060000;
/** Directory type bits. */
export const S_IFDIR = 0o040000;
/** Character device type bits. */
export const S_IFCHR = 0o020000;
/** FIFO type bits. */
export const S_IFIFO = 0o010000;
/** Set-user-id bit. */
export const S_ISUID = 0o4000;
/** Set-group-id bit. */
export const S_ISGID = 0o2000;
/** Sticky bit. */
export const S_ISVTX = 0o1000;

const TYPE_BITS: Record<FileType, number> = {
  file: S_IFREG, directory: S_IFDIR, symlink: S_IFLNK, chardev: S_IFCHR,
  blockdev: S_IFBLK, fifo: S_IFIFO, socket: S_IFSOCK,
};

/** The `S_IF*` bits of a file type. */
export function modeOfType(type: FileType): number {
  return TYPE_BITS[type];
}

/** The file type encoded in a mode's `S_IFMT` bits (regular file when none are set). */
export function typeOfMode(mode: number): FileType {
  switch (mode & S_IFMT) {
    case S_IFDIR: return 'directory';
    case S_IFLNK: return 'symlink';
    case S_IFCHR: return 'chardev';
    case S_IFBLK: return 'blockdev';
    case S_IFIFO: return 'fifo';
    case S_IFSOCK: return 'socket';
    default: return 'file';
  }
}

/** A point in time with nanosecond precision (seconds since the epoch + nanoseconds). */
export interface Timespec {
  /** Whole seconds since 1970-01-01T00:00:00Z (may be negative). */
  readonly sec: number;
  /** Nanoseconds, 0 ≤ nsec < 1e9, or one of `UTIME_NOW` / `UTIME_OMIT` in a setattr. */
  readonly nsec: number;
}

/** In a setattr time: set this time to "now" (the value of `utimensat`'s UTIME_NOW). */
export const UTIME_NOW = (1 << 30) - 1;
/** In a setattr time: leave this time unchanged (the value of `utimensat`'s UTIME_OMIT). */
export const UTIME_OMIT = (1 << 30) - 2;

/** The current time as a Timespec. */
export function nowTimespec(): Timespec {
  const ns = process.hrtime.bigint() - HR_BASE + WALL_BASE;
  return { sec: Number(ns / 1_000_000_000n), nsec: Number(ns % 1_000_000_000n) };
}
const WALL_BASE = BigInt(Date.now()) * 1_000_000n;
const HR_BASE = process.hrtime.bigint();

/** Milliseconds since the epoch (as `Date` and `stat().mtimeMs` use) → Timespec. */
export function timespecFromMs(ms: number): Timespec {
  const sec = Math.floor(ms / 1000);
  return { sec, nsec: Math.round((ms - sec * 1000) * 1e6) };
}

/** Timespec → milliseconds since the epoch (fractional). */
export function timespecToMs(t: Timespec): number {
  return t.sec * 1000 + t.nsec / 1e6;
}

/** Timespec → nanoseconds since the epoch as a bigint (as `stat({bigint:true}).mtimeNs`). */
export function timespecToNs(t: Timespec): bigint {
  return BigInt(t.sec) * 1_000_000_000n + BigInt(t.nsec);
}

/** Nanoseconds since the epoch (bigint) → Timespec. */
export function timespecFromNs(ns: bigint): Timespec {
  let sec = ns / 1_000_000_000n;
  let nsec = ns % 1_000_000_000n;
  if (nsec < 0n) { nsec += 1_000_000_000n; sec -= 1n; }
  return { sec: Number(sec), nsec: Number(nsec) };
}

/** The attributes of an inode, as `stat(2)` gives them, with nanosecond times. */
export interface Attr {
  /** Inode number within the filesystem that returned it. */
  readonly ino: number;
  /** Device number of the filesystem (one value for a whole overlay). */
  readonly dev: number;
  /** Type and permission bits (`S_IF*` | 0o7777). */
  readonly mode: number;
  /** Number of hard links. */
  readonly nlink: number;
  /** Owner user id. */
  readonly uid: number;
  /** Owner group id. */
  readonly gid: number;
  /** Device number for char/block devices (`makedev(major, minor)`), else 0. */
  readonly rdev: number;
  /** Size in bytes. */
  readonly size: number;
  /** 512-byte blocks allocated. */
  readonly blocks: number;
  /** Preferred I/O block size. */
  readonly blksize: number;
  /** Last access. */
  readonly atime: Timespec;
  /** Last data modification. */
  readonly mtime: Timespec;
  /** Last status change. */
  readonly ctime: Timespec;
  /** Creation time where the filesystem knows it. */
  readonly birthtime?: Timespec;
}

/**
 * What `lookup`, `mknod`, `mkdir`, `symlink`, `link` and `create` return. Each successful
 * return adds one to the lookup count of `ino`; the caller gives it back with `forget`.
 */
export interface Entry {
  /** Inode number (never 0). */
  readonly ino: number;
  /** Generation: (ino, generation) is unique over the filesystem's life. */
  readonly generation: number;
  /** The inode's attributes. */
  readonly attr: Attr;
  /** How long (seconds) a kernel may cache the name → inode mapping; default per mount. */
  readonly entryTimeout?: number;
  /** How long (seconds) a kernel may cache the attributes; default per mount. */
  readonly attrTimeout?: number;
  /**
   * True when this name is a whiteout in the layer that returned it (a 0/0 char device, or an
   * OCI `.wh.<name>` marker reported under `<name>`). Only layers set it; unions hide them.
   */
  readonly whiteout?: boolean;
}

/** One entry of a directory listing. */
export interface DirEntry {
  /** The name (one path component; never a whiteout marker file name such as `.wh.x`). */
  readonly name: string;
  /** Inode number (the same number `getattr`/`lookup` report for this object). */
  readonly ino: number;
  /** Type of the entry. */
  readonly type: FileType;
  /** Offset to pass to `readdir` to continue after this entry. */
  readonly offset: number;
  /** Attributes, filled when `readdir` was asked for them (`plus`). Takes no lookup. */
  readonly attr?: Attr;
  /** True when the entry is a whiteout in the layer that listed it (only layers set it). */
  readonly whiteout?: boolean;
}

/** An open file or directory: the handle number a filesystem returned from open/opendir/create. */
export interface OpenResult {
  /** Handle passed back on read/write/release etc. */
  readonly fh: number;
  /** Ask the kernel to bypass its page cache for this open file. */
  readonly directIo?: boolean;
  /** Ask the kernel to keep its page cache from earlier opens. */
  readonly keepCache?: boolean;
  /**
   * `flush` of this handle does nothing (nothing is written back at close): a transport may
   * tell the kernel not to send FLUSH for it (FOPEN_NOFLUSH). `release` still comes.
   */
  readonly noFlush?: boolean;
}

/** What `create` returns: the new entry (one lookup taken) and its open handle. */
export interface CreateResult extends OpenResult {
  /** The entry of the created (or, without O_EXCL, existing) file. */
  readonly entry: Entry;
}

/** Open flags, as `fs.constants`/`<fcntl.h>` on Linux. */
export const OpenFlags = {
  O_RDONLY: 0, O_WRONLY: 1, O_RDWR: 2, O_ACCMODE: 3,
  O_CREAT: 0o100, O_EXCL: 0o200, O_NOCTTY: 0o400, O_TRUNC: 0o1000, O_APPEND: 0o2000,
  O_NONBLOCK: 0o4000, O_DSYNC: 0o10000, O_DIRECT: 0o40000, O_LARGEFILE: 0o100000,
  O_DIRECTORY: 0o200000, O_NOFOLLOW: 0o400000, O_NOATIME: 0o1000000, O_CLOEXEC: 0o2000000,
  O_SYNC: 0o4010000, O_PATH: 0o10000000,
} as const;
/** A bit set of `OpenFlags`. */
export type OpenFlags = number;

/** True when `flags` open for writing (O_WRONLY or O_RDWR) or truncate. */
export function opensForWrite(flags: number): boolean {
  return (flags & OpenFlags.O_ACCMODE) !== OpenFlags.O_RDONLY || (flags & OpenFlags.O_TRUNC) !== 0;
}

/** `renameat2` flags. */
export const RenameFlags = {
  /** Fail with EEXIST instead of replacing the target. */
  NOREPLACE: 1,
  /** Atomically exchange source and target (both must exist). */
  EXCHANGE: 2,
  /** Leave a whiteout where the source was. */
  WHITEOUT: 4,
} as const;
/** A bit set of `RenameFlags`. */
export type RenameFlags = number;

/** `setxattr` flags. */
export const XattrFlags = {
  /** Fail with EEXIST if the attribute exists. */
  CREATE: 1,
  /** Fail with ENODATA if the attribute does not exist. */
  REPLACE: 2,
} as const;

/** `access` mask bits (`F_OK` is 0). */
export const AccessMode = { F_OK: 0, X_OK: 1, W_OK: 2, R_OK: 4 } as const;

/** `lseek` whence values (Linux). */
export const Whence = { SEEK_SET: 0, SEEK_CUR: 1, SEEK_END: 2, SEEK_DATA: 3, SEEK_HOLE: 4 } as const;

/** `fallocate` mode bits (Linux). */
export const FallocateMode = { KEEP_SIZE: 1, PUNCH_HOLE: 2, ZERO_RANGE: 0x10 } as const;

/** Which fields a setattr changes, as FUSE's `FATTR_*` bits (the FUSE adapter maps to these). */
export const SetattrMask = {
  MODE: 1 << 0, UID: 1 << 1, GID: 1 << 2, SIZE: 1 << 3, ATIME: 1 << 4, MTIME: 1 << 5,
  FH: 1 << 6, ATIME_NOW: 1 << 7, MTIME_NOW: 1 << 8, CTIME: 1 << 10,
} as const;
/** A bit set of `SetattrMask`. */
export type SetattrMask = number;

/**
 * The changes of one `setattr`: only the present fields change. A time whose `nsec` is
 * `UTIME_NOW` means "now", `UTIME_OMIT` means "leave it" (exactly as `utimensat`).
 */
export interface SetattrRequest {
  /** New permission bits (the type bits are ignored). */
  mode?: number;
  /** New owner (chown). */
  uid?: number;
  /** New group (chown). */
  gid?: number;
  /** New size (truncate). */
  size?: number;
  /** New access time. */
  atime?: Timespec;
  /** New modification time. */
  mtime?: Timespec;
  /** New change time (only filesystems that keep their own may honour it). */
  ctime?: Timespec;
}

/** The `SetattrMask` bits that a request sets. */
export function setattrMaskOf(req: SetattrRequest): SetattrMask {
  let m = 0;
  if (req.mode !== undefined) m |= SetattrMask.MODE;
  if (req.uid !== undefined) m |= SetattrMask.UID;
  if (req.gid !== undefined) m |= SetattrMask.GID;
  if (req.size !== undefined) m |= SetattrMask.SIZE;
  if (req.atime !== undefined) m |= req.atime.nsec === UTIME_NOW ? SetattrMask.ATIME | SetattrMask.ATIME_NOW : SetattrMask.ATIME;
  if (req.mtime !== undefined) m |= req.mtime.nsec === UTIME_NOW ? SetattrMask.MTIME | SetattrMask.MTIME_NOW : SetattrMask.MTIME;
  if (req.ctime !== undefined) m |= SetattrMask.CTIME;
  return m;
}

/** What `statfs` returns (as `statvfs(3)`). */
export interface StatFs {
  /** Fundamental block size. */
  readonly bsize: number;
  /** Fragment size. */
  readonly frsize: number;
  /** Total blocks (in frsize units). */
  readonly blocks: number;
  /** Free blocks. */
  readonly bfree: number;
  /** Free blocks for unprivileged users. */
  readonly bavail: number;
  /** Total inodes. */
  readonly files: number;
  /** Free inodes. */
  readonly ffree: number;
  /** Longest name in bytes. */
  readonly namemax: number;
}

/** A layer's whiteout format: kernel-style 0/0 char devices, or OCI `.wh.` files. */
export type WhiteoutFormat = 'chardev' | 'oci';

/** The opaque-directory xattr the kernel writes (`trusted.` namespace). */
export const OPAQUE_XATTR = 'trusted.overlay.opaque';
/** The opaque-directory xattr the kernel writes with `-o userxattr`. */
export const OPAQUE_XATTR_USER = 'user.overlay.opaque';
/** The opaque-directory xattr fuse-overlayfs and libfuse-fs write (read only by layerfs). */
export const OPAQUE_XATTR_FUSE_OVERLAYFS = 'user.fuseoverlayfs.opaque';
/** Prefix of OCI whiteout files: `.wh.<name>` hides `<name>` in lower layers. */
export const OCI_WHITEOUT_PREFIX = '.wh.';
/** The OCI opaque marker file. */
export const OCI_OPAQUE_MARKER = '.wh..wh..opq';
/** Xattr name prefixes private to overlay implementations (hidden from users). */
export const OVERLAY_PRIVATE_XATTR_PREFIXES = ['trusted.overlay.', 'user.overlay.', 'user.fuseoverlayfs.'] as const;

/** True for xattr names private to overlay implementations. */
export function isOverlayPrivateXattr(name: string): boolean {
  return OVERLAY_PRIVATE_XATTR_PREFIXES.some((p) => name.startsWith(p));
}

/** `makedev` as glibc encodes it (so 0/0 is 0). */
export function makedev(major: number, minor: number): number {
  return ((major & 0xfff) << 8) | (minor & 0xff) | ((minor & ~0xff) << 12) >>> 0;
}
