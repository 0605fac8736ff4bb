/**
 * PassthroughLayer: a host directory as a `Layer`. It owns the inode records of the layer
 * (identity `(st_dev, st_ino)`, the host paths that reach each inode, lookup counts through
 * core's `InodeTable`), the confined resolution of those paths to host descriptors, the
 * whiteout and opaque markers of both formats, uid/gid mapping, permission checks for the
 * request context, and clone copy-up.
 *
 * How it reaches host files (confinement and long paths):
 * - Every host call is relative to a directory descriptor: `statx`, `openat`, `mkdirat`,
 *   `mknodat`, `unlinkat`, `renameat2`, `symlinkat`, `linkat`, `readlinkat`, `fchmodat`,
 *   `fchownat`, `utimensat` through koffi (`libc.ts`), xattrs through
 *   `/proc/self/fd/<dirfd>/<name>` with the `l*xattr` calls. The last component is never
 *   followed (AT_SYMLINK_NOFOLLOW / O_NOFOLLOW), and names are single components checked by
 *   `validateName`, so no name leads out of the directory.
 * - Directory descriptors are `O_PATH` descriptors cached by path in an LRU (`DirFdCache`);
 *   a miss walks from the root (or the work dir) with `openat2(RESOLVE_BENEATH |
 *   RESOLVE_NO_MAGICLINKS | RESOLVE_NO_SYMLINKS)` in chunks shorter than PATH_MAX (or
 *   `openat(O_NOFOLLOW|O_DIRECTORY)` per component where the kernel lacks openat2). A
 *   directory swapped for a symlink is refused (ELOOP/ENOTDIR) when reopened, and a cached
 *   descriptor keeps pointing at the directory that was looked up. So no path, however long,
 *   is ever glued into one string, and nothing outside the root is reached through a name
 *   or a symlink inside it. (A directory moved out of the root by another process while we
 *   hold its descriptor is outside this guarantee, as for every passthrough.)
 *
 * Inode numbers: the host `st_ino` when the inode lives on the root's device, is a safe
 * integer and is free in the table; otherwise the next counter value. The root is always 1.
 * `readdir` reports the number a lookup would give now (the host `st_ino` for entries never
 * looked up). Generations count how often an ino was handed out in this layer.
 *
 * Host paths: each record keeps every path (below the root) it was reached by; a rename fixes
 * the paths of the moved inode and of everything below it, an unlink drops that one name
 * (another known hard link then serves; if none is known, the tree is searched by identity).
 * An inode unlinked while still looked up keeps an `O_PATH` descriptor, so `getattr` and
 * xattrs keep working until it is forgotten.
 *
 * Permissions: when `checkPermissions` (default), requests are checked against the request
 * context with core's `mayAccess`/`checkAccess`/`checkSticky` before the host call (the host
 * checks only the process's own credentials), and created objects belong to the caller
 * (mapped container→host). Metadata is synchronous inside each operation (koffi calls cost
 * ~2.4 µs, `fs.promises.lstat` ~80 µs here). Data calls — read, write, fsync, fallocate,
 * copy_file_range and copy-up data copies — run on libuv's pool and never block the event
 * loop; a handle's descriptor is closed only once its data calls in flight are done.
 */
import { closeSync, ftruncateSync, readdirSync, realpathSync } from 'node:fs';
import * as nodePath from 'node:path';
import { fsyncAsync, readFull, writeAll } from './data-io.js';
import {
  AccessMode, FsError, InodeTable, OCI_OPAQUE_MARKER, compactInt, type InodeRecord, OCI_WHITEOUT_PREFIX, OPAQUE_XATTR,
  OPAQUE_XATTR_FUSE_OVERLAYFS, OPAQUE_XATTR_USER, OpenFlags, ROOT_INO, RenameFlags, S_IFCHR,
  S_IFDIR, S_IFLNK, S_IFMT, S_IFREG, S_ISGID, S_ISUID, S_ISVTX, UTIME_NOW, UTIME_OMIT,
  XattrFlags, checkAccess, checkSticky, inGroup, killPriv, isOwnerOrRoot, mayAccess, toFsError, typeOfMode,
  validateName,
  type Attr, type CopySource, type CreateResult, type DirEntry, type Entry, type ErrnoCode,
  type FileType, type Layer, type OpenResult, type Ownership, type RequestContext,
  type SetattrRequest, type StatFs, type Timespec, type WhiteoutFormat,
} from '@layerfs/core';
import { copyData, type CopyMethod } from './copy.js';
import { DirFdCache, defaultMaxOpenFds, forEachAncestor, raiseNofileLimit } from './fd-cache.js';
import * as libc from './libc.js';
import { AT_EMPTY_PATH, AT_FDCWD, AT_REMOVEDIR, AT_SYMLINK_NOFOLLOW, O, RESOLVE, type HostStat } from './libc.js';
import { resolvePassthroughOptions, type IdMap, type PassthroughOptions, type ResolvedPassthroughOptions } from './options.js';

/** The path (below the root) of the work directory: a component no name can be. */
const WORK = '\u0000work';
/** Name of the shared whiteout in the work directory (every chardev whiteout links to it). */
const SHARED_WHITEOUT = '#layerfs-whiteout';
/** The path given to a removed directory (never opened: creations in it fail first). */
const ORPHAN = '\u0000removed';
/** Longest path handed to one openat2 call (PATH_MAX is 4096 with the NUL). */
const CHUNK_BYTES = 3800;
const OPAQUE_XATTRS = [OPAQUE_XATTR, OPAQUE_XATTR_USER, OPAQUE_XATTR_FUSE_OVERLAYFS] as const;
const XATTR_NAME_MAX = 255;
const XATTR_SIZE_MAX = 65536;
/** Errors that mean "this path no longer leads where it did" (a search by identity may help). */
const STALE_PATH: readonly string[] = ['ENOENT', 'ENOTDIR', 'ELOOP', 'ESTALE'];
/** Most entries `findByIdentity` examines before declaring an inode lost. */
const SEARCH_LIMIT = 200_000;

/**
 * What the layer keeps per inode: its own InodeTable record (one object per inode; fields
 * only the root, the work dir or a removed inode need are added to those alone).
 */
class PtNode implements InodeRecord<PtNode> {
  /** The table's inode number. */
  readonly ino: number;
  /** The identity when it is not the ino's digits (see `key`). */
  private ownKey: string | undefined;
  /** Lookups held; the table owns it. */
  lookups = 0;
  /** The inode's type (fixed for its life). */
  readonly type: FileType;
  /**
   * Paths below the root (WORK-prefixed for the work dir) known to reach the inode: none,
   * one (the string itself: no array for the common case), or several.
   */
  private known: string | string[] | undefined;
  /**
   * Generation of this table inode (FUSE's nodeid + generation): from one counter of the
   * layer, so an inode number the table hands out again never comes with an old generation.
   */
  readonly generation: number;
  /** An O_PATH descriptor held once the last known name is gone while still referenced. */
  declare orphanFd?: number;
  /** True once a search of the tree found no name for it (cleared when a lookup reaches it). */
  declare lost?: boolean;
  /** Root or work dir: addressed through its own descriptor. */
  declare readonly fixedFd?: number;

  constructor(ino: number, key: string, type: FileType, path: string, generation: number) {
    // A non-number first: a tagged field (a 64-bit host ino would box every node's otherwise).
    this.ino = undefined as unknown as number;
    this.ino = compactInt(ino);
    this.ownKey = key === String(this.ino) ? undefined : key;
    this.type = type;
    this.known = path;
    this.generation = generation;
  }

  /**
   * Identity (see `identity`); the table owns it. Most are the ino's digits (a root-device
   * inode at its own ino): those are made when asked, not kept (a string less per inode).
   */
  get key(): string {
    return this.ownKey ?? String(this.ino);
  }

  set key(key: string) {
    this.ownKey = key === String(this.ino) ? undefined : key;
  }

  /**
   * A root or work dir node, addressed through `fd`: a class of its own (V8 sizes the
   * instances of a class by the most properties its first ones had: no slot in every node).
   */
  static fixed(ino: number, key: string, path: string, generation: number, fd: number): PtNode {
    return new FixedPtNode(ino, key, path, generation, fd);
  }

  /** The node itself (InodeTable record value). */
  get value(): PtNode {
    return this;
  }

  /** Every known path (a copy). */
  get paths(): readonly string[] {
    const k = this.known;
    return k === undefined ? [] : typeof k === 'string' ? [k] : [...k];
  }

  set paths(list: readonly string[]) {
    this.known = list.length === 0 ? undefined : list.length === 1 ? list[0] : [...list];
  }

  /** The first known path. */
  get firstPath(): string | undefined {
    const k = this.known;
    return k === undefined || typeof k === 'string' ? k : k[0];
  }

  /** True when `path` is a known path. */
  hasPath(path: string): boolean {
    const k = this.known;
    return k === undefined ? false : typeof k === 'string' ? k === path : k.includes(path);
  }

  /**
   * Replace the path `from` by `to`; with `subtree`, also every path below `from` by the same
   * below `to`. True when a path changed.
   */
  movePath(from: string, to: string, subtree: boolean): boolean {
    const k = this.known;
    if (k === undefined) return false;
    if (typeof k === 'string') {
      this.known = moved(k, from, to, subtree);
      return this.known !== k;
    }
    let changed = false;
    const next = k.map((p) => {
      const q = moved(p, from, to, subtree);
      if (q !== p) changed = true;
      return q;
    });
    if (changed) this.known = next;
    return changed;
  }

  /** Add a known path (after the others). */
  addPath(path: string): void {
    const k = this.known;
    this.known = k === undefined ? path : typeof k === 'string' ? [k, path] : [...k, path];
  }
}

/** The root's or the work dir's node (see `PtNode.fixed`). */
class FixedPtNode extends PtNode {
  constructor(ino: number, key: string, path: string, generation: number, fd: number) {
    super(ino, key, 'directory', path, generation);
    (this as { fixedFd?: number }).fixedFd = fd;
  }
}

/** `p` with `from` replaced by `to` (with `subtree`, a path below `from` too). */
function moved(p: string, from: string, to: string, subtree: boolean): string {
  if (p === from) return to;
  return subtree && p.length > from.length && p.startsWith(from) && p.charCodeAt(from.length) === 0x2f ? to + p.slice(from.length) : p;
}

/** How to address one inode in a host call. */
interface Target {
  /** Directory descriptor (or AT_FDCWD with a /proc path in `name`). */
  readonly dirfd: number;
  /** Name in `dirfd` (or the /proc path of a descriptor). */
  readonly name: string;
  /** AT_SYMLINK_NOFOLLOW for names, 0 for descriptor paths (the magic link is followed once). */
  readonly at: number;
  /** True when `procPath` must be followed (a descriptor path), false for `l*xattr`. */
  readonly follow: boolean;
  /** The descriptor itself when the target is one (root, work dir, orphan). */
  readonly fd?: number;
  /** The path below the root, when the target is a name. */
  readonly path?: string;
}

/** An open file: its descriptor, and the data calls in flight on it (the pool holds `fd`). */
interface FileHandle {
  readonly kind: 'file'; readonly ino: number; readonly fd: number; readonly flags: number;
  /** The descriptor is a regular file (known at open: reads need no fstat to offer a splice). */
  readonly regular: boolean;
  /** Data calls in flight; the descriptor is closed only once this is back to 0. */
  busy: number;
  /** Resolvers of those waiting for `busy` to reach 0 (release, destroy). */
  drained?: (() => void)[];
}
interface ListEntry { readonly name: string; readonly stored: string; readonly ino: number; readonly type: FileType; readonly whiteout: boolean; readonly st?: HostStat }

