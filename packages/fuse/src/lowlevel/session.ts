/**
 * `mountLowLevel(fs, mountpoint, options)`: the low-level FUSE transport. It opens
 * `/dev/fuse`, mounts it with mount(2) and speaks the kernel protocol itself: node ids are the
 * Filesystem's inode numbers (no path map), the lookups the kernel holds are counted per node
 * id and given back at the end of the session. The JS thread's event loop polls `/dev/fuse`
 * (device-reader.ts), decodes each request, calls the Filesystem (many requests in flight at
 * once) and writes the reply (writing to /dev/fuse never blocks).
 * Root only (mount(2)). The only notifications sent are attribute invalidations of the inodes
 * the Filesystem reports changed aside (`watchAttrs`). With `handleSignals` (default), SIGINT and
 * SIGTERM unmount every low-level mount of the process, then exit.
 */
import { execFileSync } from 'node:child_process';
import { closeSync, openSync, writeSync, writevSync } from 'node:fs';
import { resolve as resolvePath } from 'node:path';
import {
  FsError, OpenFlags, READ_SINK, killPriv, lookupIfExists, S_IFDIR, S_IFMT, S_IFREG, UTIME_NOW, toFsError, type ReadSink, type Attr, type DirEntry, type Entry, type Filesystem, type RequestContext, type SetattrRequest,
} from '@layerfs/core';
import type { MountHandle, MountStats } from '../mount.js';
import type { MountOptions } from '../options.js';
import {
  ATTR_OUT, ENTRY_OUT, FATTR, FOPEN, FSYNC_FDATASYNC, GETATTR_FH, INIT_OUT, InitFlag, OPEN_KILL_SUIDGID, OPEN_OUT, OP_NAMES, OUT_HEADER,
  Op, Request, STATFS_OUT, direntSize, writeAttrOut, writeDirent, writeEntry, writeOpenOut, writeOutHeader, writeStatfs, WRITE_KILL_SUIDGID,
} from './protocol.js';
import { CallerGroups } from '../caller-groups.js';
import { readDevice, type DeviceReader } from './device-reader.js';
import { ReplySplicer } from './splice.js';
import { MS_NOATIME, MS_NODEV, MS_NOSUID, MS_RDONLY, abortConnection, deviceOf, runUmount, setReadAhead, sysMount } from './mount-syscall.js';

/** The options both transports share, with the same meanings and defaults (`MountOptions`). */
type SharedOptions = 'allowOther' | 'defaultPermissions' | 'readOnly' | 'noatime' | 'fsname' | 'subtype'
  | 'entryTimeout' | 'attrTimeout' | 'negativeTimeout' | 'handleSignals';
/** The `MountOptions` a low-level mount takes (`SharedOptions`). */
export const LOW_LEVEL_SHARED_OPTIONS: readonly SharedOptions[] = ['allowOther', 'defaultPermissions', 'readOnly', 'noatime', 'fsname', 'subtype', 'entryTimeout', 'attrTimeout', 'negativeTimeout', 'handleSignals'];

/**
 * Options of `mountLowLevel`: the shared ones of `MountOptions` (attributes are cached for
 * `attrTimeout` from the start: the kernel keeps one inode per node id), and its own.
 */
export interface LowLevelOptions extends Pick<MountOptions, SharedOptions> {
  /** Pages per read/write request (1..256; 256 = 1 MiB). Default 256. */
  maxPages?: number;
  /**
   * Read-ahead of the mount in KiB (0: the kernel's default, 128). Default: four requests
   * (`maxPages` × 16 KiB), so a sequential reader has several READs in flight, served on
   * several pool threads (the bench's 1 GiB read on this transport, 4 rounds, twice each:
   * medians 2,239 and 2,015 MiB/s with one request of read-ahead, 2,769 and 2,719 with four).
   */
  readAheadKiB?: number;
  /** Answer READDIRPLUS (one `lookup` per listed entry). Default true. */
  readdirplus?: boolean;
  /** Keep file pages across opens (FOPEN_KEEP_CACHE). Default true. */
  keepCache?: boolean;
  /** Let the kernel cache directory listings (FOPEN_CACHE_DIR). Default true. */
  cacheDir?: boolean;
  /**
   * Ask the kernel not to send OPENDIR/RELEASEDIR (FUSE_NO_OPENDIR_SUPPORT: a warm listing then
   * costs no request at all); the session opens the directory itself for a listing and keeps
   * that handle while the listing continues. Needs `cacheDir` (the kernel then always caches
   * listings). Default true.
   */
  noOpendir?: boolean;
  /**
   * Splice READ replies from the host file to the device through pipes when the Filesystem
   * reads from a host descriptor (PassthroughLayer, also under an OverlayFs): one copy of the
   * data instead of two, none of it on the JS thread's account; READs are then at most the
   * pipe's size less a page (1020 KiB with 1 MiB pipes, `max_read`). Default true.
   */
  splice?: boolean;
  /**
   * Negotiate FUSE_HANDLE_KILLPRIV_V2: the kernel stops asking for `security.capability`
   * (a GETXATTR) before every write (it marks inodes it checked S_NOSEC until their attributes
   * change) and asks the session to drop set-id bits instead (write/truncate without
   * CAP_FSETID, O_TRUNC open, chown). Default true.
   */
  killPrivV2?: boolean;
  /** Call `fs.destroy()` after the session ended. Default false. */
  destroyOnUnmount?: boolean;
}

/** Counters of a low-level session (the `MountStats` shape plus the negotiated sizes). */
export interface LowLevelStats extends MountStats {
  /** Largest write request the kernel may send (bytes). */
  readonly maxWrite: number;
  /** Protocol minor the kernel offered. */
  readonly kernelMinor: number;
  /** READ replies spliced from a host file (`LowLevelOptions.splice`). */
  readonly splicedReads: number;
}

