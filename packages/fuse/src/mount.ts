/**
 * `mount(fs, mountpoint, options)`: serves any core `Filesystem` to the kernel through
 * fuse-native (libfuse 2, path based). This module owns the adapter from libfuse's path
 * operations to the inode operations of the Filesystem: every path is resolved through the
 * `PathMap` (which holds the lookups it took), open files and directories get handle
 * numbers of our own (pinning their inode), every error becomes the `FsError`'s errno, and
 * `unmount()` gives every lookup back. It also owns the process guards: SIGINT/SIGTERM
 * unmount every live mount and exit 0; a process `exit` detaches them lazily.
 */
import { execFile, execFileSync } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { resolve as resolvePath } from 'node:path';
import {
  FsError, OpenFlags, S_IFDIR, S_IFMT, UTIME_NOW, modeOfType, UTIME_OMIT, toFsError, type Attr, type DirEntry, type Filesystem,
  type Entry, type RequestContext, type SetattrRequest, type Timespec,
} from '@layerfs/core';
import { createNativeMount, NATIVE_UTIME_SPECIAL_MS, type NativeMount, type NativeOps, type NativeStat } from './native.js';
import { libfuseOptionString, resolveMountOptions, type MountOptions, type ResolvedMountOptions } from './options.js';
import { PathMap, type PathEntry } from './path-map.js';
import { findMount } from './mounts.js';
import { RequestContextReader } from './request-context.js';
import { HardLinkNames, KernelCache } from './kernel-cache.js';

/** Counters a mount keeps about the requests it served. */
export interface MountStats {
  /** Requests being served right now. */
  readonly inFlight: number;
  /** The most requests ever served at the same time. */
  readonly maxInFlight: number;
  /** Requests served, by operation name. */
  readonly ops: Readonly<Record<string, number>>;
  /** Paths in the path → inode map (each holds one lookup). */
  readonly cachedPaths: number;
  /** Open file and directory handles. */
  readonly openHandles: number;
  /** Requests served with the caller's credentials. */
  readonly callerContexts: number;
  /** The kernel caches attributes (`attrTimeout` > 0 and invalidation works). */
  readonly attrCaching: boolean;
  /** Attribute invalidations sent to the kernel for other names of hard links. */
  readonly invalidations: number;
  /** Names of a hard link that named another inode after a change through another name (copy-up broke the link) and were re-mapped. */
  readonly relinked: number;
  /** Requests that needed the caller's credentials but were served with the mounter's (caller unknown, or `context: 'mounter'`). */
  readonly mounterContexts: number;
}

/** A live mount. */
export interface MountHandle {
  /** The absolute mount point. */
  readonly mountpoint: string;
  /** The libfuse option string that was used. */
  readonly optionString: string;
  /** The served filesystem. */
  readonly fs: Filesystem;
  /** Unmount (lazily if busy), release every handle and forget every lookup. Idempotent. */
  unmount(): Promise<void>;
  /** Resolves once the mount is gone (by `unmount()` or by an outside `umount`). */
  readonly closed: Promise<void>;
  /** Request counters. */
  stats(): MountStats;
}

/** Extra options of `mount()` beyond the FUSE ones. */
export interface ServeOptions extends MountOptions {
  /**
   * Whose credentials the filesystem sees: `'request'` (default) gives each call the uid,
   * gid, pid and groups of the process that made the request (read from libfuse's worker
   * thread, see `request-context.ts`), falling back to the mounter where that cannot be
   * read; `'mounter'` always gives the mounting process's uid/gid; a function decides
   * itself. The umask is always 0: the kernel has applied the caller's already.
   */
  context?: 'request' | 'mounter' | (() => RequestContext);
  /** Call `fs.destroy()` after unmounting. Default: false. */
  destroyOnUnmount?: boolean;
}

interface OpenHandle {
  readonly entry: PathEntry;
  readonly fh: number;
  readonly dir: boolean;
  /** A write went through it already (other names of a hard link were re-resolved then). */
  written?: boolean;
}

const live = new Set<MountHandleImpl>();
/** How long `unmount` waits for fuse-native's own unmount before detaching lazily. */
const NATIVE_UNMOUNT_MS = 10_000;

/** Detach `mountpoint` lazily (`umount -l` as root, else `fusermount -uz`); errors ignored. */
function detachLazily(mountpoint: string): Promise<void> {
  const run = (cmd: string, args: string[]) => new Promise<boolean>((r) => { execFile(cmd, args, (e) => r(!e)); });
  return run('umount', ['-l', mountpoint]).then((ok) => (ok ? undefined : run('fusermount', ['-uz', mountpoint]).then(() => undefined)));
}

/** `LAYERFS_FUSE_TRACE=1` prints every failed request (and the unmount steps) on stderr. */
const TRACE = process.env.LAYERFS_FUSE_TRACE === '1';

function trace(msg: string): void {
  if (TRACE) process.stderr.write(`layerfs-fuse: ${msg}\n`);
}
let guardsInstalled = false;

/**
 * Operations whose outcome does not depend on the caller's credentials (they neither create
 * objects nor change ownership, and permissions were checked at open): they are served with
 * the mounter's context, without reading the caller's (a cross-thread read and promises per
 * request).
 */