/** FileType of each `d_type` that needs no stat to tell (char devices may be whiteouts). */
const DT_TYPES: Record<number, FileType | undefined> = {
  [libc.DT.FIFO]: 'fifo', [libc.DT.DIR]: 'directory', [libc.DT.BLK]: 'blockdev', [libc.DT.REG]: 'file',
  [libc.DT.LNK]: 'symlink', [libc.DT.SOCK]: 'socket',
};
interface DirHandle { readonly kind: 'dir'; readonly ino: number; listing: ListEntry[] | undefined }
type Handle = FileHandle | DirHandle;

function err(code: ErrnoCode, detail?: string): FsError {
  return FsError.of(code, detail);
}

function join(dir: string, name: string): string {
  return dir === '' ? name : `${dir}/${name}`;
}

function splitPath(path: string): { parent: string; name: string } {
  const i = path.lastIndexOf('/');
  return i < 0 ? { parent: '', name: path } : { parent: path.slice(0, i), name: path.slice(i + 1) };
}


function isDirMode(mode: number): boolean { return (mode & S_IFMT) === S_IFDIR; }
function isRegMode(mode: number): boolean { return (mode & S_IFMT) === S_IFREG; }
function isChardevWhiteout(st: HostStat): boolean { return (st.mode & S_IFMT) === S_IFCHR && st.rdev === 0; }


const PROCESS_IS_ROOT = typeof process.geteuid === 'function' && process.geteuid() === 0;
/** The process's effective ids (what the host gives a new object unless the directory is set-gid). */
const PROCESS_UID = typeof process.geteuid === 'function' ? process.geteuid() : -1;
const PROCESS_GID = typeof process.getegid === 'function' ? process.getegid() : -1;

function procFd(fd: number): string {
  return `/proc/self/fd/${fd}`;
}

/** A path for the xattr calls (made only when needed: the hot paths never use it). */
function procPath(t: Target): string {
  return t.follow ? t.name : `${procFd(t.dirfd)}/${t.name}`;
}

/** Swallow the listed error codes of `f` (returns undefined for them). */
function ignoring<T>(codes: readonly string[], f: () => T): T | undefined {
  try {
    return f();
  } catch (e) {
    if (e instanceof FsError && codes.includes(e.code)) return undefined;
    throw e;
  }
}

/** A host directory as a Layer; see the module comment for how it works. */
export class PassthroughLayer implements Layer {
  /** Always `ROOT_INO`. */
  readonly rootIno = ROOT_INO;
  /** How this layer stores whiteouts and opaque markers. */
  readonly whiteoutFormat: WhiteoutFormat;
  /** False when every change fails with EROFS. */
  readonly writable: boolean;
  /** The work directory's inode (outside the tree), when `workdir` was given. */
  readonly workIno?: number;
  /** The layer root, as an absolute host path. */
  readonly root: string;
  /** The work directory, as an absolute host path, when given. */
  readonly workdir?: string;
  /** The options in force (defaults filled in). */
  readonly options: ResolvedPassthroughOptions;
  private readonly rootFd: number;
  private readonly workFd: number | undefined;
  /** New whiteouts are links to the work directory's shared one (off once a link was refused). */
  private shareWhiteouts = true;
  /** This layer made or linked the shared whiteout (it removes it at destroy). */
  private sharedWhiteoutMade = false;
  private readonly rootDev: number;
  private readonly table: InodeTable<PtNode>;
  private readonly cache: DirFdCache;
  /**
   * Directory paths that may have a record below them: every ancestor of every path a record
   * was given (`notePath`). Not pruned as records go, only rebuilt from the live records when
   * it outgrows `recordDirsMax`; so a directory renamed from a path not in it (every directory
   * copy-up renames a fresh one into place) moves its own record without a scan of the table.
   */
  private recordDirs = new Set<string>();
  private recordDirsMax = 1 << 16;
  private readonly handles = new Map<number, Handle>();
  /** The last generation given to a new table inode (the root has 1). */
  private lastGeneration = 1;
  private readonly uidmap: IdMap;
  private readonly gidmap: IdMap;
  private nextFh = 1;
  private workExcess = 0;
  private destroyed = false;
  private useOpenat2 = true;

  /** Serve the host directory `root` (which must exist) as a layer. */
  constructor(root: string, options: PassthroughOptions = {}) {
    this.options = resolvePassthroughOptions(options);
    this.whiteoutFormat = this.options.whiteoutFormat;
    this.writable = this.options.writable;
    this.uidmap = this.options.uidmap;
    this.gidmap = this.options.gidmap;
    raiseNofileLimit();
    this.cache = new DirFdCache(this.options.maxOpenFds ?? defaultMaxOpenFds());
    this.root = nodePath.resolve(root);
    this.rootFd = libc.openat(AT_FDCWD, this.root, O.PATH | O.DIRECTORY);
    const rst = libc.statx(this.rootFd, '', AT_EMPTY_PATH);
    this.rootDev = rst.dev;
    const rootKey = this.keyOf(rst);
    this.table = new InodeTable<PtNode>(rootKey, PtNode.fixed(ROOT_INO, rootKey, '', 1, this.rootFd), {
      ownRecords: true,
      // On the root's device the key is the ino's digits: a record at that ino needs no key index.
      inoOfKey: (key) => (key.includes(':') ? undefined : Number(key)),
      ...(this.options.onExcessForget ? { onExcessForget: this.options.onExcessForget } : {}),
    });
    if (this.options.workdir !== undefined) {
      const work = nodePath.resolve(this.options.workdir);
      const fd = libc.openat(AT_FDCWD, work, O.PATH | O.DIRECTORY);
      try {
        const wst = libc.statx(fd, '', AT_EMPTY_PATH);
        if (wst.dev !== rst.dev) throw new FsError('EXDEV', { path: work, detail: 'workdir must be on the same filesystem as the layer root' });
        const realRoot = realpathSync(this.root);
        const realWork = realpathSync(work);
        const inside = (a: string, b: string) => a === b || a.startsWith(b.endsWith('/') ? b : b + '/');
        if (inside(realWork, realRoot) || inside(realRoot, realWork)) {
          throw new FsError('EINVAL', { path: work, detail: 'workdir and the layer root must not contain each other' });
        }
      } catch (e) {
        closeSync(fd);
        closeSync(this.rootFd);
        throw e;
      }
      this.workFd = fd;
      this.workdir = work;
      const wst = libc.statx(fd, '', AT_EMPTY_PATH);
      const wkey = this.keyOf(wst);
      const { record } = this.table.acquire(wkey, (ino) => PtNode.fixed(ino, wkey, WORK, ++this.lastGeneration, fd), 1, this.preferredIno(wst));
      this.workIno = record.ino;
    }
  }

  /** Async form of the constructor (same result). */
  static async open(root: string, options: PassthroughOptions = {}): Promise<PassthroughLayer> {
    try {
      return new PassthroughLayer(root, options);
    } catch (e) {
      throw toFsError(e, { path: root, detail: 'cannot open the layer directory' });
    }
  }

  // ---- bookkeeping -----------------------------------------------------------------------

  /** Inodes in the lookup table, the root included (the pinned work dir is not counted). */
  liveInodes(): number {
    return this.table.size - (this.workIno !== undefined ? 1 : 0);
  }

  /** Lookups held on `ino` (the work dir's pin is not counted). */
  lookupCount(ino: number): number {
    const n = this.table.lookups(ino);
    return ino === this.workIno ? Math.max(0, n - 1) : n;
  }

  /** Lookups forgotten beyond what was held, over the layer's life. */
  get excessForgets(): number {
    return this.table.excessForgets + this.workExcess;
  }

  /** Number of open file and directory handles. */
  get openHandles(): number {
    return this.handles.size;
  }

  /** Descriptor statistics: directory descriptors cached now, the cache bound, opens and evictions. */
  fdStats(): { cached: number; max: number; opened: number; evicted: number; handles: number } {
    return { cached: this.cache.size, max: this.cache.max, opened: this.cache.opened, evicted: this.cache.evicted, handles: this.handles.size };
  }

  /** Identity of (dev, ino): the ino's digits on the root's device, `dev:ino` elsewhere. */
  private identity(dev: number, inoKey: string): string {
    return dev === this.rootDev ? inoKey : `${dev}:${inoKey}`;
  }

  /** Identity of the inode `st` describes. */
  private keyOf(st: HostStat): string {
    return this.identity(st.dev, st.inoKey);
  }

  private preferredIno(st: HostStat): number | undefined {
    if (st.dev !== this.rootDev || !Number.isSafeInteger(st.ino)) return undefined;
    return st.ino;
  }

  /** The number a lookup would give the inode (dev, ino) now (for readdir entries not looked up). */
  private peekIno(dev: number, ino: number, inoKey: string): number {
    const key = this.identity(dev, inoKey);
    const known = this.table.byIdentity(key);
    if (known !== undefined) return known;
    if (dev === this.rootDev && Number.isSafeInteger(ino) && ino > ROOT_INO) return ino;
    // Off-device or huge: a stable 53-bit hash of the identity.
    let h = 0x811c9dc5;
    for (const c of key) h = Math.imul(h ^ c.charCodeAt(0), 0x01000193) >>> 0;
    return 0x100000000 + h;
  }

  private alive(): void {
    if (this.destroyed) throw new FsError('EIO', { detail: 'layer destroyed' });
  }

  private ro(): void {
    if (!this.writable) throw err('EROFS');
  }

  private checking(ctx: RequestContext): boolean {
    return this.options.checkPermissions && ctx.uid !== 0;
  }

  private view(st: HostStat): Ownership {
    return { mode: st.mode, uid: this.uidmap.toContainer(st.uid), gid: this.gidmap.toContainer(st.gid) };
  }

  private attrOf(st: HostStat, ino: number): Attr {
    const uid = this.uidmap.toContainer(st.uid);
    const gid = this.gidmap.toContainer(st.gid);
    // One literal per shape (no copy to add the optional birth time).
    return st.birthtime
      ? {
        ino, dev: st.dev, mode: st.mode, nlink: st.nlink, uid, gid, rdev: st.rdev, size: st.size, blocks: st.blocks,
        blksize: st.blksize, atime: st.atime, mtime: st.mtime, ctime: st.ctime, birthtime: st.birthtime,
      }
      : {
        ino, dev: st.dev, mode: st.mode, nlink: st.nlink, uid, gid, rdev: st.rdev, size: st.size, blocks: st.blocks,
        blksize: st.blksize, atime: st.atime, mtime: st.mtime, ctime: st.ctime,
      };
  }

  /** Take one lookup on the inode `st` reached through `path`, and build its Entry. */
  private entryFor(st: HostStat, path: string, whiteout: boolean): Entry {
    const key = this.keyOf(st);
    const { record, created } = this.table.acquire(key, (ino) => new PtNode(ino, key, typeOfMode(st.mode), path, ++this.lastGeneration), 1, this.preferredIno(st));
    const generation = record.value.generation;
    if (created) this.notePath(path);
    else {
      const node = record.value;
      if (node.lost) node.lost = false;
      if (node.fixedFd === undefined && !node.hasPath(path)) {
        if (node.type !== 'directory') { node.addPath(path); this.notePath(path); }
        else if (node.firstPath === undefined) { node.paths = [path]; this.notePath(path); }
        else {
          // Moved behind our back: everything known below it moves along.
          const old = node.firstPath;
          this.cache.deleteTree(old);
          this.movePaths(old, path, true);
        }
      }
    }
    const attr = this.attrOf(st, record.ino);
    return whiteout ? { ino: record.ino, generation, attr, whiteout: true } : { ino: record.ino, generation, attr };
  }