/** `fuse_notify_code` FUSE_NOTIFY_INVAL_INODE (sent as the error field of a unique-0 message). */
const NOTIFY_INVAL_INODE = 2;

/** The minor protocol version this transport speaks. */
const OUR_MINOR = 31;
/** Kernel page size assumed for `max_pages` (x86-64, arm64 with 4 KiB pages). */
const PAGE = 4096;
const TRACE = process.env.LAYERFS_FUSE_TRACE === '1';

interface Handle { readonly ino: number; readonly dir: boolean }
/** A directory handle the session opened itself for a listing (no-opendir mode). */
interface Listing { readonly ino: number; readonly fh: number; next: number; busy: boolean; temp: boolean; timer: NodeJS.Timeout | undefined }

const live = new Set<LowLevelSession>();
let exitGuard = false;
let signalGuard = false;
function onExit(): void {
  for (const s of live) {
    try { execFileSync('umount', ['-l', s.mountpoint], { stdio: 'ignore' }); } catch { /* gone already */ }
  }
}
/** SIGINT/SIGTERM with `handleSignals`: unmount every low-level mount, then exit. */
function onSignal(): void {
  void Promise.allSettled([...live].map((s) => s.unmount())).then(() => process.exit(0));
}
function installGuards(signals: boolean): void {
  if (!exitGuard) { exitGuard = true; process.on('exit', onExit); }
  if (signals && !signalGuard) { signalGuard = true; process.on('SIGINT', onSignal); process.on('SIGTERM', onSignal); }
}
function removeGuards(): void {
  if (live.size > 0) return;
  if (exitGuard) { exitGuard = false; process.off('exit', onExit); }
  if (signalGuard) { signalGuard = false; process.off('SIGINT', onSignal); process.off('SIGTERM', onSignal); }
}

/** A mounted low-level FUSE session. */
class LowLevelSession implements MountHandle {
  readonly mountpoint: string;
  readonly optionString: string;
  readonly fs: Filesystem;
  readonly closed: Promise<void>;
  private readonly fd: number;
  private readonly opts: Required<LowLevelOptions>;
  private readonly reader: DeviceReader;
  /** Reply buffers for reads (header + `maxWrite` bytes), reused. */
  private readonly readBuffers: Buffer[] = [];
  private resolveClosed!: () => void;
  private resolveInit!: (err?: Error) => void;
  readonly initDone: Promise<void>;
  /** Lookups the kernel holds, per node id. */
  private readonly lookups = new Map<number, number>();
  private readonly handles = new Map<string, Handle>();
  /** Work in flight (requests, keyed by their Request; forget drains, by themselves). */
  private readonly pending = new Map<object, Promise<void>>();
  private readonly ops: Record<string, number> = {};
  private inFlight = 0;
  private maxInFlight = 0;
  private maxWrite = 0;
  private kernelMinor = 0;
  private ended = false;
  private unmounting: Promise<void> | undefined;
  private conn: number | undefined;
  /** The kernel sends no OPENDIR/RELEASEDIR: listings use the session's own handles. */
  private noOpendir = false;
  /** Attribute invalidations sent for inodes a request changed aside (`Filesystem.watchAttrs`). */
  private invalidations = 0;
  /** Stops the Filesystem's `watchAttrs` listener. */
  private readonly unwatch: (() => void) | undefined;
  /** Node ids last seen as non-directories with several links (no caching for them). */
  private readonly multiLinked = new Set<number>();
  /** Directory handles the session opened for listings (no-opendir mode), by inode. */
  private readonly listings = new Map<number, Listing>();
  /** Forgets not yet given to the Filesystem (node id, count pairs; `drainForgets`). */
  private readonly forgets: number[] = [];
  private forgetting: Promise<void> | undefined;
  private readonly callerGroups = new CallerGroups();
  /** Pipes of spliced READ replies (undefined: every reply is copied through a buffer). */
  private readonly splicer: ReplySplicer | undefined;

  constructor(fs: Filesystem, mountpoint: string, fd: number, optionString: string, opts: Required<LowLevelOptions>, splicer?: ReplySplicer) {
    this.fs = fs;
    this.splicer = splicer;
    this.mountpoint = mountpoint;
    this.fd = fd;
    this.optionString = optionString;
    this.opts = opts;
    this.closed = new Promise((r) => { this.resolveClosed = r; });
    this.initDone = new Promise((res, rej) => { this.resolveInit = (e) => (e ? rej(e) : res()); });
    const size = opts.maxPages * PAGE + PAGE;
    // The kernel holds a lookup on every inode it saw and caches its attributes.
    this.unwatch = fs.watchAttrs?.((ino) => this.changedAside(ino), { holdsInodes: true });
    try {
      this.reader = readDevice(fd, size, (req, whole) => this.dispatch(req, whole), (why) => { void this.end(why); });
    } catch (e) {
      try { this.unwatch?.(); } catch { /* best effort */ }
      throw e;
    }
  }

  /**
   * Remember the fusectl connection number (for an abort when a lazy unmount stays busy) and
   * raise the device's read-ahead to `readAheadKiB` (the kernel's default of 128 KiB would cut
   * sequential reads into 128 KiB requests, one at a time).
   */
  async findConnection(): Promise<void> {
    const dev = await deviceOf(this.mountpoint);
    if (dev === undefined) return;
    this.conn = Number(dev.split(':')[1]);
    if (this.opts.readAheadKiB > 0) await setReadAhead(dev, this.opts.readAheadKiB);
  }

