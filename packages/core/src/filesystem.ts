/**
 * The two contracts every package builds on: `Filesystem` (inode-level operations in the
 * shape of FUSE's low-level API) and `Layer` (a Filesystem a union can stack). Also
 * `FilesystemBase`, which answers every operation with ENOSYS so an implementation only
 * writes what it supports.
 *
 * Lookup counts (the written contract, tested by the testkit's invariant checks):
 * - `lookup`, `mknod`, `mkdir`, `symlink`, `link` and `create` add 1 to the lookup count of
 *   the inode they return. Nothing else does: `readdir` with attributes takes no lookup.
 * - `forget(ino, n)` gives n back; at zero the filesystem may drop the inode (never the root).
 * - A probe (lookup only to test a name) must be paired with `forget(ino, 1)`.
 * - An ino stays valid while its count is above zero, even after its last name is gone.
 *
 * Errors: every method rejects with an `FsError` carrying the errno the kernel would give.
 */
import { FsError } from './errors.js';
import type {
  Attr, CreateResult, DirEntry, Entry, OpenResult, RequestContext, SetattrRequest, StatFs,
  WhiteoutFormat,
} from './types.js';

/**
 * The property of `Filesystem.read`'s `into` buffer where a transport may offer a `ReadSink`
 * (the low-level FUSE transport does, to splice the data from the host file to `/dev/fuse`).
 */
export const READ_SINK: unique symbol = Symbol.for('layerfs.readSink') as never;

/**
 * Takes up to `length` bytes of host descriptor `fd` at `position` (a regular file) itself;
 * resolves the count taken (short only at end of file), or undefined when it took nothing and
 * the reader should read into the buffer instead. The bytes never reach the buffer.
 */
export type ReadSink = (fd: number, position: number, length: number) => Promise<number | undefined>;

/** What a transport's kernel keeps for a Filesystem (told through `watchAttrs`). */
export interface KernelCaching {
  /**
   * The kernel caches every inode's attributes and holds a lookup on every inode it saw until
   * it forgets it (the low-level FUSE transport): nothing is released between requests, so
   * attributes the filesystem kept per inode would only double what the kernel keeps.
   */
  readonly holdsInodes: boolean;
}

