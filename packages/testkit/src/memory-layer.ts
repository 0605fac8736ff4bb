/**
 * MemoryLayer: a complete in-memory `Layer`. Its state is one immutable immer tree (nodes by
 * id in buckets of 256, directories as name → id maps, file data in 64 KiB chunks), so a
 * change copies only what it touches, `snapshot()` is free and a snapshot seeds a new
 * (optionally read-only) layer. It behaves like ext4 seen through the VFS: kernel errnos and
 * their order, permission checks for the request context (root bypasses as the kernel lets
 * it), umask, setgid directories, sticky directories, protected hard links, nanosecond
 * times, nlink (directories: 2 + subdirectories), ctime/mtime updates, xattr namespaces.
 *
 * Lookup counts live in an `InodeTable` (ino = node id, stable for the node's life): every
 * entry-returning op takes one, `forget` gives them back, an unlinked inode stays usable
 * while looked up or open and is freed after. Ops on an ino with no lookup and no open
 * handle fail with ESTALE, so callers that forget too early are caught.
 *
 * Whiteouts as a layer stores them: `chardev` (a 0/0 character device; opaque directories by
 * `trusted.overlay.opaque=y`, or `user.overlay.opaque=y` with `userxattr`) or `oci` (a stored
 * `.wh.<name>` empty file; opaque by a stored `.wh..wh..opq`). A whiteout occupies its name
 * the way a char device would: creating the name fails with EEXIST, `unlink`/`rename` act on
 * it. In an `oci` layer names starting `.wh.` are markers: never listed or looked up, and
 * refused (EINVAL) as new names. `isOpaque` reads every opaque marker in either format.
 * Atime is not updated by reads (as with `noatime`). `system.*` xattrs (ACLs) are EOPNOTSUPP.
 */
import { castDraft, enableMapSet, freeze, produce, type Draft } from 'immer';
import {
  AccessMode, FallocateMode, FsError, InodeTable, OCI_OPAQUE_MARKER, OCI_WHITEOUT_PREFIX,
  OPAQUE_XATTR, OPAQUE_XATTR_FUSE_OVERLAYFS, OPAQUE_XATTR_USER, OpenFlags, RenameFlags, ROOT_INO,
  S_IFCHR, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG, S_ISGID, S_ISVTX, UTIME_NOW, UTIME_OMIT,
  Whence, XattrFlags, checkAccess, checkSticky, inGroup, isOwnerOrRoot, killPriv, mayAccess, nowTimespec,
  typeOfMode, validateName,
  type Attr, type CreateResult, type DirEntry, type Entry, type ErrnoCode, type FileType, type Layer,
  type OpenResult, type RequestContext, type SetattrRequest, type StatFs, type Timespec,
  type WhiteoutFormat,
} from '@layerfs/core';

enableMapSet();

/** One inode of a MemoryLayer (immutable; changed only through immer drafts). */
export interface MemNode {
  /** Node id, which is also the inode number. */
  readonly id: number;
  /** Type and permission bits. */
  readonly mode: number;
  /** Owner. */
  readonly uid: number;
  /** Group. */
  readonly gid: number;
  /** Device number (char/block devices). */
  readonly rdev: number;
  /** Hard links (directories: 2 + subdirectories; 0 once removed). */
  readonly nlink: number;
  /** File data (regular files). */
  readonly data?: FileData;
  /** Symlink target. */
  readonly target?: string;
  /** Directory entries: stored name → node id. */
  readonly entries?: ReadonlyMap<string, number>;
  /** Parent directory id (directories). */
  readonly parent?: number;
  /** Extended attributes. */
  readonly xattrs: ReadonlyMap<string, Uint8Array>;
  /** Access time. */
  readonly atime: Timespec;
  /** Modification time. */
  readonly mtime: Timespec;
  /** Status change time. */
  readonly ctime: Timespec;
  /** Creation time. */
  readonly birthtime: Timespec;
}

/** The whole state of a MemoryLayer: cheap to keep (immutable, structurally shared). */
export interface MemSnapshot {
  /** Every node by id, in buckets of 256 ids (so a change copies two small maps, not all). */
  readonly nodes: ReadonlyMap<number, ReadonlyMap<number, MemNode>>;
  /** Number of nodes stored. */
  readonly nodeCount: number;
  /** The next node id to hand out. */
  readonly nextId: number;
  /** The work directory's node id (not reachable from the root), if any. */
  readonly workId?: number;
  /** The whiteout format the markers are stored in. */
  readonly whiteoutFormat: WhiteoutFormat;
  /** Whether chardev-format opaque markers use `user.overlay.opaque`. */
  readonly userxattr: boolean;
}

/** Options of a MemoryLayer. */
export interface MemoryLayerOptions {
  /** How whiteouts and opaque markers are stored. Default: 'chardev' (or the snapshot's). */
  whiteoutFormat?: WhiteoutFormat;
  /** chardev format: write `user.overlay.opaque` instead of `trusted.overlay.opaque`. Default false. */
  userxattr?: boolean;
  /** False: every change fails with EROFS. Default true. */
  writable?: boolean;
  /** Give the layer a work directory outside the tree (`workIno`). Default: when writable. */
  workDir?: boolean;
  /** Mode bits of a new root directory. Default 0o755. */
  rootMode?: number;
  /** Owner of a new root directory. Default 0. */
  rootUid?: number;
  /** Group of a new root directory. Default 0. */
  rootGid?: number;
  /** The `dev` reported in attributes. Default: a per-layer number. */
  dev?: number;
  /** Start from this state (see `MemoryLayer.fromSnapshot`). */
  snapshot?: MemSnapshot;
  /** Called when a forget gives back more lookups than are held. */
  onExcessForget?: (ino: number, held: number, asked: number) => void;
}

interface FileHandle { readonly kind: 'file'; readonly id: number; readonly flags: number }
interface DirHandle { readonly kind: 'dir'; readonly id: number; listing: DirEntry[]; state: MemSnapshot }
type Handle = FileHandle | DirHandle;

/** Where a name lives in a directory: its stored name, node, and whether it is a whiteout. */
interface Slot { readonly stored: string; readonly id: number; readonly whiteout: boolean }

type DState = Draft<MemSnapshot>;
type DNode = Draft<MemNode>;

const BLOCK = 4096;
const XATTR_SIZE_MAX = 65536;
const XATTR_NAME_MAX = 255;
const SYMLINK_MAX = 4095;
const TOTAL_BLOCKS = 1 << 20;
const TOTAL_FILES = 1 << 20;
const CHUNK = 65536;

/**
 * File contents as immutable 64 KiB chunks (a missing chunk is a hole of zeros), so a write
 * copies only the chunks it touches and snapshots share the rest. Bytes of the last chunk
 * beyond `size` are always zero.
 */
export interface FileData {
  /** Length in bytes. */
  readonly size: number;
  /** Chunk i holds bytes [i·65536, (i+1)·65536); undefined = zeros. */
  readonly chunks: readonly (Uint8Array | undefined)[];
}

const EMPTY: FileData = { size: 0, chunks: [] };

/** Bytes [pos, pos+len) of `d` (clipped at the end). */
export function readFileData(d: FileData, pos: number, len: number): Uint8Array {
  const end = Math.min(d.size, pos + len);
  if (end <= pos) return new Uint8Array(0);
  const out = new Uint8Array(end - pos);
  for (let off = pos; off < end;) {
    const i = Math.floor(off / CHUNK);
    const within = off - i * CHUNK;
    const n = Math.min(CHUNK - within, end - off);
    const c = d.chunks[i];
    if (c) out.set(c.subarray(within, within + n), off - pos);
    off += n;
  }
  return out;
}