  stats(): LowLevelStats {
    return {
      inFlight: this.inFlight, maxInFlight: this.maxInFlight, ops: { ...this.ops }, cachedPaths: this.lookups.size,
      openHandles: this.handles.size, callerContexts: 0, attrCaching: this.opts.attrTimeout > 0,
      invalidations: this.invalidations, relinked: 0, mounterContexts: 0, maxWrite: this.maxWrite, kernelMinor: this.kernelMinor,
      splicedReads: this.splicer?.spliced ?? 0,
    };
  }

  unmount(): Promise<void> {
    this.unmounting ??= (async () => {
      if (this.ended) return;
      if (!(await runUmount(this.mountpoint, false))) await runUmount(this.mountpoint, true);
      // A lazy unmount of a busy mount keeps the connection until the last user goes: abort it.
      const timer = setTimeout(() => { if (this.conn !== undefined) void abortConnection(this.conn); }, 2000);
      await this.closed;
      clearTimeout(timer);
    })();
    return this.unmounting;
  }

  /** The connection ended (reads fail): finish the requests in flight, give every lookup back. */
  private async end(why: string): Promise<void> {
    if (this.ended) return;
    this.ended = true;
    // The kernel is gone: stop listening first (a throwing stop must not keep `closed` unsettled).
    try { this.unwatch?.(); } catch { /* the Filesystem's stop function: best effort */ }
    if (TRACE) process.stderr.write(`layerfs-fuse lowlevel: session ended (${why})\n`);
    this.resolveInit(new FsError('ENODEV', { syscall: 'mount', path: this.mountpoint, detail: `FUSE session ended before INIT (${why})` }));
    while (this.pending.size > 0) await Promise.allSettled([...this.pending.values()]);
    for (const l of [...this.listings.values()]) this.dropListing(l);
    const ctx = this.context(0, 0, 0, 0);
    for (const [fh, h] of this.handles) {
      const n = Number(fh.slice(1));
      try { await (h.dir ? this.fs.releasedir(ctx, h.ino, n) : this.fs.release(ctx, h.ino, n)); } catch { /* best effort */ }
    }
    this.handles.clear();
    for (const [ino, n] of this.lookups) {
      try { await this.fs.forget(ctx, ino, n); } catch { /* never fails by contract */ }
    }
    this.lookups.clear();
    this.reader.close();
    this.splicer?.close();
    live.delete(this);
    removeGuards();
    if (this.opts.destroyOnUnmount) { try { await this.fs.destroy(); } catch { /* best effort */ } }
    this.resolveClosed();
  }

  private context(uid: number, gid: number, pid: number, umask: number): RequestContext {
    return { uid, gid, pid, umask };
  }

  private dispatch(req: Request, recycle?: ArrayBuffer): void {
    const name = OP_NAMES[req.opcode] ?? `op${req.opcode}`;
    this.ops[name] = (this.ops[name] ?? 0) + 1;
    if (req.opcode === Op.FORGET) { this.forget(req.nodeid, req.u64()); return; }
    if (req.opcode === Op.BATCH_FORGET) {
      const count = req.u32();
      req.skip(4);
      for (let i = 0; i < count; i++) { const ino = req.u64(); this.forget(ino, req.u64()); }
      return;
    }
    if (req.opcode === Op.INTERRUPT) return;
    this.pending.set(req, this.run(req, name, recycle));
  }

  /**
   * Serve one request and answer it, an error included; settles once it is answered. One
   * async function with try/catch, not a promise chain: a chain's `.catch` and `.finally`
   * cost two more promises and microtask turns per request.
   */
  private async run(req: Request, name: string, recycle: ArrayBuffer | undefined): Promise<void> {
    this.inFlight++;
    if (this.inFlight > this.maxInFlight) this.maxInFlight = this.inFlight;
    try {
      await this.serve(req);
    } catch (e: unknown) {
      const err = e instanceof FsError ? e : toFsError(e);
      if (!(e instanceof FsError) || TRACE) {
        process.stderr.write(`layerfs-fuse lowlevel: ${name}(${req.nodeid}) failed: ${e instanceof Error ? e.stack ?? e.message : String(e)}\n`);
      }
      const errno = e instanceof FsError || err.code !== 'EIO' ? err.errno : -5;
      this.replyError(req, errno < 0 ? errno : -errno);
    } finally {
      this.inFlight--;
      this.pending.delete(req); // after dispatch set it: `await` above always yields first
      if (recycle && !this.ended) this.reader.recycle(recycle);
    }
  }

  private forget(ino: number, n: number): void {
    const held = this.lookups.get(ino) ?? 0;
    const give = Math.min(held, n);
    if (give <= 0) return;
    if (held - give === 0) { this.lookups.delete(ino); this.multiLinked.delete(ino); } else this.lookups.set(ino, held - give);
    this.forgets.push(ino, give);
    if (this.forgetting) return;
    const p = this.drainForgets();
    this.forgetting = p;
    this.pending.set(p, p);
    void p.finally(() => this.pending.delete(p));
  }

  /**
   * Give the queued forgets to the Filesystem one at a time: a BATCH_FORGET of 100,000 node
   * ids (the kernel dropping its caches) started as 100,000 calls at once kept all their
   * frames alive together (500 MB of heap, measured) and the heap grew for good.
   */
  private async drainForgets(): Promise<void> {
    const ctx = this.context(0, 0, 0, 0);
    for (let i = 0; i < this.forgets.length; i += 2) {
      try { await this.fs.forget(ctx, this.forgets[i]!, this.forgets[i + 1]!); } catch { /* never fails by contract */ }
    }
    this.forgets.length = 0;
    this.forgetting = undefined;
  }