/** Inode-level filesystem operations. Every call is async and carries the caller's context. */
export interface Filesystem {
  /** Resolve `name` in directory `parent`; +1 lookup on the result. ENOENT if absent. */
  lookup(ctx: RequestContext, parent: number, name: string): Promise<Entry>;
  /**
   * `lookup` that resolves to undefined where `lookup` would reject with ENOENT because `name`
   * is not in `parent` (other failures reject as `lookup`'s do). The miss is the common answer
   * of a union's layers and of a negative LOOKUP through a mount, and a rejected promise costs
   * V8 about 3.5 µs for each async function it passes through; a value costs nothing. Optional:
   * call it through `lookupIfExists(fs, …)`, which falls back to `lookup`.
   */
  lookupIfExists?(ctx: RequestContext, parent: number, name: string): Promise<Entry | undefined>;
  /** Give back `nlookup` lookups of `ino`. Never fails; over-forgetting is clamped and reported. */
  forget(ctx: RequestContext, ino: number, nlookup: number): Promise<void>;
  /** Attributes of `ino` (`fh` when the call comes through an open handle). */
  getattr(ctx: RequestContext, ino: number, fh?: number): Promise<Attr>;
  /** Change attributes (chmod, chown, truncate, utimens); returns the new attributes. */
  setattr(ctx: RequestContext, ino: number, changes: SetattrRequest, fh?: number): Promise<Attr>;
  /** Target of a symlink, as bytes-to-string (UTF-8). EINVAL if not a symlink. */
  readlink(ctx: RequestContext, ino: number): Promise<string>;
  /** Create a node (file, fifo, socket, device; `mode` includes the type bits); +1 lookup. */
  mknod(ctx: RequestContext, parent: number, name: string, mode: number, rdev: number): Promise<Entry>;
  /** Create a directory; +1 lookup. */
  mkdir(ctx: RequestContext, parent: number, name: string, mode: number): Promise<Entry>;
  /** Remove a non-directory name. */
  unlink(ctx: RequestContext, parent: number, name: string): Promise<void>;
  /** Remove an empty directory. */
  rmdir(ctx: RequestContext, parent: number, name: string): Promise<void>;
  /** Create a symlink `name` → `target`; +1 lookup. */
  symlink(ctx: RequestContext, parent: number, name: string, target: string): Promise<Entry>;
  /** Move `name` to `newname` (flags: `RenameFlags`). */
  rename(ctx: RequestContext, parent: number, name: string, newparent: number, newname: string, flags: number): Promise<void>;
  /** Make a new name for `ino`; +1 lookup on `ino`. */
  link(ctx: RequestContext, ino: number, newparent: number, newname: string): Promise<Entry>;
  /** Open a file (flags: `OpenFlags`). */
  open(ctx: RequestContext, ino: number, flags: number): Promise<OpenResult>;
  /** Create and open a file (O_EXCL honoured); +1 lookup. */
  create(ctx: RequestContext, parent: number, name: string, mode: number, flags: number): Promise<CreateResult>;
  /**
   * Read up to `length` bytes at `position`; a shorter result means end of file. `into`
   * (optional, at least `length` bytes): a buffer the filesystem may read into, returning a
   * view of it (the transport's reply buffer: no copy); it may also ignore it. When `into`
   * carries a `ReadSink` (`into[READ_SINK]`), a filesystem that reads from a host descriptor
   * may hand the descriptor to it instead: the data then never reaches `into`, and the result
   * is a view of `into` as long as the count the sink took. Filesystems that pass `into` down
   * (the overlay) pass the sink with it.
   */
  read(ctx: RequestContext, ino: number, fh: number, length: number, position: number, into?: Uint8Array): Promise<Uint8Array>;
  /**
   * Write `data` at `position` (at the end when the handle was opened O_APPEND); returns bytes
   * written. `data` may be a view of the caller's buffer, valid only until the call settles: an
   * implementation that keeps the bytes must copy them.
   */
  write(ctx: RequestContext, ino: number, fh: number, data: Uint8Array, position: number): Promise<number>;
  /** Called on each close(2) of a descriptor of the handle. */
  flush(ctx: RequestContext, ino: number, fh: number): Promise<void>;
  /** Last close of the handle: free it. */
  release(ctx: RequestContext, ino: number, fh: number): Promise<void>;
  /** Flush data (and metadata unless `datasync`) to stable storage. */
  fsync(ctx: RequestContext, ino: number, fh: number, datasync: boolean): Promise<void>;
  /** Open a directory for listing. */
  opendir(ctx: RequestContext, ino: number): Promise<OpenResult>;
  /**
   * List entries after `offset` (0 = from the start; `.` and `..` are not listed). Returns
   * an empty array at the end. With `plus`, entries carry `attr`; no lookup is taken.
   */
  readdir(ctx: RequestContext, ino: number, fh: number, offset: number, plus: boolean): Promise<DirEntry[]>;
  /** Free a directory handle. */
  releasedir(ctx: RequestContext, ino: number, fh: number): Promise<void>;
  /** Flush a directory. */
  fsyncdir(ctx: RequestContext, ino: number, fh: number, datasync: boolean): Promise<void>;
  /** Filesystem statistics. */
  statfs(ctx: RequestContext, ino: number): Promise<StatFs>;
  /** Set an extended attribute (flags: `XattrFlags`). */
  setxattr(ctx: RequestContext, ino: number, name: string, value: Uint8Array, flags: number): Promise<void>;
  /** Value of an extended attribute; ENODATA if absent. */
  getxattr(ctx: RequestContext, ino: number, name: string): Promise<Uint8Array>;
  /** Names of the extended attributes. */
  listxattr(ctx: RequestContext, ino: number): Promise<string[]>;
  /** Remove an extended attribute; ENODATA if absent. */
  removexattr(ctx: RequestContext, ino: number, name: string): Promise<void>;
  /** Check access (`AccessMode` bits) for the caller; EACCES if denied. */
  access(ctx: RequestContext, ino: number, mask: number): Promise<void>;
  /** Allocate or punch space (`FallocateMode`). */
  fallocate(ctx: RequestContext, ino: number, fh: number, mode: number, offset: number, length: number): Promise<void>;
  /** Find data or a hole (`Whence.SEEK_DATA`/`SEEK_HOLE`), or plain SEEK_SET/END. */
  lseek(ctx: RequestContext, ino: number, fh: number, offset: number, whence: number): Promise<number>;
  /** Copy a range between two open files; returns bytes copied. */
  copyFileRange(
    ctx: RequestContext, inoIn: number, fhIn: number, offIn: number,
    inoOut: number, fhOut: number, offOut: number, length: number, flags: number,
  ): Promise<number>;
  /** Release everything the filesystem holds (descriptors, tables). Idempotent. */
  destroy(): Promise<void>;
  /**
   * Optional: call `listener(ino)` whenever a request changes the attributes of an inode it did
   * not name (a copy-up gives the copied object, and the upper directory it lands in, new
   * attributes), synchronously, before that request settles; returns the function that stops
   * it. A transport that caches attributes invalidates those inodes. A filesystem whose
   * requests change only what they name (a parent's entries, the target) needs none.
   * `kernel` says what the kernel in front of the transport keeps (`KernelCaching`), so the
   * filesystem can keep less itself while the listener is registered.
   */
  watchAttrs?(listener: (ino: number) => void, kernel?: KernelCaching): () => void;
  /**
   * Number of inodes the filesystem holds in its table, root included: 1 once every lookup
   * is forgotten. Optional; invariant checks use it where present.
   */
  liveInodes?(): number;
}