/** `d` with `buf` written at `pos` (zero-filling any gap). */
function writeFileData(d: FileData, buf: Uint8Array, pos: number): FileData {
  const end = pos + buf.length;
  const chunks = d.chunks.slice();
  for (let off = pos; off < end;) {
    const i = Math.floor(off / CHUNK);
    const within = off - i * CHUNK;
    const n = Math.min(CHUNK - within, end - off);
    const c = new Uint8Array(CHUNK);
    const old = chunks[i];
    if (old) c.set(old);
    c.set(buf.subarray(off - pos, off - pos + n), within);
    chunks[i] = c;
    off += n;
  }
  return { size: Math.max(d.size, end), chunks };
}

/** `d` with bytes [start, end) zeroed (whole chunks become holes). */
function zeroFileData(d: FileData, start: number, end: number): FileData {
  const stop = Math.min(end, d.size);
  if (stop <= start) return d;
  const chunks = d.chunks.slice();
  for (let off = start; off < stop;) {
    const i = Math.floor(off / CHUNK);
    const within = off - i * CHUNK;
    const n = Math.min(CHUNK - within, stop - off);
    const old = chunks[i];
    if (old) {
      if (n === CHUNK) chunks[i] = undefined;
      else {
        const c = old.slice();
        c.fill(0, within, within + n);
        chunks[i] = c;
      }
    }
    off += n;
  }
  return { size: d.size, chunks };
}

/** `d` cut or extended (with zeros) to `size`. */
function resizeFileData(d: FileData, size: number): FileData {
  if (size >= d.size) return { size, chunks: d.chunks };
  const cut = zeroFileData(d, size, d.size);
  return { size, chunks: cut.chunks.slice(0, Math.ceil(size / CHUNK)) };
}
const OPAQUE_XATTRS = [OPAQUE_XATTR, OPAQUE_XATTR_USER, OPAQUE_XATTR_FUSE_OVERLAYFS] as const;
let nextDev = 0x4d00;

function bucketOf(id: number): number {
  return Math.floor(id / 256);
}

/** The node `id` of a snapshot, if stored. */
export function snapshotNode(s: MemSnapshot, id: number): MemNode | undefined {
  return s.nodes.get(bucketOf(id))?.get(id);
}

/** Every node of a snapshot. */
export function* snapshotNodes(s: MemSnapshot): IterableIterator<MemNode> {
  for (const b of s.nodes.values()) yield* b.values();
}

function dget(d: DState, id: number): DNode | undefined {
  return d.nodes.get(bucketOf(id))?.get(id);
}

function dset(d: DState, n: MemNode): void {
  const key = bucketOf(n.id);
  if (!d.nodes.has(key)) d.nodes.set(key, new Map());
  const b = d.nodes.get(key)!;
  if (!b.has(n.id)) d.nodeCount++;
  b.set(n.id, castDraft(n));
}

function ddelete(d: DState, id: number): void {
  const key = bucketOf(id);
  const b = d.nodes.get(key);
  if (!b || !b.delete(id)) return;
  d.nodeCount--;
  if (b.size === 0) d.nodes.delete(key);
}

function err(code: ErrnoCode, detail?: string): FsError {
  return FsError.of(code, detail);
}

function isDir(n: MemNode): boolean { return (n.mode & S_IFMT) === S_IFDIR; }
function isReg(n: MemNode): boolean { return (n.mode & S_IFMT) === S_IFREG; }
function isChardevWhiteout(n: MemNode): boolean { return (n.mode & S_IFMT) === S_IFCHR && n.rdev === 0; }


function sizeOf(n: MemNode): number {
  if (n.data) return n.data.size;
  if (n.target !== undefined) return Buffer.byteLength(n.target);
  if (isDir(n)) return BLOCK;
  return 0;
}

function emptyNode(id: number, mode: number, uid: number, gid: number, now: Timespec): MemNode {
  return { id, mode, uid, gid, rdev: 0, nlink: 1, xattrs: new Map(), atime: now, mtime: now, ctime: now, birthtime: now };
}

/** An in-memory Layer on an immer state tree; see the module comment for its semantics. */
export class MemoryLayer implements Layer {
  /** Always `ROOT_INO`. */
  readonly rootIno = ROOT_INO;
  /** How this layer stores whiteouts and opaque markers. */
  readonly whiteoutFormat: WhiteoutFormat;
  /** False when every change fails with EROFS. */
  readonly writable: boolean;
  /** The work directory (not reachable from the root), when the layer has one. */
  readonly workIno?: number;
  /** Whether chardev-format opaque markers use `user.overlay.opaque`. */
  readonly userxattr: boolean;
  /** The `dev` reported in attributes. */
  readonly dev: number;
  private state: MemSnapshot;
  private readonly table: InodeTable<number>;
  private readonly handles = new Map<number, Handle>();
  private readonly openCount = new Map<number, number>();
  private nextFh = 1;
  private workExcess = 0;
  private readonly onExcess: ((ino: number, held: number, asked: number) => void) | undefined;

  /** A new empty layer (or one seeded from `options.snapshot`). */
  constructor(options: MemoryLayerOptions = {}) {
    this.writable = options.writable ?? true;
    this.whiteoutFormat = options.whiteoutFormat ?? options.snapshot?.whiteoutFormat ?? 'chardev';
    this.userxattr = options.userxattr ?? options.snapshot?.userxattr ?? false;
    this.dev = options.dev ?? nextDev++;
    this.onExcess = options.onExcessForget;
    const wantWork = options.workDir ?? this.writable;
    let state: MemSnapshot;
    if (options.snapshot) {
      state = produce(options.snapshot, (d) => {
        d.whiteoutFormat = this.whiteoutFormat;
        d.userxattr = this.userxattr;
        for (const n of snapshotNodes(options.snapshot!)) if (n.nlink === 0 && n.id !== ROOT_INO && n.id !== d.workId) ddelete(d, n.id);
      });
    } else {
      const now = nowTimespec();
      const root: MemNode = {
        ...emptyNode(ROOT_INO, S_IFDIR | ((options.rootMode ?? 0o755) & 0o7777), options.rootUid ?? 0, options.rootGid ?? 0, now),
        nlink: 2, entries: new Map(), parent: ROOT_INO,
      };
      state = { nodes: new Map([[bucketOf(ROOT_INO), new Map([[ROOT_INO, root]])]]), nodeCount: 1, nextId: ROOT_INO + 1, whiteoutFormat: this.whiteoutFormat, userxattr: this.userxattr };
    }
    if (wantWork && state.workId === undefined) {
      state = produce(state, (d) => {
        const id = d.nextId++;
        const now = nowTimespec();
        dset(d, { ...emptyNode(id, S_IFDIR | 0o700, 0, 0, now), nlink: 2, entries: new Map(), parent: id });
        d.workId = id;
      });
    }
    this.state = freeze(state, true);
    this.table = new InodeTable<number>(String(ROOT_INO), ROOT_INO, options.onExcessForget ? { onExcessForget: options.onExcessForget } : {});
    if (wantWork && this.state.workId !== undefined) {
      this.workIno = this.state.workId;
      this.table.acquire(String(this.workIno), (i) => i, 1, this.workIno);
    }
  }

  /** A layer seeded from `snapshot` (another layer's state); `writable: false` makes it read-only. */
  static fromSnapshot(snapshot: MemSnapshot, options: Omit<MemoryLayerOptions, 'snapshot'> = {}): MemoryLayer {
    return new MemoryLayer({ ...options, snapshot });
  }