  /** Write one reply; false when the kernel no longer waits for it (interrupted: ENOENT). */
  private send(buf: Buffer, len = buf.length): boolean {
    try {
      writeSync(this.fd, buf, 0, len);
      return true;
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT' && code !== 'ENODEV' && code !== 'EBADF') process.stderr.write(`layerfs-fuse lowlevel: reply failed: ${String(e)}\n`);
      return false;
    }
  }

  private replyError(req: Request, errno: number): void {
    const b = Buffer.allocUnsafe(OUT_HEADER);
    writeOutHeader(b, OUT_HEADER, errno, req.unique);
    this.send(b);
  }

  private replyEmpty(req: Request): void {
    this.replyError(req, 0);
  }

  private replyBytes(req: Request, data: Uint8Array): void {
    const h = Buffer.allocUnsafe(OUT_HEADER);
    writeOutHeader(h, OUT_HEADER + data.length, 0, req.unique);
    if (data.length === 0) { this.send(h); return; }
    try {
      writevSync(this.fd, [h, data]);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT' && code !== 'ENODEV' && code !== 'EBADF') process.stderr.write(`layerfs-fuse lowlevel: reply failed: ${String(e)}\n`);
    }
  }

  /** Reply with an entry; count the lookup the kernel now holds (or give it back). */
  private async replyEntry(req: Request, e: Entry, extra?: (b: Buffer, at: number) => void, extraLen = 0): Promise<void> {
    const len = OUT_HEADER + ENTRY_OUT + extraLen;
    const b = Buffer.allocUnsafe(len);
    writeOutHeader(b, len, 0, req.unique);
    const [et, at] = this.timeouts(e.attr);
    writeEntry(b, e, et, at, OUT_HEADER);
    extra?.(b, OUT_HEADER + ENTRY_OUT);
    if (this.send(b)) this.lookups.set(e.ino, (this.lookups.get(e.ino) ?? 0) + 1);
    else await this.fs.forget(this.context(0, 0, 0, 0), e.ino, 1);
  }

  private replyAttr(req: Request, a: Attr): void {
    const len = OUT_HEADER + ATTR_OUT;
    const b = Buffer.allocUnsafe(len);
    writeOutHeader(b, len, 0, req.unique);
    writeAttrOut(b, a, this.timeouts(a)[1], OUT_HEADER);
    this.send(b);
  }

  private replyOpen(req: Request, fh: number, flags: number): boolean {
    const len = OUT_HEADER + OPEN_OUT;
    const b = Buffer.allocUnsafe(len);
    writeOutHeader(b, len, 0, req.unique);
    writeOpenOut(b, fh, flags, OUT_HEADER);
    return this.send(b);
  }

  private replyU32(req: Request, v: number): void {
    const b = Buffer.alloc(OUT_HEADER + 8);
    writeOutHeader(b, OUT_HEADER + 8, 0, req.unique);
    b.writeUInt32LE(v >>> 0, OUT_HEADER);
    this.send(b);
  }

  /** FOPEN_* of an open file: direct I/O, or kept pages; no FLUSH when the handle needs none. */
  private fileOpenFlags(r: { directIo?: boolean; noFlush?: boolean }, ino: number): number {
    const noFlush = r.noFlush ? FOPEN.NOFLUSH : 0;
    if (r.directIo) return FOPEN.DIRECT_IO | noFlush;
    return (this.opts.keepCache && !this.multiLinked.has(ino) ? FOPEN.KEEP_CACHE : 0) | noFlush;
  }

  /**
   * Entry and attribute timeouts for `a`. A non-directory with more than one link gets none:
   * over a lower hard link the overlay keeps one inode for every name until a copy-up breaks
   * the link (kernel overlayfs with index=off does the same), and only a fresh lookup of the
   * name used tells it which name to copy up and lets the kernel see the names part. Its
   * pages are not kept across opens either (`multiLinked`).
   */
  private timeouts(a: Attr): [number, number] {
    if ((a.mode & S_IFMT) !== S_IFDIR && a.nlink > 1) {
      this.multiLinked.add(a.ino);
      return [0, 0];
    }
    if (this.multiLinked.size > 0) this.multiLinked.delete(a.ino);
    return [this.opts.entryTimeout, this.opts.attrTimeout];
  }

  /**
   * The Filesystem changed `ino`'s attributes aside (a copy-up: the copied object, the upper
   * directory it landed in): drop what the kernel cached, before the request's reply.
   */
  private changedAside(ino: number): void {
    // Never after the end: the device is closed (its number may name another file by then).
    if (!this.ended && (ino === 1 || this.lookups.has(ino))) this.invalidateAttr(ino);
  }

  /**
   * HANDLE_KILLPRIV_V2: the kernel leaves dropping set-id bits to the server and asks for it
   * (a write or truncate by a caller without CAP_FSETID, an O_TRUNC open, a chown): drop
   * set-user-ID, and set-group-ID when group-execute is set (the VFS's rules), as root (the
   * caller may not own the file). Returns the new attributes when it changed the mode; the
   * kernel's cached attributes of the inode are dropped (`attrs`: the ones the request had).
   */
  private async killSuidSgid(ino: number, fh: number | undefined, attrs?: Attr): Promise<Attr | undefined> {
    const root = this.context(0, 0, 0, 0);
    const a = attrs ?? await this.fs.getattr(root, ino, fh);
    if ((a.mode & S_IFMT) !== S_IFREG || killPriv(a.mode) === a.mode) return undefined;
    const after = await this.fs.setattr(root, ino, { mode: killPriv(a.mode) & 0o7777 }, fh);
    this.changedAside(ino);
    return after;
  }