/** The root inode number of every Filesystem. */
export const ROOT_INO = 1;

/** Source of a copy-up: an inode of some layer. */
export interface CopySource {
  /** The layer the data comes from. */
  readonly layer: Layer;
  /** The inode in that layer (a lookup held by the caller). */
  readonly ino: number;
}

/**
 * A Filesystem that a union can stack. Whiteouts and opaque markers are stored in the
 * layer's own `whiteoutFormat`; `lookup` and `readdir` report whiteouts with
 * `whiteout: true` (under the hidden name, never as `.wh.<name>`), and the union decides
 * what to hide.
 */
export interface Layer extends Filesystem {
  /** The root inode of the layer (always `ROOT_INO`). */
  readonly rootIno: number;
  /** How this layer stores whiteouts and opaque markers. */
  readonly whiteoutFormat: WhiteoutFormat;
  /** False for a layer that refuses every change with EROFS. */
  readonly writable: boolean;
  /**
   * A directory of this layer outside its visible tree (never reachable by lookup from the
   * root) where a union stages copy-ups and whiteouts; a rename from it into the tree is
   * atomic. Undefined when the layer has none (the union then stages in place).
   */
  readonly workIno?: number;
  /** Create a whiteout for `name` in `parent` (replacing nothing: EEXIST if the name exists). */
  createWhiteout(ctx: RequestContext, parent: number, name: string): Promise<void>;
  /** Remove the whiteout for `name` in `parent`; ENOENT if there is none. */
  deleteWhiteout(ctx: RequestContext, parent: number, name: string): Promise<void>;
  /** True when `name` in `parent` is a whiteout in this layer. */
  isWhiteout(ctx: RequestContext, parent: number, name: string): Promise<boolean>;
  /** Mark (or unmark) directory `ino` opaque: nothing below it shows through. */
  setOpaque(ctx: RequestContext, ino: number, opaque: boolean): Promise<void>;
  /** True when directory `ino` is marked opaque by any marker this layer reads. */
  isOpaque(ctx: RequestContext, ino: number): Promise<boolean>;
  /** The host path behind `ino`, when the layer is backed by a host directory. */
  hostPath?(ino: number): string | undefined;
  /**
   * Replace the data of regular file `dst` (an inode of this layer) with the data of `src`,
   * by cloning where the host allows. Rejects (EXDEV, ENOSYS, EOPNOTSUPP) when it cannot;
   * the caller then copies through read/write.
   */
  copyUpData?(ctx: RequestContext, src: CopySource, dst: number): Promise<void>;
}

/** Reject with ENOSYS, naming the operation: the default of every FilesystemBase method. */
function unsupported(op: string): Promise<never> {
  return Promise.reject(new FsError('ENOSYS', { syscall: op, detail: `${op} is not supported by this filesystem` }));
}

/**
 * `fs.lookupIfExists` where `fs` has it, else `fs.lookup` with its ENOENT turned into undefined:
 * one way for every caller to look a name up when a miss is an answer, not a failure.
 */
export async function lookupIfExists(fs: Filesystem, ctx: RequestContext, parent: number, name: string): Promise<Entry | undefined> {
  if (fs.lookupIfExists) return fs.lookupIfExists(ctx, parent, name);
  try {
    return await fs.lookup(ctx, parent, name);
  } catch (e) {
    if ((e as { code?: unknown }).code === 'ENOENT') return undefined;
    throw e;
  }
}

/**
 * A Filesystem whose every operation rejects with ENOSYS (except `forget`, `flush`,
 * `release`, `releasedir`, `fsync`, `fsyncdir` and `destroy`, which succeed doing nothing).
 * Extend it and override what you support.
 */