  private node(ino: number): PtNode {
    this.alive();
    return this.table.require(ino).value;
  }

  // ---- resolution ----------------------------------------------------------------------

  /** Open the directory at `path` (below root or work) confined, as an O_PATH descriptor. */
  private openDirPath(path: string): number {
    let base: number;
    let rel: string;
    if (path === WORK || path.startsWith(WORK + '/')) {
      if (this.workFd === undefined) throw err('ENOENT');
      base = this.workFd;
      rel = path.slice(WORK.length + 1);
    } else {
      base = this.rootFd;
      rel = path;
    }
    if (rel === '') return libc.openat(base, '.', O.PATH | O.DIRECTORY);
    const comps = rel.split('/');
    const chunks: string[] = [];
    if (this.useOpenat2) {
      let cur = '';
      for (const c of comps) {
        if (cur !== '' && Buffer.byteLength(cur) + 1 + Buffer.byteLength(c) > CHUNK_BYTES) { chunks.push(cur); cur = c; }
        else cur = cur === '' ? c : `${cur}/${c}`;
      }
      chunks.push(cur);
    }
    let fd = base;
    try {
      if (this.useOpenat2) {
        for (const chunk of chunks) {
          let next: number;
          try {
            next = libc.openat2(fd, chunk, O.PATH | O.DIRECTORY | O.NOFOLLOW, RESOLVE.BENEATH | RESOLVE.NO_MAGICLINKS | RESOLVE.NO_SYMLINKS);
          } catch (e) {
            if (e instanceof FsError && e.code === 'ENOSYS' && fd === base) { this.useOpenat2 = false; return this.openDirPath(path); }
            throw e;
          }
          if (fd !== base) closeSync(fd);
          fd = next;
        }
      } else {
        for (const c of comps) {
          const next = libc.openat(fd, c, O.PATH | O.DIRECTORY | O.NOFOLLOW);
          if (fd !== base) closeSync(fd);
          fd = next;
        }
      }
    } catch (e) {
      if (fd !== base) closeSync(fd);
      if (e instanceof FsError && e.code === 'EXDEV') throw err('ENOENT', 'path left the layer');
      throw e;
    }
    return fd;
  }

  /**
   * The cached (or freshly opened) descriptor of the directory at `path`. With `expectKey`,
   * only a descriptor open on that directory is returned (a cached one of another directory
   * that took the path is replaced; a fresh one of another directory is ESTALE).
   */
  private dirFd(path: string, expectKey?: string): number {
    if (path === '') return this.rootFd;
    if (path === WORK && this.workFd !== undefined) return this.workFd;
    const cached = this.cache.get(path);
    if (cached !== undefined) {
      if (expectKey === undefined || cached.key === expectKey) return cached.fd;
      this.cache.delete(path);
    }
    const fd = this.openDirPath(path);
    let key: string;
    try {
      key = this.keyOf(libc.statx(fd, '', AT_EMPTY_PATH));
    } catch (e) {
      closeSync(fd);
      throw e;
    }
    if (expectKey !== undefined && key !== expectKey) {
      closeSync(fd);
      throw err('ESTALE', `directory at ${JSON.stringify(path)} was replaced`);
    }
    this.cache.set(path, fd, key);
    return fd;
  }

  /** The descriptor and path of directory inode `ino` (ENOTDIR, ENOENT when removed). */
  private dir(ino: number): { fd: number; path: string; node: PtNode } {
    const node = this.node(ino);
    if (node.type !== 'directory') throw err('ENOTDIR');
    if (node.fixedFd !== undefined) return { fd: node.fixedFd, path: node.firstPath!, node };
    const path = this.currentPath(node);
    if (path === undefined) {
      // Removed while referenced: its held descriptor lists as empty, creations fail ENOENT.
      if (node.orphanFd !== undefined) return { fd: node.orphanFd, path: ORPHAN, node };
      throw err('ENOENT', 'directory was removed');
    }
    try {
      return { fd: this.dirFd(path, node.key), path, node };
    } catch (e) {
      if (!(e instanceof FsError) || !STALE_PATH.includes(e.code)) throw e;
      // The path no longer leads to this directory: look for it once by identity.
      this.cache.delete(path);
      node.paths = [];
      const found = this.currentPath(node);
      if (found === undefined) throw err('ESTALE', 'directory is no longer reachable');
      return { fd: this.dirFd(found, node.key), path: found, node };
    }
  }

  /** A path of `node` that still reaches it, searching the tree when none is known. */
  private currentPath(node: PtNode): string | undefined {
    const first = node.firstPath;
    if (first !== undefined) return first;
    if (node.orphanFd !== undefined || node.lost) return undefined;
    const found = this.findByIdentity(node.key, node.type === 'directory');
    if (found !== undefined) { node.paths = [found]; this.notePath(found); }
    else node.lost = true;
    return found;
  }

  /**
   * Breadth-first search of the tree for the inode `key` (hard links whose names we never
   * saw), giving up after SEARCH_LIMIT entries.
   */
  private findByIdentity(key: string, dirOnly: boolean): string | undefined {
    const queue: string[] = [''];
    let seen = 0;
    while (queue.length > 0 && seen < SEARCH_LIMIT) {
      const dirPath = queue.shift()!;
      let fd: number;
      try { fd = this.dirFd(dirPath); } catch { continue; }
      let names: string[];
      try { names = readdirSync(procFd(fd)); } catch { continue; }
      for (const name of names) {
        seen++;
        let st: HostStat;
        try { st = libc.statx(this.dirFd(dirPath), name, AT_SYMLINK_NOFOLLOW); } catch { continue; }
        const p = join(dirPath, name);
        if (this.keyOf(st) === key && (!dirOnly || isDirMode(st.mode))) return p;
        if (isDirMode(st.mode)) queue.push(p);
      }
    }
    return undefined;
  }

  private targetOf(node: PtNode): Target {
    const fd = node.fixedFd ?? node.orphanFd;
    if (fd !== undefined) return { dirfd: AT_FDCWD, name: procFd(fd), at: 0, follow: true, fd };
    const path = this.currentPath(node);
    if (path === undefined) throw err('ESTALE', 'no name reaches this inode any more');
    const { parent, name } = splitPath(path);
    const pfd = this.dirFd(parent);
    return { dirfd: pfd, name, at: AT_SYMLINK_NOFOLLOW, follow: false, path };
  }

  /** Stat inode `ino` through its target, checking it is still the same inode. */
  private statIno(ino: number): { st: HostStat; t: Target; node: PtNode } {
    const node = this.node(ino);
    for (let attempt = 0; attempt < 3; attempt++) {
      const named = node.fixedFd === undefined && node.orphanFd === undefined;
      const path = named ? this.currentPath(node) : undefined;
      let t: Target | undefined;
      let st: HostStat | undefined;
      try {
        t = this.targetOf(node);
        st = libc.statx(t.dirfd, t.name, t.at);
      } catch (e) {
        if (!(e instanceof FsError) || !STALE_PATH.includes(e.code) || path === undefined) throw e;
      }
      if (t && st && this.keyOf(st) === node.key) return { st, t, node };
      // The name no longer reaches this inode: drop it and try another (or search).
      if (path !== undefined) {
        node.paths = node.paths.filter((p) => p !== path);
        if (node.type === 'directory') this.cache.delete(path);
      }
    }
    throw err('ESTALE', `inode ${ino} is no longer reachable`);
  }

  private statHandle(h: FileHandle): HostStat {
    return libc.statx(h.fd, '', AT_EMPTY_PATH);
  }

  /** Stat `name` in directory fd `pfd`; undefined when absent (no error is made for that). */
  private statAt(pfd: number, name: string): HostStat | undefined {
    return libc.statxIfExists(pfd, name, AT_SYMLINK_NOFOLLOW);
  }

  private isMarkerName(name: string): boolean {
    return this.whiteoutFormat === 'oci' && name.startsWith(OCI_WHITEOUT_PREFIX);
  }

  /** What occupies `name` in `pfd`: the stored name, its stat, and whether it is a whiteout. */
  private slot(pfd: number, name: string): { stored: string; st: HostStat; whiteout: boolean } | undefined {
    if (this.isMarkerName(name)) return undefined;
    const st = this.statAt(pfd, name);
    if (st) return { stored: name, st, whiteout: isChardevWhiteout(st) };
    if (this.whiteoutFormat === 'oci' && Buffer.byteLength(name) + OCI_WHITEOUT_PREFIX.length <= 255) {
      const marker = OCI_WHITEOUT_PREFIX + name;
      const mst = this.statAt(pfd, marker);
      if (mst) return { stored: marker, st: mst, whiteout: true };
    }
    return undefined;
  }

  private checkNewName(name: string): void {
    validateName(name);
    if (this.isMarkerName(name)) throw err('EINVAL', `'${name}' is reserved for whiteouts in an OCI layer`);
  }

  /** Host uid/gid of a new object for `ctx` in a directory with attributes `pst`. */
  private newOwnership(ctx: RequestContext, pst: HostStat, mode: number): { uid: number; gid: number; mode: number } {
    const uid = this.uidmap.toHost(ctx.uid);
    let gid = this.gidmap.toHost(ctx.gid);
    if (uid === undefined || gid === undefined) throw err('EOVERFLOW', 'caller id is not mapped');
    let m = mode;
    if (pst.mode & S_ISGID) {
      gid = pst.gid;
      if ((m & S_IFMT) === S_IFDIR) m |= S_ISGID;
    }
    if ((m & S_IFMT) !== S_IFDIR && (m & S_ISGID) && ctx.uid !== 0 && !inGroup(ctx, this.gidmap.toContainer(gid))) m &= ~S_ISGID;
    return { uid, gid, mode: m };
  }

  /**
   * Give a just-created object its owner and exact mode (the process umask and chown may
   * change them). `st`: the object's stat when the caller has it (from its descriptor).
   */
  private settle(pfd: number, name: string, want: { uid: number; gid: number; mode: number }, isLink: boolean, st0?: HostStat): HostStat {
    let st = st0 ?? libc.statx(pfd, name, AT_SYMLINK_NOFOLLOW);
    let changed = false;
    if (PROCESS_IS_ROOT && (st.uid !== want.uid || st.gid !== want.gid)) {
      libc.fchownat(pfd, name, want.uid, want.gid, AT_SYMLINK_NOFOLLOW);
      changed = true;
    }
    if (!isLink) {
      const after = changed ? libc.statx(pfd, name, AT_SYMLINK_NOFOLLOW) : st;
      if ((after.mode & 0o7777) !== (want.mode & 0o7777)) {
        libc.fchmodat(pfd, name, want.mode & 0o7777, AT_SYMLINK_NOFOLLOW);
        changed = true;
      }
    }
    if (changed) st = libc.statx(pfd, name, AT_SYMLINK_NOFOLLOW);
    return st;
  }