  /** FUSE_NOTIFY_INVAL_INODE with a negative offset: attributes only (never waits on pages). */
  private invalidateAttr(ino: number): void {
    const b = Buffer.alloc(OUT_HEADER + 24);
    writeOutHeader(b, OUT_HEADER + 24, NOTIFY_INVAL_INODE, 0n);
    b.writeBigUInt64LE(BigInt(ino), OUT_HEADER);
    b.writeBigInt64LE(-1n, OUT_HEADER + 8);
    this.invalidations++;
    this.send(b);
  }

  private async serve(req: Request): Promise<void> {
    const fs = this.fs;
    const ino = req.nodeid;
    if (req.uid !== 0 && req.opcode !== Op.INIT) await this.callerGroups.of(req.pid);
    switch (req.opcode) {
      case Op.INIT: return this.init(req);
      case Op.DESTROY: return this.replyEmpty(req);
      case Op.LOOKUP: {
        const e = await lookupIfExists(fs, this.ctx(req), ino, req.cstr());
        if (e) return this.replyEntry(req, e);
        // A miss is answered here, not thrown: a rejection costs V8 microseconds per frame.
        if (this.opts.negativeTimeout <= 0) return this.replyError(req, -2); // ENOENT
        // A negative entry the kernel keeps for negativeTimeout seconds.
        const len = OUT_HEADER + ENTRY_OUT;
        const b = Buffer.alloc(len);
        writeOutHeader(b, len, 0, req.unique);
        b.writeUInt32LE(Math.floor(this.opts.negativeTimeout), OUT_HEADER + 16);
        this.send(b);
        return;
      }
      case Op.GETATTR: {
        const flags = req.u32();
        req.skip(4);
        const fh = req.u64();
        return this.replyAttr(req, await fs.getattr(this.ctx(req), ino, flags & GETATTR_FH ? fh : undefined));
      }
      case Op.SETATTR: return this.setattr(req);
      case Op.READLINK: return this.replyBytes(req, Buffer.from(await fs.readlink(this.ctx(req), ino), 'utf8'));
      case Op.SYMLINK: {
        const name = req.cstr();
        const target = req.cstr();
        return this.replyEntry(req, await fs.symlink(this.ctx(req), ino, name, target));
      }
      case Op.MKNOD: {
        const mode = req.u32(); const rdev = req.u32(); const umask = req.u32(); req.skip(4);
        const name = req.cstr();
        return this.replyEntry(req, await fs.mknod(this.ctx(req, umask), ino, name, mode, rdev));
      }
      case Op.MKDIR: {
        const mode = req.u32(); const umask = req.u32();
        const name = req.cstr();
        return this.replyEntry(req, await fs.mkdir(this.ctx(req, umask), ino, name, mode));
      }
      case Op.UNLINK: await fs.unlink(this.ctx(req), ino, req.cstr()); return this.replyEmpty(req);
      case Op.RMDIR: await fs.rmdir(this.ctx(req), ino, req.cstr()); return this.replyEmpty(req);
      case Op.RENAME: case Op.RENAME2: {
        const newdir = req.u64();
        let flags = 0;
        if (req.opcode === Op.RENAME2) { flags = req.u32(); req.skip(4); }
        const name = req.cstr();
        const newname = req.cstr();
        await fs.rename(this.ctx(req), ino, name, newdir, newname, flags);
        return this.replyEmpty(req);
      }
      case Op.LINK: {
        const old = req.u64();
        return this.replyEntry(req, await fs.link(this.ctx(req), old, ino, req.cstr()));
      }
      case Op.OPEN: {
        // O_DIRECT stays with the kernel (it already bypasses its page cache for the caller):
        // the host file is opened without it, as request and reply buffers are not aligned
        // the way the host's direct I/O needs (every such READ and WRITE failed with EINVAL).
        const flags = req.u32(); const openFlags = req.u32();
        const r = await fs.open(this.ctx(req), ino, flags & ~OpenFlags.O_DIRECT);
        if (openFlags & OPEN_KILL_SUIDGID) {
          try { await this.killSuidSgid(ino, r.fh); } catch (e) { await fs.release(this.ctx(req), ino, r.fh); throw e; }
        }
        if (this.replyOpen(req, r.fh, this.fileOpenFlags(r, ino))) this.handles.set(`f${r.fh}`, { ino, dir: false });
        else await fs.release(this.ctx(req), ino, r.fh);
        return;
      }
      case Op.CREATE: {
        const flags = req.u32(); const mode = req.u32(); const umask = req.u32(); req.skip(4);
        const name = req.cstr();
        const r = await fs.create(this.ctx(req, umask), ino, name, mode, flags & ~OpenFlags.O_DIRECT);
        this.handles.set(`f${r.fh}`, { ino: r.entry.ino, dir: false });
        return this.replyEntry(req, r.entry, (b, at) => writeOpenOut(b, r.fh, this.fileOpenFlags(r, r.entry.ino), at), OPEN_OUT);
      }
      case Op.READ: return this.read(req);
      case Op.WRITE: {
        const fh = req.u64(); const offset = req.u64(); const size = req.u32(); const writeFlags = req.u32();
        req.skip(16);
        const n = await fs.write(this.ctx(req), ino, fh, req.take(size), offset);
        if (n > 0 && writeFlags & WRITE_KILL_SUIDGID) await this.killSuidSgid(ino, fh);
        return this.replyU32(req, n);
      }
      case Op.STATFS: {
        const s = await fs.statfs(this.ctx(req), ino);
        const len = OUT_HEADER + STATFS_OUT;
        const b = Buffer.allocUnsafe(len);
        writeOutHeader(b, len, 0, req.unique);
        writeStatfs(b, s, OUT_HEADER);
        this.send(b);
        return;
      }
      case Op.RELEASE: case Op.RELEASEDIR: {
        const fh = req.u64();
        const dir = req.opcode === Op.RELEASEDIR;
        this.handles.delete(`${dir ? 'd' : 'f'}${fh}`);
        await (dir ? fs.releasedir(this.ctx(req), ino, fh) : fs.release(this.ctx(req), ino, fh));
        return this.replyEmpty(req);
      }
      case Op.FSYNC: case Op.FSYNCDIR: {
        const fh = req.u64(); const flags = req.u32();
        const datasync = (flags & FSYNC_FDATASYNC) !== 0;
        await (req.opcode === Op.FSYNC ? fs.fsync(this.ctx(req), ino, fh, datasync) : fs.fsyncdir(this.ctx(req), ino, fh, datasync));
        return this.replyEmpty(req);
      }
      case Op.FLUSH: {
        const fh = req.u64();
        await fs.flush(this.ctx(req), ino, fh);
        return this.replyEmpty(req);
      }
      case Op.SETXATTR: {
        const size = req.u32(); const flags = req.u32();
        const name = req.cstr();
        await fs.setxattr(this.ctx(req), ino, name, req.take(size), flags);
        return this.replyEmpty(req);
      }
      case Op.GETXATTR: case Op.LISTXATTR: {
        const size = req.u32(); req.skip(4);
        let data: Uint8Array;
        if (req.opcode === Op.GETXATTR) data = await fs.getxattr(this.ctx(req), ino, req.cstr());
        else data = Buffer.from((await fs.listxattr(this.ctx(req), ino)).map((n) => `${n}\0`).join(''), 'utf8');
        if (size === 0) return this.replyU32(req, data.length);
        if (data.length > size) throw FsError.of('ERANGE');
        return this.replyBytes(req, data);
      }
      case Op.REMOVEXATTR: await fs.removexattr(this.ctx(req), ino, req.cstr()); return this.replyEmpty(req);
      case Op.OPENDIR: {
        if (this.noOpendir) throw FsError.of('ENOSYS');   // the kernel stops asking (no-opendir mode)
        const r = await fs.opendir(this.ctx(req), ino);
        const flags = this.opts.cacheDir ? FOPEN.CACHE_DIR | FOPEN.KEEP_CACHE : 0;
        if (this.replyOpen(req, r.fh, flags)) this.handles.set(`d${r.fh}`, { ino, dir: true });
        else await fs.releasedir(this.ctx(req), ino, r.fh);
        return;
      }
      case Op.READDIR: case Op.READDIRPLUS: return this.readdir(req, req.opcode === Op.READDIRPLUS);
      case Op.ACCESS: {
        const mask = req.u32();
        await fs.access(this.ctx(req), ino, mask);
        return this.replyEmpty(req);
      }
      case Op.FALLOCATE: {
        const fh = req.u64(); const offset = req.u64(); const length = req.u64(); const mode = req.u32();
        await fs.fallocate(this.ctx(req), ino, fh, mode, offset, length);
        return this.replyEmpty(req);
      }
      case Op.LSEEK: {
        const fh = req.u64(); const offset = req.u64(); const whence = req.u32();
        const r = await fs.lseek(this.ctx(req), ino, fh, offset, whence);
        const b = Buffer.allocUnsafe(OUT_HEADER + 8);
        writeOutHeader(b, OUT_HEADER + 8, 0, req.unique);
        b.writeBigUInt64LE(BigInt(r), OUT_HEADER);
        this.send(b);
        return;
      }
      case Op.COPY_FILE_RANGE: {
        const fhIn = req.u64(); const offIn = req.u64(); const inoOut = req.u64(); const fhOut = req.u64();
        const offOut = req.u64(); const len = req.u64(); const flags = req.u64();
        const n = await fs.copyFileRange(this.ctx(req), ino, fhIn, offIn, inoOut, fhOut, offOut, Math.min(len, 0x7ffff000), flags);
        return this.replyU32(req, n);
      }
      default:
        throw FsError.of('ENOSYS');
    }
  }