const CREDENTIAL_FREE = new Set([
  'getattr', 'fgetattr', 'read', 'write', 'flush', 'fsync', 'fsyncdir', 'release', 'releasedir',
  'readlink', 'statfs', 'listxattr', 'readdir',
]);

/** Also credential-free with `default_permissions` (the kernel checked them; the filesystem only checks permissions there otherwise). */
const CREDENTIAL_FREE_CHECKED = new Set(['getxattr', 'open', 'opendir']);

function onSignal(sig: NodeJS.Signals): void {
  const all = [...live];
  void Promise.allSettled(all.map((m) => m.unmount())).then(() => {
    process.exit(0);
  });
  void sig;
}

function onExit(): void {
  for (const m of live) {
    try { execFileSync('fusermount', ['-uz', m.mountpoint], { stdio: 'ignore' }); } catch { /* already gone */ }
  }
}

let signalsInstalled = false;

/** The exit guard always (a dying process detaches its mounts); signal handlers when asked. */
function installGuards(signals: boolean): void {
  if (!guardsInstalled) {
    guardsInstalled = true;
    process.on('exit', onExit);
  }
  if (signals && !signalsInstalled) {
    signalsInstalled = true;
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  }
}

function removeGuards(): void {
  if (live.size > 0) return;
  if (guardsInstalled) { guardsInstalled = false; process.off('exit', onExit); }
  if (signalsInstalled) {
    signalsInstalled = false;
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

function ms(t: Timespec): number {
  return t.sec * 1000 + Math.floor(t.nsec / 1e6);
}

function nativeStat(a: Attr): NativeStat {
  return {
    mode: a.mode, uid: a.uid, gid: a.gid, size: a.size, dev: a.dev, nlink: a.nlink, ino: a.ino,
    rdev: a.rdev, blksize: a.blksize, blocks: a.blocks, atime: ms(a.atime), mtime: ms(a.mtime), ctime: ms(a.ctime),
  };
}

/** A stat carrying only what libfuse 2 passes on for a directory entry: the ino and the type. */
function typeStat(ino: number, mode: number): NativeStat {
  return { mode, uid: 0, gid: 0, size: 0, dev: 0, nlink: 1, ino, rdev: 0, blksize: 0, blocks: 0, atime: 0, mtime: 0, ctime: 0 };
}

function timespecOfMs(v: number): Timespec {
  const sec = Math.floor(v / 1000);
  return { sec, nsec: (v - sec * 1000) * 1e6 };
}

function splitPath(p: string): { parent: string; name: string } {
  const cut = p.lastIndexOf('/');
  return { parent: cut <= 0 ? '/' : p.slice(0, cut), name: p.slice(cut + 1) };
}

class MountHandleImpl implements MountHandle {
  readonly mountpoint: string;
  readonly optionString: string;
  readonly closed: Promise<void>;
  private resolveClosed!: () => void;
  private readonly map: PathMap;
  private readonly handles = new Map<number, OpenHandle>();
  private nextHandle = 1;
  private native!: NativeMount;
  private inFlight = 0;
  private maxInFlight = 0;
  private readonly opCounts: Record<string, number> = {};
  private idle: Array<() => void> = [];
  private unmounting: Promise<void> | undefined;
  private watchTimer: NodeJS.Timeout | undefined;
  private mountId: string | undefined;
  private readonly ctx: () => RequestContext;
  private readonly base: RequestContext;
  private reader: RequestContextReader | undefined;
  /** libfuse's node table and the kernel's attribute cache (undefined: attributes are not cached). */
  private kcache: KernelCache | undefined;
  /** Names under which the kernel got attributes of multiply linked non-directories. */
  private readonly links = new HardLinkNames(65536);
  /** Names re-mapped by `relink` (a counter for tests). */
  private relinked = 0;
  /**
   * Inodes the Filesystem reported changed aside (`watchAttrs`: a copy-up's objects and the
   * upper directories they landed in), counted; a request during which the count moved drops
   * the kernel's attributes of the ancestors of its paths (`ancestorsChanged`).
   */
  private aside = 0;
  /** Stops the Filesystem's `watchAttrs` listener. */
  private unwatch: (() => void) | undefined;
  /** Requests served with the caller's credentials / with the mounter's (counters for tests). */
  private ctxHits = 0;
  private ctxMisses = 0;

  constructor(readonly fs: Filesystem, mountpoint: string, private readonly o: ResolvedMountOptions, private readonly serve: ServeOptions) {
    this.mountpoint = resolvePath(mountpoint);
    this.optionString = libfuseOptionString(o);
    const uid = typeof process.getuid === 'function' ? process.getuid() : 0;
    const gid = typeof process.getgid === 'function' ? process.getgid() : 0;
    this.base = Object.freeze({ uid, gid, pid: process.pid, umask: 0 });
    const c = serve.context;
    this.ctx = typeof c === 'function' ? c : () => this.base;
    this.map = new PathMap(fs, this.ctx, o.maxCachedPaths);
    this.closed = new Promise((r) => { this.resolveClosed = r; });
  }

  stats(): MountStats {
    return {
      inFlight: this.inFlight, maxInFlight: this.maxInFlight, ops: { ...this.opCounts },
      cachedPaths: this.map.size, openHandles: this.handles.size,
      callerContexts: this.ctxHits, mounterContexts: this.ctxMisses,
      attrCaching: this.kcache !== undefined, invalidations: this.kcache?.sent ?? 0, relinked: this.relinked,
    };
  }

  async start(): Promise<void> {
    const wantCallers = (this.serve.context ?? 'request') === 'request';
    if (wantCallers) await RequestContextReader.prepare();
    this.native = createNativeMount(this.mountpoint, this.ops(), this.optionString);
    // Guards first: a signal that arrives once the mount is visible must unmount it.
    live.add(this);
    installGuards(this.o.handleSignals);
    try {
      this.unwatch = this.fs.watchAttrs?.(() => { this.aside++; });
      await this.native.mount();
    } catch (e) {
      live.delete(this);
      removeGuards();
      this.stopWatching();
      throw e;
    }
    const thread = this.native.threadBuffer();
    if (wantCallers && thread) this.reader = RequestContextReader.create(thread);
    if (this.o.attrTimeout > 0) {
      this.kcache = KernelCache.attach(thread, this.o.entryTimeout, 0, this.o.autoCache && !this.o.kernelCache);
      if (this.kcache) this.kcache.setAttrTimeout(this.o.attrTimeout);
      else trace(`${this.mountpoint}: libfuse layout not recognised, attributes are not cached`);
    }
    const m = await findMount(this.mountpoint);
    this.mountId = m?.id;
    // Gone already (unmounted from outside between INIT and now): clean up like an unmount.
    if (!m || !m.fstype.startsWith('fuse')) queueMicrotask(() => { void this.unmount(); });
    this.watchTimer = setInterval(() => { void this.checkStillMounted(); }, 1000);
    this.watchTimer.unref();
  }

  private async checkStillMounted(): Promise<void> {
    if (this.unmounting || this.mountId === undefined) return;
    const text = await readFile('/proc/self/mountinfo', 'utf8').catch(() => '');
    if (!text.split('\n').some((l) => l.startsWith(`${this.mountId} `))) {
      trace(`${this.mountpoint} was unmounted from outside`);
      void this.unmount();
    }
  }

  unmount(): Promise<void> {
    this.unmounting ??= this.doUnmount();
    return this.unmounting;
  }

  private async doUnmount(): Promise<void> {
    if (this.watchTimer) clearInterval(this.watchTimer);
    trace(`unmount ${this.mountpoint}: detaching`);
    // fuse-native's unmount (`fusermount -uz`, then its FUSE thread's end) has no bound of its
    // own: once, in a loaded full test run, it had not settled after 120 s. Past 10 s the mount
    // is detached lazily here and the cleanup goes on. A failure means it was already
    // unmounted from outside (fusermount fails): nothing more to detach.
    const settled = await Promise.race([
      this.native.unmount().then(() => true, () => true),
      new Promise<boolean>((r) => setTimeout(() => r(false), NATIVE_UNMOUNT_MS).unref()),
    ]);
    if (!settled) {
      trace(`unmount ${this.mountpoint}: fuse-native did not finish in ${NATIVE_UNMOUNT_MS} ms, detaching lazily`);
      await detachLazily(this.mountpoint);
    }
    live.delete(this);
    removeGuards();
    trace(`unmount ${this.mountpoint}: waiting for ${this.inFlight} request(s)`);
    await this.drain(5000);
    this.stopWatching();
    // Every step is bounded: a filesystem call that never settles must not keep the mount
    // handle (and a daemon waiting on `closed`) alive for ever.
    const bounded = (p: Promise<unknown>) => Promise.race([p.catch(() => undefined), new Promise((r) => setTimeout(r, 5000).unref())]);
    for (const [id, h] of [...this.handles]) {
      this.handles.delete(id);
      await bounded(h.dir ? this.fs.releasedir(this.ctx(), h.entry.ino, h.fh) : this.fs.release(this.ctx(), h.entry.ino, h.fh));
      this.map.unpin(h.entry);
    }
    trace(`unmount ${this.mountpoint}: forgetting ${this.map.size} path(s)`);
    await bounded(this.map.clear());
    if (this.serve.destroyOnUnmount) await bounded(this.fs.destroy());
    trace(`unmount ${this.mountpoint}: done`);
    this.resolveClosed();
  }

  /** Stop the Filesystem's `watchAttrs` listener (a stop function that throws is ignored). */
  private stopWatching(): void {
    const stop = this.unwatch;
    this.unwatch = undefined;
    try { stop?.(); } catch { /* the listener only counts; nothing to undo */ }
  }

  private drain(timeoutMs: number): Promise<void> {
    if (this.inFlight === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const t = setTimeout(resolve, timeoutMs);
      this.idle.push(() => { clearTimeout(t); resolve(); });
    });
  }

  /** Run one request: count it, map its error to an errno, hand the result to `done`. */
  private run<T>(op: string, path: string, work: (c: RequestContext, since: number) => Promise<T>, done: (code: number, value?: T) => void): void {
    const since = this.aside;
    this.inFlight++;
    if (this.inFlight > this.maxInFlight) this.maxInFlight = this.inFlight;
    this.opCounts[op] = (this.opCounts[op] ?? 0) + 1;
    const free = CREDENTIAL_FREE.has(op) || (this.o.defaultPermissions && CREDENTIAL_FREE_CHECKED.has(op));
    const locals = this.reader && !free ? this.native.currentLocals() : undefined;
    const start = locals && this.reader
      ? this.reader.read(locals).catch(() => undefined).then((rc) => {
        if (rc) { this.ctxHits++; return work(rc.umask === 0 ? rc : { ...rc, umask: 0 }, since); }
        this.ctxMisses++;
        return work(this.ctx(), since);
      })
      : (free || this.ctxMisses++, work(this.ctx(), since));
    start.then(
      (v) => {
        this.finish();
        if (TRACE && (op === 'open' || op === 'release' || op === 'create')) process.stderr.write(`layerfs-fuse: ${op} ${path} = ${String(v)}\n`);
        done(0, v);
      },
      (e: unknown) => {
        this.finish();
        if (TRACE) process.stderr.write(`layerfs-fuse: ${op} ${path} -> ${String((e as Error)?.message ?? e)}\n`);
        done(this.errnoOf(e, op, path));
      },
    );
  }

  private finish(): void {
    this.inFlight--;
    if (this.inFlight === 0 && this.idle.length) {
      const w = this.idle; this.idle = [];
      for (const f of w) f();
    }
  }

  private errnoOf(e: unknown, op: string, path: string): number {
    if (e instanceof FsError) return e.errno;
    const fe = toFsError(e);
    if (fe.code === 'EIO') {
      if (this.o.onInternalError) this.o.onInternalError(e, op, path);
      else process.stderr.write(`layerfs: ${op} ${path}: ${String((e as Error)?.stack ?? e)}\n`);
    }
    return fe.errno;
  }

  /**
   * The kernel got `a` for `path` (table inode `ino`): remember the name when the object has
   * other links (keyed by the table ino, as `link` and the path map are; the reported
   * `a.ino` can differ from it, see `relink`).
   */
  private noteAttr(path: string, ino: number, a: Attr): Attr {
    if ((a.mode & S_IFMT) !== S_IFDIR && a.nlink > 1) {
      this.links.add(ino, path);
      if (this.links.overflowed) this.stopAttrCaching();
    }
    return a;
  }

  /**
   * Before a change through `path` that may copy object `ino` up, when it has other known
   * names: look `path` up once more (and give that lookup back), so that a filesystem that
   * keeps one inode for the names of a lower hard link copies up this name — OverlayFs
   * copies up the name an inode was last looked up by, and libfuse's path is the only place
   * that knows which name the caller used.
   */
  private async aim(path: string, ino: number): Promise<void> {
    if (!this.links.namesOf(ino).some((n) => n !== path)) return;
    const { parent, name } = splitPath(path);
    // Bookkeeping, not the caller's request: made as the mounter (no search-permission refusal).
    const e = await this.withIno(parent, (p) => this.fs.lookup(this.base, p, name)).catch(() => undefined);
    if (e) await this.fs.forget(this.base, e.ino, 1).catch(() => undefined);
  }

  /**
   * A change through `except` of object `ino` may have copied it up, which breaks a lower
   * hard link (overlayfs without index): the other names then name another object, while
   * the path map still maps them to `ino` (one object until then). Look each other known
   * name up afresh (not through the path map); where it now names another inode, put that
   * in the path map (the old entry is forgotten, or at its last unpin if a handle holds it),
   * move the name in `links`, and drop the kernel's attributes of it. Only objects with
   * names in `links` (nlink > 1) pay for this: one lookup per other name.
   */
  private async relink(ino: number | undefined, except: readonly string[]): Promise<void> {
    if (ino === undefined) return;
    const names = this.links.namesOf(ino).filter((n) => !except.includes(n));
    if (names.length === 0) return;
    const stale: string[] = [];
    for (const other of names) {
      const { parent, name } = splitPath(other);
      const epoch = this.map.epoch;
      let fresh: Entry | undefined;
      try {
        fresh = await this.withIno(parent, (p) => this.fs.lookup(this.base, p, name));
      } catch {
        fresh = undefined;
      }
      if (fresh === undefined) {
        // Gone (or unreachable): nothing to keep for it.
        this.links.drop(other);
        stale.push(other);
        continue;
      }
      const cached = this.map.peek(other);
      if (fresh.ino === ino && (!cached || cached.ino === ino)) {
        await this.fs.forget(this.base, fresh.ino, 1).catch(() => undefined);
        continue;
      }
      // The entry (if any) under `other` is replaced and forgotten; this lookup is the new one
      // (not cached, and the old entry dropped, when the namespace changed meanwhile).
      if (this.map.epoch !== epoch) this.map.drop(other);
      this.map.unpin(this.map.adopt(other, fresh.ino, epoch));
      if ((fresh.attr.mode & S_IFMT) !== S_IFDIR && fresh.attr.nlink > 1) this.links.add(fresh.ino, other);
      else this.links.drop(other);
      this.relinked++;
      stale.push(other);
    }
    // The changed names now name another object too (a copy-up gives a new ino and nlink),
    // which the kernel does not refetch after every change (after setxattr or rename it
    // only marks ctime stale): drop theirs as well.
    if (stale.length > 0) this.kcache?.invalidate([...stale, ...except]);
  }

  /** Too many hard-link names to track: stop caching attributes (safe from now on). */
  private stopAttrCaching(): void {
    const k = this.kcache;
    if (!k) return;
    trace(`${this.mountpoint}: too many hard-link names, attributes are no longer cached`);
    k.setAttrTimeout(0);
    this.kcache = undefined;
    // Whatever the kernel cached for tracked names expires only by invalidation.
    k.invalidate(this.allLinkNames());
  }

  private allLinkNames(): string[] {
    const out: string[] = [];
    for (const ino of this.links.inos()) out.push(...this.links.namesOf(ino));
    return out;
  }

  /** Object `ino` changed (through `except`, which the kernel refreshes itself): drop the kernel's attributes of its other names. */
  private changed(ino: number | undefined, except?: string): void {
    if (!this.kcache || ino === undefined) return;
    const names = this.links.namesOf(ino);
    if (names.length === 0 || (names.length === 1 && names[0] === except)) return;
    this.kcache.invalidate(names.filter((n) => n !== except));
  }

  /**
   * After a change at `paths`, made by a request that started when the `aside` count was
   * `since`: a copy-up gives the copied directories (ancestors of the path) and the upper
   * directories they land in new attributes, though the kernel saw no change in them. When the
   * Filesystem reported such a change meanwhile (`watchAttrs`), drop the kernel's attributes of
   * every ancestor of the paths (a copy-up only ever copies ancestors; a concurrent request's
   * report costs at worst an extra drop). `skipParents`: the kernel itself drops the parents'
   * attributes (namespace operations).
   */
  private ancestorsChanged(since: number, paths: readonly string[], skipParents: boolean): void {
    if (!this.kcache || this.aside === since) return;
    const stale = new Set<string>();
    for (const path of paths) {
      let p = path;
      let first = true;
      while (p !== '/' && p !== '') {
        p = splitPath(p).parent;
        if (!(first && skipParents)) stale.add(p);
        first = false;
      }
    }
    if (stale.size > 0) this.kcache.invalidate([...stale]);
  }

  /** The ino `path` names, from the path map or the hard-link names (no lookup). */
  private knownIno(path: string): number | undefined {
    return this.map.peek(path)?.ino ?? this.links.inoOf(path);
  }

  /** Resolve `path`, run `fn` on its inode, unpin. */
  private async withIno<T>(path: string, fn: (ino: number, entry: PathEntry) => Promise<T>): Promise<T> {
    const entry = await this.map.resolve(path);
    try {
      return await fn(entry.ino, entry);
    } finally {
      this.map.unpin(entry);
    }
  }

  private handle(fd: number): OpenHandle {
    const h = this.handles.get(fd);
    if (!h) throw new FsError('EBADF', { detail: `no open handle ${fd}` });
    return h;
  }

  private addHandle(entry: PathEntry, fh: number, dir: boolean): number {
    let id = this.nextHandle++;
    if (this.nextHandle > 0x7fffffff) this.nextHandle = 1;
    while (this.handles.has(id)) id = this.nextHandle++;
    this.handles.set(id, { entry: this.map.pin(entry), fh, dir });
    return id;
  }

  /**
   * The whole listing of `path` for libfuse's filler. libfuse 2 only passes `st_ino` and the
   * type bits of each entry to the kernel (FUSE 2 has no readdirplus), so the listing is
   * read without attributes (`plus` false) and each entry gets a stat with just those.
   */
  private async listAll(c: RequestContext, path: string): Promise<{ names: string[]; stats: NativeStat[] }> {
    return this.withIno(path, async (ino) => {
      const dir = await this.fs.opendir(c, ino);
      const names: string[] = ['.', '..'];
      const stats: NativeStat[] = [typeStat(ino, S_IFDIR)];
      try {
        let parentIno = ino;
        if (path !== '/') {
          const pe = await this.map.resolve(splitPath(path).parent).catch(() => undefined);
          if (pe) { parentIno = pe.ino; this.map.unpin(pe); }
        }
        stats.push(typeStat(parentIno, S_IFDIR));
        let offset = 0;
        for (;;) {
          const batch: DirEntry[] = await this.fs.readdir(c, ino, dir.fh, offset, false);
          if (batch.length === 0) break;
          for (const d of batch) {
            names.push(d.name);
            stats.push(typeStat(d.ino, modeOfType(d.type)));
          }
          offset = batch[batch.length - 1]!.offset;
        }
      } finally {
        await this.fs.releasedir(c, ino, dir.fh).catch(() => undefined);
      }
      return { names, stats };
    });
  }

  private async setattr(c: RequestContext, since: number, path: string, changes: SetattrRequest, fd?: number): Promise<void> {
    if (fd !== undefined && this.handles.has(fd)) {
      const h = this.handle(fd);
      await this.changeInPlace(since, path, h.entry.ino, () => this.fs.setattr(c, h.entry.ino, changes, h.fh), false);   // the handle's object was copied up at open
      return;
    }
    await this.withIno(path, (ino) => this.changeInPlace(since, path, ino, () => this.fs.setattr(c, ino, changes)));
  }

  /**
   * A change to the object `path` names that adds or removes no name (setattr, setxattr,
   * removexattr): it may copy the object up, so (`aim`) that name is the one copied up, the
   * object's other names follow a broken lower hard link (`relink`), the kernel's attributes
   * of its names and of changed ancestors are dropped. `aim` false: through an open handle.
   */
  private async changeInPlace(since: number, path: string, ino: number, change: () => Promise<unknown>, aim = true): Promise<void> {
    if (aim) await this.aim(path, ino);
    await change();
    await this.relink(ino, [path]);
    this.changed(ino, path);
    this.ancestorsChanged(since, [path], false);
  }

  private async createLike(path: string, make: (parentIno: number, name: string) => Promise<{ ino: number }>): Promise<PathEntry> {
    const { parent, name } = splitPath(path);
    const pe = await this.map.resolve(parent);
    try {
      const made = await make(pe.ino, name);
      this.map.bump();
      return this.map.adopt(path, made.ino);
    } finally {
      this.map.unpin(pe);
    }
  }

  private ops(): NativeOps {
    const fs = this.fs;
    const run = this.run.bind(this);
    const cbErr = (cb: (code: number) => void) => (code: number) => cb(code);
    return {
      init: (cb: (code: number) => void) => cb(0),
      error: (cb: (code: number) => void) => cb(0),
      access: (path: string, mode: number, cb: (c: number) => void) =>
        run('access', path, (c) => this.withIno(path, (ino) => fs.access(c, ino, mode)), cbErr(cb)),
      statfs: (path: string, cb: (c: number, v?: unknown) => void) =>
        run('statfs', path, (c) => this.withIno(path, (ino) => fs.statfs(c, ino)), (c, s) => {
          if (c) return cb(c);
          cb(0, { bsize: s!.bsize, frsize: s!.frsize, blocks: s!.blocks, bfree: s!.bfree, bavail: s!.bavail, files: s!.files, ffree: s!.ffree, favail: s!.ffree, fsid: 0, flag: 0, namemax: s!.namemax });
        }),
      getattr: (path: string, cb: (c: number, v?: NativeStat) => void) =>
        run('getattr', path, (c) => this.withIno(path, async (ino) => this.noteAttr(path, ino, await fs.getattr(c, ino))), (c, a) => (c ? cb(c) : cb(0, nativeStat(a!)))),
      fgetattr: (path: string, fd: number, cb: (c: number, v?: NativeStat) => void) =>
        run('fgetattr', path, async (c) => {
          const h = this.handles.get(fd);
          if (h) return this.noteAttr(path, h.entry.ino, await fs.getattr(c, h.entry.ino, h.dir ? undefined : h.fh));
          return this.withIno(path, async (ino) => this.noteAttr(path, ino, await fs.getattr(c, ino)));
        }, (c, a) => (c ? cb(c) : cb(0, nativeStat(a!)))),
      flush: (path: string, fd: number, cb: (c: number) => void) =>
        run('flush', path, async (c) => { const h = this.handle(fd); await fs.flush(c, h.entry.ino, h.fh); }, cbErr(cb)),
      fsync: (path: string, datasync: number, fd: number, cb: (c: number) => void) =>
        run('fsync', path, async (c) => { const h = this.handle(fd); await fs.fsync(c, h.entry.ino, h.fh, !!datasync); }, cbErr(cb)),
      fsyncdir: (path: string, datasync: number, fd: number, cb: (c: number) => void) =>
        run('fsyncdir', path, async (c) => {
          const h = this.handles.get(fd);
          if (h) await fs.fsyncdir(c, h.entry.ino, h.fh, !!datasync);
        }, cbErr(cb)),
      readdir: (path: string, cb: (c: number, names?: string[], stats?: NativeStat[]) => void) =>
        run('readdir', path, (c) => this.listAll(c, path), (c, r) => (c ? cb(c) : cb(0, r!.names, r!.stats))),
      truncate: (path: string, size: number, cb: (c: number) => void) =>
        run('truncate', path, (c, since) => this.setattr(c, since, path, { size }), cbErr(cb)),
      ftruncate: (path: string, fd: number, size: number, cb: (c: number) => void) =>
        run('ftruncate', path, (c, since) => this.setattr(c, since, path, { size }, fd), cbErr(cb)),
      utimens: (path: string, atime: number, mtime: number, cb: (c: number) => void) =>
        run('utimens', path, (c, since) => {
          const sa = atime === NATIVE_UTIME_SPECIAL_MS;
          const sm = mtime === NATIVE_UTIME_SPECIAL_MS;
          const now: Timespec = { sec: 0, nsec: UTIME_NOW };
          const omit: Timespec = { sec: 0, nsec: UTIME_OMIT };
          const changes: SetattrRequest = sa && sm
            ? { atime: now, mtime: now }
            : { atime: sa ? omit : timespecOfMs(atime), mtime: sm ? omit : timespecOfMs(mtime) };
          return this.setattr(c, since, path, changes);
        }, cbErr(cb)),
      readlink: (path: string, cb: (c: number, v?: string) => void) =>
        run('readlink', path, (c) => this.withIno(path, (ino) => fs.readlink(c, ino)), (c, v) => (c ? cb(c) : cb(0, v))),
      chown: (path: string, uid: number, gid: number, cb: (c: number) => void) =>
        run('chown', path, (c, since) => {
          const changes: SetattrRequest = {};
          if (uid !== 0xffffffff) changes.uid = uid;
          if (gid !== 0xffffffff) changes.gid = gid;
          return this.setattr(c, since, path, changes);
        }, cbErr(cb)),
      chmod: (path: string, mode: number, cb: (c: number) => void) =>
        run('chmod', path, (c, since) => this.setattr(c, since, path, { mode: mode & 0o7777 }), cbErr(cb)),
      mknod: (path: string, mode: number, dev: number, cb: (c: number) => void) =>
        run('mknod', path, async (c, since) => {
          const e = await this.createLike(path, (p, n) => fs.mknod(c, p, n, mode, dev));
          this.map.unpin(e);
          this.ancestorsChanged(since, [path], true);
        }, cbErr(cb)),
      setxattr: (path: string, name: string, value: Buffer, _position: number, flags: number, cb: (c: number) => void) => {
        const copy = Uint8Array.from(value);
        run('setxattr', path, (c, since) => this.withIno(path, (ino) => this.changeInPlace(since, path, ino, () => fs.setxattr(c, ino, name, copy, flags))), cbErr(cb));
      },
      getxattr: (path: string, name: string, _position: number, cb: (c: number, v?: Buffer) => void) =>
        run('getxattr', path, (c) => this.withIno(path, (ino) => fs.getxattr(c, ino, name)), (c, v) => (c ? cb(c) : cb(0, Buffer.from(v!)))),
      listxattr: (path: string, cb: (c: number, v?: string[]) => void) =>
        run('listxattr', path, (c) => this.withIno(path, (ino) => fs.listxattr(c, ino)), (c, v) => (c ? cb(c) : cb(0, v))),
      removexattr: (path: string, name: string, cb: (c: number) => void) =>
        run('removexattr', path, (c, since) => this.withIno(path, (ino) => this.changeInPlace(since, path, ino, () => fs.removexattr(c, ino, name))), cbErr(cb)),
      open: (path: string, flags: number, cb: (c: number, fd?: number) => void) =>
        run('open', path, (c, since) => this.withIno(path, async (ino, entry) => {
          const writing = (flags & 3) !== OpenFlags.O_RDONLY || (flags & OpenFlags.O_TRUNC) !== 0;
          if (writing) await this.aim(path, ino);
          // Without O_DIRECT: libfuse's buffers are not aligned as the host's direct I/O needs
          // (the kernel already bypasses its page cache for the caller).
          const r = await fs.open(c, ino, flags & ~OpenFlags.O_CREAT & ~OpenFlags.O_EXCL & ~OpenFlags.O_TRUNC & ~OpenFlags.O_DIRECT);
          // Opening for writing copies up (new ctime and blocks; new entries in upper directories).
          if (writing) {
            this.kcache?.invalidate([path]);
            await this.relink(ino, [path]);
            this.changed(ino, path);
            this.ancestorsChanged(since, [path], false);
          }
          return this.addHandle(entry, r.fh, false);
        }), (c, fd) => (c ? cb(c) : cb(0, fd))),
      opendir: (path: string, _flags: number, cb: (c: number, fd?: number) => void) =>
        run('opendir', path, (c) => this.withIno(path, async (ino, entry) => {
          const r = await fs.opendir(c, ino);
          return this.addHandle(entry, r.fh, true);
        }), (c, fd) => (c ? cb(c) : cb(0, fd))),
      read: (path: string, fd: number, buf: Buffer, len: number, pos: number, cb: (n: number) => void) =>
        run('read', path, async (c) => {
          const h = this.handle(fd);
          // Read straight into libfuse's reply buffer where the filesystem can (valid until
          // we answer: the libfuse thread waits for it).
          const data = await fs.read(c, h.entry.ino, h.fh, len, pos, buf);
          const n = Math.min(len, data.length);
          if (data.buffer !== buf.buffer || data.byteOffset !== buf.byteOffset) buf.set(data.subarray(0, n), 0);
          return n;
        }, (c, n) => cb(c || n!)),
      write: (path: string, fd: number, buf: Buffer, len: number, pos: number, cb: (n: number) => void) => {
        // No copy: a view of libfuse's request buffer, valid until this write settles (the
        // libfuse thread waits for our answer; fuse-native detaches it afterwards). A copy
        // into a fresh 128 KiB array cost more than the write itself (measured: 256 MiB dd
        // 2.7 s with a copy, 1.1 s without).
        const data = buf.subarray(0, len);
        run('write', path, async (c) => {
          const h = this.handle(fd);
          const n = await fs.write(c, h.entry.ino, h.fh, data, pos);
          if (!h.written) { h.written = true; await this.relink(h.entry.ino, [path]); }
          this.changed(h.entry.ino, path);
          return n;
        }, (c, n) => cb(c || n!));
      },
      release: (path: string, fd: number, cb: (c: number) => void) =>
        run('release', path, async (c) => {
          const h = this.handles.get(fd);
          if (!h) return;
          this.handles.delete(fd);
          try { await fs.release(c, h.entry.ino, h.fh); } finally { this.map.unpin(h.entry); }
        }, cbErr(cb)),
      releasedir: (path: string, fd: number, cb: (c: number) => void) =>
        run('releasedir', path, async (c) => {
          const h = this.handles.get(fd);
          if (!h) return;
          this.handles.delete(fd);
          try { await fs.releasedir(c, h.entry.ino, h.fh); } finally { this.map.unpin(h.entry); }
        }, cbErr(cb)),
      create: (path: string, mode: number, cb: (c: number, fd?: number) => void) =>
        run('create', path, async (c, since) => {
          const { parent, name } = splitPath(path);
          const pe = await this.map.resolve(parent);
          try {
            const r = await fs.create(c, pe.ino, name, mode, OpenFlags.O_RDWR | OpenFlags.O_CREAT);
            this.map.bump();
            const entry = this.map.adopt(path, r.entry.ino);
            const id = this.addHandle(entry, r.fh, false);
            this.map.unpin(entry);
            this.ancestorsChanged(since, [path], true);
            return id;
          } finally {
            this.map.unpin(pe);
          }
        }, (c, fd) => (c ? cb(c) : cb(0, fd))),
      unlink: (path: string, cb: (c: number) => void) =>
        run('unlink', path, async (c, since) => {
          const { parent, name } = splitPath(path);
          const ino = this.knownIno(path);
          await this.withIno(parent, (p) => fs.unlink(c, p, name));
          this.map.drop(path);
          this.links.drop(path);
          this.changed(ino);
          this.ancestorsChanged(since, [path], true);
        }, cbErr(cb)),
      rmdir: (path: string, cb: (c: number) => void) =>
        run('rmdir', path, async (c, since) => {
          const { parent, name } = splitPath(path);
          await this.withIno(parent, (p) => fs.rmdir(c, p, name));
          this.map.drop(path);
          this.links.drop(path);
          this.ancestorsChanged(since, [path], true);
        }, cbErr(cb)),
      rename: (src: string, dest: string, cb: (c: number) => void) =>
        run('rename', src, async (c, since) => {
          const a = splitPath(src);
          const b = splitPath(dest);
          const moved = this.knownIno(src);
          const replaced = this.knownIno(dest);
          const pa = await this.map.resolve(a.parent);
          try {
            const pb = await this.map.resolve(b.parent);
            try {
              this.map.bump();
              await fs.rename(c, pa.ino, a.name, pb.ino, b.name, 0);
            } finally {
              this.map.unpin(pb);
            }
          } finally {
            this.map.unpin(pa);
          }
          this.map.move(src, dest);
          this.links.move(src, dest);
          // libfuse moves its node (the kernel inode) from `src` to `dest` after this reply:
          // until then that node is found under `src`.
          await this.relink(moved, [dest, src]);
          this.changed(moved, dest);
          if (replaced !== moved) this.changed(replaced);
          this.ancestorsChanged(since, [src, dest], true);
        }, cbErr(cb)),
      link: (src: string, dest: string, cb: (c: number) => void) =>
        run('link', dest, async (c, since) => {
          let srcIno: number | undefined;
          const e = await this.withIno(src, async (ino) => { srcIno = ino; await this.aim(src, ino); return this.createLike(dest, (p, n) => fs.link(c, ino, p, n)); });
          this.map.unpin(e);
          // Linking copies a lower object up first: its other lower names may part from it.
          await this.relink(srcIno, [src, dest]);
          if (srcIno !== undefined && srcIno !== e.ino) this.links.drop(src);
          this.links.add(e.ino, src);
          this.links.add(e.ino, dest);
          if (this.links.overflowed) this.stopAttrCaching();
          this.changed(e.ino, dest);
          this.ancestorsChanged(since, [dest], true);
          this.ancestorsChanged(since, [src], false);
        }, cbErr(cb)),
      symlink: (target: string, path: string, cb: (c: number) => void) =>
        run('symlink', path, async (c, since) => {
          const e = await this.createLike(path, (p, n) => fs.symlink(c, p, n, target));
          this.map.unpin(e);
          this.ancestorsChanged(since, [path], true);
        }, cbErr(cb)),
      mkdir: (path: string, mode: number, cb: (c: number) => void) =>
        run('mkdir', path, async (c, since) => {
          const e = await this.createLike(path, (p, n) => fs.mkdir(c, p, n, mode));
          this.map.unpin(e);
          this.ancestorsChanged(since, [path], true);
        }, cbErr(cb)),
    };
  }
}

/**
 * Mount `fs` on `mountpoint` (an existing empty directory) and serve it until `unmount()`.
 * Resolves once the kernel can use the mount.
 */
export async function mount(fs: Filesystem, mountpoint: string, options: ServeOptions = {}): Promise<MountHandle> {
  const o = resolveMountOptions(options);
  const h = new MountHandleImpl(fs, mountpoint, o, options);
  await h.start();
  return h;
}

/** Every mount this process serves right now. */
export function liveMounts(): readonly MountHandle[] {
  return [...live];
}