  /**
   * Common path of mknod/mkdir/symlink: checks, `make`, owner and mode, entry. When nothing
   * but the name's existence can refuse the creation, the host's EEXIST from `make` replaces
   * the probe for the name.
   */
  private createIn(ctx: RequestContext, parent: number, name: string, mode: number, make: (pfd: number, name: string, mode: number) => void): Entry {
    this.checkNewName(name);
    const d = this.dir(parent);
    const pst = libc.statx(d.fd, '', AT_EMPTY_PATH);
    if (this.checking(ctx)) checkAccess(this.view(pst), ctx, AccessMode.X_OK);
    if (pst.nlink === 0) throw err('ENOENT');
    if (!this.mayCreateDirect(ctx, pst) && this.slot(d.fd, name)) throw err('EEXIST');
    this.ro();
    if (this.checking(ctx)) checkAccess(this.view(pst), ctx, AccessMode.W_OK | AccessMode.X_OK);
    const want = this.newOwnership(ctx, pst, mode);
    make(d.fd, name, want.mode);
    const st = this.settle(d.fd, name, want, (mode & S_IFMT) === S_IFLNK);
    return this.entryFor(st, join(d.path, name), isChardevWhiteout(st));
  }

  // ---- Filesystem ----------------------------------------------------------------------

  /** Resolve `name` in `parent`; +1 lookup. Whiteouts come back with `whiteout: true`. */
  async lookup(ctx: RequestContext, parent: number, name: string): Promise<Entry> {
    const e = this.find(ctx, parent, name);
    if (!e) throw err('ENOENT');
    return e;
  }

  /** `lookup` that resolves to undefined for a missing name (no rejection on a miss). */
  async lookupIfExists(ctx: RequestContext, parent: number, name: string): Promise<Entry | undefined> {
    return this.find(ctx, parent, name);
  }

  private find(ctx: RequestContext, parent: number, name: string): Entry | undefined {
    validateName(name);
    const d = this.dir(parent);
    if (this.checking(ctx)) checkAccess(this.view(libc.statx(d.fd, '', AT_EMPTY_PATH)), ctx, AccessMode.X_OK);
    const s = this.slot(d.fd, name);
    return s ? this.entryFor(s.st, join(d.path, s.stored), s.whiteout) : undefined;
  }

  /**
   * Give back `nlookup` lookups; at zero the record and what it holds are released. A
   * directory's cached descriptor stays in the LRU (bounded, closed on eviction, checked by
   * identity when used again), so a lookup of the same directory soon after does not reopen it.
   */
  async forget(_ctx: RequestContext, ino: number, nlookup: number): Promise<void> {
    if (ino === this.workIno) {
      const held = this.table.lookups(ino) - 1;
      const take = Math.min(nlookup, held);
      if (take > 0) this.table.forget(ino, take);
      if (nlookup > take) {
        this.workExcess += nlookup - take;
        this.options.onExcessForget?.(ino, held, nlookup);
      }
      return;
    }
    const r = this.table.forget(ino, nlookup);
    if (r.dropped && r.value) {
      const node = r.value;
      if (node.orphanFd !== undefined) { try { closeSync(node.orphanFd); } catch { /* closed */ } }
      node.orphanFd = undefined;
    }
  }

  /** Attributes of `ino` (through the handle `fh` when given). */
  async getattr(_ctx: RequestContext, ino: number, fh?: number): Promise<Attr> {
    this.alive();
    const h = fh === undefined ? undefined : this.handles.get(fh);
    if (h && h.kind === 'file' && h.ino === ino) return this.attrOf(this.statHandle(h), ino);
    return this.attrOf(this.statIno(ino).st, ino);
  }

  /** chmod / chown / truncate / utimens with the kernel's permission rules. */
  async setattr(ctx: RequestContext, ino: number, changes: SetattrRequest, fh?: number): Promise<Attr> {
    this.alive();
    const hh = fh === undefined ? undefined : this.handles.get(fh);
    const h = hh && hh.kind === 'file' && hh.ino === ino ? hh : undefined;
    let t: Target;
    let st: HostStat;
    if (h) {
      t = { dirfd: AT_FDCWD, name: procFd(h.fd), at: 0, follow: true, fd: h.fd };
      st = this.statHandle(h);
    } else {
      ({ st, t } = this.statIno(ino));
    }
    this.ro();
    const v = this.view(st);
    const root = ctx.uid === 0 || !this.options.checkPermissions;
    const type = st.mode & S_IFMT;
    if (changes.size !== undefined) {
      if (type === S_IFDIR) throw err('EISDIR');
      if (type !== S_IFREG) throw err('EINVAL');
      if (changes.size < 0 || !Number.isSafeInteger(changes.size)) throw err('EINVAL');
      if (h) {
        if ((h.flags & OpenFlags.O_ACCMODE) === OpenFlags.O_RDONLY) throw err('EINVAL', 'handle not open for writing');
      } else if (!root) {
        checkAccess(v, ctx, AccessMode.W_OK);
      }
    }
    const setUid = changes.uid !== undefined && changes.uid !== -1 ? changes.uid : undefined;
    const setGid = changes.gid !== undefined && changes.gid !== -1 ? changes.gid : undefined;
    if (setUid !== undefined && !root && !(ctx.uid === v.uid && setUid === v.uid)) throw err('EPERM');
    if (setGid !== undefined && !root && !(ctx.uid === v.uid && (inGroup(ctx, setGid) || setGid === v.gid))) throw err('EPERM');
    if (changes.mode !== undefined && !root && !isOwnerOrRoot(v, ctx)) throw err('EPERM');
    if (changes.mode !== undefined && type === S_IFLNK) throw err('EOPNOTSUPP', 'symlinks have no mode of their own');
    const at = changes.atime;
    const mt = changes.mtime;
    const explicit = (at !== undefined && at.nsec !== UTIME_NOW && at.nsec !== UTIME_OMIT)
      || (mt !== undefined && mt.nsec !== UTIME_NOW && mt.nsec !== UTIME_OMIT);
    const touches = (at !== undefined && at.nsec !== UTIME_OMIT) || (mt !== undefined && mt.nsec !== UTIME_OMIT);
    if (!root) {
      if (explicit) {
        if (!isOwnerOrRoot(v, ctx)) throw err('EPERM');
      } else if (touches && !isOwnerOrRoot(v, ctx) && !mayAccess(v, ctx, AccessMode.W_OK)) {
        throw err('EACCES');
      }
    }
    for (const tm of [at, mt]) {
      if (tm && tm.nsec !== UTIME_NOW && tm.nsec !== UTIME_OMIT && (tm.nsec < 0 || tm.nsec >= 1e9)) throw err('EINVAL');
    }
    let hostUid = -1;
    let hostGid = -1;
    if (setUid !== undefined) {
      const u = this.uidmap.toHost(setUid);
      if (u === undefined) throw err('EINVAL', 'uid is not mapped');
      hostUid = u;
    }
    if (setGid !== undefined) {
      const g = this.gidmap.toHost(setGid);
      if (g === undefined) throw err('EINVAL', 'gid is not mapped');
      hostGid = g;
    }
    if (changes.size !== undefined) {
      if (h) {
        ftruncateSync(h.fd, changes.size);
      } else {
        const fd = this.openTarget(t, O.WRONLY | O.NONBLOCK);
        try { ftruncateSync(fd, changes.size); } finally { closeSync(fd); }
      }
      if (ctx.uid !== 0 && (st.mode & (S_ISUID | S_ISGID))) this.chmodTarget(t, killPriv(st.mode) & 0o7777);
    }
    if (setUid !== undefined || setGid !== undefined) {
      if (t.fd !== undefined) libc.fchownat(t.fd, '', hostUid, hostGid, AT_EMPTY_PATH);
      else libc.fchownat(t.dirfd, t.name, hostUid, hostGid, AT_SYMLINK_NOFOLLOW);
    }
    if (changes.mode !== undefined) {
      let m = changes.mode & 0o7777;
      const gidNow = setGid ?? v.gid;
      if (!root && !inGroup(ctx, gidNow)) m &= ~S_ISGID;
      this.chmodTarget(t, m);
    }
    if (touches) {
      const omit: Timespec = { sec: 0, nsec: UTIME_OMIT };
      libc.utimensat(t.dirfd, t.name, at ?? omit, mt ?? omit, t.at);
    }
    const after = h ? this.statHandle(h) : libc.statx(t.dirfd, t.name, t.at);
    return this.attrOf(after, ino);
  }

  private chmodTarget(t: Target, mode: number): void {
    libc.fchmodat(t.dirfd, t.name, mode, t.at);
  }

  /** Open a target as a real descriptor (never following a final symlink). */
  private openTarget(t: Target, flags: number): number {
    if (t.fd !== undefined) return libc.openat(AT_FDCWD, t.name, flags & ~O.NOFOLLOW);
    return libc.openat(t.dirfd, t.name, flags | O.NOFOLLOW);
  }

  /** Target of a symlink; EINVAL for anything else. */
  async readlink(_ctx: RequestContext, ino: number): Promise<string> {
    const { st, t } = this.statIno(ino);
    if ((st.mode & S_IFMT) !== S_IFLNK) throw err('EINVAL');
    return t.fd !== undefined ? libc.readlinkat(t.fd, '') : libc.readlinkat(t.dirfd, t.name);
  }

  /** Create a file, fifo, socket or device (0/0 char devices are whiteouts); +1 lookup. */
  async mknod(ctx: RequestContext, parent: number, name: string, mode: number, rdev: number): Promise<Entry> {
    const type = mode & S_IFMT;
    if (type === S_IFDIR) throw err('EPERM');
    if (type === S_IFLNK) throw err('EINVAL');
    const fmt = type === 0 ? S_IFREG : type;
    const device = fmt === S_IFCHR || fmt === 0o060000;
    if (device && rdev !== 0 && ctx.uid !== 0 && this.options.checkPermissions) {
      this.checkNewName(name);
      this.dir(parent);
      throw err('EPERM');
    }
    return this.createIn(ctx, parent, name, fmt | (mode & 0o7777 & ~ctx.umask), (pfd, n, m) => {
      libc.mknodat(pfd, n, fmt | (m & 0o7777), device ? rdev : 0);
    });
  }

  /** Create a directory; +1 lookup. */
  async mkdir(ctx: RequestContext, parent: number, name: string, mode: number): Promise<Entry> {
    return this.createIn(ctx, parent, name, S_IFDIR | (mode & 0o7777 & ~ctx.umask), (pfd, n, m) => {
      libc.mkdirat(pfd, n, m & 0o7777);
    });
  }

  /** Create a symlink; +1 lookup. */
  async symlink(ctx: RequestContext, parent: number, name: string, target: string): Promise<Entry> {
    if (target.length === 0) throw err('ENOENT');
    if (target.includes('\0')) throw err('EINVAL');
    if (Buffer.byteLength(target) > 4095) throw err('ENAMETOOLONG');
    return this.createIn(ctx, parent, name, S_IFLNK | 0o777, (pfd, n) => {
      libc.symlinkat(target, pfd, n);
    });
  }

  /** Before a name of a referenced inode goes away: keep a descriptor if it was the last one. */
  private releaseName(st: HostStat, path: string, pfd: number, stored: string, lastLink: boolean): void {
    const rid = this.table.byIdentity(this.keyOf(st));
    if (rid === undefined) return;
    const node = this.table.get(rid)!.value;
    node.paths = node.paths.filter((p) => p !== path);
    if (node.type === 'directory') this.cache.deleteTree(path);
    if (lastLink && node.orphanFd === undefined) {
      node.orphanFd = ignoring(['ENOENT', 'ELOOP', 'EACCES'], () => libc.openat(pfd, stored, O.PATH | O.NOFOLLOW));
      node.paths = [];
    }
  }