  /** The caller's credentials (supplementary groups for callers other than root, loaded by `serve`). */
  private ctx(req: Request, umask = 0): RequestContext {
    const groups = req.uid !== 0 ? this.callerGroups.cached(req.pid) : undefined;
    return groups ? { uid: req.uid, gid: req.gid, pid: req.pid, umask, groups } : { uid: req.uid, gid: req.gid, pid: req.pid, umask };
  }

  private init(req: Request): void {
    const major = req.u32(); const minor = req.u32(); const maxReadahead = req.u32(); const kflags = req.u32();
    this.kernelMinor = minor;
    if (major !== 7 || minor < OUR_MINOR) {
      this.replyError(req, -71); // EPROTO
      this.resolveInit(new FsError('EPROTO', { syscall: 'mount', detail: `kernel FUSE protocol ${major}.${minor}; this transport needs 7.${OUR_MINOR}` }));
      return;
    }
    let want = InitFlag.ASYNC_READ | InitFlag.ATOMIC_O_TRUNC | InitFlag.BIG_WRITES | InitFlag.DONT_MASK |
      InitFlag.MAX_PAGES | InitFlag.CACHE_SYMLINKS;
    if (this.opts.readdirplus) want |= InitFlag.DO_READDIRPLUS;
    if (this.opts.killPrivV2) want |= InitFlag.HANDLE_KILLPRIV_V2;
    if (this.opts.noOpendir && this.opts.cacheDir) want |= InitFlag.NO_OPENDIR_SUPPORT;
    const flags = want & kflags;
    this.noOpendir = (flags & InitFlag.NO_OPENDIR_SUPPORT) !== 0;
    const maxPages = flags & InitFlag.MAX_PAGES ? this.opts.maxPages : 32;
    this.maxWrite = maxPages * PAGE;
    const len = OUT_HEADER + INIT_OUT;
    const b = Buffer.alloc(len);
    writeOutHeader(b, len, 0, req.unique);
    let at = OUT_HEADER;
    b.writeUInt32LE(7, at); b.writeUInt32LE(OUR_MINOR, at + 4);
    b.writeUInt32LE(Math.max(maxReadahead, this.maxWrite), at + 8);
    b.writeUInt32LE(flags >>> 0, at + 12);
    b.writeUInt16LE(64, at + 16); // max_background
    b.writeUInt16LE(48, at + 18); // congestion_threshold
    b.writeUInt32LE(this.maxWrite, at + 20);
    b.writeUInt32LE(1, at + 24); // time_gran: nanoseconds
    b.writeUInt16LE(maxPages, at + 28);
    at += INIT_OUT;
    this.send(b);
    this.resolveInit();
  }