export class FilesystemBase implements Filesystem {
  /** Default: ENOSYS. */
  lookup(_ctx: RequestContext, _parent: number, _name: string): Promise<Entry> { return unsupported('lookup'); }
  /** Default: nothing to release. */
  forget(_ctx: RequestContext, _ino: number, _nlookup: number): Promise<void> { return Promise.resolve(); }
  /** Default: ENOSYS. */
  getattr(_ctx: RequestContext, _ino: number, _fh?: number): Promise<Attr> { return unsupported('getattr'); }
  /** Default: ENOSYS. */
  setattr(_ctx: RequestContext, _ino: number, _changes: SetattrRequest, _fh?: number): Promise<Attr> { return unsupported('setattr'); }
  /** Default: ENOSYS. */
  readlink(_ctx: RequestContext, _ino: number): Promise<string> { return unsupported('readlink'); }
  /** Default: ENOSYS. */
  mknod(_ctx: RequestContext, _parent: number, _name: string, _mode: number, _rdev: number): Promise<Entry> { return unsupported('mknod'); }
  /** Default: ENOSYS. */
  mkdir(_ctx: RequestContext, _parent: number, _name: string, _mode: number): Promise<Entry> { return unsupported('mkdir'); }
  /** Default: ENOSYS. */
  unlink(_ctx: RequestContext, _parent: number, _name: string): Promise<void> { return unsupported('unlink'); }
  /** Default: ENOSYS. */
  rmdir(_ctx: RequestContext, _parent: number, _name: string): Promise<void> { return unsupported('rmdir'); }
  /** Default: ENOSYS. */
  symlink(_ctx: RequestContext, _parent: number, _name: string, _target: string): Promise<Entry> { return unsupported('symlink'); }
  /** Default: ENOSYS. */
  rename(_ctx: RequestContext, _parent: number, _name: string, _newparent: number, _newname: string, _flags: number): Promise<void> { return unsupported('rename'); }
  /** Default: ENOSYS. */
  link(_ctx: RequestContext, _ino: number, _newparent: number, _newname: string): Promise<Entry> { return unsupported('link'); }
  /** Default: ENOSYS. */
  open(_ctx: RequestContext, _ino: number, _flags: number): Promise<OpenResult> { return unsupported('open'); }
  /** Default: ENOSYS. */
  create(_ctx: RequestContext, _parent: number, _name: string, _mode: number, _flags: number): Promise<CreateResult> { return unsupported('create'); }
  /** Default: ENOSYS. */
  read(_ctx: RequestContext, _ino: number, _fh: number, _length: number, _position: number): Promise<Uint8Array> { return unsupported('read'); }
  /** Default: ENOSYS. */
  write(_ctx: RequestContext, _ino: number, _fh: number, _data: Uint8Array, _position: number): Promise<number> { return unsupported('write'); }
  /** Default: success. */
  flush(_ctx: RequestContext, _ino: number, _fh: number): Promise<void> { return Promise.resolve(); }
  /** Default: success. */
  release(_ctx: RequestContext, _ino: number, _fh: number): Promise<void> { return Promise.resolve(); }
  /** Default: success. */
  fsync(_ctx: RequestContext, _ino: number, _fh: number, _datasync: boolean): Promise<void> { return Promise.resolve(); }
  /** Default: ENOSYS. */
  opendir(_ctx: RequestContext, _ino: number): Promise<OpenResult> { return unsupported('opendir'); }
  /** Default: ENOSYS. */
  readdir(_ctx: RequestContext, _ino: number, _fh: number, _offset: number, _plus: boolean): Promise<DirEntry[]> { return unsupported('readdir'); }
  /** Default: success. */
  releasedir(_ctx: RequestContext, _ino: number, _fh: number): Promise<void> { return Promise.resolve(); }
  /** Default: success. */
  fsyncdir(_ctx: RequestContext, _ino: number, _fh: number, _datasync: boolean): Promise<void> { return Promise.resolve(); }
  /** Default: ENOSYS. */
  statfs(_ctx: RequestContext, _ino: number): Promise<StatFs> { return unsupported('statfs'); }
  /** Default: ENOSYS. */
  setxattr(_ctx: RequestContext, _ino: number, _name: string, _value: Uint8Array, _flags: number): Promise<void> { return unsupported('setxattr'); }
  /** Default: ENOSYS. */
  getxattr(_ctx: RequestContext, _ino: number, _name: string): Promise<Uint8Array> { return unsupported('getxattr'); }
  /** Default: ENOSYS. */
  listxattr(_ctx: RequestContext, _ino: number): Promise<string[]> { return unsupported('listxattr'); }
  /** Default: ENOSYS. */
  removexattr(_ctx: RequestContext, _ino: number, _name: string): Promise<void> { return unsupported('removexattr'); }
  /** Default: ENOSYS. */
  access(_ctx: RequestContext, _ino: number, _mask: number): Promise<void> { return unsupported('access'); }
  /** Default: ENOSYS. */
  fallocate(_ctx: RequestContext, _ino: number, _fh: number, _mode: number, _offset: number, _length: number): Promise<void> { return unsupported('fallocate'); }
  /** Default: ENOSYS. */
  lseek(_ctx: RequestContext, _ino: number, _fh: number, _offset: number, _whence: number): Promise<number> { return unsupported('lseek'); }
  /** Default: ENOSYS. */
  copyFileRange(
    _ctx: RequestContext, _inoIn: number, _fhIn: number, _offIn: number,
    _inoOut: number, _fhOut: number, _offOut: number, _length: number, _flags: number,
  ): Promise<number> { return unsupported('copy_file_range'); }
  /** Default: nothing to release. */
  destroy(): Promise<void> { return Promise.resolve(); }
}
