/**
 * `Volume`: a `node:fs/promises`-like path API over any core `Filesystem`. Paths are POSIX
 * paths inside the volume (a relative path resolves from `/`, `..` at the root stays there).
 * Every path is resolved component by component with `lookup`, following symlinks as Linux
 * does (absolute targets from the volume root, relative ones from the link's directory; the
 * final component followed or not per call; ELOOP after 40 links; a trailing slash demands a
 * directory), and every lookup a call takes is forgotten before it returns — an open
 * `FileHandle` keeps one until it is closed. Errors are `FsError`s with the code, syscall
 * name, `path` and `dest` that `node:fs` gives for the same case. Byte I/O lives in
 * `FileHandle`; `readFile`, `writeFile`, `truncate`, `copyFile` and the streams go through it.
 */
import { posix } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { FsError, isFsError, toFsError, type FsErrorContext } from './errors.js';
import { FileHandle, ownerChange } from './file-handle.js';
import { ROOT_INO, lookupIfExists, type Filesystem } from './filesystem.js';
import { PATH_MAX } from './names.js';
import { BigIntStats, Dirent, Stats } from './stats.js';
import { readStreamOf, writeStreamOf, type ReadStreamOptions, type WriteStreamOptions } from './volume-streams.js';
import {
  AccessMode, OpenFlags, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG, processContext,
  type Attr, type DirEntry, type Entry, type RequestContext, type SetattrRequest,
} from './types.js';
import {
  VOLUME_CHUNK, encodingOf, parseOpenFlags, toBytes, toTimespec, withErrorContext,
  type OpenFlagsLike, type TimeLike,
} from './volume-args.js';

/** A path as `node:fs` takes it: a string, a Buffer of its bytes, or a `file:` URL. */
export type PathLike = string | Buffer | URL;

/** Options of `new Volume(fs, options)`. */
export interface VolumeOptions {
  /** The credentials every call is made with (default: this process's, umask 0o022). */
  context?: RequestContext;
}

/** `copyFile` mode bits, as `fs.constants.COPYFILE_*`. */
export const CopyFileMode = { COPYFILE_EXCL: 1, COPYFILE_FICLONE: 2, COPYFILE_FICLONE_FORCE: 4 } as const;

/** The most symlinks one resolution follows before ELOOP (Linux `MAXSYMLINKS`). */
export const MAX_SYMLINKS = 40;

/** `readFile` options (or just the encoding). */
export type ReadFileOptions = { encoding?: BufferEncoding | null; flag?: OpenFlagsLike } | BufferEncoding | null;
/** `writeFile`/`appendFile` options (or just the encoding). */
export type WriteFileOptions = { encoding?: BufferEncoding | null; mode?: number | string; flag?: OpenFlagsLike } | BufferEncoding | null;
/** `stat`/`lstat` options. */
export interface StatOptions {
  /** Return `BigIntStats` with nanosecond `*Ns` fields. */
  bigint?: boolean;
}
/** `mkdir` options (or just the mode). */
export type MakeDirectoryOptions = { recursive?: boolean; mode?: number | string } | number | string;
/** `readdir` options. */
export interface ReaddirOptions {
  /** Return `Dirent`s instead of names. */
  withFileTypes?: boolean;
  /** List subdirectories too (names relative to the path listed). */
  recursive?: boolean;
}
/** `rm` options. */
export interface RmOptions {
  /** Remove directories and their contents. */
  recursive?: boolean;
  /** Ignore a path that does not exist. */
  force?: boolean;
}

/** One object on a resolved path: its inode, its type bits, and the name it was reached by. */
interface Step {
  readonly ino: number;
  readonly mode: number;
  readonly name: string;
}

/** How `Volume.#walk` treats the end of a path and `.`/`..`. */
interface WalkOptions {
  /** A missing last component is not an error: the walk ends at its parent (open with O_CREAT). */
  readonly create?: boolean;
  /** `.` and `..` are text, needing no search permission (realpath(3)). */
  readonly lexicalDots?: boolean;
}

/** Where a resolution ended (see `Volume.#walk`). */
interface Walk {
  /** The directories walked from the root; the last is the target, or the parent for 'parent'/missing. */
  readonly stack: readonly Step[];
  /** The final name (null when the path ends at `/`, `.` or `..`). */
  readonly name: string | null;
  /** True when the final name does not exist (only when asked to allow that). */
  readonly missing: boolean;
  /** True when the path ends with a slash. */
  readonly dirOnly: boolean;
}

const ROOT_STEP: Step = { ino: ROOT_INO, mode: S_IFDIR, name: '' };
/** A walk-queue marker for a trailing slash: the object so far must be a directory. */
const SLASH = '';