  /** The current state: immutable, shares structure with the live layer, O(1). */
  snapshot(): MemSnapshot {
    return this.state;
  }

  /** Inodes in the lookup table, the root included (the pinned work dir is not counted). */
  liveInodes(): number {
    return this.table.size - (this.workIno !== undefined && this.table.get(this.workIno) ? 1 : 0);
  }

  /** Lookups held on `ino` (for invariant checks; the work dir's pin is not counted). */
  lookupCount(ino: number): number {
    const n = this.table.lookups(ino);
    return ino === this.workIno ? Math.max(0, n - 1) : n;
  }

  /** Every ino with lookups held (root and pinned work dir excluded). */
  referencedInos(): number[] {
    const out: number[] = [];
    for (const r of this.table.records()) if (r.ino !== ROOT_INO && this.lookupCount(r.ino) > 0) out.push(r.ino);
    return out;
  }

  /** Lookups forgotten beyond what was held, over the layer's life. */
  get excessForgets(): number {
    return this.table.excessForgets + this.workExcess;
  }

  /** Number of open file and directory handles. */
  get openHandles(): number {
    return this.handles.size;
  }

  /** Number of nodes stored (linked or still referenced), root and work dir included. */
  get storedNodes(): number {
    return this.state.nodeCount;
  }

  // ---- internals -------------------------------------------------------------------------

  private mutate<T>(fn: (d: DState) => T): T {
    let out: T | undefined;
    this.state = produce(this.state, (d) => { out = fn(d); });
    return out as T;
  }

  private ro(): void {
    if (!this.writable) throw err('EROFS');
  }

  /** The node of a referenced ino (a lookup held, an open handle, root or work dir). */
  private inode(ino: number): MemNode {
    const n = snapshotNode(this.state, ino);
    if (!n || (!this.table.get(ino) && !this.openCount.get(ino))) throw new FsError('ESTALE', { detail: `inode ${ino} is not known` });
    return n;
  }

  private dirInode(ino: number): MemNode {
    const n = this.inode(ino);
    if (!isDir(n)) throw err('ENOTDIR');
    return n;
  }

  private node(id: number): MemNode {
    const n = snapshotNode(this.state, id);
    if (!n) throw new FsError('EIO', { detail: `dangling node ${id}` });
    return n;
  }

  private isMarker(stored: string): boolean {
    return this.whiteoutFormat === 'oci' && stored.startsWith(OCI_WHITEOUT_PREFIX);
  }

  private slot(dir: MemNode, name: string, state: MemSnapshot = this.state): Slot | undefined {
    const entries = dir.entries!;
    if (this.whiteoutFormat === 'oci') {
      if (name.startsWith(OCI_WHITEOUT_PREFIX)) return undefined;
      const id = entries.get(name);
      if (id !== undefined) return { stored: name, id, whiteout: isChardevWhiteout(snapshotNode(state, id)!) };
      const wid = entries.get(OCI_WHITEOUT_PREFIX + name);
      return wid === undefined ? undefined : { stored: OCI_WHITEOUT_PREFIX + name, id: wid, whiteout: true };
    }
    const id = entries.get(name);
    return id === undefined ? undefined : { stored: name, id, whiteout: isChardevWhiteout(snapshotNode(state, id)!) };
  }

  private storedName(name: string, whiteout: boolean, id: number): string {
    // An OCI marker keeps its marker form under its new name; a chardev whiteout is a node.
    if (this.whiteoutFormat === 'oci' && whiteout && !isChardevWhiteout(this.node(id))) return OCI_WHITEOUT_PREFIX + name;
    return name;
  }

  private checkNewName(name: string): void {
    validateName(name);
    if (this.isMarker(name)) throw err('EINVAL', `'${name}' is reserved for whiteouts in an OCI layer`);
  }

  private attrOf(n: MemNode): Attr {
    const size = sizeOf(n);
    return {
      ino: n.id, dev: this.dev, mode: n.mode, nlink: n.nlink, uid: n.uid, gid: n.gid, rdev: n.rdev,
      size, blocks: Math.ceil(size / BLOCK) * (BLOCK / 512), blksize: BLOCK,
      atime: n.atime, mtime: n.mtime, ctime: n.ctime, birthtime: n.birthtime,
    };
  }

  private entryOf(id: number, whiteout: boolean): Entry {
    this.table.acquire(String(id), (i) => i, 1, id);
    const e: Entry = { ino: id, generation: 1, attr: this.attrOf(this.node(id)) };
    return whiteout ? { ...e, whiteout: true } : e;
  }

  private maybeFree(id: number): void {
    if (id === ROOT_INO || id === this.workIno) return;
    const n = snapshotNode(this.state, id);
    if (!n || n.nlink > 0 || this.table.get(id) || this.openCount.get(id)) return;
    this.mutate((d) => { ddelete(d, id); });
  }

  private newId(d: DState): number {
    return d.nextId++;
  }

  private dnode(d: DState, id: number): DNode {
    return dget(d, id)!;
  }

  /** Search permission on `dir`, and ENOENT when it was removed. */
  private search(ctx: RequestContext, dir: MemNode): void {
    checkAccess(dir, ctx, AccessMode.X_OK);
  }

  private alive(dir: MemNode): void {
    if (dir.nlink === 0) throw err('ENOENT', 'directory was removed');
  }

  /** Common path of mknod/mkdir/symlink/create: checks, then add the node built by `build`. */
  private createIn(ctx: RequestContext, parent: number, name: string, build: (id: number, p: MemNode, now: Timespec) => MemNode): number {
    this.checkNewName(name);
    const p = this.dirInode(parent);
    this.search(ctx, p);
    this.alive(p);
    if (this.slot(p, name)) throw err('EEXIST');
    this.ro();
    checkAccess(p, ctx, AccessMode.W_OK | AccessMode.X_OK);
    return this.mutate((d) => {
      const id = this.newId(d);
      const now = nowTimespec();
      const n = build(id, p, now);
      dset(d, n);
      const dp = this.dnode(d, parent);
      dp.entries!.set(name, id);
      dp.mtime = now; dp.ctime = now;
      if (isDir(n)) dp.nlink++;
      return id;
    });
  }

  /** Owner, group and mode of a new object (umask, setgid directories). */
  private newOwnership(ctx: RequestContext, p: MemNode, mode: number): { uid: number; gid: number; mode: number } {
    let m = mode;
    let gid = ctx.gid;
    if (p.mode & S_ISGID) {
      gid = p.gid;
      if ((m & S_IFMT) === S_IFDIR) m |= S_ISGID;
    }
    if ((m & S_IFMT) !== S_IFDIR && (m & S_ISGID) && ctx.uid !== 0 && !inGroup(ctx, gid)) m &= ~S_ISGID;
    return { uid: ctx.uid, gid, mode: m };
  }

  private fileHandle(ino: number, fh: number): FileHandle {
    const h = this.handles.get(fh);
    if (!h || h.kind !== 'file' || h.id !== ino) throw err('EBADF');
    return h;
  }

  private dirHandle(ino: number, fh: number): DirHandle {
    const h = this.handles.get(fh);
    if (!h || h.kind !== 'dir' || h.id !== ino) throw err('EBADF');
    return h;
  }

  private addHandle(h: Handle): number {
    const fh = this.nextFh++;
    this.handles.set(fh, h);
    this.openCount.set(h.id, (this.openCount.get(h.id) ?? 0) + 1);
    return fh;
  }

  private dropHandle(fh: number): void {
    const h = this.handles.get(fh);
    if (!h) return;
    this.handles.delete(fh);
    const c = (this.openCount.get(h.id) ?? 1) - 1;
    if (c > 0) this.openCount.set(h.id, c); else this.openCount.delete(h.id);
    this.maybeFree(h.id);
  }