  /** Remove a non-directory name (a whiteout too). */
  async unlink(ctx: RequestContext, parent: number, name: string): Promise<void> {
    if (name === '.' || name === '..') throw err('EISDIR');
    validateName(name);
    const d = this.dir(parent);
    const pst = libc.statx(d.fd, '', AT_EMPTY_PATH);
    if (this.checking(ctx)) checkAccess(this.view(pst), ctx, AccessMode.X_OK);
    this.ro();
    const s = this.slot(d.fd, name);
    if (!s) throw err('ENOENT');
    if (this.checking(ctx)) {
      checkAccess(this.view(pst), ctx, AccessMode.W_OK | AccessMode.X_OK);
      checkSticky(this.view(pst), this.view(s.st), ctx);
    }
    if (isDirMode(s.st.mode)) throw err('EISDIR');
    const path = join(d.path, s.stored);
    this.releaseName(s.st, path, d.fd, s.stored, s.st.nlink <= 1);
    libc.unlinkat(d.fd, s.stored, 0);
  }

  /** Remove an empty directory. */
  async rmdir(ctx: RequestContext, parent: number, name: string): Promise<void> {
    if (name === '.') throw err('EINVAL');
    if (name === '..') throw err('ENOTEMPTY');
    validateName(name);
    const d = this.dir(parent);
    const pst = libc.statx(d.fd, '', AT_EMPTY_PATH);
    if (this.checking(ctx)) checkAccess(this.view(pst), ctx, AccessMode.X_OK);
    this.ro();
    const s = this.slot(d.fd, name);
    if (!s) throw err('ENOENT');
    if (this.checking(ctx)) {
      checkAccess(this.view(pst), ctx, AccessMode.W_OK | AccessMode.X_OK);
      checkSticky(this.view(pst), this.view(s.st), ctx);
    }
    if (!isDirMode(s.st.mode)) throw err('ENOTDIR');
    const path = join(d.path, s.stored);
    this.cache.deleteTree(path);
    const rid = this.table.byIdentity(this.keyOf(s.st));
    let keep: number | undefined;
    if (rid !== undefined) keep = ignoring(['ENOENT', 'ELOOP', 'ENOTDIR'], () => libc.openat(d.fd, s.stored, O.PATH | O.NOFOLLOW | O.DIRECTORY));
    try {
      libc.unlinkat(d.fd, s.stored, AT_REMOVEDIR);
    } catch (e) {
      if (keep !== undefined) closeSync(keep);
      throw e;
    }
    if (rid !== undefined) {
      const node = this.table.get(rid)!.value;
      node.paths = [];
      if (node.orphanFd === undefined) node.orphanFd = keep;
      else if (keep !== undefined) closeSync(keep);
    }
  }

  /**
   * Replace `from` (and, for a directory, everything below it) by `to` in the records'
   * paths. A non-directory only touches its own record (`key`), and so does a directory no
   * record may lie below (`recordDirs`); otherwise every record is scanned.
   */
  private movePaths(from: string, to: string, subtree: boolean, key?: string): void {
    this.notePath(to);
    if (key !== undefined && (!subtree || !this.recordDirs.has(from))) {
      const rid = this.table.byIdentity(key);
      const n = rid === undefined ? undefined : this.table.get(rid)!.value;
      if (n && n.fixedFd === undefined) n.movePath(from, to, false);
      return;
    }
    for (const r of this.table.records()) {
      const n = r.value;
      if (n.fixedFd !== undefined) continue;
      if (n.movePath(from, to, subtree) && subtree) for (const p of n.paths) this.notePath(p);
    }
  }

  /**
   * Record that a record has the path `path` (its ancestors go into `recordDirs`). The set
   * holds every ancestor of what it holds, so a parent already in it ends the work.
   */
  private notePath(path: string): void {
    const last = path.lastIndexOf('/');
    if (last <= 0 || this.recordDirs.has(path.slice(0, last))) return;
    const add = (anc: string) => { this.recordDirs.add(anc); };
    forEachAncestor(path, add);
    if (this.recordDirs.size <= this.recordDirsMax) return;
    // Rebuild from the live records; grow the bound if they alone fill half of it.
    this.recordDirs = new Set();
    for (const r of this.table.records()) for (const p of r.value.paths) forEachAncestor(p, add);
    if (this.recordDirs.size > this.recordDirsMax / 2) this.recordDirsMax *= 2;
  }

  /** renameat2 with NOREPLACE / EXCHANGE / WHITEOUT (emulated for OCI markers). */
  async rename(ctx: RequestContext, parent: number, name: string, newparent: number, newname: string, flags: number): Promise<void> {
    const { NOREPLACE, EXCHANGE, WHITEOUT } = RenameFlags;
    if (flags & ~(NOREPLACE | EXCHANGE | WHITEOUT)) throw err('EINVAL');
    if ((flags & (NOREPLACE | WHITEOUT)) && (flags & EXCHANGE)) throw err('EINVAL');
    for (const nm of [name, newname]) if (nm === '.' || nm === '..') throw err('EBUSY');
    validateName(name);
    validateName(newname);
    const sd = this.dir(parent);
    const nd = this.dir(newparent);
    const pfd = this.dir(parent).fd;
    const npfd = nd.fd;
    const pst = libc.statx(pfd, '', AT_EMPTY_PATH);
    const npst = parent === newparent ? pst : libc.statx(npfd, '', AT_EMPTY_PATH);
    const checking = this.checking(ctx);
    if (checking) {
      checkAccess(this.view(pst), ctx, AccessMode.X_OK);
      checkAccess(this.view(npst), ctx, AccessMode.X_OK);
    }
    this.ro();
    const src = this.slot(pfd, name);
    if (!src) throw err('ENOENT');
    if (npst.nlink === 0) throw err('ENOENT');
    const dst = this.slot(npfd, newname);
    if ((flags & NOREPLACE) && dst) throw err('EEXIST');
    if ((flags & EXCHANGE) && !dst) throw err('ENOENT');
    if (!dst && this.isMarkerName(newname)) throw err('EINVAL');
    const srcDir = isDirMode(src.st.mode);
    const dstDir = dst ? isDirMode(dst.st.mode) : false;
    // The "trap" checks of lock_rename: no directory moves under itself or replaces an ancestor.
    const under = (p: string, anc: string) => p === anc || p.startsWith(anc + '/');
    if (srcDir && under(nd.path, join(sd.path, src.stored))) throw err('EINVAL');
    if (dst && dstDir && under(sd.path, join(nd.path, dst.stored))) throw err((flags & EXCHANGE) ? 'EINVAL' : 'ENOTEMPTY');
    if (dst && this.keyOf(dst.st) === this.keyOf(src.st)) return;
    if (checking) {
      checkAccess(this.view(pst), ctx, AccessMode.W_OK | AccessMode.X_OK);
      checkSticky(this.view(pst), this.view(src.st), ctx);
      checkAccess(this.view(npst), ctx, AccessMode.W_OK | AccessMode.X_OK);
      if (dst) checkSticky(this.view(npst), this.view(dst.st), ctx);
      if (parent !== newparent) {
        if (srcDir) checkAccess(this.view(src.st), ctx, AccessMode.W_OK);
        if ((flags & EXCHANGE) && dstDir) checkAccess(this.view(dst!.st), ctx, AccessMode.W_OK);
      }
    }
    if (dst && !(flags & EXCHANGE)) {
      if (srcDir && !dstDir) throw err('ENOTDIR');
      if (!srcDir && dstDir) throw err('EISDIR');
    }
    const oldPath = join(sd.path, src.stored);
    const srcMarker = src.stored !== name;
    const dstMarker = dst !== undefined && dst.stored !== newname;
    const newStored = srcMarker ? OCI_WHITEOUT_PREFIX + newname : newname;
    const newPath = join(nd.path, newStored);
    const ociWhiteout = (flags & WHITEOUT) !== 0 && this.whiteoutFormat === 'oci';
    const hostFlags = ociWhiteout ? flags & ~WHITEOUT : flags;
    // What the replaced target leaves behind (a referenced inode keeps a descriptor).
    if (dst && !(flags & EXCHANGE)) {
      const dstPath = join(nd.path, dst.stored);
      if (dstDir) {
        this.cache.deleteTree(dstPath);
        const rid = this.table.byIdentity(this.keyOf(dst.st));
        if (rid !== undefined) {
          const node = this.table.get(rid)!.value;
          node.orphanFd ??= ignoring(['ENOENT', 'ELOOP', 'ENOTDIR'], () => libc.openat(npfd, dst.stored, O.PATH | O.NOFOLLOW | O.DIRECTORY));
          node.paths = [];
        }
      } else {
        this.releaseName(dst.st, dstPath, npfd, dst.stored, dst.st.nlink <= 1);
      }
    }
    if (flags & EXCHANGE) {
      const dstPath = join(nd.path, dst!.stored);
      if (srcMarker === dstMarker) {
        libc.renameat2(pfd, src.stored, npfd, dst!.stored, EXCHANGE);
        if (srcDir) this.cache.deleteTree(oldPath);
        if (dstDir) this.cache.deleteTree(dstPath);
        const tmp = '\u0001exchange';
        this.movePaths(oldPath, tmp, srcDir, this.keyOf(src.st));
        this.movePaths(dstPath, oldPath, dstDir, this.keyOf(dst!.st));
        this.movePaths(tmp, dstPath, srcDir, this.keyOf(src.st));
        return;
      }
      // One side is an OCI marker: move the real object over, then the marker back.
      const real = srcMarker ? { fd: npfd, stored: dst!.stored, path: dstPath, toFd: pfd, toName: name, dir: dstDir }
        : { fd: pfd, stored: src.stored, path: oldPath, toFd: npfd, toName: newname, dir: srcDir };
      const marker = srcMarker ? { fd: pfd, stored: src.stored, path: oldPath, toFd: npfd, toName: OCI_WHITEOUT_PREFIX + newname }
        : { fd: npfd, stored: dst!.stored, path: dstPath, toFd: pfd, toName: OCI_WHITEOUT_PREFIX + name };
      libc.renameat2(real.fd, real.stored, real.toFd, real.toName, NOREPLACE);
      const realTo = join(real.toFd === pfd ? sd.path : nd.path, real.toName);
      if (real.dir) this.cache.deleteTree(real.path);
      this.movePaths(real.path, realTo, real.dir, this.keyOf(srcMarker ? dst!.st : src.st));
      libc.renameat2(marker.fd, marker.stored, marker.toFd, marker.toName, NOREPLACE);
      this.movePaths(marker.path, join(marker.toFd === pfd ? sd.path : nd.path, marker.toName), false, this.keyOf(srcMarker ? src.st : dst!.st));
      return;
    }
    if (srcMarker && dst && !dstMarker) {
      // An OCI whiteout replacing a real name: move the marker in, then drop the name.
      libc.renameat2(pfd, src.stored, npfd, newStored, hostFlags | NOREPLACE);
      libc.unlinkat(npfd, dst.stored, dstDir ? AT_REMOVEDIR : 0);
    } else if (dstMarker && !srcMarker) {
      // Replacing an OCI whiteout marker: move in, then drop the marker.
      libc.renameat2(pfd, src.stored, npfd, newStored, hostFlags | NOREPLACE);
      ignoring(['ENOENT'], () => libc.unlinkat(npfd, dst!.stored, 0));
    } else {
      libc.renameat2(pfd, src.stored, npfd, dstMarker ? dst!.stored : newStored, hostFlags);
    }
    // Only directories have cached descriptors (a scan of the whole cache per renamed file was
    // a third of a copy-up's time).
    if (srcDir) this.cache.deleteTree(oldPath);
    this.movePaths(oldPath, newPath, srcDir, this.keyOf(src.st));
    if (ociWhiteout) {
      const marker = OCI_WHITEOUT_PREFIX + name;
      const fd = libc.openat(pfd, marker, O.WRONLY | O.CREAT | O.EXCL | O.NOFOLLOW, 0);
      closeSync(fd);
    }
  }