const isDir = (mode: number): boolean => (mode & S_IFMT) === S_IFDIR;
const isSymlink = (mode: number): boolean => (mode & S_IFMT) === S_IFLNK;
const top = (w: Walk): Step => w.stack[w.stack.length - 1] ?? ROOT_STEP;

/**
 * A Filesystem that may answer a lookup from its own cache without waiting (OverlayFs does):
 * an Entry with +1 lookup, or undefined when `lookup` must be called.
 */
interface CachedLookup {
  lookupCached?(ctx: RequestContext, parent: number, name: string): Entry | undefined;
}

/** The lookups one Volume call has taken; `release` forgets them all except those kept. */
class Lookups {
  readonly #held = new Map<number, number>();
  constructor(private readonly fs: Filesystem & CachedLookup, private readonly ctx: RequestContext) {}

  /** A lookup the filesystem answers at once from its cache (recorded), else undefined. */
  lookupNow(parent: number, name: string): Entry | undefined {
    const e = this.fs.lookupCached?.(this.ctx, parent, name);
    return e === undefined ? undefined : this.took(e);
  }

  /** Look `name` up in `parent`, recording the lookup taken. */
  async lookup(parent: number, name: string): Promise<Entry> {
    return this.took(await this.fs.lookup(this.ctx, parent, name));
  }

  /** `lookup` that resolves to undefined when `name` is not in `parent`. */
  async lookupIfExists(parent: number, name: string): Promise<Entry | undefined> {
    const e = await lookupIfExists(this.fs, this.ctx, parent, name);
    return e === undefined ? undefined : this.took(e);
  }

  /** Record the lookup an entry-returning call (mkdir, create, link, …) took. */
  took<T extends { ino: number }>(entry: T): T {
    this.#held.set(entry.ino, (this.#held.get(entry.ino) ?? 0) + 1);
    return entry;
  }

  /** Hand one lookup of `ino` to the caller (an open FileHandle): it is not forgotten here. */
  keep(ino: number): void {
    const n = this.#held.get(ino) ?? 0;
    if (n <= 1) this.#held.delete(ino);
    else this.#held.set(ino, n - 1);
  }

  /** Forget every lookup still held. Never throws: forget never fails by contract. */
  async release(): Promise<void> {
    for (const [ino, n] of this.#held) {
      try { await this.fs.forget(this.ctx, ino, n); } catch { /* forget never fails */ }
    }
    this.#held.clear();
  }
}

function pathString(path: PathLike): string {
  if (typeof path === 'string') return path;
  if (path instanceof URL) return fileURLToPath(path);
  return Buffer.from(path).toString('utf8');
}

/** Split a path into components; ENOENT for '', ENAMETOOLONG beyond PATH_MAX. */
function parsePath(path: string): { parts: string[]; dirOnly: boolean } {
  if (path === '') throw new FsError('ENOENT', { detail: 'empty path' });
  if (path.includes('\0')) throw new FsError('EINVAL', { detail: 'a path may not contain NUL' });
  if (path.length >= PATH_MAX / 4 && Buffer.byteLength(path) >= PATH_MAX) throw new FsError('ENAMETOOLONG');
  const parts = path.split('/').filter((p) => p !== '');
  return { parts, dirOnly: parts.length > 0 && path.endsWith('/') };
}

function modeArg(mode: number | string | undefined, fallback: number): number {
  if (mode === undefined) return fallback;
  const n = typeof mode === 'string' ? parseInt(mode, 8) : mode;
  if (!Number.isInteger(n) || n < 0) throw new FsError('EINVAL', { detail: `bad mode ${String(mode)}` });
  return n & 0o7777;
}

/** A `node:fs/promises`-like path API over any `Filesystem`; see the module comment. */
export class Volume {
  readonly #fs: Filesystem;
  readonly #ctx: RequestContext;

  /** A volume over `fs`, making every call with `options.context` (default: this process). */
  constructor(fs: Filesystem, options: VolumeOptions = {}) {
    this.#fs = fs;
    this.#ctx = options.context ?? processContext();
  }