  /**
   * READ: the filesystem reads into a reused reply buffer, sent in one write when it did; or,
   * when it took the splice sink the buffer carries (a host file), the reply goes from the
   * file to the device through a pair of pipes (splice.ts).
   */
  private async read(req: Request): Promise<void> {
    const fh = req.u64(); const offset = req.u64(); const size = req.u32();
    const cap = OUT_HEADER + Math.max(size, this.maxWrite);
    let b = this.readBuffers.pop();
    if (!b || b.length < OUT_HEADER + size) b = Buffer.allocUnsafeSlow(cap);
    const pair = this.splicer?.take(offset, size);
    let clean = true;
    try {
      const into = b.subarray(OUT_HEADER, OUT_HEADER + size);
      if (pair) (into as { [READ_SINK]?: ReadSink })[READ_SINK] = this.splicer!.sink(pair);
      clean = false;
      const data = await this.fs.read(this.ctx(req), req.nodeid, fh, size, offset, into);
      if (pair?.used) {
        clean = this.splicer!.send(pair, this.fd, req.unique);
        return;
      }
      clean = true;
      if (data.buffer === b.buffer && data.byteOffset === b.byteOffset + OUT_HEADER) {
        writeOutHeader(b, OUT_HEADER + data.length, 0, req.unique);
        this.send(b, OUT_HEADER + data.length);
      } else {
        this.replyBytes(req, data);
      }
    } finally {
      if (pair) this.splicer!.release(pair, clean || !pair.used);
      if (this.readBuffers.length < 8) this.readBuffers.push(b);
    }
  }

  /**
   * A listing step without a kernel handle (no-opendir mode): a continuation at the offset
   * where the directory's cached handle stopped reuses it; anything else opens the directory
   * afresh (and caches that handle unless the cached one is busy). A cached handle is released
   * at the end of its listing or after 10 s without use.
   */
  private async openListing(ctx: RequestContext, ino: number, offset: number): Promise<Listing> {
    const cached = this.listings.get(ino);
    if (cached && !cached.busy && offset !== 0 && offset === cached.next) return cached;
    const r = await this.fs.opendir(ctx, ino);
    const now = this.listings.get(ino);
    const l: Listing = { ino, fh: r.fh, next: offset, busy: false, temp: false, timer: undefined };
    if (now?.busy) { l.temp = true; return l; }
    if (now) this.dropListing(now);
    l.timer = setTimeout(() => this.dropListing(l), 10_000);
    l.timer.unref();
    this.listings.set(ino, l);
    return l;
  }

  private dropListing(l: Listing): void {
    if (this.listings.get(l.ino) === l) this.listings.delete(l.ino);
    if (l.timer) clearTimeout(l.timer);
    void this.fs.releasedir(this.context(0, 0, 0, 0), l.ino, l.fh).catch(() => undefined);
  }

  private async setattr(req: Request): Promise<void> {
    const valid = req.u32(); req.skip(4);
    const fh = req.u64(); const size = req.u64(); req.skip(8);
    const atime = req.i64(); const mtime = req.i64(); const ctime = req.i64();
    const atimensec = req.u32(); const mtimensec = req.u32(); const ctimensec = req.u32();
    const mode = req.u32(); req.skip(4);
    const uid = req.u32(); const gid = req.u32();
    const ch: SetattrRequest = {};
    if (valid & FATTR.MODE) ch.mode = mode;
    if (valid & FATTR.UID) ch.uid = uid;
    if (valid & FATTR.GID) ch.gid = gid;
    if (valid & FATTR.SIZE) ch.size = size;
    if (valid & FATTR.ATIME) ch.atime = valid & FATTR.ATIME_NOW ? { sec: 0, nsec: UTIME_NOW } : { sec: atime, nsec: atimensec };
    if (valid & FATTR.MTIME) ch.mtime = valid & FATTR.MTIME_NOW ? { sec: 0, nsec: UTIME_NOW } : { sec: mtime, nsec: mtimensec };
    if (valid & FATTR.CTIME) ch.ctime = { sec: ctime, nsec: ctimensec };
    let a = await this.fs.setattr(this.ctx(req), req.nodeid, ch, valid & FATTR.FH ? fh : undefined);
    if (valid & FATTR.KILL_SUIDGID) a = (await this.killSuidSgid(req.nodeid, valid & FATTR.FH ? fh : undefined, a)) ?? a;
    this.replyAttr(req, a);
  }