  /** New name for `ino`; +1 lookup. */
  async link(ctx: RequestContext, ino: number, newparent: number, newname: string): Promise<Entry> {
    this.checkNewName(newname);
    const { st, t, node } = this.statIno(ino);
    const nd = this.dir(newparent);
    const npst = libc.statx(nd.fd, '', AT_EMPTY_PATH);
    if (this.checking(ctx)) checkAccess(this.view(npst), ctx, AccessMode.X_OK);
    if (npst.nlink === 0) throw err('ENOENT');
    if (this.slot(nd.fd, newname)) throw err('EEXIST');
    this.ro();
    if (isDirMode(st.mode)) throw err('EPERM');
    if (this.checking(ctx)) {
      checkAccess(this.view(npst), ctx, AccessMode.W_OK | AccessMode.X_OK);
      const v = this.view(st);
      if (ctx.uid !== v.uid) {
        const safe = isRegMode(st.mode) && killPriv(st.mode) === st.mode
          && mayAccess(v, ctx, AccessMode.R_OK | AccessMode.W_OK);
        if (!safe) throw err('EPERM');
      }
    }
    if (st.nlink === 0 || t.fd !== undefined) throw err('ENOENT');
    const pfd = this.dirFd(splitPath(t.path!).parent);
    libc.linkat(pfd, t.name, nd.fd, newname, 0);
    const nst = libc.statx(nd.fd, newname, AT_SYMLINK_NOFOLLOW);
    const e = this.entryFor(nst, join(nd.path, newname), isChardevWhiteout(nst));
    const linked = join(nd.path, newname);
    if (!node.hasPath(linked)) { node.addPath(linked); this.notePath(linked); }
    return e;
  }

  private addHandle(h: Handle): number {
    const fh = this.nextFh++;
    this.handles.set(fh, h);
    return fh;
  }

  /** Open flags passed to the host: ours minus creation bits, never following a symlink. */
  private static hostOpenFlags(flags: number, type: number): number {
    let f = flags & ~(O.CREAT | O.EXCL | O.NOCTTY | OpenFlags.O_PATH);
    if (type !== S_IFREG && type !== S_IFDIR) f |= O.NONBLOCK;
    return f;
  }

  private checkOpen(ctx: RequestContext, st: HostStat, flags: number): void {
    const type = st.mode & S_IFMT;
    if (type === S_IFLNK) throw err('ELOOP');
    const acc = flags & OpenFlags.O_ACCMODE;
    const wantsWrite = acc !== OpenFlags.O_RDONLY || (flags & OpenFlags.O_TRUNC) !== 0;
    if (type === S_IFDIR && acc !== OpenFlags.O_RDONLY) throw err('EISDIR');
    if (wantsWrite && (type === S_IFREG || type === S_IFDIR)) this.ro();
    if (this.checking(ctx)) {
      let mask = 0;
      if (acc === OpenFlags.O_RDONLY || acc === OpenFlags.O_RDWR) mask |= AccessMode.R_OK;
      if (acc === OpenFlags.O_WRONLY || acc === OpenFlags.O_RDWR || (flags & OpenFlags.O_TRUNC)) mask |= AccessMode.W_OK;
      checkAccess(this.view(st), ctx, mask);
    }
  }

  /** Open a file (flags: `OpenFlags`; O_CREAT/O_EXCL are ignored here). */
  async open(ctx: RequestContext, ino: number, flags: number): Promise<OpenResult> {
    const { st, t, node } = this.statIno(ino);
    this.checkOpen(ctx, st, flags);
    const fd = this.openTarget(t, PassthroughLayer.hostOpenFlags(flags, st.mode & S_IFMT));
    const fst = libc.statx(fd, '', AT_EMPTY_PATH);
    if (this.keyOf(fst) !== node.key) {
      closeSync(fd);
      throw err('ESTALE', `inode ${ino} was replaced`);
    }
    if ((flags & OpenFlags.O_TRUNC) && ctx.uid !== 0 && this.options.checkPermissions && (fst.mode & (S_ISUID | S_ISGID))) {
      libc.fchmodat(AT_FDCWD, procFd(fd), killPriv(fst.mode) & 0o7777, 0);
    }
    return { fh: this.addHandle({ kind: 'file', ino, fd, flags, regular: (fst.mode & S_IFMT) === S_IFREG, busy: 0 }), noFlush: true };
  }

  /**
   * Open the host file behind `ino` as a real descriptor (confined, identity-checked), for
   * data copies between layers. The caller closes it.
   */
  openHostFd(ino: number, flags: number): number {
    const { st, t, node } = this.statIno(ino);
    if ((st.mode & S_IFMT) === S_IFLNK) throw err('ELOOP');
    const fd = this.openTarget(t, PassthroughLayer.hostOpenFlags(flags, st.mode & S_IFMT));
    if (this.keyOf(libc.statx(fd, '', AT_EMPTY_PATH)) !== node.key) {
      closeSync(fd);
      throw err('ESTALE');
    }
    return fd;
  }

  /**
   * Owner and mode of a new file when the creation may go straight to `openat(O_CREAT|O_EXCL)`
   * (the host then says EEXIST): the name can be no OCI marker, and no error the caller must
   * see before EEXIST (EROFS, EACCES on the parent, an unmapped caller) can arise. Else undefined.
   */
  private directCreate(ctx: RequestContext, pst: HostStat, mode: number): { uid: number; gid: number; mode: number } | undefined {
    if (!this.mayCreateDirect(ctx, pst)) return undefined;
    return this.newOwnership(ctx, pst, S_IFREG | (mode & 0o7777 & ~ctx.umask));
  }

  /**
   * True when only the name's existence can refuse a creation by `ctx` in a directory with
   * attributes `pst` (no OCI marker to probe for, no EROFS, EACCES or EOVERFLOW that must come
   * after EEXIST), so the host's own EEXIST may stand for the probe.
   */
  private mayCreateDirect(ctx: RequestContext, pst: HostStat): boolean {
    if (this.whiteoutFormat === 'oci' || !this.writable) return false;
    if (this.checking(ctx) && !mayAccess(this.view(pst), ctx, AccessMode.W_OK | AccessMode.X_OK)) return false;
    return this.uidmap.toHost(ctx.uid) !== undefined && this.gidmap.toHost(ctx.gid) !== undefined;
  }

  /**
   * True when a new file needs nothing of its directory's attributes beforehand: the caller is
   * not checked and creates as the process itself (so the host's owner rules are the layer's),
   * and no set-gid bit is asked for. The directory's set-gid bit then shows in the new file's
   * group, a removed directory as the host's ENOENT, an existing name as EEXIST.
   */
  private blindCreate(ctx: RequestContext, mode: number): boolean {
    return this.whiteoutFormat !== 'oci' && this.writable && !this.checking(ctx) && (mode & ~ctx.umask & S_ISGID) === 0
      && this.uidmap.toHost(ctx.uid) === PROCESS_UID && this.gidmap.toHost(ctx.gid) === PROCESS_GID;
  }

  /** Owner, mode and entry of a file just created at `name` in `d` and opened as `fd`. */
  private createdFile(
    ctx: RequestContext, d: { fd: number; path: string }, name: string, fd: number, flags: number, mode: number,
    want?: { uid: number; gid: number; mode: number },
  ): CreateResult {
    try {
      const st = libc.statx(fd, '', AT_EMPTY_PATH);
      // Made blind: a group other than the process's says the directory is set-gid (or
      // mounted grpid), so the owner is decided from its attributes as usual.
      const w = want ?? (st.gid === PROCESS_GID
        ? { uid: PROCESS_UID, gid: PROCESS_GID, mode: S_IFREG | (mode & 0o7777 & ~ctx.umask) }
        : this.newOwnership(ctx, libc.statx(d.fd, '', AT_EMPTY_PATH), S_IFREG | (mode & 0o7777 & ~ctx.umask)));
      const settled = this.settle(d.fd, name, w, false, st);
      const entry = this.entryFor(settled, join(d.path, name), false);
      return { fh: this.addHandle({ kind: 'file', ino: entry.ino, fd, flags: flags & ~OpenFlags.O_TRUNC, regular: true, busy: 0 }), entry, noFlush: true };
    } catch (e) {
      closeSync(fd);
      throw e;
    }
  }

  /** `openat` of a new file, or undefined when the name exists (EEXIST). */
  private openNew(pfd: number, name: string, hostFlags: number, mode: number): number | undefined {
    try {
      return libc.openat(pfd, name, hostFlags, mode & 0o7777);
    } catch (e) {
      if (e instanceof FsError && e.code === 'EEXIST') return undefined;
      throw e;
    }
  }

  /**
   * Create and open a file (O_EXCL honoured; an existing file is opened); +1 lookup. When
   * nothing but the name's existence can refuse it, one `openat(O_CREAT|O_EXCL)` replaces the
   * probe for the name (and, for a caller creating as the process, the stat of the
   * directory), and EEXIST sends it the way of an existing name.
   */
  async create(ctx: RequestContext, parent: number, name: string, mode: number, flags: number): Promise<CreateResult> {
    validateName(name);
    const d = this.dir(parent);
    const hostFlags = (flags & ~(O.TRUNC | O.NOCTTY | OpenFlags.O_PATH | O.DIRECTORY)) | O.CREAT | O.EXCL | O.NOFOLLOW;
    if (this.blindCreate(ctx, mode)) {
      const fd = this.openNew(d.fd, name, hostFlags, mode & ~ctx.umask);
      if (fd !== undefined) return this.createdFile(ctx, d, name, fd, flags, mode);
    }
    const pst = libc.statx(d.fd, '', AT_EMPTY_PATH);
    if (this.checking(ctx)) checkAccess(this.view(pst), ctx, AccessMode.X_OK);
    if (pst.nlink === 0) throw err('ENOENT');
    const direct = this.directCreate(ctx, pst, mode);
    if (direct) {
      const fd = this.openNew(d.fd, name, hostFlags, direct.mode);
      if (fd !== undefined) return this.createdFile(ctx, d, name, fd, flags, mode, direct);
    }
    const existing = this.slot(d.fd, name);
    if (existing) {
      if (flags & OpenFlags.O_EXCL) throw err('EEXIST');
      if (isDirMode(existing.st.mode)) throw err('EISDIR');
      this.checkOpen(ctx, existing.st, flags);
      const fd = libc.openat(d.fd, existing.stored, PassthroughLayer.hostOpenFlags(flags, existing.st.mode & S_IFMT) | O.NOFOLLOW);
      let fst = libc.statx(fd, '', AT_EMPTY_PATH);
      if ((flags & OpenFlags.O_TRUNC) && ctx.uid !== 0 && this.options.checkPermissions && (fst.mode & (S_ISUID | S_ISGID))) {
        // A truncating open by an unprivileged caller drops set-id bits, as in `open`.
        libc.fchmodat(AT_FDCWD, procFd(fd), killPriv(fst.mode) & 0o7777, 0);
        fst = libc.statx(fd, '', AT_EMPTY_PATH);
      }
      const entry = this.entryFor(fst, join(d.path, existing.stored), existing.whiteout);
      return { fh: this.addHandle({ kind: 'file', ino: entry.ino, fd, flags, regular: true, busy: 0 }), entry, noFlush: true };
    }
    this.checkNewName(name);
    this.ro();
    if (this.checking(ctx)) checkAccess(this.view(pst), ctx, AccessMode.W_OK | AccessMode.X_OK);
    const want = this.newOwnership(ctx, pst, S_IFREG | (mode & 0o7777 & ~ctx.umask));
    const fd = libc.openat(d.fd, name, hostFlags, want.mode & 0o7777);
    return this.createdFile(ctx, d, name, fd, flags, mode, want);
  }