  /** The filesystem this volume works on. */
  get filesystem(): Filesystem { return this.#fs; }

  /** The credentials of every call. */
  get context(): RequestContext { return this.#ctx; }

  // ---- files ----------------------------------------------------------------------------

  /** Open a file (flags as Node: 'r', 'r+', 'w', 'wx', 'w+', 'a', 'a+', 'ax', … or `OpenFlags`). */
  async open(path: PathLike, flags: OpenFlagsLike = 'r', mode: number | string = 0o666): Promise<FileHandle> {
    const p = pathString(path);
    const bits = parseOpenFlags(flags, 'r');
    return this.#withLookups({ syscall: 'open', path: p }, async (l) => {
      const { ino, fh } = await this.#openIn(l, p, bits, modeArg(mode, 0o666));
      l.keep(ino);
      return new FileHandle(this.#fs, this.#ctx, ino, fh, bits);
    });
  }

  /** The whole content of a file: a Buffer, or a string when an encoding is given. */
  readFile(path: PathLike, options?: { encoding?: null; flag?: OpenFlagsLike } | null): Promise<Buffer>;
  /** The whole content of a file, decoded. */
  readFile(path: PathLike, options: { encoding: BufferEncoding; flag?: OpenFlagsLike } | BufferEncoding): Promise<string>;
  async readFile(path: PathLike, options?: ReadFileOptions): Promise<Buffer | string> {
    const flag = typeof options === 'object' && options !== null ? options.flag : undefined;
    return this.#withHandle(path, flag ?? 'r', 0o666, (h) => h.readFile(encodingOf(options)));
  }

  /** Replace a file's content (created with `mode`, default 0o666, flag default 'w'). */
  writeFile(path: PathLike, data: string | Uint8Array, options?: WriteFileOptions): Promise<void> {
    return this.#write(path, data, options, 'w');
  }

  /** Append to a file, creating it if needed (flag default 'a'). */
  appendFile(path: PathLike, data: string | Uint8Array, options?: WriteFileOptions): Promise<void> {
    return this.#write(path, data, options, 'a');
  }

  /** Set a file's size (as Node: open 'r+' then ftruncate). */
  async truncate(path: PathLike, len = 0): Promise<void> {
    await this.#withHandle(path, 'r+', 0o666, (h) => h.truncate(len));
  }

  /** Copy a regular file's data and mode; `CopyFileMode.COPYFILE_EXCL` refuses an existing `dest`. */
  async copyFile(src: PathLike, dest: PathLike, mode = 0): Promise<void> {
    const context = { syscall: 'copyfile', path: pathString(src), dest: pathString(dest) };
    await withErrorContext(context, async () => {
      if (mode & CopyFileMode.COPYFILE_FICLONE_FORCE) throw new FsError('ENOTSUP', { detail: 'a Volume cannot clone' });
      const from = await this.open(src, 'r');
      try {
        // The steps, their order, and removing `dest` after a failure are libuv's uv__fs_copyfile.
        const st = await from.stat();
        const excl = mode & CopyFileMode.COPYFILE_EXCL ? OpenFlags.O_EXCL : 0;
        const to = await this.open(dest, OpenFlags.O_WRONLY | OpenFlags.O_CREAT | excl, st.mode & 0o7777);
        let failed = true;
        try {
          if (!excl) {
            if (to.ino === from.ino) { // copying a file onto itself does nothing
              failed = false;
              return;
            }
            await to.truncate(0);
          }
          await to.chmod(st.mode & 0o7777);
          const buf = Buffer.allocUnsafe(Math.min(VOLUME_CHUNK, Math.max(st.size, 1)));
          for (let pos = 0; ;) {
            const { bytesRead } = await from.read(buf, 0, buf.byteLength, pos);
            if (bytesRead === 0) break;
            await to.write(buf, 0, bytesRead, pos);
            pos += bytesRead;
          }
          failed = false;
        } finally {
          await to.close();
          if (failed) await this.unlink(dest).catch(() => undefined);
        }
      } finally {
        await from.close();
      }
    });
  }

  /** A Readable of a file's bytes (Node's options: flags, start, end inclusive, highWaterMark, encoding). */
  createReadStream(path: PathLike, options: ReadStreamOptions = {}): Readable {
    return readStreamOf(() => this.open(path, options.flags ?? 'r'), options);
  }

  /** A Writable into a file (Node's options: flags default 'w', mode, start, highWaterMark). */
  createWriteStream(path: PathLike, options: WriteStreamOptions = {}): Writable {
    return writeStreamOf(() => this.open(path, options.flags ?? 'w', options.mode ?? 0o666), options);
  }

  // ---- metadata -------------------------------------------------------------------------

  /** Attributes, following symlinks. */
  stat(path: PathLike, options?: StatOptions & { bigint?: false }): Promise<Stats>;
  /** Attributes with exact nanosecond times, following symlinks. */
  stat(path: PathLike, options: StatOptions & { bigint: true }): Promise<BigIntStats>;
  stat(path: PathLike, options?: StatOptions): Promise<Stats | BigIntStats> {
    return this.#at('stat', path, 'follow', async (n) => statsOf(await this.#fs.getattr(this.#ctx, n.ino), options));
  }

  /** Attributes of the path itself (a symlink is not followed). */
  lstat(path: PathLike, options?: StatOptions & { bigint?: false }): Promise<Stats>;
  /** Attributes of the path itself with exact nanosecond times. */
  lstat(path: PathLike, options: StatOptions & { bigint: true }): Promise<BigIntStats>;
  lstat(path: PathLike, options?: StatOptions): Promise<Stats | BigIntStats> {
    return this.#at('lstat', path, 'nofollow', async (n) => statsOf(await this.#fs.getattr(this.#ctx, n.ino), options));
  }

  /** Check the caller's access (`AccessMode` bits; default F_OK: exists). */
  async access(path: PathLike, mode: number = AccessMode.F_OK): Promise<void> {
    await this.#at('access', path, 'follow', (n) => this.#fs.access(this.#ctx, n.ino, mode));
  }

  /** Change permission bits (following symlinks). */
  async chmod(path: PathLike, mode: number | string): Promise<void> {
    const bits = modeArg(mode, 0);
    await this.#setattr('chmod', path, 'follow', () => ({ mode: bits }));
  }

  /** Change owner and group (-1 leaves one unchanged), following symlinks. */
  async chown(path: PathLike, uid: number, gid: number): Promise<void> {
    await this.#setattr('chown', path, 'follow', () => ownerChange(uid, gid));
  }

  /** Change owner and group of the path itself. */
  async lchown(path: PathLike, uid: number, gid: number): Promise<void> {
    await this.#setattr('lchown', path, 'nofollow', () => ownerChange(uid, gid));
  }

  /** Set access and modification times (Date, seconds, numeric string; Timespec/bigint exactly). */
  async utimes(path: PathLike, atime: TimeLike, mtime: TimeLike): Promise<void> {
    await this.#setattr('utime', path, 'follow', () => ({ atime: toTimespec(atime), mtime: toTimespec(mtime) }));
  }

  /** Set the times of the path itself (a symlink is not followed). */
  async lutimes(path: PathLike, atime: TimeLike, mtime: TimeLike): Promise<void> {
    await this.#setattr('lutime', path, 'nofollow', () => ({ atime: toTimespec(atime), mtime: toTimespec(mtime) }));
  }

  /** The canonical absolute path inside the volume, every symlink resolved. */
  realpath(path: PathLike): Promise<string> {
    return this.#withLookups({ syscall: 'realpath', path: pathString(path) }, async (l) => {
      const w = await this.#walk(l, pathString(path), 'follow', { lexicalDots: true });
      return `/${w.stack.slice(1).map((s) => s.name).join('/')}`;
    });
  }

  // ---- directories ----------------------------------------------------------------------

  /**
   * The names in a directory; with `withFileTypes`, `Dirent`s; with `recursive`, also those
   * of every subdirectory (names relative to `path`; symlinks are listed, not descended).
   * Order is the filesystem's.
   */
  readdir(path: PathLike, options?: { withFileTypes?: false; recursive?: boolean } | BufferEncoding | null): Promise<string[]>;
  /** The entries of a directory (and with `recursive` of its subdirectories) as `Dirent`s. */
  readdir(path: PathLike, options: { withFileTypes: true; recursive?: boolean }): Promise<Dirent[]>;
  async readdir(path: PathLike, options?: ReaddirOptions | BufferEncoding | null): Promise<string[] | Dirent[]> {
    const p = pathString(path);
    const o = typeof options === 'object' && options !== null ? options : {};
    const first = await this.#listAt(p);
    if (!o.recursive) return o.withFileTypes ? first.map((e) => new Dirent(e.name, p, e.type)) : first.map((e) => e.name);
    // Node's order: a directory's entries, then (last listed first) each subdirectory's.
    const names: string[] = [];
    const dirents: Dirent[] = [];
    const queue: Array<[string, DirEntry[]]> = [[p, first]];
    for (let next = queue.pop(); next !== undefined; next = queue.pop()) {
      const [dir, entries] = next;
      for (const e of entries) {
        const child = posix.join(dir, e.name);
        names.push(posix.relative(posix.join(p), child));
        dirents.push(new Dirent(e.name, dir, e.type));
        if (e.type === 'directory') queue.push([child, await this.#listAt(child)]);
      }
    }
    return o.withFileTypes ? dirents : names;
  }
  /**
   * Make a directory (mode default 0o777, less the umask). With `recursive`, make missing
   * parents too and return the first directory made (a prefix of the path as given, as
   * Node returns it), or undefined when the directory already existed.
   */
  async mkdir(path: PathLike, options?: MakeDirectoryOptions): Promise<string | undefined> {
    const p = pathString(path);
    const o = typeof options === 'object' ? options : { mode: options };
    const mode = modeArg(o.mode, 0o777);
    if (o.recursive) return this.#withLookups(null, (l) => this.#mkdirp(l, p, mode, true));
    await this.#withLookups({ syscall: 'mkdir', path: p }, (l) => this.#mkdirIn(l, p, mode));
    return undefined;
  }

  /** Remove an empty directory (`recursive`: remove it and its contents, as Node's deprecated form). */
  async rmdir(path: PathLike, options?: { recursive?: boolean }): Promise<void> {
    const p = pathString(path);
    if (options?.recursive) {
      const st = await this.stat(p);
      if (st.isDirectory()) return this.#rimrafDir(p);
    }
    await this.#withLookups({ syscall: 'rmdir', path: p }, async (l) => {
      const w = await this.#walk(l, p, 'parent');
      if (w.name === null) {
        const tail = parsePath(p).parts.at(-1);
        throw FsError.of(tail === undefined ? 'EBUSY' : tail === '.' ? 'EINVAL' : 'ENOTEMPTY');
      }
      await this.#fs.rmdir(this.#ctx, top(w).ino, w.name);
    });
  }

  /** Remove a file or (with `recursive`) a directory tree; `force` ignores a missing path. */
  async rm(path: PathLike, options: RmOptions = {}): Promise<void> {
    const p = pathString(path);
    let st: Stats;
    try {
      st = await this.lstat(p);
    } catch (e) {
      if (options.force && isFsError(e, 'ENOENT')) return;
      throw e;
    }
    if (st.isDirectory() && !options.recursive) {
      throw new FsError('EISDIR', { syscall: 'rm', path: p, detail: 'path is a directory; use recursive' });
    }
    await this.#rimraf(p);
  }

  // ---- names ----------------------------------------------------------------------------

  /** Remove a name that is not a directory. */
  async unlink(path: PathLike): Promise<void> {
    const p = pathString(path);
    await this.#withLookups({ syscall: 'unlink', path: p }, async (l) => {
      const w = await this.#walk(l, p, 'parent');
      if (w.name === null) throw FsError.of('EISDIR');
      if (w.dirOnly) {
        const e = await l.lookup(top(w).ino, w.name);
        throw FsError.of(isDir(e.attr.mode) ? 'EISDIR' : 'ENOTDIR');
      }
      await this.#fs.unlink(this.#ctx, top(w).ino, w.name);
    });
  }

  /** Move `oldPath` to `newPath`, replacing what is there as rename(2) does. */
  async rename(oldPath: PathLike, newPath: PathLike): Promise<void> {
    const from = pathString(oldPath);
    const to = pathString(newPath);
    await this.#withLookups({ syscall: 'rename', path: from, dest: to }, async (l) => {
      const a = await this.#walk(l, from, 'parent');
      const b = await this.#walk(l, to, 'parent');
      if (a.name === null || b.name === null) throw FsError.of('EBUSY');
      if (a.dirOnly || b.dirOnly) {
        const e = await l.lookup(top(a).ino, a.name);
        if (!isDir(e.attr.mode)) throw FsError.of('ENOTDIR');
      }
      await this.#fs.rename(this.#ctx, top(a).ino, a.name, top(b).ino, b.name, 0);
    });
  }

  /** Make a symlink at `path` pointing to `target` (stored as given). */
  async symlink(target: PathLike, path: PathLike, _type?: string | null): Promise<void> {
    const t = pathString(target);
    const p = pathString(path);
    await this.#withLookups({ syscall: 'symlink', path: t, dest: p }, async (l) => {
      const w = await this.#walk(l, p, 'parent');
      l.took(await this.#fs.symlink(this.#ctx, top(w).ino, await this.#newName(l, w), t));
    });
  }

  /** The target of a symlink; EINVAL if the path is not one. */
  readlink(path: PathLike): Promise<string> {
    return this.#at('readlink', path, 'nofollow', async (n) => {
      if (!isSymlink(n.mode)) throw FsError.of('EINVAL');
      return this.#fs.readlink(this.#ctx, n.ino);
    });
  }

  /** Make `newPath` another name of `existingPath` (a symlink itself is linked, not its target). */
  async link(existingPath: PathLike, newPath: PathLike): Promise<void> {
    const from = pathString(existingPath);
    const to = pathString(newPath);
    await this.#withLookups({ syscall: 'link', path: from, dest: to }, async (l) => {
      const src = top(await this.#walk(l, from, 'nofollow'));
      const w = await this.#walk(l, to, 'parent');
      l.took(await this.#fs.link(this.#ctx, src.ino, top(w).ino, await this.#newName(l, w)));
    });
  }

  // ---- extended attributes --------------------------------------------------------------

  /** Value of an extended attribute (following symlinks); ENODATA if absent. */
  getxattr(path: PathLike, name: string): Promise<Buffer> {
    return this.#at('getxattr', path, 'follow', async (n) => Buffer.from(await this.#fs.getxattr(this.#ctx, n.ino, name)));
  }

  /** Value of an extended attribute of the path itself. */
  lgetxattr(path: PathLike, name: string): Promise<Buffer> {
    return this.#at('lgetxattr', path, 'nofollow', async (n) => Buffer.from(await this.#fs.getxattr(this.#ctx, n.ino, name)));
  }

  /** Set an extended attribute (flags: `XattrFlags`), following symlinks. */
  async setxattr(path: PathLike, name: string, value: string | Uint8Array, flags = 0): Promise<void> {
    await this.#at('setxattr', path, 'follow', (n) => this.#fs.setxattr(this.#ctx, n.ino, name, toBytes(value), flags));
  }

  /** Set an extended attribute of the path itself. */
  async lsetxattr(path: PathLike, name: string, value: string | Uint8Array, flags = 0): Promise<void> {
    await this.#at('lsetxattr', path, 'nofollow', (n) => this.#fs.setxattr(this.#ctx, n.ino, name, toBytes(value), flags));
  }

  /** Names of the extended attributes (following symlinks). */
  listxattr(path: PathLike): Promise<string[]> {
    return this.#at('listxattr', path, 'follow', (n) => this.#fs.listxattr(this.#ctx, n.ino));
  }

  /** Names of the extended attributes of the path itself. */
  llistxattr(path: PathLike): Promise<string[]> {
    return this.#at('llistxattr', path, 'nofollow', (n) => this.#fs.listxattr(this.#ctx, n.ino));
  }

  /** Remove an extended attribute (following symlinks); ENODATA if absent. */
  async removexattr(path: PathLike, name: string): Promise<void> {
    await this.#at('removexattr', path, 'follow', (n) => this.#fs.removexattr(this.#ctx, n.ino, name));
  }

  /** Remove an extended attribute of the path itself. */
  async lremovexattr(path: PathLike, name: string): Promise<void> {
    await this.#at('lremovexattr', path, 'nofollow', (n) => this.#fs.removexattr(this.#ctx, n.ino, name));
  }

  // ---- private helpers ------------------------------------------------------------------

  /** Run `fn` with a fresh lookup scope, forgetting its lookups after; errors get `context` (null: as thrown). */
  #withLookups<T>(context: FsErrorContext | null, fn: (l: Lookups) => Promise<T>): Promise<T> {
    const run = async (): Promise<T> => {
      const l = new Lookups(this.#fs, this.#ctx);
      try {
        return await fn(l);
      } finally {
        await l.release();
      }
    };
    return context === null ? run() : withErrorContext(context, run);
  }

  /** Resolve `path` (following the final symlink or not) and run `fn` on the object found. */
  #at<T>(syscall: string, path: PathLike, final: 'follow' | 'nofollow', fn: (n: Step) => Promise<T>): Promise<T> {
    const p = pathString(path);
    return this.#withLookups({ syscall, path: p }, async (l) => fn(top(await this.#walk(l, p, final))));
  }

  /** A setattr on the object at `path`. */
  async #setattr(syscall: string, path: PathLike, final: 'follow' | 'nofollow', changes: () => SetattrRequest): Promise<void> {
    await this.#at(syscall, path, final, async (n) => { await this.#fs.setattr(this.#ctx, n.ino, changes()); });
  }

  /** writeFile/appendFile: open with the options' flag (else `flag`) and mode, write everything. */
  async #write(path: PathLike, data: string | Uint8Array, options: WriteFileOptions | undefined, flag: string): Promise<void> {
    const o = typeof options === 'object' && options !== null ? options : {};
    const bytes = toBytes(data, encodingOf(options));
    await this.#withHandle(path, o.flag ?? flag, modeArg(o.mode, 0o666), (h) => h.writeFile(bytes));
  }

  /** Open `path`, run `fn` on the handle, close it. Open errors are 'open' errors; fn's are its own. */
  async #withHandle<T>(path: PathLike, flags: OpenFlagsLike, mode: number, fn: (h: FileHandle) => Promise<T>): Promise<T> {
    const handle = await this.open(path, flags, mode);
    try {
      return await fn(handle);
    } finally {
      await handle.close();
    }
  }

  /**
   * Resolve `path` by lookups. `final` says what to do with the last component: 'follow' a
   * symlink there, 'nofollow', or 'parent' (do not look it up: the walk ends at its parent
   * directory and `name` is the component). With `create`, a missing last component (also
   * at the end of a followed symlink) ends the walk at its parent with `missing` set. With
   * `lexicalDots`, `.` and `..` need no search permission (realpath(3) treats them as text).
   * Every lookup is recorded in `l`.
   */
  async #walk(l: Lookups, path: string, final: 'follow' | 'nofollow' | 'parent', opts: WalkOptions = {}): Promise<Walk> {
    const allowMissing = opts.create === true;
    const { parts, dirOnly } = parsePath(path);
    const queue = [...parts];
    // A trailing slash follows the last component and demands a directory (the SLASH marker
    // checks that), except when creating: a trailing slash on the name to create is EISDIR.
    let slashTail = dirOnly && allowMissing;
    if (dirOnly && final !== 'parent' && !allowMissing) queue.push(SLASH);
    let stack: Step[] = [ROOT_STEP];
    let name: string | null = null;
    let links = 0;
    for (let c = queue.shift(); c !== undefined; c = queue.shift()) {
      const cur = stack[stack.length - 1] ?? ROOT_STEP;
      if (!isDir(cur.mode)) throw FsError.of('ENOTDIR');
      const last = queue.length === 0;
      if (c === SLASH) continue;
      if (c === '.' || c === '..') {
        if (!opts.lexicalDots) await this.#permit(cur.ino, AccessMode.X_OK); // the kernel checks `.` and `..` too
        if (c === '..' && stack.length > 1) stack.pop();
        name = null;
        continue;
      }
      if (last && final === 'parent') {
        await this.#permit(cur.ino, AccessMode.X_OK); // the kernel checks the parent's search permission first
        return { stack, name: c, missing: false, dirOnly };
      }
      if (last && slashTail) {
        await this.#permit(cur.ino, AccessMode.X_OK);
        throw FsError.of('EISDIR');
      }
      let entry: Entry | undefined;
      try {
        entry = l.lookupNow(cur.ino, c) ?? (last && allowMissing ? await l.lookupIfExists(cur.ino, c) : await l.lookup(cur.ino, c));
      } catch (e) {
        if (!(last && allowMissing && isFsError(e, 'ENOENT'))) throw e;
      }
      if (!entry) return { stack, name: c, missing: true, dirOnly };
      if (isSymlink(entry.attr.mode) && (!last || final === 'follow')) {
        if (++links > MAX_SYMLINKS) throw FsError.of('ELOOP');
        const target = await this.#fs.readlink(this.#ctx, entry.ino);
        const t = parsePath(target);
        if (target.startsWith('/')) stack = [ROOT_STEP];
        if (last && allowMissing) slashTail = t.dirOnly;
        queue.unshift(...t.parts, ...(t.dirOnly && !(last && allowMissing) ? [SLASH] : []));
        name = null;
        continue;
      }
      stack.push({ ino: entry.ino, mode: entry.attr.mode, name: c });
      name = c;
    }
    return { stack, name, missing: false, dirOnly };
  }

  /**
   * Permission checks the kernel makes where the Filesystem sees no call of its own (search
   * on `.`, `..` and parents, read on a directory opened as a file): `access` for a non-root
   * caller (root passes both), EACCES if denied; a Filesystem without `access` is trusted.
   */
  async #permit(ino: number, mask: number): Promise<void> {
    if (this.#ctx.uid === 0) return;
    try {
      await this.#fs.access(this.#ctx, ino, mask);
    } catch (e) {
      if (!isFsError(e, 'ENOSYS')) throw e;
    }
  }

  /** The name a create-type call (symlink, link) makes: EEXIST/ENOENT as the kernel's `filename_create`. */
  async #newName(l: Lookups, w: Walk): Promise<string> {
    if (w.name === null) throw FsError.of('EEXIST');
    if (w.dirOnly) {
      // A trailing slash on a name to create: EEXIST if it exists, else ENOENT.
      await l.lookup(top(w).ino, w.name);
      throw FsError.of('EEXIST');
    }
    return w.name;
  }

  /** Resolve and open (or create) a file; returns with one lookup of `ino` held in `l`. */
  async #openIn(l: Lookups, path: string, flags: number, mode: number): Promise<{ ino: number; fh: number | undefined }> {
    const { O_CREAT, O_EXCL, O_TRUNC, O_DIRECTORY, O_NOFOLLOW, O_ACCMODE, O_RDONLY } = OpenFlags;
    const creating = (flags & O_CREAT) !== 0;
    const follow = (flags & O_NOFOLLOW) === 0 && !(creating && (flags & O_EXCL) !== 0);
    const w = await this.#walk(l, path, follow ? 'follow' : 'nofollow', { create: creating });
    if (w.missing && w.name !== null) {
      const created = await this.#fs.create(this.#ctx, top(w).ino, w.name, S_IFREG | mode, flags);
      l.took(created.entry);
      return { ino: created.entry.ino, fh: created.fh };
    }
    const node = top(w);
    if (creating && (flags & O_EXCL) !== 0) throw FsError.of('EEXIST');
    if (isSymlink(node.mode)) throw FsError.of('ELOOP');
    if (isDir(node.mode)) {
      if (creating || (flags & O_ACCMODE) !== O_RDONLY || (flags & O_TRUNC) !== 0) throw FsError.of('EISDIR');
      await this.#permit(node.ino, AccessMode.R_OK);
      return { ino: node.ino, fh: undefined };
    }
    if ((flags & O_DIRECTORY) !== 0) throw FsError.of('ENOTDIR');
    const { fh } = await this.#fs.open(this.#ctx, node.ino, flags & ~(O_CREAT | O_EXCL));
    if ((flags & O_TRUNC) !== 0) {
      try {
        // A filesystem may leave O_TRUNC to the caller (FUSE without atomic_o_trunc).
        if ((await this.#fs.getattr(this.#ctx, node.ino, fh)).size > 0) await this.#fs.setattr(this.#ctx, node.ino, { size: 0 }, fh);
      } catch (e) {
        await this.#fs.release(this.#ctx, node.ino, fh);
        throw e;
      }
    }
    return { ino: node.ino, fh };
  }

  /** Every entry of the directory at `path` (ENOTDIR for anything else), as a 'scandir'. */
  #listAt(path: string): Promise<DirEntry[]> {
    return this.#at('scandir', path, 'follow', async (n) => {
      if (!isDir(n.mode)) throw FsError.of('ENOTDIR');
      return this.#list(n.ino);
    });
  }

  /** Every entry of directory `ino`, through opendir/readdir/releasedir. */
  async #list(ino: number): Promise<DirEntry[]> {
    const { fh } = await this.#fs.opendir(this.#ctx, ino);
    try {
      const all: DirEntry[] = [];
      for (let offset = 0; ;) {
        const batch = await this.#fs.readdir(this.#ctx, ino, fh, offset, false);
        const last = batch[batch.length - 1];
        if (last === undefined) return all;
        all.push(...batch);
        offset = last.offset;
      }
    } finally {
      await this.#fs.releasedir(this.#ctx, ino, fh);
    }
  }

  /** mkdir(2) of `path`: EEXIST when it names `/`, `.` or `..`. */
  async #mkdirIn(l: Lookups, path: string, mode: number): Promise<void> {
    const w = await this.#walk(l, path, 'parent');
    if (w.name === null) throw FsError.of('EEXIST');
    l.took(await this.#fs.mkdir(this.#ctx, top(w).ino, w.name, mode));
  }

  /**
   * mkdir -p as Node's (async) binding does it, on the path string: make `path`; on ENOENT
   * make its parent (the text before the last slash) first and retry. On any other failure
   * stat the path: a parent that exists (EEXIST) must be a directory, else ENOTDIR reported
   * at that parent; for the target a directory is success, another type EEXIST, a failing
   * stat its own error. Returns the first directory made. Errors carry their level's path.
   */
  async #mkdirp(l: Lookups, path: string, mode: number, isTarget: boolean): Promise<string | undefined> {
    const attempt = (): Promise<FsError | undefined> =>
      this.#mkdirIn(l, path, mode).then(() => undefined, (e: unknown) => toFsError(e));
    let err = await attempt();
    if (err === undefined) return path;
    let first: string | undefined;
    const cut = path.lastIndexOf('/');
    const parent = cut <= 0 ? '/' : path.slice(0, cut);
    if (err.code === 'ENOENT' && parent !== path) {
      first = await this.#mkdirp(l, parent, mode, false);
      err = await attempt();
      if (err === undefined) return first ?? path;
    }
    const failed = err;
    return withErrorContext({ syscall: 'mkdir', path }, async () => {
      let there: Step | undefined;
      try {
        there = top(await this.#walk(l, path, 'follow'));
      } catch (e) {
        if (isTarget || failed.code !== 'EEXIST') throw e;
      }
      if (there !== undefined && isDir(there.mode)) return first;
      throw FsError.of(!isTarget && failed.code === 'EEXIST' ? 'ENOTDIR' : 'EEXIST');
    });
  }

  /** Remove `path` whatever it is, as Node's rimraf: a vanished path is success. */
  async #rimraf(path: string): Promise<void> {
    let st: Stats;
    try {
      st = await this.lstat(path);
    } catch (e) {
      if (isFsError(e, 'ENOENT')) return;
      throw e;
    }
    try {
      if (st.isDirectory()) await this.#rimrafDir(path);
      else await this.unlink(path);
    } catch (e) {
      if (isFsError(e, 'ENOENT')) return;
      if (isFsError(e, 'EISDIR') || isFsError(e, 'EPERM')) return this.#rimrafDir(path, e);
      throw e;
    }
  }

  /** Remove a directory as Node's rimraf: rmdir first, and only when it is not empty its children. */
  async #rimrafDir(path: string, original?: unknown): Promise<void> {
    try {
      await this.rmdir(path);
      return;
    } catch (e) {
      if (isFsError(e, 'ENOENT')) return;
      if (isFsError(e, 'ENOTDIR')) throw original ?? e;
      if (!isFsError(e, 'ENOTEMPTY') && !isFsError(e, 'EEXIST') && !isFsError(e, 'EPERM')) throw e;
    }
    for (const name of await this.readdir(path)) await this.#rimraf(posix.join(path, name));
    await this.rmdir(path);
  }
}

function statsOf(attr: Attr, options?: StatOptions): Stats | BigIntStats {
  return options?.bigint ? new BigIntStats(attr) : new Stats(attr);
}