  private async readdir(req: Request, plus: boolean): Promise<void> {
    const fh = req.u64(); const offset = req.u64(); const size = req.u32();
    const ctx = this.ctx(req);
    let listing: Listing | undefined;
    let all: DirEntry[];
    if (this.noOpendir) {
      listing = await this.openListing(ctx, req.nodeid, offset);
      listing.busy = true;
      try { all = await this.fs.readdir(ctx, req.nodeid, listing.fh, offset, false); } finally { listing.busy = false; }
    } else {
      all = await this.fs.readdir(ctx, req.nodeid, fh, offset, false);
    }
    const names: Buffer[] = [];
    let used = 0;
    for (const d of all) {
      const name = Buffer.from(d.name, 'utf8');
      const need = direntSize(name.length) + (plus ? ENTRY_OUT : 0);
      if (used + need > size) break;
      names.push(name);
      used += need;
    }
    const n = names.length;
    if (listing) {
      if (listing.temp || all.length === 0) this.dropListing(listing);
      else if (n > 0) listing.next = all[n - 1]!.offset;
    }
    let entries: (Entry | undefined)[] = [];
    if (plus) {
      entries = await Promise.all(all.slice(0, n).map((d) =>
        this.fs.lookup(ctx, req.nodeid, d.name).then((e) => e, () => undefined)));
    }
    const b = Buffer.allocUnsafe(OUT_HEADER + used);
    writeOutHeader(b, OUT_HEADER + used, 0, req.unique);
    let at = OUT_HEADER;
    for (let i = 0; i < n; i++) {
      const d = all[i]!;
      if (plus) {
        const e = entries[i];
        if (e) { const [et, atm] = this.timeouts(e.attr); writeEntry(b, e, et, atm, at); }
        else b.fill(0, at, at + ENTRY_OUT);
        at += ENTRY_OUT;
      }
      at += writeDirent(b, d, names[i]!, at);
    }
    const ok = this.send(b);
    if (!plus) return;
    for (const e of entries) {
      if (!e) continue;
      if (ok) this.lookups.set(e.ino, (this.lookups.get(e.ino) ?? 0) + 1);
      else await this.fs.forget(ctx, e.ino, 1);
    }
  }
}

function optionsWithDefaults(o: LowLevelOptions): Required<LowLevelOptions> {
  const maxPages = Math.max(1, Math.min(256, Math.floor(o.maxPages ?? 256)));
  return {
    allowOther: o.allowOther ?? false, defaultPermissions: o.defaultPermissions ?? true, readOnly: o.readOnly ?? false,
    noatime: o.noatime ?? false, fsname: o.fsname ?? 'layerfs', subtype: o.subtype ?? 'layerfs',
    entryTimeout: o.entryTimeout ?? 86400, attrTimeout: o.attrTimeout ?? 86400, negativeTimeout: o.negativeTimeout ?? 86400,
    handleSignals: o.handleSignals ?? true,
    maxPages,
    readAheadKiB: o.readAheadKiB ?? maxPages * 16, readdirplus: o.readdirplus ?? true,
    keepCache: o.keepCache ?? true, cacheDir: o.cacheDir ?? true, noOpendir: o.noOpendir ?? true, splice: o.splice ?? true,
    killPrivV2: o.killPrivV2 ?? true,
    destroyOnUnmount: o.destroyOnUnmount ?? false,
  };
}

/**
 * Mount `fs` at `mountpoint` with the low-level transport (root only: EPERM otherwise).
 * Resolves once the kernel's INIT was answered; the handle's `unmount()` unmounts (lazily if
 * busy; a connection still busy after 2 s is aborted), and gives every lookup back.
 */
export async function mountLowLevel(fs: Filesystem, mountpoint: string, options: LowLevelOptions = {}): Promise<MountHandle> {
  const mnt = resolvePath(mountpoint);
  if (process.platform !== 'linux') throw new FsError('ENOSYS', { syscall: 'mount', path: mnt, detail: 'the low-level FUSE transport runs on Linux only' });
  if (process.getuid?.() !== 0) {
    throw new FsError('EPERM', { syscall: 'mount', path: mnt, detail: 'the low-level FUSE transport mounts with mount(2) and needs root (no fusermount support yet); use mount() instead' });
  }
  const opts = optionsWithDefaults(options);
  // The pipes exist before the mount: their size bounds a READ (max_read).
  const splicer = opts.splice ? ReplySplicer.open(opts.maxPages * PAGE) : undefined;
  const maxRead = splicer ? Math.min(opts.maxPages * PAGE, splicer.maxBytes) : opts.maxPages * PAGE;
  let fd: number;
  try {
    fd = openSync('/dev/fuse', 'r+');
  } catch (e) {
    splicer?.close();
    throw toFsError(e, { syscall: 'open', path: '/dev/fuse', detail: 'cannot open the FUSE device' });
  }
  const data = [
    `fd=${fd}`, 'rootmode=40000', 'user_id=0', 'group_id=0',
    ...(opts.defaultPermissions ? ['default_permissions'] : []),
    ...(opts.allowOther ? ['allow_other'] : []),
    `max_read=${maxRead}`,
  ].join(',');
  let flags = MS_NOSUID | MS_NODEV;
  if (opts.readOnly) flags |= MS_RDONLY;
  if (opts.noatime) flags |= MS_NOATIME;
  try {
    sysMount(opts.fsname, mnt, `fuse.${opts.subtype}`, flags, data);
  } catch (e) {
    closeSync(fd);
    splicer?.close();
    throw e;
  }
  let s: LowLevelSession;
  try {
    s = new LowLevelSession(fs, mnt, fd, data, opts, splicer);
  } catch (e) {
    // Nobody will serve the mount: end the connection, then take the mount away.
    closeSync(fd);
    splicer?.close();
    if (!(await runUmount(mnt, false))) await runUmount(mnt, true);
    throw toFsError(e, { syscall: 'mount', path: mnt });
  }
  live.add(s);
  installGuards(opts.handleSignals);
  try {
    await s.initDone;
    await s.findConnection();
  } catch (e) {
    await s.unmount();
    throw e;
  }
  return s;
}