  private static readable(flags: number): boolean {
    return (flags & OpenFlags.O_ACCMODE) !== OpenFlags.O_WRONLY;
  }

  private static writableFlags(flags: number): boolean {
    return (flags & OpenFlags.O_ACCMODE) !== OpenFlags.O_RDONLY;
  }

  /** Write `data` at `pos` into node `id` (zero-filling any gap); mtime/ctime; kill priv. */
  private writeData(ctx: RequestContext, id: number, data: Uint8Array, pos: number): void {
    this.mutate((d) => {
      const n = this.dnode(d, id);
      n.data = castDraft(writeFileData(n.data ?? EMPTY, data, pos));
      const now = nowTimespec();
      n.mtime = now; n.ctime = now;
      if (ctx.uid !== 0) n.mode = killPriv(n.mode);
    });
  }

  private listing(dir: MemNode, state: MemSnapshot): DirEntry[] {
    const names: { name: string; slot: Slot }[] = [];
    for (const stored of dir.entries!.keys()) {
      let name = stored;
      if (this.whiteoutFormat === 'oci' && stored.startsWith(OCI_WHITEOUT_PREFIX)) {
        if (stored === OCI_OPAQUE_MARKER) continue;
        name = stored.slice(OCI_WHITEOUT_PREFIX.length);
        if (name.length === 0 || dir.entries!.has(name)) continue;
      }
      const s = this.slot(dir, name, state);
      if (s) names.push({ name, slot: s });
    }
    names.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    return names.map(({ name, slot }, i) => {
      const n = snapshotNode(state, slot.id)!;
      const e: DirEntry = { name, ino: slot.id, type: typeOfMode(n.mode), offset: i + 1 };
      return slot.whiteout ? { ...e, whiteout: true } : e;
    });
  }

  // ---- Filesystem ----------------------------------------------------------------------