  private fileHandle(ino: number, fh: number): FileHandle {
    const h = this.handles.get(fh);
    if (!h || h.kind !== 'file' || h.ino !== ino) throw err('EBADF');
    return h;
  }

  private dirHandle(ino: number, fh: number): DirHandle {
    const h = this.handles.get(fh);
    if (!h || h.kind !== 'dir' || h.ino !== ino) throw err('EBADF');
    return h;
  }

  /**
   * Run the data call `f` on the handle's descriptor, counting it in flight so that `release`
   * and `destroy` close the descriptor only after the pool is done with it (a number closed
   * and reused under a queued call would read or write another file).
   */
  private async withData<T>(h: FileHandle, syscall: string, f: (fd: number) => Promise<T>): Promise<T> {
    h.busy++;
    try {
      return await f(h.fd);
    } catch (e) {
      throw toLayerError(e, syscall);
    } finally {
      if (--h.busy === 0 && h.drained) {
        const waiting = h.drained;
        h.drained = undefined;
        for (const resolve of waiting) resolve();
      }
    }
  }

  /** Resolves once no data call is in flight on `h`. */
  private static drained(h: FileHandle): Promise<void> {
    if (h.busy === 0) return Promise.resolve();
    return new Promise((resolve) => { (h.drained ??= []).push(resolve); });
  }

  /** Read up to `length` bytes at `position` (on libuv's pool); short at end of file. */
  async read(_ctx: RequestContext, ino: number, fh: number, length: number, position: number, into?: Uint8Array): Promise<Uint8Array> {
    const h = this.fileHandle(ino, fh);
    if (position < 0 || length < 0) throw err('EINVAL');
    return this.withData(h, 'read', (fd) => readFull(fd, length, position, into, h.regular));
  }

  /**
   * Write `data` at `position` (at the end for O_APPEND handles) on libuv's pool; returns
   * bytes written. `data` is only read until the returned promise settles.
   */
  async write(ctx: RequestContext, ino: number, fh: number, data: Uint8Array, position: number): Promise<number> {
    const h = this.fileHandle(ino, fh);
    if (position < 0) throw err('EINVAL');
    this.ro();
    return this.withData(h, 'write', async (fd) => {
      const done = await writeAll(fd, data, position);
      if (done > 0 && ctx.uid !== 0 && this.options.checkPermissions) {
        const st = this.statHandle(h);
        if (killPriv(st.mode) !== st.mode) libc.fchmodat(AT_FDCWD, procFd(fd), killPriv(st.mode) & 0o7777, 0);
      }
      return done;
    });
  }

  /** Validate the handle (data goes straight to the host). */
  async flush(_ctx: RequestContext, ino: number, fh: number): Promise<void> {
    this.fileHandle(ino, fh);
  }

  /** Close the handle's descriptor (after the data calls in flight on it finish). */
  async release(_ctx: RequestContext, ino: number, fh: number): Promise<void> {
    const h = this.fileHandle(ino, fh);
    this.handles.delete(fh);
    await PassthroughLayer.drained(h);
    closeSync(h.fd);
  }

  /** fsync / fdatasync the handle's descriptor (on libuv's pool). */
  async fsync(_ctx: RequestContext, ino: number, fh: number, datasync: boolean): Promise<void> {
    const h = this.fileHandle(ino, fh);
    await this.withData(h, 'fsync', (fd) => fsyncAsync(fd, datasync));
  }

  /**
   * The entries of directory `ino`, sorted by name. `getdents64` gives each entry's number and
   * type, so a listing without attributes stats only what it must (char devices, to tell a
   * whiteout; entries of unknown type); with `plus` every entry is stat'ed once.
   */
  private listing(ino: number, plus: boolean): ListEntry[] {
    const d = this.dir(ino);
    let ents: libc.HostDirent[];
    try {
      ents = libc.readdirAt(d.fd);
    } catch (e) {
      throw toLayerError(e, 'scandir');
    }
    const oci = this.whiteoutFormat === 'oci';
    const present = oci ? new Set(ents.map((x) => x.name)) : undefined;
    const dev = ents.length > 0 ? libc.statx(d.fd, '', AT_EMPTY_PATH).dev : 0;
    const out: ListEntry[] = [];
    for (const ent of ents) {
      const stored = ent.name;
      let name = stored;
      if (oci && stored.startsWith(OCI_WHITEOUT_PREFIX)) {
        if (stored === OCI_OPAQUE_MARKER) continue;
        name = stored.slice(OCI_WHITEOUT_PREFIX.length);
        if (name.length === 0 || name === '.' || name === '..' || present!.has(name)) continue;
      }
      const type = DT_TYPES[ent.type];
      if (plus || type === undefined || ent.type === libc.DT.CHR) {
        const st = this.statAt(d.fd, stored);
        if (!st) continue;
        out.push({ name, stored, ino: this.peekIno(st.dev, st.ino, st.inoKey), type: typeOfMode(st.mode), whiteout: name !== stored || isChardevWhiteout(st), st });
      } else {
        out.push({ name, stored, ino: this.peekIno(dev, ent.ino, ent.inoKey), type, whiteout: name !== stored });
      }
    }
    out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    return out;
  }

  /** Open a directory (read permission); the listing is taken at the first readdir and again at offset 0. */
  async opendir(ctx: RequestContext, ino: number): Promise<OpenResult> {
    const { st } = this.statIno(ino);
    if (!isDirMode(st.mode)) throw err('ENOTDIR');
    if (this.checking(ctx)) checkAccess(this.view(st), ctx, AccessMode.R_OK);
    return { fh: this.addHandle({ kind: 'dir', ino, listing: undefined }) };
  }

  /** Entries after `offset` (with attributes when `plus`; no lookup is taken). */
  async readdir(_ctx: RequestContext, ino: number, fh: number, offset: number, plus: boolean): Promise<DirEntry[]> {
    const h = this.dirHandle(ino, fh);
    if (offset < 0 || !Number.isInteger(offset)) throw err('EINVAL');
    const fresh = offset === 0 || h.listing === undefined;
    if (fresh) h.listing = this.listing(ino, plus);
    const listing = h.listing!;
    const out: DirEntry[] = [];
    const dfd = plus && (!fresh || listing.some((e) => e.st === undefined)) ? this.dir(ino).fd : -1;
    for (let i = offset; i < listing.length; i++) {
      const e = listing[i]!;
      let entry: DirEntry;
      if (plus) {
        // Attributes from the listing just taken, or taken again for a later batch.
        const st = fresh && e.st ? e.st : this.statAt(dfd, e.stored);
        if (!st) continue;
        const cur = this.peekIno(st.dev, st.ino, st.inoKey);
        const attr = this.attrOf(st, cur);
        entry = e.whiteout
          ? { name: e.name, ino: cur, type: e.type, offset: i + 1, whiteout: true, attr }
          : { name: e.name, ino: cur, type: e.type, offset: i + 1, attr };
      } else {
        entry = e.whiteout
          ? { name: e.name, ino: e.ino, type: e.type, offset: i + 1, whiteout: true }
          : { name: e.name, ino: e.ino, type: e.type, offset: i + 1 };
      }
      out.push(entry);
    }
    return out;
  }

  /** Free a directory handle. */
  async releasedir(_ctx: RequestContext, ino: number, fh: number): Promise<void> {
    this.dirHandle(ino, fh);
    this.handles.delete(fh);
  }

  /** fsync the directory. */
  async fsyncdir(_ctx: RequestContext, ino: number, fh: number, _datasync: boolean): Promise<void> {
    this.dirHandle(ino, fh);
    const fd = libc.openat(AT_FDCWD, procFd(this.dir(ino).fd), O.RDONLY | O.DIRECTORY);
    try { await fsyncAsync(fd, false); } catch (e) { throw toLayerError(e, 'fsync'); } finally { closeSync(fd); }
  }

  /** statvfs of the host filesystem holding `ino`. */
  async statfs(_ctx: RequestContext, ino: number): Promise<StatFs> {
    const node = this.node(ino);
    const fd = node.type === 'directory' ? this.dir(ino).fd : this.dirFd(splitPath(this.currentPath(node) ?? '').parent);
    const s = libc.fstatvfs(node.orphanFd ?? fd);
    return { bsize: s.bsize, frsize: s.frsize, blocks: s.blocks, bfree: s.bfree, bavail: s.bavail, files: s.files, ffree: s.ffree, namemax: s.namemax };
  }

  /** The kernel's xattr permission rules for the caller (the host checks only the process). */
  private xattrPermission(ctx: RequestContext, st: HostStat, name: string, write: boolean): void {
    if (name.length === 0 || Buffer.byteLength(name) > XATTR_NAME_MAX) throw err('ERANGE');
    if (!this.checking(ctx)) return;
    const v = this.view(st);
    if (name.startsWith('trusted.')) {
      throw err(write ? 'EPERM' : 'ENODATA');
    } else if (name.startsWith('user.')) {
      if (!isRegMode(st.mode) && !isDirMode(st.mode)) throw err(write ? 'EPERM' : 'ENODATA');
      if (write && isDirMode(st.mode) && (st.mode & S_ISVTX) && !isOwnerOrRoot(v, ctx)) throw err('EPERM');
      checkAccess(v, ctx, write ? AccessMode.W_OK : AccessMode.R_OK);
    } else if (name.startsWith('security.') || name.startsWith('system.')) {
      if (write && !isOwnerOrRoot(v, ctx) && name.startsWith('system.')) throw err('EPERM');
      if (write && name.startsWith('security.')) checkAccess(v, ctx, AccessMode.W_OK);
    } else {
      throw err('EOPNOTSUPP');
    }
  }

  /** Set an xattr (`XattrFlags.CREATE` → EEXIST if present, `REPLACE` → ENODATA if absent). */
  async setxattr(ctx: RequestContext, ino: number, name: string, value: Uint8Array, flags: number): Promise<void> {
    const { st, t } = this.statIno(ino);
    if (flags & ~(XattrFlags.CREATE | XattrFlags.REPLACE)) throw err('EINVAL');
    if (value.length > XATTR_SIZE_MAX) throw err('E2BIG');
    this.ro();
    this.xattrPermission(ctx, st, name, true);
    libc.lsetxattr(procPath(t), name, value, flags, t.follow);
  }

  /** Value of an xattr; ENODATA if absent. */
  async getxattr(ctx: RequestContext, ino: number, name: string): Promise<Uint8Array> {
    const { st, t } = this.statIno(ino);
    this.xattrPermission(ctx, st, name, false);
    return new Uint8Array(libc.lgetxattr(procPath(t), name, t.follow));
  }

  /** Names of the xattrs (`trusted.*` only for root callers). */
  async listxattr(ctx: RequestContext, ino: number): Promise<string[]> {
    const { t } = this.statIno(ino);
    const names = libc.llistxattr(procPath(t), t.follow);
    return this.checking(ctx) ? names.filter((n) => !n.startsWith('trusted.')) : names;
  }