  /** Resolve `name` in `parent`; +1 lookup. */
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
    const p = this.dirInode(parent);
    this.search(ctx, p);
    const s = p.nlink === 0 ? undefined : this.slot(p, name);
    return s ? this.entryOf(s.id, s.whiteout) : undefined;
  }

  /** Give back `nlookup` lookups; the inode is freed when unreferenced and unlinked. */
  async forget(_ctx: RequestContext, ino: number, nlookup: number): Promise<void> {
    if (ino === this.workIno) {
      const held = this.table.lookups(ino) - 1;
      const take = Math.min(nlookup, held);
      if (take > 0) this.table.forget(ino, take);
      if (nlookup > take) {
        this.workExcess += nlookup - take;
        this.onExcess?.(ino, held, nlookup);
      }
      return;
    }
    const r = this.table.forget(ino, nlookup);
    if (r.dropped) this.maybeFree(ino);
  }

  /** Attributes of `ino`. */
  async getattr(_ctx: RequestContext, ino: number, fh?: number): Promise<Attr> {
    if (fh !== undefined && this.handles.get(fh)?.id === ino) return this.attrOf(this.node(ino));
    return this.attrOf(this.inode(ino));
  }

  /** chmod/chown/truncate/utimens with the kernel's permission rules. */
  async setattr(ctx: RequestContext, ino: number, changes: SetattrRequest, fh?: number): Promise<Attr> {
    const h = fh === undefined ? undefined : this.handles.get(fh);
    const n = h && h.id === ino ? this.node(ino) : this.inode(ino);
    this.ro();
    const root = ctx.uid === 0;
    if (changes.size !== undefined) {
      if (isDir(n)) throw err('EISDIR');
      if (!isReg(n)) throw err('EINVAL');
      if (changes.size < 0 || !Number.isSafeInteger(changes.size)) throw err('EINVAL');
      if (h && h.kind === 'file') {
        if (!MemoryLayer.writableFlags(h.flags)) throw err('EINVAL', 'handle not open for writing');
      } else {
        checkAccess(n, ctx, AccessMode.W_OK);
      }
    }
    if (changes.uid !== undefined && changes.uid !== -1) {
      if (!root && !(ctx.uid === n.uid && changes.uid === n.uid)) throw err('EPERM');
    }
    if (changes.gid !== undefined && changes.gid !== -1) {
      if (!root && !(ctx.uid === n.uid && (inGroup(ctx, changes.gid) || changes.gid === n.gid))) throw err('EPERM');
    }
    if (changes.mode !== undefined && !isOwnerOrRoot(n, ctx)) throw err('EPERM');
    if (changes.mode !== undefined && (n.mode & S_IFMT) === S_IFLNK) throw err('EOPNOTSUPP', 'symlinks have no mode of their own');
    const at = changes.atime;
    const mt = changes.mtime;
    const explicit = (at !== undefined && at.nsec !== UTIME_NOW && at.nsec !== UTIME_OMIT)
      || (mt !== undefined && mt.nsec !== UTIME_NOW && mt.nsec !== UTIME_OMIT);
    const touches = (at !== undefined && at.nsec !== UTIME_OMIT) || (mt !== undefined && mt.nsec !== UTIME_OMIT);
    if (explicit) {
      if (!isOwnerOrRoot(n, ctx)) throw err('EPERM');
    } else if (touches && !isOwnerOrRoot(n, ctx) && !mayAccess(n, ctx, AccessMode.W_OK)) {
      throw err('EACCES');
    }
    for (const t of [at, mt]) {
      if (t && t.nsec !== UTIME_NOW && t.nsec !== UTIME_OMIT && (t.nsec < 0 || t.nsec >= 1e9)) throw err('EINVAL');
    }
    this.mutate((d) => {
      const dn = this.dnode(d, ino);
      const now = nowTimespec();
      if (changes.size !== undefined) {
        dn.data = castDraft(resizeFileData(dn.data ?? EMPTY, changes.size));
        dn.mtime = now;
        if (!root) dn.mode = killPriv(dn.mode);
      }
      const chown = (changes.uid !== undefined && changes.uid !== -1) || (changes.gid !== undefined && changes.gid !== -1);
      if (changes.uid !== undefined && changes.uid !== -1) dn.uid = changes.uid;
      if (changes.gid !== undefined && changes.gid !== -1) dn.gid = changes.gid;
      if (chown && !isDir(dn)) dn.mode = killPriv(dn.mode);
      if (changes.mode !== undefined) {
        let m = changes.mode & 0o7777;
        if (!root && !inGroup(ctx, dn.gid)) m &= ~S_ISGID;
        dn.mode = (dn.mode & S_IFMT) | m;
      }
      if (at && at.nsec !== UTIME_OMIT) dn.atime = at.nsec === UTIME_NOW ? now : { sec: at.sec, nsec: at.nsec };
      if (mt && mt.nsec !== UTIME_OMIT) dn.mtime = mt.nsec === UTIME_NOW ? now : { sec: mt.sec, nsec: mt.nsec };
      dn.ctime = now;
    });
    return this.attrOf(this.node(ino));
  }

  /** Target of a symlink; EINVAL for anything else. */
  async readlink(_ctx: RequestContext, ino: number): Promise<string> {
    const n = this.inode(ino);
    if (n.target === undefined) throw err('EINVAL');
    return n.target;
  }

  /** Create a file, fifo, socket or device (0/0 char devices are whiteouts); +1 lookup. */
  async mknod(ctx: RequestContext, parent: number, name: string, mode: number, rdev: number): Promise<Entry> {
    const type = mode & S_IFMT;
    if (type === S_IFDIR) throw err('EPERM');
    if (type === S_IFLNK) throw err('EINVAL');
    const fmt = type === 0 ? S_IFREG : type;
    const device = fmt === S_IFCHR || fmt === 0o060000;
    const whiteout = fmt === S_IFCHR && rdev === 0;
    const id = this.createIn(ctx, parent, name, (nid, p, now) => {
      if (device && !whiteout && ctx.uid !== 0) throw err('EPERM');
      const o = this.newOwnership(ctx, p, fmt | (mode & 0o7777 & ~ctx.umask));
      const n: MemNode = { ...emptyNode(nid, o.mode, o.uid, o.gid, now), rdev: device ? rdev : 0 };
      return fmt === S_IFREG ? { ...n, data: EMPTY } : n;
    });
    return this.entryOf(id, whiteout);
  }

  /** Create a directory; +1 lookup. */
  async mkdir(ctx: RequestContext, parent: number, name: string, mode: number): Promise<Entry> {
    const id = this.createIn(ctx, parent, name, (nid, p, now) => {
      const o = this.newOwnership(ctx, p, S_IFDIR | (mode & 0o7777 & ~ctx.umask));
      return { ...emptyNode(nid, o.mode, o.uid, o.gid, now), nlink: 2, entries: new Map(), parent: p.id };
    });
    return this.entryOf(id, false);
  }

  /** Remove a non-directory name (a whiteout too). */
  async unlink(ctx: RequestContext, parent: number, name: string): Promise<void> {
    if (name === '.' || name === '..') throw err('EISDIR');
    validateName(name);
    const p = this.dirInode(parent);
    this.search(ctx, p);
    this.ro();
    const s = p.nlink === 0 ? undefined : this.slot(p, name);
    if (!s) throw err('ENOENT');
    const v = this.node(s.id);
    checkAccess(p, ctx, AccessMode.W_OK | AccessMode.X_OK);
    checkSticky(p, v, ctx);
    if (isDir(v)) throw err('EISDIR');
    this.mutate((d) => {
      const now = nowTimespec();
      const dp = this.dnode(d, parent);
      dp.entries!.delete(s.stored);
      dp.mtime = now; dp.ctime = now;
      const dv = this.dnode(d, s.id);
      dv.nlink--;
      dv.ctime = now;
    });
    this.maybeFree(s.id);
  }

  /** Remove an empty directory. */
  async rmdir(ctx: RequestContext, parent: number, name: string): Promise<void> {
    if (name === '.') throw err('EINVAL');
    if (name === '..') throw err('ENOTEMPTY');
    validateName(name);
    const p = this.dirInode(parent);
    this.search(ctx, p);
    this.ro();
    const s = p.nlink === 0 ? undefined : this.slot(p, name);
    if (!s) throw err('ENOENT');
    const v = this.node(s.id);
    checkAccess(p, ctx, AccessMode.W_OK | AccessMode.X_OK);
    checkSticky(p, v, ctx);
    if (!isDir(v)) throw err('ENOTDIR');
    if (v.entries!.size > 0) throw err('ENOTEMPTY');
    this.mutate((d) => {
      const now = nowTimespec();
      const dp = this.dnode(d, parent);
      dp.entries!.delete(s.stored);
      dp.nlink--;
      dp.mtime = now; dp.ctime = now;
      const dv = this.dnode(d, s.id);
      dv.nlink = 0;
      dv.ctime = now;
    });
    this.maybeFree(s.id);
  }

  /** Create a symlink; +1 lookup. */
  async symlink(ctx: RequestContext, parent: number, name: string, target: string): Promise<Entry> {
    if (target.length === 0) throw err('ENOENT');
    if (target.includes('\0')) throw err('EINVAL');
    if (Buffer.byteLength(target) > SYMLINK_MAX) throw err('ENAMETOOLONG');
    const id = this.createIn(ctx, parent, name, (nid, p, now) => {
      const o = this.newOwnership(ctx, p, S_IFLNK | 0o777);
      return { ...emptyNode(nid, S_IFLNK | 0o777, o.uid, o.gid, now), target };
    });
    return this.entryOf(id, false);
  }

  private isAncestorOrSelf(ancestor: number, id: number): boolean {
    let cur = id;
    for (;;) {
      if (cur === ancestor) return true;
      const n = snapshotNode(this.state, cur);
      if (!n || n.parent === undefined || n.parent === cur) return false;
      cur = n.parent;
    }
  }

  /** renameat2 with NOREPLACE / EXCHANGE / WHITEOUT and the kernel's errnos. */
  async rename(ctx: RequestContext, parent: number, name: string, newparent: number, newname: string, flags: number): Promise<void> {
    const { NOREPLACE, EXCHANGE, WHITEOUT } = RenameFlags;
    if (flags & ~(NOREPLACE | EXCHANGE | WHITEOUT)) throw err('EINVAL');
    if ((flags & (NOREPLACE | WHITEOUT)) && (flags & EXCHANGE)) throw err('EINVAL');
    for (const nm of [name, newname]) if (nm === '.' || nm === '..') throw err('EBUSY');
    validateName(name);
    validateName(newname);
    const p = this.dirInode(parent);
    const np = this.dirInode(newparent);
    this.search(ctx, p);
    this.search(ctx, np);
    this.ro();
    const src = p.nlink === 0 ? undefined : this.slot(p, name);
    if (!src) throw err('ENOENT');
    if (np.nlink === 0) throw err('ENOENT');
    const dst = this.slot(np, newname);
    if ((flags & NOREPLACE) && dst) throw err('EEXIST');
    if ((flags & EXCHANGE) && !dst) throw err('ENOENT');
    if (!dst && this.isMarker(newname)) throw err('EINVAL');
    const sn = this.node(src.id);
    const srcDir = isDir(sn);
    // The "trap" checks of lock_rename: no directory moves under itself.
    if (srcDir && this.isAncestorOrSelf(src.id, newparent)) throw err('EINVAL');
    const tn = dst ? this.node(dst.id) : undefined;
    const dstDir = tn ? isDir(tn) : false;
    if (dst && dstDir && this.isAncestorOrSelf(dst.id, parent)) throw err((flags & EXCHANGE) ? 'EINVAL' : 'ENOTEMPTY');
    if (dst && dst.id === src.id) return;
    checkAccess(p, ctx, AccessMode.W_OK | AccessMode.X_OK);
    checkSticky(p, sn, ctx);
    if (!dst) {
      checkAccess(np, ctx, AccessMode.W_OK | AccessMode.X_OK);
    } else {
      checkAccess(np, ctx, AccessMode.W_OK | AccessMode.X_OK);
      checkSticky(np, tn!, ctx);
      if (!(flags & EXCHANGE)) {
        if (srcDir && !dstDir) throw err('ENOTDIR');
        if (!srcDir && dstDir) throw err('EISDIR');
      }
    }
    if (parent !== newparent) {
      if (srcDir && !(flags & EXCHANGE)) checkAccess(sn, ctx, AccessMode.W_OK);
      if (flags & EXCHANGE) {
        if (srcDir) checkAccess(sn, ctx, AccessMode.W_OK);
        if (dstDir) checkAccess(tn!, ctx, AccessMode.W_OK);
      }
    }
    if (dst && dstDir && !(flags & EXCHANGE) && tn!.entries!.size > 0) {
      // As ext4: a RENAME_WHITEOUT sets the whiteout up before it finds the target not empty,
      // and puts the old entry back on the way out, which moves the old parent's times.
      if ((flags & WHITEOUT) && this.whiteoutFormat === 'chardev') {
        this.mutate((d) => { const dp = this.dnode(d, parent); const now = nowTimespec(); dp.mtime = now; dp.ctime = now; });
      }
      throw err('ENOTEMPTY');
    }
    this.mutate((d) => {
      const now = nowTimespec();
      const dp = this.dnode(d, parent);
      const dnp = this.dnode(d, newparent);
      const ds = this.dnode(d, src.id);
      dp.entries!.delete(src.stored);
      if (flags & EXCHANGE) {
        const dt = this.dnode(d, dst!.id);
        dnp.entries!.delete(dst!.stored);
        dp.entries!.set(this.storedName(name, dst!.whiteout, dst!.id), dst!.id);
        dnp.entries!.set(this.storedName(newname, src.whiteout, src.id), src.id);
        if (parent !== newparent) {
          if (srcDir) { ds.parent = newparent; dp.nlink--; dnp.nlink++; }
          if (dstDir) { dt.parent = parent; dnp.nlink--; dp.nlink++; }
        }
        dt.ctime = now;
      } else {
        if (dst) {
          dnp.entries!.delete(dst.stored);
          const dt = this.dnode(d, dst.id);
          if (dstDir) { dt.nlink = 0; dnp.nlink--; } else dt.nlink--;
          dt.ctime = now;
        }
        dnp.entries!.set(this.storedName(newname, src.whiteout, src.id), src.id);
        if (srcDir && parent !== newparent) { ds.parent = newparent; dp.nlink--; dnp.nlink++; }
        if (flags & WHITEOUT) {
          const id = this.newId(d);
          if (this.whiteoutFormat === 'oci') {
            dset(d, { ...emptyNode(id, S_IFREG, ctx.uid, ctx.gid, now), data: EMPTY });
            dp.entries!.set(OCI_WHITEOUT_PREFIX + name, id);
          } else {
            dset(d, emptyNode(id, S_IFCHR, ctx.uid, ctx.gid, now));
            dp.entries!.set(name, id);
          }
        }
      }
      ds.ctime = now;
      dp.mtime = now; dp.ctime = now;
      dnp.mtime = now; dnp.ctime = now;
    });
    if (dst && !(flags & EXCHANGE)) this.maybeFree(dst.id);
  }

  /** New name for `ino`; +1 lookup. */
  async link(ctx: RequestContext, ino: number, newparent: number, newname: string): Promise<Entry> {
    this.checkNewName(newname);
    const n = this.inode(ino);
    const np = this.dirInode(newparent);
    this.search(ctx, np);
    this.alive(np);
    if (this.slot(np, newname)) throw err('EEXIST');
    this.ro();
    checkAccess(np, ctx, AccessMode.W_OK | AccessMode.X_OK);
    if (isDir(n)) throw err('EPERM');
    if (ctx.uid !== 0 && ctx.uid !== n.uid) {
      // fs.protected_hardlinks=1 (Debian's default): only "safe" sources.
      const safe = isReg(n) && killPriv(n.mode) === n.mode
        && mayAccess(n, ctx, AccessMode.R_OK | AccessMode.W_OK);
      if (!safe) throw err('EPERM');
    }
    if (n.nlink === 0) throw err('ENOENT');
    this.mutate((d) => {
      const now = nowTimespec();
      const dnp = this.dnode(d, newparent);
      dnp.entries!.set(newname, ino);
      dnp.mtime = now; dnp.ctime = now;
      const dn = this.dnode(d, ino);
      dn.nlink++;
      dn.ctime = now;
    });
    return this.entryOf(ino, isChardevWhiteout(n));
  }

  private openNode(ctx: RequestContext, n: MemNode, flags: number): number {
    if ((n.mode & S_IFMT) === S_IFLNK) throw err('ELOOP');
    const write = MemoryLayer.writableFlags(flags);
    if ((flags & OpenFlags.O_DIRECTORY) && !isDir(n)) throw err('ENOTDIR');
    if (isDir(n) && (write || (flags & OpenFlags.O_CREAT))) throw err('EISDIR');
    let mask = 0;
    const acc = flags & OpenFlags.O_ACCMODE;
    if (acc === OpenFlags.O_RDONLY) mask = AccessMode.R_OK;
    else if (acc === OpenFlags.O_WRONLY) mask = AccessMode.W_OK;
    else mask = AccessMode.R_OK | AccessMode.W_OK;
    const trunc = (flags & OpenFlags.O_TRUNC) !== 0 && isReg(n);
    if (trunc) mask |= AccessMode.W_OK;
    checkAccess(n, ctx, mask);
    if ((write || trunc) && (isReg(n) || isDir(n))) this.ro();
    if (trunc) {
      this.mutate((d) => {
        const dn = this.dnode(d, n.id);
        const now = nowTimespec();
        dn.data = castDraft(EMPTY);
        dn.mtime = now; dn.ctime = now;
        if (ctx.uid !== 0) dn.mode = killPriv(dn.mode);
      });
    }
    return this.addHandle({ kind: 'file', id: n.id, flags });
  }

  /** Open `ino` (O_TRUNC truncates; permissions by access mode). */
  async open(ctx: RequestContext, ino: number, flags: number): Promise<OpenResult> {
    return { fh: this.openNode(ctx, this.inode(ino), flags), noFlush: true };
  }

  /** Create (or, without O_EXCL, open) a regular file; +1 lookup. */
  async create(ctx: RequestContext, parent: number, name: string, mode: number, flags: number): Promise<CreateResult> {
    validateName(name);
    const p = this.dirInode(parent);
    this.search(ctx, p);
    this.alive(p);
    const existing = this.slot(p, name);
    if (existing) {
      if (flags & OpenFlags.O_EXCL) throw err('EEXIST');
      const n = this.node(existing.id);
      if (isDir(n)) throw err('EISDIR');
      const fh = this.openNode(ctx, n, flags);
      return { fh, entry: this.entryOf(n.id, existing.whiteout), noFlush: true };
    }
    const id = this.createIn(ctx, parent, name, (nid, pn, now) => {
      const o = this.newOwnership(ctx, pn, S_IFREG | (mode & 0o7777 & ~ctx.umask));
      return { ...emptyNode(nid, o.mode, o.uid, o.gid, now), data: EMPTY };
    });
    const fh = this.addHandle({ kind: 'file', id, flags: flags & ~OpenFlags.O_TRUNC });
    return { fh, entry: this.entryOf(id, false), noFlush: true };
  }

  /** Read from an open file; short at end of file. */
  async read(_ctx: RequestContext, ino: number, fh: number, length: number, position: number): Promise<Uint8Array> {
    const h = this.fileHandle(ino, fh);
    if (!MemoryLayer.readable(h.flags)) throw err('EBADF');
    const n = this.node(ino);
    if (isDir(n)) throw err('EISDIR');
    if (!isReg(n)) throw err('EINVAL');
    if (position < 0 || length < 0) throw err('EINVAL');
    return readFileData(n.data ?? EMPTY, position, length);
  }

  /** Write to an open file (at the end for O_APPEND handles), zero-filling any gap. */
  async write(ctx: RequestContext, ino: number, fh: number, data: Uint8Array, position: number): Promise<number> {
    const h = this.fileHandle(ino, fh);
    if (!MemoryLayer.writableFlags(h.flags)) throw err('EBADF');
    const n = this.node(ino);
    if (!isReg(n)) throw err('EINVAL');
    if (position < 0) throw err('EINVAL');
    this.ro();
    const pos = (h.flags & OpenFlags.O_APPEND) ? sizeOf(n) : position;
    if (data.length === 0) return 0;
    this.writeData(ctx, ino, data, pos);
    return data.length;
  }

  /** Validate the handle; nothing to flush in memory. */
  async flush(_ctx: RequestContext, ino: number, fh: number): Promise<void> {
    this.fileHandle(ino, fh);
  }

  /** Free an open file handle (an unlinked, unreferenced inode is freed with it). */
  async release(_ctx: RequestContext, ino: number, fh: number): Promise<void> {
    this.fileHandle(ino, fh);
    this.dropHandle(fh);
  }

  /** Validate the handle; nothing to sync in memory. */
  async fsync(_ctx: RequestContext, ino: number, fh: number, _datasync: boolean): Promise<void> {
    this.fileHandle(ino, fh);
  }

  /** Open a directory (read permission); the listing is taken now and at each offset 0. */
  async opendir(ctx: RequestContext, ino: number): Promise<OpenResult> {
    const n = this.inode(ino);
    if (!isDir(n)) throw err('ENOTDIR');
    checkAccess(n, ctx, AccessMode.R_OK);
    const fh = this.addHandle({ kind: 'dir', id: ino, listing: this.listing(n, this.state), state: this.state });
    return { fh };
  }

  /** Entries after `offset` from the handle's listing (stable under concurrent changes). */
  async readdir(_ctx: RequestContext, ino: number, fh: number, offset: number, plus: boolean): Promise<DirEntry[]> {
    const h = this.dirHandle(ino, fh);
    if (offset < 0 || !Number.isInteger(offset)) throw err('EINVAL');
    if (offset === 0) {
      h.state = this.state;
      h.listing = this.listing(this.node(ino), this.state);
    }
    const out = h.listing.slice(offset);
    if (!plus) return out;
    return out.map((e) => ({ ...e, attr: this.attrOf(snapshotNode(this.state, e.ino) ?? snapshotNode(h.state, e.ino)!) }));
  }

  /** Free a directory handle. */
  async releasedir(_ctx: RequestContext, ino: number, fh: number): Promise<void> {
    this.dirHandle(ino, fh);
    this.dropHandle(fh);
  }

  /** Validate the handle; nothing to sync in memory. */
  async fsyncdir(_ctx: RequestContext, ino: number, fh: number, _datasync: boolean): Promise<void> {
    this.dirHandle(ino, fh);
  }

  /** Usage figures of a 4 GiB, 1M-inode filesystem. */
  async statfs(_ctx: RequestContext, ino: number): Promise<StatFs> {
    this.inode(ino);
    let used = 0;
    for (const n of snapshotNodes(this.state)) used += Math.ceil(sizeOf(n) / BLOCK);
    return {
      bsize: BLOCK, frsize: BLOCK, blocks: TOTAL_BLOCKS, bfree: TOTAL_BLOCKS - used, bavail: TOTAL_BLOCKS - used,
      files: TOTAL_FILES, ffree: TOTAL_FILES - this.state.nodeCount, namemax: 255,
    };
  }

  /** The kernel's `xattr_permission` plus namespace handling; returns nothing or throws. */
  private xattrPermission(ctx: RequestContext, n: MemNode, name: string, write: boolean): void {
    if (name.length === 0 || Buffer.byteLength(name) > XATTR_NAME_MAX) throw err('ERANGE');
    if (name.startsWith('trusted.')) {
      if (ctx.uid !== 0) throw err(write ? 'EPERM' : 'ENODATA');
    } else if (name.startsWith('user.')) {
      if (!isReg(n) && !isDir(n)) throw err(write ? 'EPERM' : 'ENODATA');
      if (write && isDir(n) && (n.mode & S_ISVTX) && !isOwnerOrRoot(n, ctx)) throw err('EPERM');
      checkAccess(n, ctx, write ? AccessMode.W_OK : AccessMode.R_OK);
    } else if (name.startsWith('security.')) {
      if (write) checkAccess(n, ctx, AccessMode.W_OK);
    } else {
      throw err('EOPNOTSUPP');
    }
    const dot = name.indexOf('.');
    if (dot === name.length - 1) throw err('EINVAL');
  }

  /** Set an xattr (`XattrFlags.CREATE` → EEXIST if present, `REPLACE` → ENODATA if absent). */
  async setxattr(ctx: RequestContext, ino: number, name: string, value: Uint8Array, flags: number): Promise<void> {
    const n = this.inode(ino);
    if (flags & ~(XattrFlags.CREATE | XattrFlags.REPLACE)) throw err('EINVAL');
    if (name.length === 0 || Buffer.byteLength(name) > XATTR_NAME_MAX) throw err('ERANGE');
    if (value.length > XATTR_SIZE_MAX) throw err('E2BIG');
    this.ro();
    this.xattrPermission(ctx, n, name, true);
    const has = n.xattrs.has(name);
    if ((flags & XattrFlags.CREATE) && has) throw err('EEXIST');
    if ((flags & XattrFlags.REPLACE) && !has) throw err('ENODATA');
    this.mutate((d) => {
      const dn = this.dnode(d, ino);
      dn.xattrs.set(name, value.slice());
      dn.ctime = nowTimespec();
    });
  }

  /** Value of an xattr; ENODATA if absent. */
  async getxattr(ctx: RequestContext, ino: number, name: string): Promise<Uint8Array> {
    const n = this.inode(ino);
    this.xattrPermission(ctx, n, name, false);
    const v = n.xattrs.get(name);
    if (v === undefined) throw err('ENODATA');
    return v.slice();
  }

  /** Names of the xattrs (`trusted.*` only for root). */
  async listxattr(ctx: RequestContext, ino: number): Promise<string[]> {
    const n = this.inode(ino);
    return [...n.xattrs.keys()].filter((k) => ctx.uid === 0 || !k.startsWith('trusted.'));
  }

  /** Remove an xattr; ENODATA if absent. */
  async removexattr(ctx: RequestContext, ino: number, name: string): Promise<void> {
    const n = this.inode(ino);
    this.ro();
    this.xattrPermission(ctx, n, name, true);
    if (!n.xattrs.has(name)) throw err('ENODATA');
    this.mutate((d) => {
      const dn = this.dnode(d, ino);
      dn.xattrs.delete(name);
      dn.ctime = nowTimespec();
    });
  }

  /** access(2): EACCES if denied, EROFS for W_OK on a read-only layer. */
  async access(ctx: RequestContext, ino: number, mask: number): Promise<void> {
    const n = this.inode(ino);
    if ((mask & AccessMode.W_OK) && !this.writable && (isReg(n) || isDir(n) || (n.mode & S_IFMT) === S_IFLNK)) throw err('EROFS');
    checkAccess(n, ctx, mask);
  }

  /** fallocate: mode 0 / KEEP_SIZE allocate (zero fill), PUNCH_HOLE|KEEP_SIZE and ZERO_RANGE zero. */
  async fallocate(ctx: RequestContext, ino: number, fh: number, mode: number, offset: number, length: number): Promise<void> {
    const h = this.fileHandle(ino, fh);
    const { KEEP_SIZE, PUNCH_HOLE, ZERO_RANGE } = FallocateMode;
    if (offset < 0 || length <= 0) throw err('EINVAL');
    if (mode & ~(KEEP_SIZE | PUNCH_HOLE | ZERO_RANGE)) throw err('EOPNOTSUPP');
    if ((mode & PUNCH_HOLE) && !(mode & KEEP_SIZE)) throw err('EOPNOTSUPP');
    if ((mode & PUNCH_HOLE) && (mode & ZERO_RANGE)) throw err('EINVAL');
    if (!MemoryLayer.writableFlags(h.flags)) throw err('EBADF');
    const n = this.node(ino);
    if (isDir(n)) throw err('EISDIR');
    if ((n.mode & S_IFMT) === 0o010000) throw err('ESPIPE');
    if (!isReg(n)) throw err('ENODEV');
    if ((h.flags & OpenFlags.O_APPEND) && (mode & (PUNCH_HOLE | ZERO_RANGE))) throw err('EPERM');
    this.ro();
    const old = n.data ?? EMPTY;
    const end = offset + length;
    const newSize = (mode & KEEP_SIZE) ? old.size : Math.max(old.size, end);
    const zero = (mode & (PUNCH_HOLE | ZERO_RANGE)) !== 0;
    if (newSize === old.size && !zero) return;
    this.mutate((d) => {
      const dn = this.dnode(d, ino);
      const grown = resizeFileData(old, newSize);
      dn.data = castDraft(zero ? zeroFileData(grown, offset, end) : grown);
      const now = nowTimespec();
      dn.mtime = now; dn.ctime = now;
      if (ctx.uid !== 0) dn.mode = killPriv(dn.mode);
    });
  }

  /** lseek: SEEK_DATA/SEEK_HOLE treat the whole file as data (ENXIO at or past the end). */
  async lseek(_ctx: RequestContext, ino: number, fh: number, offset: number, whence: number): Promise<number> {
    const h = this.handles.get(fh);
    if (!h || h.id !== ino) throw err('EBADF');
    const size = sizeOf(this.node(ino));
    switch (whence) {
      case Whence.SEEK_SET:
        if (offset < 0) throw err('EINVAL');
        return offset;
      case Whence.SEEK_END:
        if (size + offset < 0) throw err('EINVAL');
        return size + offset;
      case Whence.SEEK_DATA:
        if (offset < 0) throw err('EINVAL');
        if (offset >= size) throw err('ENXIO');
        return offset;
      case Whence.SEEK_HOLE:
        if (offset < 0) throw err('EINVAL');
        if (offset >= size) throw err('ENXIO');
        return size;
      default:
        throw err('EINVAL');
    }
  }

  /** copy_file_range between two open regular files (EINVAL on overlap within one file). */
  async copyFileRange(
    ctx: RequestContext, inoIn: number, fhIn: number, offIn: number,
    inoOut: number, fhOut: number, offOut: number, length: number, flags: number,
  ): Promise<number> {
    if (flags !== 0) throw err('EINVAL');
    const hi = this.fileHandle(inoIn, fhIn);
    const ho = this.fileHandle(inoOut, fhOut);
    if (!MemoryLayer.readable(hi.flags)) throw err('EBADF');
    if (!MemoryLayer.writableFlags(ho.flags) || (ho.flags & OpenFlags.O_APPEND)) throw err('EBADF');
    const ni = this.node(inoIn);
    const no = this.node(inoOut);
    if (isDir(ni) || isDir(no)) throw err('EISDIR');
    if (!isReg(ni) || !isReg(no)) throw err('EINVAL');
    if (offIn < 0 || offOut < 0 || length < 0) throw err('EINVAL');
    if (inoIn === inoOut && offIn < offOut + length && offOut < offIn + length) throw err('EINVAL');
    this.ro();
    const chunk = readFileData(ni.data ?? EMPTY, offIn, length);
    if (chunk.length === 0) return 0;
    this.writeData(ctx, inoOut, chunk, offOut);
    return chunk.length;
  }

  /** Drop every open handle. Idempotent; the state (and snapshots) stay readable. */
  async destroy(): Promise<void> {
    for (const fh of [...this.handles.keys()]) this.dropHandle(fh);
  }

  // ---- Layer --------------------------------------------------------------------------

  /** Create a whiteout for `name` (0/0 char device or `.wh.<name>`); EEXIST if the name exists. */
  async createWhiteout(ctx: RequestContext, parent: number, name: string): Promise<void> {
    validateName(name);
    const p = this.dirInode(parent);
    this.alive(p);
    if (this.slot(p, name)) throw err('EEXIST');
    const stored = this.whiteoutFormat === 'oci' ? OCI_WHITEOUT_PREFIX + name : name;
    validateName(stored);
    this.ro();
    this.mutate((d) => {
      const id = this.newId(d);
      const now = nowTimespec();
      dset(d, this.whiteoutFormat === 'oci'
        ? { ...emptyNode(id, S_IFREG, ctx.uid, ctx.gid, now), data: EMPTY }
        : emptyNode(id, S_IFCHR, ctx.uid, ctx.gid, now));
      const dp = this.dnode(d, parent);
      dp.entries!.set(stored, id);
      dp.mtime = now; dp.ctime = now;
    });
  }

  /** Remove the whiteout for `name`; ENOENT if `name` is not a whiteout here. */
  async deleteWhiteout(_ctx: RequestContext, parent: number, name: string): Promise<void> {
    validateName(name);
    const p = this.dirInode(parent);
    const s = this.slot(p, name);
    if (!s || !s.whiteout) throw err('ENOENT');
    this.ro();
    this.mutate((d) => {
      const now = nowTimespec();
      const dp = this.dnode(d, parent);
      dp.entries!.delete(s.stored);
      dp.mtime = now; dp.ctime = now;
      const dv = this.dnode(d, s.id);
      dv.nlink--;
      dv.ctime = now;
    });
    this.maybeFree(s.id);
  }

  /** True when `name` in `parent` is a whiteout (takes no lookup). */
  async isWhiteout(_ctx: RequestContext, parent: number, name: string): Promise<boolean> {
    validateName(name);
    const p = this.dirInode(parent);
    return this.slot(p, name)?.whiteout ?? false;
  }

  /** Mark or unmark `ino` opaque (xattr in chardev format, `.wh..wh..opq` in oci). */
  async setOpaque(ctx: RequestContext, ino: number, opaque: boolean): Promise<void> {
    const n = this.dirInode(ino);
    this.ro();
    this.mutate((d) => {
      const dn = this.dnode(d, ino);
      const now = nowTimespec();
      if (opaque) {
        if (this.whiteoutFormat === 'oci') {
          if (!dn.entries!.has(OCI_OPAQUE_MARKER)) {
            const id = this.newId(d);
            dset(d, { ...emptyNode(id, S_IFREG, ctx.uid, ctx.gid, now), data: EMPTY });
            dn.entries!.set(OCI_OPAQUE_MARKER, id);
            dn.mtime = now;
          }
        } else {
          dn.xattrs.set(this.userxattr ? OPAQUE_XATTR_USER : OPAQUE_XATTR, new Uint8Array([0x79]));
        }
      } else {
        for (const x of OPAQUE_XATTRS) dn.xattrs.delete(x);
        const mid = dn.entries!.get(OCI_OPAQUE_MARKER);
        if (mid !== undefined) {
          dn.entries!.delete(OCI_OPAQUE_MARKER);
          dn.mtime = now;
          const m = this.dnode(d, mid);
          m.nlink--;
        }
      }
      dn.ctime = now;
    });
    const mid = n.entries!.get(OCI_OPAQUE_MARKER);
    if (!opaque && mid !== undefined) this.maybeFree(mid);
  }

  /** True when directory `ino` carries any opaque marker (every xattr form, or `.wh..wh..opq`). */
  async isOpaque(_ctx: RequestContext, ino: number): Promise<boolean> {
    const n = this.inode(ino);
    if (!isDir(n)) return false;
    for (const x of OPAQUE_XATTRS) {
      const v = n.xattrs.get(x);
      if (v && v.length === 1 && v[0] === 0x79) return true;
    }
    return n.entries!.has(OCI_OPAQUE_MARKER);
  }
}

/** The file type of a MemNode. */
export function memNodeType(n: MemNode): FileType {
  return typeOfMode(n.mode);
}