  /** Remove an xattr; ENODATA if absent. */
  async removexattr(ctx: RequestContext, ino: number, name: string): Promise<void> {
    const { st, t } = this.statIno(ino);
    this.ro();
    this.xattrPermission(ctx, st, name, true);
    libc.lremovexattr(procPath(t), name, t.follow);
  }

  /** access(2) for the caller: EACCES if denied, EROFS for W_OK on a read-only layer. */
  async access(ctx: RequestContext, ino: number, mask: number): Promise<void> {
    const { st } = this.statIno(ino);
    const type = st.mode & S_IFMT;
    if ((mask & AccessMode.W_OK) && !this.writable && (type === S_IFREG || type === S_IFDIR || type === S_IFLNK)) throw err('EROFS');
    if (this.options.checkPermissions) checkAccess(this.view(st), ctx, mask);
  }

  /** fallocate on the handle's descriptor, on libuv's pool (host semantics and errnos). */
  async fallocate(_ctx: RequestContext, ino: number, fh: number, mode: number, offset: number, length: number): Promise<void> {
    const h = this.fileHandle(ino, fh);
    if (offset < 0 || length <= 0) throw err('EINVAL');
    this.ro();
    await this.withData(h, 'fallocate', (fd) => libc.fallocateAsync(fd, mode, offset, length));
  }

  /** lseek on the handle's descriptor (SEEK_DATA / SEEK_HOLE as the host finds them). */
  async lseek(_ctx: RequestContext, ino: number, fh: number, offset: number, whence: number): Promise<number> {
    const h = this.handles.get(fh);
    if (!h || h.ino !== ino || h.kind !== 'file') throw err('EBADF');
    return libc.lseek(h.fd, offset, whence);
  }

  /** copy_file_range between two handles of this layer, on libuv's pool. */
  async copyFileRange(
    _ctx: RequestContext, inoIn: number, fhIn: number, offIn: number,
    inoOut: number, fhOut: number, offOut: number, length: number, flags: number,
  ): Promise<number> {
    const hi = this.fileHandle(inoIn, fhIn);
    const ho = this.fileHandle(inoOut, fhOut);
    if (offIn < 0 || offOut < 0 || length < 0) throw err('EINVAL');
    this.ro();
    return this.withData(hi, 'copy_file_range', (fdIn) => this.withData(ho, 'copy_file_range',
      (fdOut) => libc.copyFileRangeAsync(fdIn, offIn, fdOut, offOut, length, flags)));
  }

  /** Close every handle and descriptor (file descriptors once their data calls finish). Idempotent. */
  async destroy(): Promise<void> {
    if (this.destroyed) return;
    this.destroyed = true;
    const files = [...this.handles.values()].filter((h): h is FileHandle => h.kind === 'file');
    this.handles.clear();
    await Promise.all(files.map((h) => PassthroughLayer.drained(h)));
    for (const h of files) { try { closeSync(h.fd); } catch { /* closed */ } }
    for (const r of this.table.records()) {
      if (r.value.orphanFd !== undefined) { try { closeSync(r.value.orphanFd); } catch { /* closed */ } }
    }
    this.cache.clear();
    if (this.workFd !== undefined) {
      if (this.sharedWhiteoutMade) ignoring(['ENOENT', 'EROFS'], () => libc.unlinkat(this.workFd!, SHARED_WHITEOUT, 0));
      closeSync(this.workFd);
    }
    closeSync(this.rootFd);
  }

  // ---- Layer --------------------------------------------------------------------------

  /** Create a whiteout for `name` (0/0 char device or `.wh.<name>`); EEXIST if the name exists. */
  async createWhiteout(_ctx: RequestContext, parent: number, name: string): Promise<void> {
    validateName(name);
    const d = this.dir(parent);
    if (this.slot(d.fd, name)) throw err('EEXIST');
    this.ro();
    if (this.whiteoutFormat === 'oci') {
      const marker = OCI_WHITEOUT_PREFIX + name;
      validateName(marker);
      closeSync(libc.openat(d.fd, marker, O.WRONLY | O.CREAT | O.EXCL | O.NOFOLLOW, 0));
    } else if (parent === this.workIno || !this.linkSharedWhiteout(d.fd, name)) {
      libc.mknodat(d.fd, name, S_IFCHR, 0);
    }
  }

  /**
   * Make `name` in `pfd` a link to the work directory's shared whiteout, as the kernel's
   * overlayfs does (ovl_whiteout): a link allocates no inode (ext4 here: link 6 µs, mknod 150 µs
   * per whiteout). The shared one is made on first use and again when it is gone (the union
   * cleaned the work directory) or full (EMLINK); a filesystem that refuses the link turns
   * sharing off. False when there is no work directory or sharing is off: the caller makes
   * its own whiteout. Whiteouts staged in the work directory itself are never links, so the
   * work directory holds only the shared one.
   */
  private linkSharedWhiteout(pfd: number, name: string): boolean {
    const work = this.workFd;
    if (work === undefined || !this.shareWhiteouts) return false;
    // One that was there before this layer used it must be a whiteout (else it is replaced).
    const there = this.sharedWhiteoutMade ? undefined : libc.statxIfExists(work, SHARED_WHITEOUT, AT_SYMLINK_NOFOLLOW);
    let fresh = !this.sharedWhiteoutMade && !(there && isChardevWhiteout(there));
    for (let attempt = 0; attempt < 2; attempt++) {
      if (fresh && !this.makeSharedWhiteout(work)) break;
      try {
        libc.linkat(work, SHARED_WHITEOUT, pfd, name, 0);
        this.sharedWhiteoutMade = true;
        return true;
      } catch (e) {
        const code = (e as { code?: unknown }).code;
        if (code === 'EEXIST') throw e;
        if (code !== 'ENOENT' && code !== 'EMLINK') break;
        fresh = true;
      }
    }
    this.shareWhiteouts = false;
    return false;
  }

  /** Put a new shared whiteout in place (made aside, renamed over the name); false on failure. */
  private makeSharedWhiteout(work: number): boolean {
    const tmp = `${SHARED_WHITEOUT}-${process.pid.toString(16)}`;
    try {
      libc.mknodat(work, tmp, S_IFCHR, 0);
      libc.renameat2(work, tmp, work, SHARED_WHITEOUT, 0);
      return true;
    } catch {
      ignoring(['ENOENT'], () => libc.unlinkat(work, tmp, 0));
      return false;
    }
  }

  /** Remove the whiteout for `name`; ENOENT if `name` is not a whiteout here. */
  async deleteWhiteout(_ctx: RequestContext, parent: number, name: string): Promise<void> {
    validateName(name);
    const d = this.dir(parent);
    const s = this.slot(d.fd, name);
    if (!s || !s.whiteout) throw err('ENOENT');
    this.ro();
    this.releaseName(s.st, join(d.path, s.stored), d.fd, s.stored, s.st.nlink <= 1);
    libc.unlinkat(d.fd, s.stored, 0);
  }

  /** True when `name` in `parent` is a whiteout (takes no lookup). */
  async isWhiteout(_ctx: RequestContext, parent: number, name: string): Promise<boolean> {
    validateName(name);
    const d = this.dir(parent);
    return this.slot(d.fd, name)?.whiteout ?? false;
  }

  /** Mark or unmark `ino` opaque (xattr in chardev format, `.wh..wh..opq` in oci). */
  async setOpaque(_ctx: RequestContext, ino: number, opaque: boolean): Promise<void> {
    const d = this.dir(ino);
    const t = this.targetOf(d.node);
    this.ro();
    if (opaque) {
      if (this.whiteoutFormat === 'oci') {
        ignoring(['EEXIST'], () => closeSync(libc.openat(d.fd, OCI_OPAQUE_MARKER, O.WRONLY | O.CREAT | O.EXCL | O.NOFOLLOW, 0)));
      } else {
        libc.lsetxattr(procPath(t), this.options.userxattr ? OPAQUE_XATTR_USER : OPAQUE_XATTR, Buffer.from('y'), 0, t.follow);
      }
    } else {
      for (const x of OPAQUE_XATTRS) ignoring(['ENODATA', 'EOPNOTSUPP', 'EPERM'], () => libc.lremovexattr(procPath(t), x, t.follow));
      ignoring(['ENOENT'], () => libc.unlinkat(d.fd, OCI_OPAQUE_MARKER, 0));
    }
  }

  /** True when directory `ino` carries any opaque marker (every xattr form, or `.wh..wh..opq`). */
  async isOpaque(_ctx: RequestContext, ino: number): Promise<boolean> {
    const node = this.node(ino);
    if (node.type !== 'directory') return false;
    const d = this.dir(ino);
    const t = this.targetOf(d.node);
    const proc = procPath(t);
    // One listxattr (most directories have none) instead of a getxattr per marker form.
    const names = ignoring(['EOPNOTSUPP', 'EPERM'], () => libc.llistxattr(proc, t.follow)) ?? [];
    for (const x of OPAQUE_XATTRS) {
      if (!names.includes(x)) continue;
      const v = ignoring(['ENODATA', 'EOPNOTSUPP', 'EPERM'], () => libc.lgetxattr(proc, x, t.follow));
      if (v && v.length === 1 && v[0] === 0x79) return true;
    }
    return this.statAt(d.fd, OCI_OPAQUE_MARKER) !== undefined;
  }

  /** The host path behind `ino` (may exceed PATH_MAX for deep trees); undefined once unlinked. */
  hostPath(ino: number): string | undefined {
    const rec = this.table.get(ino);
    if (!rec || this.destroyed) return undefined;
    const node = rec.value;
    if (node.orphanFd !== undefined) return undefined;
    const p = node.firstPath;
    if (p === undefined) return undefined;
    if (p === WORK || p.startsWith(WORK + '/')) return this.workdir! + p.slice(WORK.length);
    return p === '' ? this.root : `${this.root}/${p}`;
  }

  /**
   * Replace the data of regular file `dst` with that of `src` (another layer's inode): a
   * reflink clone where the host can (FICLONE, APFS clonefile), else a hole-keeping copy.
   * EXDEV when `src` has no host file. Returns how the data was copied.
   */
  async copyUpData(_ctx: RequestContext, src: CopySource, dst: number): Promise<void> {
    await this.copyUpDataWith(src, dst);
  }

  /** `copyUpData`, reporting whether the data was cloned or streamed. */
  async copyUpDataWith(src: CopySource, dst: number, options: { allowClone?: boolean } = {}): Promise<CopyMethod> {
    this.ro();
    const dnode = this.node(dst);
    if (dnode.type !== 'file') throw err(dnode.type === 'directory' ? 'EISDIR' : 'EINVAL');
    let srcFd: number;
    if (src.layer instanceof PassthroughLayer) {
      srcFd = src.layer.openHostFd(src.ino, O.RDONLY);
    } else {
      const p = src.layer.hostPath?.(src.ino);
      if (p === undefined) throw err('EXDEV', 'the source has no host file');
      srcFd = libc.openat(AT_FDCWD, p, O.RDONLY | O.NOFOLLOW);
    }
    let dstFd: number | undefined;
    try {
      dstFd = this.openHostFd(dst, O.WRONLY);
      return await copyData(srcFd, dstFd, options);
    } finally {
      closeSync(srcFd);
      if (dstFd !== undefined) closeSync(dstFd);
    }
  }
}

/** Node fs errors (from readSync & co.) as FsError. */
function toLayerError(e: unknown, syscall: string): FsError {
  return toFsError(e, { syscall });
}
