/**
 * OverlayFs: the union of one optional writable upper layer and one or more read-only lower
 * layers, as a `Filesystem` with the semantics of Linux kernel overlayfs
 * (Documentation/filesystems/overlayfs.rst; where it is silent, what the kernel does).
 *
 * - Lookup goes top-down through the parent's layer stack: a whiteout ends the search (the
 *   name is absent), a non-directory hides everything below, an opaque directory hides what
 *   is below it, directories merge. Each overlay inode (`OvlNode`) holds exactly one lookup
 *   on every layer inode it uses and gives them back when its own count reaches zero.
 * - Inode numbers come from the object's origin (layer index + the layer's `attr.ino`),
 *   packed into one number (see `origin.ts`), recorded on copy-up in the origin xattr, so an
 *   object keeps its ino across copy-up, forget and re-creation of the overlay.
 * - Every change of the upper namespace is serialised by one mutex and staged in the upper's
 *   work directory where it must be atomic (copy-up, whiteouts replacing objects, objects
 *   replacing whiteouts), as the kernel stages them in its workdir.
 * - Permission checks are the kernel's, against the caller's context and the merged
 *   attributes; the layers are called with the mounter's context (`options.mounter`).
 */
import {
  AccessMode, FsError, InodeTable, OpenFlags, compactInt, RenameFlags, ROOT_INO, S_IFCHR, S_IFDIR, S_IFMT,
  S_IFREG, S_ISGID, S_ISUID, S_ISVTX, UTIME_NOW, Whence, checkAccess, checkSticky, inGroup,
  isOwnerOrRoot, killPriv, lookupIfExists, mayAccess, opensForWrite, passesWithoutOwnership, processContext, typeOfMode, validateName,
  type Attr, type CreateResult, type DirEntry, type Entry, type ErrnoCode, type FileType,
  type Filesystem, type KernelCaching, type Layer, type OpenResult, type Ownership, type RequestContext, type SetattrRequest,
  type StatFs,
} from '@layerfs/core';
import { Mutex } from './mutex.js';
import {
  FALLBACK_INO_BASE, decodeOrigin, encodeOrigin, originKey, packIno, parseOriginKey, type Origin,
} from './origin.js';

/** Shared (frozen) mode/owner/group triples: a tree has few distinct ones. */
const OWNERSHIPS = new Map<string, Ownership>();
/** Bound of `OWNERSHIPS`: past it, triples are no longer shared. */
const OWNERSHIPS_MAX = 4096;

/** Mode, owner and group of `a`, without the rest (kept for permission checks): shared. */
function ownershipOf(a: Attr): Ownership {
  const k = `${a.mode}:${a.uid}:${a.gid}`;
  let o = OWNERSHIPS.get(k);
  if (o === undefined) {
    o = Object.freeze({ mode: a.mode, uid: a.uid, gid: a.gid });
    if (OWNERSHIPS.size < OWNERSHIPS_MAX) OWNERSHIPS.set(k, o);
  }
  return o;
}

/** Options of an OverlayFs; every field is optional. */
export interface OverlayOptions {
  /**
   * Use the `user.overlay.*` xattr namespace for the overlay's own markers, as the kernel's
   * `-o userxattr` (the upper layer should be configured alike). Default: false
   * (`trusted.overlay.*`).
   */
  userxattr?: boolean;
  /** The `st_dev` reported for every object of the overlay. Default: 0x4f56 ("OV"). */
  dev?: number;
  /**
   * The context the layers are called with (the "mounter", whose credentials the kernel
   * stashes). Default: the current process with umask 0.
   */
  mounter?: RequestContext;
  /** Check the caller's permissions as the kernel does. Default: true. */
  checkPermissions?: boolean;
  /** Remove stale entries from the upper's work directory at create. Default: true. */
  cleanWorkdir?: boolean;
  /** Call `destroy()` on every layer when the overlay is destroyed. Default: false. */
  destroyLayers?: boolean;
  /**
   * How many inodes whose every lookup was forgotten stay cached (with the layer lookups
   * they hold), as the kernel's dentry cache keeps unused dentries: the next lookup of the
   * name needs no layer call. Directories are kept up to this many; other objects (files,
   * symlinks …), which the kernel caches itself when mounted and which a scan passes once
   * each, up to a sixteenth of it (`othersCacheFor`: at least min(this, 64), at most 1024 by
   * default). `dropCaches()` releases them. Default: 16384; 0 disables.
   */
  inodeCache?: number;
  /**
   * Keep the attributes of non-directories between requests. Off, a file's attributes are
   * read from its layer whenever needed and dropped after each reply: for a transport whose
   * kernel caches attributes itself and holds a lookup on every inode it saw (the low-level
   * FUSE transport), that is most of what each such inode costs (the bench's memory workload
   * on that transport at 100,000 files, with the lowers array below sized to its length too:
   * 2,280 → 1,481 B per inode). Default: on, except while a `watchAttrs` listener registered
   * with `{ holdsInodes: true }` (the low-level transport does) is in place.
   */
  cacheFileAttrs?: boolean;
}

/** What `OverlayFs.create` takes. */
export interface OverlayConfig {
  /** The writable upper layer; without one the overlay is read-only (EROFS). */
  upper?: Layer;
  /** The read-only lower layers, top first. At least one. */
  lowers: readonly Layer[];
  /** Options (see `OverlayOptions`). */
  options?: OverlayOptions;
}

/** One layer inode an overlay inode uses (one lookup held in `layer` unless `pinned`). */
interface RealRef {
  readonly layer: Layer;
  /** Index of the layer in the stack (0 = upper when present). */
  readonly idx: number;
  /** The layer's inode number (for calls). */
  readonly ino: number;
  /** The layer's `attr.ino` (identity). */
  readonly attrIno: number;
  /** Layer roots and work dirs: no lookup held. */
  readonly pinned?: boolean;
}

/**
 * A RealRef of an unpinned layer inode whose `attr.ino` is the ino it is called by (a
 * PassthroughLayer's always are): no field for it. One class each way, so small inos stay
 * unboxed (see `InodeTable`).
 */
class Real implements RealRef {
  readonly layer: Layer;
  readonly idx: number;
  readonly ino: number;
  constructor(layer: Layer, idx: number, ino: number) {
    this.layer = layer;
    this.idx = idx;
    // A non-number first: a tagged field (a 64-bit host ino would box every ref's otherwise).
    this.ino = undefined as unknown as number;
    this.ino = compactInt(ino);
  }

  /** The layer's `attr.ino`: the ino itself. */
  get attrIno(): number {
    return this.ino;
  }
}

/** A RealRef whose `attr.ino` differs from the ino it is called by. */
class RealOther extends Real {
  private readonly shown: number;
  constructor(layer: Layer, idx: number, ino: number, attrIno: number) {
    super(layer, idx, ino);
    this.shown = undefined as unknown as number;
    this.shown = compactInt(attrIno);
  }

  /** The layer's `attr.ino`. */
  override get attrIno(): number {
    return this.shown;
  }
}

/** The RealRef of layer inode `ino` (`attrIno`: its `attr.ino`). */
function realRef(layer: Layer, idx: number, ino: number, attrIno: number): RealRef {
  return attrIno === ino ? new Real(layer, idx, ino) : new RealOther(layer, idx, ino, attrIno);
}

/** What a top-down lookup of one name found. */
interface Resolution {
  upper: RealRef | undefined;
  /** Directories: the lower directories merged (top first). Non-directories: the lower object. */
  lowers: RealRef[];
  type: FileType;
  /** The upper directory is marked opaque. */
  opaque: boolean;
  attr: Attr;
  key: string;
}

/**
 * An overlay inode. The fields only directories use (`children`, `impure`, `listing`,
 * `opaque`) are own fields of directories alone: other inodes read the prototype's defaults
 * (most inodes are files; a slot each is 32 bytes per file).
 */
class OvlNode {
  /** Live children by name (directories; other types share one empty map), for lookups without layer calls. */
  declare readonly children: Map<string, OvlNode>;
  /** Other names of the same object (hard links): not pinned. Replaced, never changed in place. */
  aliases: readonly Alias[] = NO_ALIASES;
  /** The primary name was removed (unlink, rmdir, rename over it). */
  removed = false;
  attr: Attr | undefined;
  /**
   * The last attributes read, kept when only times, size or nlink went stale (a change of
   * the directory's entries): mode, owner and group for permission checks. With
   * `cacheFileAttrs` off, a non-directory keeps just these three.
   */
  permAttr: Ownership | undefined;
  /** What `present` made of `attr` (the overlay's view), reused while `attr` is unchanged. */
  shown: Attr | undefined;
  shownFrom: Attr | undefined;
  attrVersion = 0;
  /**
   * The inode number reported (`Attr.ino`, `d_ino`): the ino its identity `key` packs to.
   * It differs from `ino` (the table key callers hold) only after copy-up broke a hard link:
   * the node then reports its upper identity while callers keep using `ino`.
   */
  shownIno: number;
  /** Directory: the upper is marked "impure" (may hold objects with an origin). */
  declare impure: boolean | undefined;
  /**
   * Directory in the lowers only: its listing (without attributes), which cannot change
   * while it has no upper (lowers never change, and a change below copies it up first).
   */
  declare listing: DirListEntry[] | undefined;

  /** The table key callers hold (the node is its own `InodeTable` record). */
  readonly ino: number;
  /** The identity when it is not the origin of the first lower (see `key`). */
  private ownKey: string | undefined;
  /** Lookups held (`InodeTable` record count). */
  lookups = 0;
  readonly type: FileType;
  parent: OvlNode | undefined;
  name: string;
  upper: RealRef | undefined;
  /**
   * The lower objects (see `lowers`): a non-directory's one lower is kept as itself, without
   * an array around it (56 bytes a file), and no lower as one shared empty array.
   */
  private low: RealRef | readonly RealRef[];
  /** Directory: the upper one is opaque (false for every other inode). */
  declare opaque: boolean;

  constructor(ino: number, key: string, type: FileType, parent: OvlNode | undefined, name: string,
    upper: RealRef | undefined, lowers: readonly RealRef[]) {
    // Non-numbers first: tagged fields, so a rare large ino (2^52 and up) boxes no other node's.
    this.ino = undefined as unknown as number;
    this.ino = compactInt(ino);
    this.type = type;
    this.parent = parent;
    this.name = name;
    this.upper = upper;
    this.low = lowers.length === 0 ? NO_LOWERS : lowers.length === 1 && type !== 'directory' ? lowers[0]! : lowers;
    this.ownKey = key === this.lowerKey() ? undefined : key;
    this.shownIno = undefined as unknown as number;
    this.shownIno = this.ino;
  }

  /** The node itself (`InodeTable` record value). */
  get value(): OvlNode {
    return this;
  }

  /**
   * The identity (`InodeTable` record key; the table changes it with `rekey`). Most inodes'
   * is the origin of their first lower: made when asked, not kept (a string less per inode).
   */
  get key(): string {
    return this.ownKey ?? this.lowerKey()!;
  }

  set key(key: string) {
    this.ownKey = key === this.lowerKey() ? undefined : key;
  }

  /** The origin key of the first lower (the lowers never change). */
  private lowerKey(): string | undefined {
    const l = this.firstLower;
    return l === undefined ? undefined : originKey(l.idx, l.attrIno);
  }

  /** Directories: the lower directories merged (top first). Others: the lower object, if any. */
  get lowers(): readonly RealRef[] {
    const l = this.low;
    return Array.isArray(l) ? l as readonly RealRef[] : [l as RealRef];
  }

  /** The first of `lowers` (no array made). */
  get firstLower(): RealRef | undefined {
    const l = this.low;
    return Array.isArray(l) ? (l as readonly RealRef[])[0] : l as RealRef;
  }
}

/** The lowers of every node without any. */
const NO_LOWERS: readonly RealRef[] = Object.freeze([]);

/**
 * A directory: the directory-only fields are its own (a class of its own, so V8 sizes the
 * other inodes without room for them).
 */
class OvlDir extends OvlNode {
  constructor(ino: number, key: string, parent: OvlNode | undefined, name: string,
    upper: RealRef | undefined, lowers: readonly RealRef[], opaque: boolean) {
    super(ino, key, 'directory', parent, name, upper, lowers);
    (this as { children: Map<string, OvlNode> }).children = new Map();
    this.impure = undefined;
    this.listing = undefined;
    this.opaque = opaque;
  }
}

/** A new node of type `type` (an OvlDir for a directory). */
function newNode(ino: number, key: string, type: FileType, parent: OvlNode | undefined, name: string,
  upper: RealRef | undefined, lowers: readonly RealRef[], opaque: boolean): OvlNode {
  if (type === 'directory') return new OvlDir(ino, key, parent, name, upper, lowers, opaque);
  const n = new OvlNode(ino, key, type, parent, name, upper, lowers);
  if (opaque) n.opaque = true;
  return n;
}

/** Another name of a node (`OvlNode.aliases`). */
interface Alias { parent: OvlNode; name: string }
/** The aliases of every node without any (most): one shared frozen array. */
const NO_ALIASES: readonly Alias[] = Object.freeze([]);

/** `list` as a node's aliases (the shared empty array when empty). */
function aliasList(list: readonly Alias[]): readonly Alias[] {
  return list.length === 0 ? NO_ALIASES : list;
}

/** The children map of every non-directory: always empty (only directories get children). */
const NO_CHILDREN: Map<string, OvlNode> = new Map();
// What a non-directory reads for the directory-only fields (see OvlNode).
Object.assign(OvlNode.prototype, { children: NO_CHILDREN, impure: undefined, listing: undefined, opaque: false });

interface FileHandleState {
  readonly node: OvlNode;
  real: RealRef;
  fh: number;
  readonly flags: number;
}

interface DirListEntry {
  name: string; type: FileType; ino: number; top: RealRef; dino: number; attr?: Attr;
  /** A directory with same-name directories below its top one (merged unless the top is opaque). */
  mergeable: boolean;
}
interface DirHandleState {
  readonly node: OvlNode;
  entries: DirListEntry[] | undefined;
  plus: boolean;
}

/** One name of a merged listing. */
interface Listed {
  readonly name: string;
  whiteout: boolean;
  closed: boolean;
  type: FileType;
  /** The topmost layer directory entry. */
  top: { dir: RealRef; dino: number; attr?: Attr } | undefined;
  lowerDirs: number;
  /** The first directory below the top one that merges with it. */
  firstLower?: { idx: number; dino: number };
}

/**
 * A Map bounded to `max` entries: adding to a full one evicts the oldest entry. Cheaper per
 * call than a true LRU; enough for caches of facts that stay true (or are invalidated
 * explicitly) where an evicted entry only costs one layer call again.
 */
class BoundedMap<K, V> extends Map<K, V> {
  constructor(private readonly max: number) {
    super();
  }

  override set(key: K, value: V): this {
    if (this.size >= this.max && !this.has(key)) this.delete(this.keys().next().value as K);
    return super.set(key, value);
  }
}

/**
 * How many forgotten non-directories the inode cache keeps when it keeps `dirs` directories:
 * a sixteenth, at least min(dirs, 64). Each costs a few KB of heap (the node, its
 * attributes, its table records and layer inodes), and one kept past a few thousand lookups
 * is promoted to V8's old generation, where it lingers as garbage once evicted: a scan of a
 * large tree through a large cache of files grew the heap by hundreds of MB.
 */
export function othersCacheFor(dirs: number): number {
  return Math.min(dirs, Math.max(64, Math.floor(dirs / 16)));
}

const O_ACCMODE = OpenFlags.O_ACCMODE;
/** The most directory entries the listings of lower-only directories keep in all. */
const LISTING_MAX = 65536;
const CHUNK = 1 << 20;
const HOLE_BLOCK = 1 << 16;
const SOFT_COPY_ERRORS = new Set(['EXDEV', 'ENOSYS', 'EOPNOTSUPP', 'ENOTSUP', 'EINVAL']);
const OVERLAY_PREFIXES = ['trusted.overlay.', 'user.overlay.', 'user.fuseoverlayfs.'];
let tmpCounter = 0;

function codeOf(e: unknown): string | undefined {
  return e && typeof e === 'object' && typeof (e as { code?: unknown }).code === 'string' ? (e as { code: string }).code : undefined;
}

function fsErr(code: ErrnoCode, detail?: string): FsError {
  return FsError.of(code, detail);
}

/**
 * The union filesystem. Create with `OverlayFs.create({ upper, lowers, options })`; use it
 * through `new Volume(ov)` or mount it with `@layerfs/fuse`.
 */
export class OverlayFs implements Filesystem {
  /** The writable upper layer, if any. */
  readonly upper: Layer | undefined;
  /** The lower layers, top first. */
  readonly lowers: readonly Layer[];
  /** Every layer by stack index: the upper (when present) first, then the lowers. */
  readonly layers: readonly Layer[];
  /** The `st_dev` of every object. */
  readonly dev: number;
  /** The xattr prefix of the overlay's own markers (`trusted.overlay.` or `user.overlay.`). */
  readonly xattrPrefix: string;
  private readonly m: RequestContext;
  private readonly checkPerms: boolean;
  /** `OverlayOptions.cacheFileAttrs` as given (undefined: decided by `kernelHolders`). */
  private readonly cacheFileAttrsOption: boolean | undefined;
  /** `watchAttrs` listeners whose kernel holds every inode (`KernelCaching.holdsInodes`). */
  private kernelHolders = 0;
  private readonly destroyLayers: boolean;
  private readonly table: InodeTable<OvlNode>;
  /** `watchAttrs` listeners: told of inodes a copy-up changed. */
  private readonly attrWatchers = new Set<(ino: number) => void>();
  private readonly root: OvlNode;
  private readonly ns = new Mutex();
  /** Bumped when a namespace change starts and when it ends (odd: one is in progress). */
  private nsGen = 0;
  private readonly files = new Map<number, FileHandleState>();
  private readonly dirs = new Map<number, DirHandleState>();
  private nextFh = 1;
  private readonly fallbackInos = new Map<string, number>();
  private nextFallback = FALLBACK_INO_BASE;
  /** Upper `attr.ino` → identity key, for objects whose key needs the origin xattr. */
  private readonly upperKeys = new BoundedMap<number, string>(262144);
  private destroyed = false;
  /** Opaque state of layer directories (`idx:attrIno`); lowers never change, the upper only through us. */
  private readonly opaqueCache = new BoundedMap<string, boolean>(65536);
  /** Names known absent from a lower directory (`idx:dirAttrIno/name`): lowers never change. */
  private readonly lowerMisses = new BoundedMap<string, true>(65536);
  /** Names known absent from an upper directory, valid while `nsGen` is the recorded value. */
  private readonly upperMisses = new BoundedMap<string, number>(65536);
  /**
   * Unreferenced inodes kept (least recently used first), each holding one table lookup of
   * its own; directories and others apart so a scan of many files keeps the directories.
   */
  private readonly cachedDirs = new Map<OvlNode, true>();
  private readonly cachedOthers = new Map<OvlNode, true>();
  /** Bound of `cachedDirs`. */
  private readonly cacheMax: number;
  /** Bound of `cachedOthers`. */
  private readonly othersMax: number;
  /** Copy-ups in progress (few at a time: not a field of every node). */
  private readonly copying = new Map<OvlNode, Promise<void>>();
  /** Entries held by the listings of lower-only directories (bounded by `LISTING_MAX`). */
  private listedEntries = 0;

  private constructor(config: OverlayConfig) {
    if (config.lowers.length === 0) throw new FsError('EINVAL', { detail: 'an overlay needs at least one lower layer' });
    const o = config.options ?? {};
    this.upper = config.upper;
    this.lowers = [...config.lowers];
    this.layers = config.upper ? [config.upper, ...config.lowers] : [...config.lowers];
    this.dev = o.dev ?? 0x4f56;
    this.xattrPrefix = o.userxattr ? 'user.overlay.' : 'trusted.overlay.';
    this.m = o.mounter ?? processContext(0);
    this.checkPerms = o.checkPermissions ?? true;
    this.cacheFileAttrsOption = o.cacheFileAttrs;
    this.destroyLayers = o.destroyLayers ?? false;
    this.cacheMax = Math.max(0, o.inodeCache ?? 16384);
    this.othersMax = othersCacheFor(this.cacheMax);
    const reals = this.layers.map((layer, idx): RealRef => ({ layer, idx, ino: layer.rootIno, attrIno: 0, pinned: true }));
    const upperRoot = config.upper ? reals[0] : undefined;
    const lowerRoots = config.upper ? reals.slice(1) : reals;
    this.root = newNode(ROOT_INO, 'root', 'directory', undefined, '', upperRoot, lowerRoots, false);
    const layerCount = this.layers.length;
    this.table = new InodeTable<OvlNode>('root', this.root, {
      firstIno: FALLBACK_INO_BASE + 2 ** 50,
      ownRecords: true,
      inoOfKey: (key) => {
        const o = parseOriginKey(key);
        return o ? packIno(o.layer, o.ino, layerCount) : undefined;
      },
    });
  }

  /** Build an overlay over `upper` (optional) and `lowers` (top first). */
  static async create(config: OverlayConfig): Promise<OverlayFs> {
    const ov = new OverlayFs(config);
    if (ov.upper && !ov.upper.writable) throw new FsError('EINVAL', { detail: 'the upper layer is not writable' });
    if (ov.upper && ov.upper.workIno !== undefined && (config.options?.cleanWorkdir ?? true)) {
      await ov.cleanDir(ov.upper, ov.upper.workIno);
    }
    return ov;
  }

  // ---------------------------------------------------------------- bookkeeping

  /** Run a change of the upper namespace under the mutex, marking it in `nsGen`. */
  private mutate<T>(fn: () => Promise<T>): Promise<T> {
    return this.ns.run(async () => {
      this.nsGen++;
      try {
        return await fn();
      } finally {
        this.nsGen++;
      }
    });
  }

  /**
   * Inodes in the overlay's table that a caller holds a lookup on, the root included (1 once
   * every lookup is forgotten); inodes kept only by the inode cache are not counted.
   */
  liveInodes(): number {
    // A cached inode holds one lookup of its own and one on its parent: an inode is live
    // when a lookup beyond those is held on it or on one of its descendants.
    const pins = new Map<OvlNode, number>();
    for (const r of this.table.records()) {
      const p = r.value.parent;
      if (p) pins.set(p, (pins.get(p) ?? 0) + 1);
    }
    const live = new Set<OvlNode>();
    for (const r of this.table.records()) {
      const n = r.value;
      const own = r.lookups - (pins.get(n) ?? 0) - (this.cacheOf(n).has(n) ? 1 : 0);
      if (own <= 0 && r.ino !== ROOT_INO) continue;
      for (let x: OvlNode | undefined = n; x && !live.has(x); x = x.parent) live.add(x);
    }
    return live.size;
  }

  /** Inodes kept by the inode cache (no caller holds a lookup on them). */
  cachedInodes(): number {
    return this.cachedDirs.size + this.cachedOthers.size;
  }

  /**
   * Release every cached unreferenced inode and the layer lookups it holds (as the kernel's
   * `drop_caches`): afterwards the layers' tables hold only what live inodes use.
   */
  async dropCaches(): Promise<void> {
    while (this.cachedDirs.size + this.cachedOthers.size > 0) {
      for (const m of [this.cachedOthers, this.cachedDirs]) {
        for (const n of [...m.keys()]) await this.uncache(n);
      }
    }
  }

  private cacheOf(n: OvlNode): Map<OvlNode, true> {
    return n.type === 'directory' ? this.cachedDirs : this.cachedOthers;
  }

  /** Take `n` out of the inode cache and give back the cache's lookup. */
  private async uncache(n: OvlNode): Promise<void> {
    if (!this.cacheOf(n).delete(n)) return;
    const r = this.table.forget(n.ino, 1);
    if (r.dropped && r.value) await this.dropNode(r.value);
  }

  /** An inode worth keeping once unreferenced: reachable by a name, not removed. */
  private cacheable(n: OvlNode): boolean {
    return this.cacheMax > 0 && !this.destroyed && !n.removed && n.parent !== undefined
      && n.parent.children.get(n.name) === n;
  }

  /** The stack of layer directories a directory node merges (upper first). */
  private stackOf(n: OvlNode): readonly RealRef[] {
    return n.upper ? [n.upper, ...n.lowers] : n.lowers;
  }

  private node(ino: number): OvlNode {
    return this.table.require(ino).value;
  }

  private dirNode(ino: number): OvlNode {
    const n = this.node(ino);
    if (n.type !== 'directory') throw fsErr('ENOTDIR');
    return n;
  }

  /**
   * A merged directory (kernel OVL_TYPE_MERGE): an upper with at least one lower below it,
   * or two or more lowers. The kernel reports nlink 1 for these (ovl_getattr).
   */
  private isMerged(n: OvlNode): boolean {
    return n.type === 'directory' && (n.upper !== undefined ? n.lowers.length > 0 : n.lowers.length > 1);
  }

  private async forgetReal(r: RealRef | undefined): Promise<void> {
    if (r && !r.pinned) await r.layer.forget(this.m, r.ino, 1);
  }

  private async releaseResolution(res: Resolution): Promise<void> {
    await this.forgetReal(res.upper);
    for (const l of res.lowers) await this.forgetReal(l);
  }

  private preferredIno(key: string): number {
    const f = this.fallbackInos.get(key);
    if (f !== undefined) return f;
    const o = parseOriginKey(key);
    const packed = o ? packIno(o.layer, o.ino, this.layers.length) : undefined;
    if (packed !== undefined) return packed;
    const ino = this.nextFallback++;
    this.fallbackInos.set(key, ino);
    return ino;
  }

  /** The ino an object with identity `key` reports, or will report when looked up. */
  private inoForKey(key: string): number {
    const ino = this.table.byIdentity(key);
    return ino !== undefined ? this.table.require(ino).value.shownIno : this.preferredIno(key);
  }

  /** Take one overlay lookup on `n` (a cached inode's lookup is handed over). */
  private ref(n: OvlNode): void {
    if (!this.cacheOf(n).delete(n)) this.table.ref(n.ino, 1);
  }

  /**
   * Give back `count` lookups of `n`; release it (and maybe its parents) at zero, unless
   * the inode cache takes the last lookup over.
   */
  private async unref(n: OvlNode, count = 1): Promise<void> {
    const rec = this.table.get(n.ino);
    if (rec && rec.value === n && count === rec.lookups && this.cacheable(n)) {
      const cache = this.cacheOf(n);
      rec.lookups = 1;
      cache.set(n, true);
      if (cache.size > (cache === this.cachedDirs ? this.cacheMax : this.othersMax)) await this.uncache(cache.keys().next().value!);
      return;
    }
    const r = this.table.forget(n.ino, count);
    if (r.dropped && r.value) await this.dropNode(r.value);
  }

  private async dropNode(n: OvlNode): Promise<void> {
    this.forgetListing(n);
    if (n.parent && n.parent.children.get(n.name) === n) n.parent.children.delete(n.name);
    for (const a of n.aliases) if (a.parent.children.get(a.name) === n) a.parent.children.delete(a.name);
    n.aliases = NO_ALIASES;
    await this.forgetReal(n.upper);
    for (const l of n.lowers) await this.forgetReal(l);
    const p = n.parent;
    n.parent = undefined;
    if (p) await this.unref(p);
  }

  private forgetListing(n: OvlNode): void {
    if (n.listing === undefined) return;
    this.listedEntries -= n.listing.length;
    n.listing = undefined;
  }

  private invalidate(n: OvlNode | undefined): void {
    if (!n) return;
    n.attr = undefined;
    n.permAttr = undefined;
    n.attrVersion++;
  }

  /** Tell the `watchAttrs` listeners that `n`'s attributes changed as a side effect (copy-up). */
  private changedAside(n: OvlNode): void {
    for (const l of this.attrWatchers) l(n.ino);
  }

  /**
   * Register a listener for inodes whose attributes a copy-up changed (the `Filesystem`
   * contract). While a listener whose kernel holds every inode is registered, files keep no
   * attributes between requests (unless `cacheFileAttrs` says otherwise).
   */
  watchAttrs(listener: (ino: number) => void, kernel?: KernelCaching): () => void {
    const wrapped = (ino: number) => listener(ino);
    this.attrWatchers.add(wrapped);
    const holds = kernel?.holdsInodes === true;
    if (holds) this.kernelHolders++;
    return () => {
      if (this.attrWatchers.delete(wrapped) && holds) this.kernelHolders--;
    };
  }

  /** Whether non-directories keep their attributes between requests (`cacheFileAttrs`). */
  private get cacheFileAttrs(): boolean {
    return this.cacheFileAttrsOption ?? this.kernelHolders === 0;
  }

  /**
   * A directory's entries or a file's data changed: its times, size and nlink are stale, not
   * its mode or owner.
   */
  private touch(n: OvlNode): void {
    n.attr = undefined;
    n.attrVersion++;
  }

  /**
   * Before a write, after a truncate or an O_TRUNC open by a caller without CAP_FSETID (uid ≠ 0,
   * as the layers judge it): drop set-user-ID, and set-group-ID with group-execute, as the
   * kernel's file_remove_privs does at the overlay before it writes through the mounter's
   * credentials (the layers, called as the mounter, would keep them). `mode`: the mode before.
   * Returns the new attributes when it changed the mode.
   */
  private async removePrivs(ctx: RequestContext, n: OvlNode, mode: number, real: RealRef, fh?: number): Promise<Attr | undefined> {
    if (!this.checkPerms || ctx.uid === 0 || n.type !== 'file' || killPriv(mode) === mode) return undefined;
    const a = await real.layer.setattr(this.m, real.ino, { mode: killPriv(mode) & 0o7777 }, fh);
    this.invalidate(n);
    this.changedAside(n);
    return a;
  }

  /** Attributes good for permission checks (mode, uid, gid): possibly with stale times. */
  private async permOf(n: OvlNode): Promise<Ownership> {
    return n.attr ?? n.permAttr ?? this.realAttr(n);
  }

  /** The real attributes of the object (upper, else top lower), cached until a change. */
  private async realAttr(n: OvlNode): Promise<Attr> {
    if (n.attr) return n.attr;
    const r = n.upper ?? n.firstLower;
    if (!r) throw fsErr('ESTALE');
    const v = n.attrVersion;
    const a = await r.layer.getattr(this.m, r.ino);
    if (n.attrVersion === v) {
      if (this.cacheFileAttrs || n.type === 'directory') { n.attr = a; n.permAttr = a; } else n.permAttr = ownershipOf(a);
    }
    return a;
  }

  /**
   * Drop a non-directory's cached attributes (`cacheFileAttrs` off), once they were handed out;
   * mode, owner and group stay for permission checks (no layer call per open).
   */
  private shed(n: OvlNode): void {
    if (this.cacheFileAttrs || n.type === 'directory') return;
    if (n.attr) n.permAttr = ownershipOf(n.attr);
    n.attr = undefined;
    n.shown = undefined;
    n.shownFrom = undefined;
  }

  private present(n: OvlNode, a: Attr): Attr {
    if (n.shownFrom === a && n.shown) return n.shown;
    const shown: Attr = {
      ino: n.shownIno, dev: this.dev, mode: a.mode, nlink: this.isMerged(n) ? 1 : a.nlink, uid: a.uid, gid: a.gid,
      rdev: a.rdev, size: a.size, blocks: a.blocks, blksize: a.blksize, atime: a.atime, mtime: a.mtime, ctime: a.ctime,
      ...(a.birthtime !== undefined ? { birthtime: a.birthtime } : {}),
    };
    if (a === n.attr) { n.shown = shown; n.shownFrom = a; }
    return shown;
  }

  private async entryOf(n: OvlNode): Promise<Entry> {
    const e = { ino: n.ino, generation: 0, attr: this.present(n, await this.realAttr(n)) };
    this.shed(n);
    return e;
  }

  private async check(ctx: RequestContext, n: OvlNode, mask: number): Promise<void> {
    if (!this.checkPerms) return;
    if (passesWithoutOwnership(ctx, mask)) return;
    checkAccess(await this.permOf(n), ctx, mask);
  }

  private requireUpper(): Layer {
    if (!this.upper) throw fsErr('EROFS');
    return this.upper;
  }

  private tempName(): string {
    return `#layerfs-${process.pid.toString(16)}-${(tmpCounter++).toString(16)}`;
  }

  // ---------------------------------------------------------------- lookup

  /** Look `name` up top-down in the stack of directory `p`. */
  private async resolve(p: OvlNode, name: string): Promise<{ res?: Resolution; upperWhiteout: boolean }> {
    const stack = this.stackOf(p);
    let upper: RealRef | undefined;
    const lowers: RealRef[] = [];
    let first: { ref: RealRef; attr: Attr; type: FileType } | undefined;
    let opaque = false;
    let upperWhiteout = false;
    try {
      for (let i = 0; i < stack.length; i++) {
        const d = stack[i]!;
        const e = await this.layerLookup(d, name);
        if (!e) continue;
        const ref: RealRef = realRef(d.layer, d.idx, e.ino, e.attr.ino);
        const isUpper = this.upper !== undefined && d.idx === 0;
        if (e.whiteout) {
          await this.forgetReal(ref);
          if (isUpper) upperWhiteout = true;
          break;
        }
        const t = typeOfMode(e.attr.mode);
        if (!first) {
          first = { ref, attr: e.attr, type: t };
          if (isUpper) upper = ref; else lowers.push(ref);
          if (t !== 'directory') break;
          if (i < stack.length - 1 && await this.opaqueOf(d.layer, d.idx, e.ino, e.attr.ino)) {
            opaque = isUpper;
            break;
          }
        } else {
          if (t !== 'directory') { await this.forgetReal(ref); break; }
          lowers.push(ref);
          if (i < stack.length - 1 && await this.opaqueOf(d.layer, d.idx, e.ino, e.attr.ino)) break;
        }
      }
      if (!first) return { upperWhiteout };
      const key = await this.keyOf(upper, lowers, first.type);
      // A copy sized to its length: the array built by push keeps room for 17 (kept per inode).
      return { res: { upper, lowers: lowers.slice(), type: first.type, opaque, attr: first.attr, key }, upperWhiteout };
    } catch (err) {
      await this.forgetReal(upper);
      for (const l of lowers) await this.forgetReal(l);
      throw err;
    }
  }

  private async opaqueOf(layer: Layer, idx: number, ino: number, attrIno: number): Promise<boolean> {
    const k = `${idx}:${attrIno}`;
    const c = this.opaqueCache.get(k);
    if (c !== undefined) return c;
    const v = await layer.isOpaque(this.m, ino);
    this.opaqueCache.set(k, v);
    return v;
  }

  /** Mark an upper directory opaque (or not), keeping the cache true. */
  private async setUpperOpaque(ino: number, attrIno: number, v: boolean): Promise<void> {
    this.opaqueCache.delete(`0:${attrIno}`);
    await this.requireUpper().setOpaque(this.m, ino, v);
  }

  /**
   * A layer lookup that is undefined for a missing name. Misses are cached: for lowers for
   * good (they never change), for the upper until the next namespace change (`nsGen`).
   */
  private async layerLookup(d: RealRef, name: string): Promise<Entry | undefined> {
    const lower = !(this.upper !== undefined && d.idx === 0);
    const k = `${d.idx}:${d.attrIno}/${name}`;
    if (lower ? this.lowerMisses.has(k) : this.upperMisses.get(k) === this.nsGen && this.nsGen % 2 === 0) return undefined;
    const gen = this.nsGen;
    let e: Entry | undefined;
    try {
      e = await lookupIfExists(d.layer, this.m, d.ino, name);
    } catch (err) {
      const c = codeOf(err);
      if (c !== 'ENOENT' && c !== 'ENOTDIR') throw err;
    }
    if (!e) {
      if (lower) this.lowerMisses.set(k, true);
      else if (gen === this.nsGen && gen % 2 === 0) this.upperMisses.set(k, gen);
    }
    return e;
  }

  /** The identity of an object from what a lookup found (reading the origin xattr if needed). */
  private async keyOf(upper: RealRef | undefined, lowers: RealRef[], type: FileType): Promise<string> {
    if (!upper) return originKey(lowers[0]!.idx, lowers[0]!.attrIno);
    if (type === 'directory') {
      return lowers.length > 0 ? originKey(lowers[0]!.idx, lowers[0]!.attrIno) : originKey(0, upper.attrIno);
    }
    const cached = this.upperKeys.get(upper.attrIno);
    if (cached !== undefined) return cached;
    let key = originKey(0, upper.attrIno);
    const o = await this.readOrigin(upper);
    if (o && !o.hardlink && o.layer > 0 && o.layer < this.layers.length && this.upper) key = originKey(o.layer, o.ino);
    this.upperKeys.set(upper.attrIno, key);
    return key;
  }

  private async readOrigin(r: RealRef): Promise<Origin | undefined> {
    try {
      return decodeOrigin(await r.layer.getxattr(this.m, r.ino, `${this.xattrPrefix}origin`));
    } catch {
      return undefined;
    }
  }

  /** True when the node and a resolution describe the same object. */
  private sameObject(n: OvlNode, res: Resolution): boolean {
    if (n.type !== res.type) return false;
    if (n.upper || res.upper) return n.upper?.attrIno === res.upper?.attrIno;
    return true;
  }

  /** The node for what `resolve` found at (p, name), with one overlay lookup taken. */
  private attachResolution(p: OvlNode, name: string, res: Resolution): { node: OvlNode; created: boolean } {
    let key = res.key;
    const existingIno = this.table.byIdentity(key);
    const existing = existingIno !== undefined ? this.table.get(existingIno)?.value : undefined;
    if (existing && !this.sameObject(existing, res)) key = `${key}#${res.upper ? `u${res.upper.attrIno}` : 'l'}`;
    const shown = this.table.byIdentity(key) === undefined ? this.preferredIno(key) : undefined;
    const { record, created } = this.table.acquire(key, (ino) => newNode(
      ino, key, res.type, p, name, res.upper, res.lowers, res.opaque,
    ), 1, shown);
    if (created) {
      // The table key differs from the reported ino only while a node whose hard link was
      // broken by copy-up still holds this object's ino as its table key.
      if (shown !== undefined) record.value.shownIno = compactInt(shown);
      this.ref(p);
      p.children.set(name, record.value);
      record.value.attr = res.attr;
      return { node: record.value, created };
    }
    const n = record.value;
    // A cached inode: the cache's lookup goes to the caller with the one just added.
    if (this.cacheOf(n).delete(n)) record.lookups--;
    if (!(n.parent === p && n.name === name) && !n.aliases.some((a) => a.parent === p && a.name === name)) {
      n.aliases = [...n.aliases, { parent: p, name }];
    }
    p.children.set(name, n);
    return { node: n, created };
  }

  /**
   * Find `name` in `p`: a node with one lookup taken, or undefined. `probe`, when given,
   * learns whether the upper holds a whiteout at the name (when it had to be resolved).
   */
  private async lookupChild(p: OvlNode, name: string, inside = false, probe?: { upperWhiteout: boolean }): Promise<OvlNode | undefined> {
    for (let attempt = 0; ; attempt++) {
      const cached = p.children.get(name);
      if (cached && this.table.get(cached.ino)?.value === cached) {
        this.ref(cached);
        await this.makePrimary(cached, p, name);
        return cached;
      }
      // Lookups do not wait for a change in progress (a long copy-up must not stall them):
      // every intermediate state of a change is a valid overlay, and a resolution that
      // straddles the start or end of a change is done again.
      const gen = this.nsGen;
      const { res, upperWhiteout } = await this.resolve(p, name);
      if (!inside && this.nsGen !== gen && attempt < 8) {
        // The namespace changed while resolving: the result may describe a moved object.
        if (res) await this.releaseResolution(res);
        continue;
      }
      if (probe) probe.upperWhiteout = upperWhiteout;
      if (!res) return undefined;
      return this.attachFound(p, name, res);
    }
  }

  private async attachFound(p: OvlNode, name: string, res: Resolution): Promise<OvlNode> {
    const { node, created } = this.attachResolution(p, name, res);
    if (!created) {
      await this.releaseResolution(res);
      await this.makePrimary(node, p, name);
    }
    return node;
  }

  /**
   * A lower hard link reached by another name: that name becomes its primary one (the name
   * a copy-up will use), as a fresh node looked up by it would have, so a kept node copies up
   * the name it was last looked up by.
   */
  private async makePrimary(n: OvlNode, p: OvlNode, name: string): Promise<void> {
    if (n.upper || n.type === 'directory' || !n.parent || (n.parent === p && n.name === name)) return;
    const oldP = n.parent;
    const others = n.aliases.filter((a) => !(a.parent === p && a.name === name));
    n.aliases = n.removed ? aliasList(others) : [...others, { parent: oldP, name: n.name }];
    this.ref(p);
    n.parent = p;
    n.name = name;
    n.removed = false;
    await this.unref(oldP);
  }

  /** Lookup with the caller's checks: `p` a live directory, search permission. */
  private async lookupFor(ctx: RequestContext, p: OvlNode, name: string, inside = false, probe?: { upperWhiteout: boolean }): Promise<OvlNode | undefined> {
    validateName(name);
    await this.check(ctx, p, AccessMode.X_OK);
    if (p.removed) return undefined;
    return this.lookupChild(p, name, inside, probe);
  }

  /** Resolve `name` in `p` and report whether the upper holds a whiteout there (no lookup kept). */
  private async probeWhiteout(p: OvlNode, name: string): Promise<boolean> {
    if (!p.upper || !this.upper) return false;
    try {
      return await this.upper.isWhiteout(this.m, p.upper.ino, name);
    } catch {
      return false;
    }
  }

  /** True when `name` in `p` exists in a lower layer (kernel `ovl_lower_positive`). */
  private async lowerPositive(p: OvlNode, name: string, child: OvlNode | undefined): Promise<boolean> {
    if (child && !child.upper) return true;
    for (const d of p.lowers) {
      let e: Entry | undefined;
      try {
        e = await this.layerLookup(d, name);
      } catch (err) {
        if (codeOf(err) === 'ENAMETOOLONG') continue;
        throw err;
      }
      if (!e) continue;
      await d.layer.forget(this.m, e.ino, 1);
      return !e.whiteout;
    }
    return false;
  }

  /** Every live name of a node (the primary first). */
  private liveName(n: OvlNode): { parent: OvlNode; name: string } | undefined {
    if (n.parent && !n.removed && n.parent.children.get(n.name) === n) return { parent: n.parent, name: n.name };
    for (const a of n.aliases) {
      if (this.table.get(a.parent.ino)?.value === a.parent && a.parent.children.get(a.name) === n) return a;
    }
    return undefined;
  }

  /** Detach the name (p, name) from node `n` after it was removed or moved away. */
  private async detachName(n: OvlNode, p: OvlNode, name: string): Promise<void> {
    if (p.children.get(name) === n) p.children.delete(name);
    if (n.parent === p && n.name === name) {
      const alias = n.aliases.find((a) => this.table.get(a.parent.ino)?.value === a.parent && a.parent.children.get(a.name) === n);
      if (alias) {
        n.aliases = aliasList(n.aliases.filter((a) => a !== alias));
        // Move the primary name (and its pin) to the alias.
        const old = n.parent;
        this.ref(alias.parent);
        n.parent = alias.parent;
        n.name = alias.name;
        await this.unref(old);
      } else {
        n.removed = true;
      }
    } else {
      n.aliases = aliasList(n.aliases.filter((a) => !(a.parent === p && a.name === name)));
    }
  }

  // ---------------------------------------------------------------- copy-up

  /** Make sure `n` exists in the upper layer (parents first). Caller holds the ns mutex. */
  private async copyUp(n: OvlNode, withData = true, at?: { parent: OvlNode; name: string }): Promise<void> {
    if (n.upper) return;
    this.requireUpper();
    const running = this.copying.get(n);
    if (running) return running;
    const p = (async () => {
      const where = at ?? this.liveName(n);
      if (!where) throw fsErr('ENOENT', 'the object has no name left to copy up to');
      await this.copyUp(where.parent);
      await this.copyUpOne(n, where.parent, where.name, withData);
    })();
    this.copying.set(n, p);
    try {
      await p;
    } finally {
      this.copying.delete(n);
    }
  }

  private async copyUpOne(n: OvlNode, parent: OvlNode, name: string, withData: boolean): Promise<void> {
    const up = this.requireUpper();
    const src = n.firstLower!;
    const sa = await src.layer.getattr(this.m, src.ino);
    const updir = parent.upper!.ino;
    // The kernel restores the upper parent's times after a copy-up (ovl_set_timestamps).
    const pa = await up.getattr(this.m, updir);
    const stage = up.workIno ?? updir;
    const tmp = this.tempName();
    // Staged in the work directory (unreachable until the rename), the copy is made with its
    // final permissions plus owner write (an unprivileged owner needs it to set user xattrs),
    // so most copies need no chmod after; a file's set-ID bits come after its data and owner,
    // as a write or a chown would drop them. Staged in place, it stays private (0600/0700)
    // until its attributes are set.
    const perm = sa.mode & 0o7777;
    const first = stage !== updir ? perm | 0o200 : n.type === 'directory' ? 0o700 : 0o600;
    let entry: Entry | undefined;
    try {
      switch (n.type) {
        case 'file': {
          const c = await up.create(this.m, stage, tmp, first & 0o1777, OpenFlags.O_WRONLY | OpenFlags.O_CREAT | OpenFlags.O_EXCL);
          entry = c.entry;
          try {
            if (withData && sa.size > 0) await this.copyData(src, up, entry.ino, c.fh, sa.size);
          } finally {
            await up.release(this.m, entry.ino, c.fh);
          }
          break;
        }
        case 'directory':
          entry = await up.mkdir(this.m, stage, tmp, first);
          break;
        case 'symlink':
          entry = await up.symlink(this.m, stage, tmp, await src.layer.readlink(this.m, src.ino));
          break;
        default:
          entry = await up.mknod(this.m, stage, tmp, sa.mode, sa.rdev);
      }
      const ei = entry.ino;
      await this.copyXattrs(src, up, ei, n.type);
      if (n.type !== 'directory') {
        await up.setxattr(this.m, ei, `${this.xattrPrefix}origin`,
          encodeOrigin({ layer: src.idx, ino: src.attrIno, hardlink: sa.nlink > 1 }), 0).catch(() => undefined);
      }
      if (entry.attr.uid !== sa.uid || entry.attr.gid !== sa.gid) {
        await up.setattr(this.m, ei, { uid: sa.uid, gid: sa.gid }).catch((e) => { if (n.type !== 'symlink') throw e; });
      }
      // Mode (when the creation did not give it) and times in one call (a chmod changes neither
      // time); a symlink gets times only.
      if (n.type !== 'symlink') {
        const mode = (entry.attr.mode & 0o7777) !== perm || (n.type === 'file' && perm & 0o6000) ? { mode: perm } : {};
        await up.setattr(this.m, ei, { ...mode, atime: sa.atime, mtime: sa.mtime });
      } else {
        await up.setattr(this.m, ei, { atime: sa.atime, mtime: sa.mtime }).catch(() => undefined);
      }
      await up.rename(this.m, stage, tmp, updir, name, stage === updir ? 0 : RenameFlags.NOREPLACE);
    } catch (e) {
      if (entry) {
        await this.removeAny(up, stage, tmp, n.type === 'directory').catch(() => undefined);
        await up.forget(this.m, entry.ino, 1);
      }
      throw e;
    }
    await up.setattr(this.m, updir, { atime: pa.atime, mtime: pa.mtime });
    // The copy's attr.ino is the one its creation reported (a rename or setattr keeps it).
    n.upper = realRef(up, 0, entry.ino, entry.attr.ino);
    this.forgetListing(n);
    this.invalidate(n);
    this.changedAside(n);
    this.changedAside(parent);
    if (n.type !== 'directory') {
      if (sa.nlink > 1) {
        // Copy-up broke a hard link (as the kernel without index): the node now names the
        // upper object; other lower names become their own inodes.
        const key = originKey(0, n.upper.attrIno);
        this.upperKeys.set(n.upper.attrIno, key);
        this.table.rekey(n.ino, key);
        n.key = key;
        // It reports the ino of its upper identity, as it will after re-creation; callers
        // keep its table ino, and the lower object's other names report the lower's ino.
        n.shownIno = compactInt(this.preferredIno(key));
        await this.breakLinks(n, parent, name);
      } else {
        this.upperKeys.set(n.upper.attrIno, n.key);
      }
    }
    this.touch(parent);
  }

  /**
   * After the copy-up of one name of a lower hard link: that name is the node's only name;
   * the other names are forgotten here and looked up afresh (the lower object, a new inode).
   */
  private async breakLinks(n: OvlNode, p: OvlNode, name: string): Promise<void> {
    for (const a of n.aliases) if (a.parent.children.get(a.name) === n) a.parent.children.delete(a.name);
    n.aliases = NO_ALIASES;
    const old = n.parent;
    if (old !== p || n.name !== name) {
      if (old && old.children.get(n.name) === n) old.children.delete(n.name);
      this.ref(p);
      n.parent = p;
      n.name = name;
      if (old) await this.unref(old);
    }
    p.children.set(name, n);
    n.removed = false;
  }

  /** Copy file data from `src` into upper file `dst` (open as `fh`): clone first, else stream keeping holes. */
  private async copyData(src: RealRef, up: Layer, dst: number, fh: number, size: number): Promise<void> {
    if (up.copyUpData) {
      try {
        await up.copyUpData(this.m, { layer: src.layer, ino: src.ino }, dst);
        return;
      } catch (e) {
        if (!SOFT_COPY_ERRORS.has(codeOf(e) ?? '')) throw e;
      }
    }
    const rfh = (await src.layer.open(this.m, src.ino, OpenFlags.O_RDONLY)).fh;
    try {
      // Data segments by SEEK_DATA/SEEK_HOLE where the layer has them (holes are skipped, as
      // the kernel's copy-up does); zero blocks inside segments are skipped too.
      let seek = true;
      let pos = 0;
      while (pos < size) {
        let end = size;
        if (seek) {
          try {
            pos = await src.layer.lseek(this.m, src.ino, rfh, pos, Whence.SEEK_DATA);
            end = Math.min(size, await src.layer.lseek(this.m, src.ino, rfh, pos, Whence.SEEK_HOLE));
          } catch (e) {
            if (codeOf(e) === 'ENXIO') break;
            seek = false;
          }
        }
        while (pos < end) {
          const buf = await src.layer.read(this.m, src.ino, rfh, Math.min(CHUNK, end - pos), pos);
          if (buf.length === 0) { end = pos; size = pos; break; }
          for (let off = 0; off < buf.length; off += HOLE_BLOCK) {
            const block = buf.subarray(off, Math.min(off + HOLE_BLOCK, buf.length));
            if (isZero(block)) continue;
            let done = 0;
            while (done < block.length) done += await up.write(this.m, dst, fh, block.subarray(done), pos + off + done);
          }
          pos += buf.length;
        }
      }
      await up.setattr(this.m, dst, { size }, fh);
    } finally {
      await src.layer.release(this.m, src.ino, rfh);
    }
  }

  private async copyXattrs(src: RealRef, up: Layer, dst: number, type: FileType): Promise<void> {
    let names: string[];
    try {
      names = await src.layer.listxattr(this.m, src.ino);
    } catch {
      return;
    }
    for (const name of names) {
      if (this.isPrivateXattr(name) && !name.startsWith(`${this.xattrPrefix}overlay.`)) continue;
      let v: Uint8Array;
      try {
        v = await src.layer.getxattr(this.m, src.ino, name);
      } catch {
        continue;
      }
      try {
        await up.setxattr(this.m, dst, name, v, 0);
      } catch (e) {
        if (type === 'symlink' || codeOf(e) === 'EOPNOTSUPP') continue;
        throw e;
      }
    }
  }

  /** Remove `name` from directory `dir` of layer `l`, whatever it is (a whiteout, a file, a tree). */
  private async removeAny(l: Layer, dir: number, name: string, isDir?: boolean): Promise<void> {
    if (await l.isWhiteout(this.m, dir, name).catch(() => false)) {
      await l.deleteWhiteout(this.m, dir, name);
      return;
    }
    let d = isDir;
    if (d === undefined) {
      const e = await l.lookup(this.m, dir, name);
      d = typeOfMode(e.attr.mode) === 'directory';
      if (d) await this.cleanDir(l, e.ino);
      await l.forget(this.m, e.ino, 1);
    } else if (d) {
      const e = await l.lookup(this.m, dir, name);
      try { await this.cleanDir(l, e.ino); } finally { await l.forget(this.m, e.ino, 1); }
    }
    if (d) await l.rmdir(this.m, dir, name); else await l.unlink(this.m, dir, name);
  }

  /** Empty directory `ino` of layer `l` (whiteouts, opaque marker, everything). */
  private async cleanDir(l: Layer, ino: number): Promise<void> {
    const entries = await this.readAll(l, ino, false);
    for (const e of entries) {
      if (e.whiteout) await l.deleteWhiteout(this.m, ino, e.name);
      else await this.removeAny(l, ino, e.name, e.type === 'directory');
    }
    await l.setOpaque(this.m, ino, false).catch(() => undefined);
  }

  private async readAll(l: Layer, ino: number, plus: boolean): Promise<DirEntry[]> {
    const { fh } = await l.opendir(this.m, ino);
    const out: DirEntry[] = [];
    try {
      let off = 0;
      for (;;) {
        const batch = await l.readdir(this.m, ino, fh, off, plus);
        if (batch.length === 0) break;
        out.push(...batch);
        off = batch[batch.length - 1]!.offset;
      }
    } finally {
      await l.releasedir(this.m, ino, fh);
    }
    return out;
  }

  // ---------------------------------------------------------------- merged listings

  /** The merged listing of directory `n`: visible names in order, and the upper's whiteouts. */
  private async listMerged(n: OvlNode, plus: boolean): Promise<{ visible: Listed[]; upperWhiteouts: string[] }> {
    const seen = new Map<string, Listed>();
    const order: Listed[] = [];
    const upperWhiteouts: string[] = [];
    for (const d of this.stackOf(n)) {
      const isUpper = this.upper !== undefined && d.idx === 0;
      for (const e of await this.readAll(d.layer, d.ino, plus)) {
        const s = seen.get(e.name);
        if (s) {
          if (s.closed) continue;
          if (e.whiteout || e.type !== 'directory') {
            s.closed = true;
          } else {
            if (s.lowerDirs === 0) s.firstLower = { idx: d.idx, dino: e.ino };
            s.lowerDirs++;
          }
          continue;
        }
        if (e.whiteout) {
          if (isUpper) upperWhiteouts.push(e.name);
          seen.set(e.name, { name: e.name, whiteout: true, closed: true, type: e.type, top: undefined, lowerDirs: 0 });
          continue;
        }
        const l: Listed = {
          name: e.name, whiteout: false, closed: e.type !== 'directory', type: e.type,
          top: { dir: d, dino: e.ino, ...(e.attr ? { attr: e.attr } : {}) }, lowerDirs: 0,
        };
        seen.set(e.name, l);
        order.push(l);
      }
    }
    return { visible: order, upperWhiteouts };
  }

  private async isImpure(n: OvlNode): Promise<boolean> {
    if (!n.upper) return false;
    if (n.impure !== undefined) return n.impure;
    let v = false;
    try {
      await n.upper.layer.getxattr(this.m, n.upper.ino, `${this.xattrPrefix}impure`);
      v = true;
    } catch { /* absent */ }
    n.impure = v;
    return v;
  }

  private async setImpure(n: OvlNode): Promise<void> {
    if (!n.upper || n === this.root || await this.isImpure(n)) return;
    await n.upper.layer.setxattr(this.m, n.upper.ino, `${this.xattrPrefix}impure`, Buffer.from('y'), 0).catch(() => undefined);
    n.impure = true;
  }

  /** The ino of a listed name (the same `lookup` would give). */
  private async listedIno(n: OvlNode, l: Listed): Promise<number> {
    const live = n.children.get(l.name);
    if (live && this.table.get(live.ino)?.value === live) return live.shownIno;
    const top = l.top!;
    const topIsUpper = this.upper !== undefined && top.dir.idx === 0;
    if (!topIsUpper) return this.inoForKey(originKey(top.dir.idx, top.dino));
    if (n.lowers.length === 0 && !(await this.isImpure(n))) return this.inoForKey(originKey(0, top.dino));
    if (l.type === 'directory') {
      if (!l.firstLower || l.top?.dir.idx !== 0) return this.inoForKey(originKey(0, top.dino));
      // Merged unless the upper directory is opaque.
      const e = await this.layerLookup(top.dir, l.name);
      if (!e) return this.inoForKey(originKey(0, top.dino));
      try {
        const opaque = await this.opaqueOf(top.dir.layer, 0, e.ino, e.attr.ino);
        return this.inoForKey(opaque ? originKey(0, top.dino) : originKey(l.firstLower.idx, l.firstLower.dino));
      } finally {
        await top.dir.layer.forget(this.m, e.ino, 1);
      }
    }
    const cached = this.upperKeys.get(top.dino);
    if (cached !== undefined) return this.inoForKey(cached);
    // An upper non-directory: its identity is its origin (one lookup and one getxattr).
    const e = await this.layerLookup(top.dir, l.name);
    if (!e) return this.inoForKey(originKey(0, top.dino));
    const ref: RealRef = realRef(top.dir.layer, 0, e.ino, e.attr.ino);
    try {
      return this.inoForKey(await this.keyOf(ref, [], typeOfMode(e.attr.mode)));
    } finally {
      await this.forgetReal(ref);
    }
  }

  // ---------------------------------------------------------------- Filesystem: names

  /** Resolve `name` in directory `parent`; +1 lookup. */
  async lookup(ctx: RequestContext, parent: number, name: string): Promise<Entry> {
    const e = await this.lookupIfExists(ctx, parent, name);
    if (!e) throw fsErr('ENOENT');
    return e;
  }

  /** `lookup` that resolves to undefined for a name the union does not show (no rejection). */
  async lookupIfExists(ctx: RequestContext, parent: number, name: string): Promise<Entry | undefined> {
    const p = this.dirNode(parent);
    const cached = this.cachedLookup(ctx, p, name);
    if (cached) return cached;
    const n = await this.lookupFor(ctx, p, name);
    if (!n) return undefined;
    try {
      return await this.entryOf(n);
    } catch (e) {
      await this.unref(n);
      throw e;
    }
  }

  /**
   * `lookup` without a layer call or an await when the child is live and both attributes
   * are cached: the same checks in the same order as `lookupFor`, else undefined.
   */
  private cachedLookup(ctx: RequestContext, p: OvlNode, name: string): Entry | undefined {
    const c = p.children.get(name);
    const pa = p.attr ?? p.permAttr;
    if (!c || !c.attr || !pa || p.removed || this.table.get(c.ino)?.value !== c) return undefined;
    // A lower hard link reached by another name than its primary one: `lookup` moves it.
    if (!c.upper && c.type !== 'directory' && !(c.parent === p && c.name === name)) return undefined;
    validateName(name);
    if (this.checkPerms) checkAccess(pa, ctx, AccessMode.X_OK);
    this.ref(c);
    return { ino: c.ino, generation: 0, attr: this.present(c, c.attr) };
  }

  /**
   * `lookup` answered at once from the overlay's live and cached inodes (+1 lookup), or
   * undefined when it needs the layers (then call `lookup`). Lets `Volume` walk cached
   * paths without an await per component.
   */
  lookupCached(ctx: RequestContext, parent: number, name: string): Entry | undefined {
    return this.cachedLookup(ctx, this.dirNode(parent), name);
  }

  /** Give back `nlookup` lookups of `ino`. */
  async forget(_ctx: RequestContext, ino: number, nlookup: number): Promise<void> {
    const rec = this.table.get(ino);
    if (!rec) return;
    await this.unref(rec.value, nlookup);
  }

  /** Attributes of `ino` (merged directories report nlink 1, as the kernel). */
  async getattr(_ctx: RequestContext, ino: number, fh?: number): Promise<Attr> {
    const n = this.node(ino);
    if (fh !== undefined) {
      const h = this.files.get(fh);
      if (h && h.node === n && h.real === n.upper) {
        const a = await h.real.layer.getattr(this.m, h.real.ino, h.fh);
        return this.present(n, a);
      }
    }
    const shown = this.present(n, await this.realAttr(n));
    this.shed(n);
    return shown;
  }

  /** chmod / chown / truncate / utimens, copying the object up first. */
  async setattr(ctx: RequestContext, ino: number, changes: SetattrRequest, fh?: number): Promise<Attr> {
    const n = this.node(ino);
    const up = this.requireUpper();
    const a = await this.realAttr(n);
    this.checkSetattr(ctx, n, a, changes, fh);
    if (changes.size !== undefined && n.type === 'directory') throw fsErr('EISDIR');
    if (changes.size !== undefined && n.type !== 'file') throw fsErr('EINVAL');
    if (!n.upper) await this.mutate(() => this.copyUp(n, changes.size !== 0));
    const c: SetattrRequest = { ...changes };
    if (c.mode !== undefined) c.mode &= 0o7777;
    const h = fh !== undefined ? this.files.get(fh) : undefined;
    const useFh = h && h.node === n && h.real === n.upper ? h.fh : undefined;
    this.invalidate(n);
    let r = await up.setattr(this.m, n.upper!.ino, c, useFh);
    this.invalidate(n);
    if (c.size !== undefined && c.mode === undefined) r = (await this.removePrivs(ctx, n, r.mode, n.upper!, useFh)) ?? r;
    return this.present(n, r);
  }

  private checkSetattr(ctx: RequestContext, n: OvlNode, a: Attr, c: SetattrRequest, fh?: number): void {
    if (!this.checkPerms || ctx.uid === 0) return;
    if (c.mode !== undefined && !isOwnerOrRoot(a, ctx)) throw fsErr('EPERM');
    if (c.uid !== undefined && c.uid !== a.uid) throw fsErr('EPERM');
    if (c.gid !== undefined && c.gid !== a.gid && !(ctx.uid === a.uid && inGroup(ctx, c.gid))) throw fsErr('EPERM');
    if ((c.uid !== undefined || c.gid !== undefined) && ctx.uid !== a.uid) throw fsErr('EPERM');
    if (c.size !== undefined && fh === undefined && n.type !== 'directory' && !mayAccess(a, ctx, AccessMode.W_OK)) throw fsErr('EACCES');
    const times = [c.atime, c.mtime].filter((t) => t !== undefined);
    if (times.length > 0 && !isOwnerOrRoot(a, ctx)) {
      const allNow = times.every((t) => t!.nsec === UTIME_NOW);
      if (!allNow) throw fsErr('EPERM');
      if (!mayAccess(a, ctx, AccessMode.W_OK)) throw fsErr('EACCES');
    }
  }

  /** Target of a symlink. */
  async readlink(_ctx: RequestContext, ino: number): Promise<string> {
    const n = this.node(ino);
    if (n.type !== 'symlink') throw fsErr('EINVAL');
    const r = n.upper ?? n.firstLower!;
    return r.layer.readlink(this.m, r.ino);
  }

  /** Create a file, fifo, socket or device; +1 lookup. */
  async mknod(ctx: RequestContext, parent: number, name: string, mode: number, rdev: number): Promise<Entry> {
    if ((mode & S_IFMT) === S_IFCHR && rdev === 0) {
      // The kernel refuses to create a whiteout through an overlay.
      const p = this.dirNode(parent);
      validateName(name);
      const existing = await this.lookupFor(ctx, p, name);
      if (existing) { await this.unref(existing); throw fsErr('EEXIST'); }
      throw fsErr('EPERM');
    }
    const type = typeOfMode(mode);
    if (type === 'directory' || type === 'symlink') throw fsErr('EINVAL');
    return (await this.createObject(ctx, parent, name, { kind: 'mknod', mode: (mode & S_IFMT) || S_IFREG, perm: mode & 0o7777, rdev })).entry;
  }

  /** Create a directory; +1 lookup. Over a whiteout it is made opaque. */
  async mkdir(ctx: RequestContext, parent: number, name: string, mode: number): Promise<Entry> {
    return (await this.createObject(ctx, parent, name, { kind: 'mkdir', mode: S_IFDIR, perm: mode & 0o7777, rdev: 0 })).entry;
  }

  /** Create a symlink; +1 lookup. */
  async symlink(ctx: RequestContext, parent: number, name: string, target: string): Promise<Entry> {
    return (await this.createObject(ctx, parent, name, { kind: 'symlink', mode: 0o120000, perm: 0o777, rdev: 0, target })).entry;
  }

  /** Create and open a file; +1 lookup. Without O_EXCL an existing file is opened. */
  async create(ctx: RequestContext, parent: number, name: string, mode: number, flags: number): Promise<CreateResult> {
    const p = this.dirNode(parent);
    validateName(name);
    // A miss found while no change was in progress (`nsGen` even) and still unchanged when the
    // mutex is taken needs no second resolution under it (see `createObject`).
    const seen = { gen: this.nsGen, probe: { upperWhiteout: false } };
    const existing = await this.lookupFor(ctx, p, name, false, seen.probe);
    if (existing) {
      try {
        if (flags & OpenFlags.O_EXCL) throw fsErr('EEXIST');
        if (existing.type === 'directory') throw fsErr('EISDIR');
        const o = await this.open(ctx, existing.ino, flags & ~(OpenFlags.O_CREAT | OpenFlags.O_EXCL));
        return { ...o, entry: await this.entryOf(existing) };
      } catch (e) {
        await this.unref(existing);
        throw e;
      }
    }
    const r = await this.createObject(ctx, parent, name, { kind: 'create', mode: S_IFREG, perm: mode & 0o7777, rdev: 0, flags }, seen);
    return { fh: r.fh!, entry: r.entry, ...(r.noFlush ? { noFlush: true } : {}) };
  }

  /**
   * Create an object of any kind in the upper (over a whiteout: staged in the work dir and
   * renamed onto it; directories made opaque), owned by the caller. `lookedUp`: the caller
   * already found no object at the name (with the caller's checks), resolving it at
   * namespace generation `gen` into `probe`.
   */
  private async createObject(
    ctx: RequestContext, parent: number, name: string,
    spec: { kind: 'mknod' | 'mkdir' | 'symlink' | 'create'; mode: number; perm: number; rdev: number; target?: string; flags?: number },
    lookedUp?: { gen: number; probe: { upperWhiteout: boolean } },
  ): Promise<{ entry: Entry; fh?: number; noFlush?: boolean }> {
    const p = this.dirNode(parent);
    validateName(name);
    return this.mutate(async () => {
      // The kernel's order: search permission and EEXIST (lookup), EROFS, write permission.
      // The resolution under the mutex also says whether a whiteout stands at the name (an
      // upper that copy-up makes below is new and empty). A caller's miss made while no
      // change was in progress, with no change since (`mutate` just moved `nsGen` from that
      // even value to the next), is still true: every change of the namespace runs here.
      let probe = { upperWhiteout: false };
      if (lookedUp && lookedUp.gen % 2 === 0 && this.nsGen === lookedUp.gen + 1) {
        probe = lookedUp.probe;
      } else {
        const again = lookedUp ? await this.lookupChild(p, name, true, probe) : await this.lookupFor(ctx, p, name, true, probe);
        if (again) { await this.unref(again); throw fsErr('EEXIST'); }
      }
      if (p.removed) throw fsErr('ENOENT');
      const up = this.requireUpper();
      await this.check(ctx, p, AccessMode.W_OK | AccessMode.X_OK);
      await this.copyUp(p);
      const pa = await this.permOf(p);
      const isDir = spec.kind === 'mkdir';
      let perm = spec.kind === 'symlink' ? 0o777 : spec.perm & ~ctx.umask;
      const gid = (pa.mode & S_ISGID) !== 0 ? pa.gid : ctx.gid;
      if (isDir && (pa.mode & S_ISGID) !== 0) perm |= S_ISGID;
      const overWhiteout = probe.upperWhiteout;
      const updir = p.upper!.ino;
      const staged = overWhiteout && up.workIno !== undefined && up.whiteoutFormat === 'chardev';
      const dir = staged ? up.workIno! : updir;
      const nm = staged ? this.tempName() : name;
      if (overWhiteout && !staged) await up.deleteWhiteout(this.m, updir, name);
      let entry: Entry;
      let fh: number | undefined;
      let noFlush = false;
      switch (spec.kind) {
        case 'mkdir': entry = await up.mkdir(this.m, dir, nm, perm); break;
        case 'symlink': entry = await up.symlink(this.m, dir, nm, spec.target!); break;
        case 'mknod': entry = await up.mknod(this.m, dir, nm, spec.mode | perm, spec.rdev); break;
        case 'create': {
          const f = (spec.flags ?? OpenFlags.O_RDWR) & ~OpenFlags.O_TRUNC;
          const c = await up.create(this.m, dir, nm, perm, f | OpenFlags.O_CREAT | OpenFlags.O_EXCL);
          entry = c.entry;
          fh = c.fh;
          noFlush = c.noFlush === true;
          break;
        }
      }
      // The entry's attributes stay right unless something below changes the object.
      const touched = entry.attr.uid !== ctx.uid || entry.attr.gid !== gid || (isDir && overWhiteout) || staged;
      try {
        if (entry.attr.uid !== ctx.uid || entry.attr.gid !== gid) {
          await up.setattr(this.m, entry.ino, { uid: ctx.uid, gid }).catch((e) => { if (spec.kind !== 'symlink') throw e; });
          if ((perm & (S_ISUID | S_ISGID)) !== 0 && spec.kind !== 'symlink') await up.setattr(this.m, entry.ino, { mode: perm });
        }
        if (isDir && overWhiteout) await this.setUpperOpaque(entry.ino, entry.attr.ino, true);
        if (staged) {
          await up.rename(this.m, dir, nm, updir, name, isDir ? RenameFlags.EXCHANGE : 0);
          if (isDir) await up.deleteWhiteout(this.m, dir, nm);
        }
      } catch (e) {
        if (fh !== undefined) await up.release(this.m, entry.ino, fh).catch(() => undefined);
        await this.removeAny(up, dir, nm, isDir).catch(() => undefined);
        await up.forget(this.m, entry.ino, 1);
        throw e;
      }
      const ra = touched ? await up.getattr(this.m, entry.ino) : entry.attr;
      const real: RealRef = realRef(up, 0, entry.ino, ra.ino);
      const key = originKey(0, ra.ino);
      this.upperKeys.set(ra.ino, key);
      const res: Resolution = { upper: real, lowers: [], type: typeOfMode(ra.mode), opaque: isDir && overWhiteout, attr: ra, key };
      const { node, created } = this.attachResolution(p, name, res);
      if (!created) await this.releaseResolution(res);
      this.touch(p);
      let ofh: number | undefined;
      if (fh !== undefined) {
        ofh = this.nextFh++;
        this.files.set(ofh, { node, real: node.upper!, fh, flags: spec.flags ?? OpenFlags.O_RDWR });
        this.ref(node);
      }
      return { entry: await this.entryOf(node), ...(ofh !== undefined ? { fh: ofh } : {}), ...(noFlush ? { noFlush } : {}) };
    });
  }

  /** Remove a non-directory name (a whiteout stays where a lower has the name). */
  async unlink(ctx: RequestContext, parent: number, name: string): Promise<void> {
    const p = this.dirNode(parent);
    validateName(name);
    this.requireUpper();
    await this.removeName(ctx, p, name, false);
  }

  /** Remove an empty (in the merged view) directory. */
  async rmdir(ctx: RequestContext, parent: number, name: string): Promise<void> {
    const p = this.dirNode(parent);
    validateName(name);
    this.requireUpper();
    await this.removeName(ctx, p, name, true);
  }

  private async removeName(ctx: RequestContext, p: OvlNode, name: string, isDir: boolean): Promise<void> {
    const up = this.requireUpper();
    const child = await this.lookupFor(ctx, p, name);
    if (!child) throw fsErr('ENOENT');
    try {
      await this.check(ctx, p, AccessMode.W_OK | AccessMode.X_OK);
      if (this.checkPerms) checkSticky(await this.permOf(p), await this.permOf(child), ctx);
      if (isDir && child.type !== 'directory') throw fsErr('ENOTDIR');
      if (!isDir && child.type === 'directory') throw fsErr('EISDIR');
      await this.mutate(async () => {
        if (p.children.get(name) !== child) throw fsErr('ENOENT');
        let upperWhiteouts: string[] = [];
        if (isDir) {
          const l = await this.listMerged(child, false);
          if (l.visible.length > 0) throw fsErr('ENOTEMPTY');
          upperWhiteouts = l.upperWhiteouts;
        }
        await this.copyUp(p);
        const updir = p.upper!.ino;
        const positive = await this.lowerPositive(p, name, child);
        const ca = child.upper ? await this.realAttr(child) : undefined;
        if (!child.upper) {
          await up.createWhiteout(this.m, updir, name);
        } else if (positive) {
          if (up.workIno !== undefined && up.whiteoutFormat === 'chardev') {
            const tmp = this.tempName();
            await up.createWhiteout(this.m, up.workIno, tmp);
            if (isDir) {
              await up.rename(this.m, up.workIno, tmp, updir, name, RenameFlags.EXCHANGE);
              await this.removeAny(up, up.workIno, tmp, true);
            } else {
              await up.rename(this.m, up.workIno, tmp, updir, name, 0);
            }
          } else {
            if (isDir) await this.cleanDir(up, child.upper.ino); else await up.unlink(this.m, updir, name);
            if (isDir) await up.rmdir(this.m, updir, name);
            await up.createWhiteout(this.m, updir, name);
          }
        } else if (isDir) {
          for (const w of upperWhiteouts) await up.deleteWhiteout(this.m, child.upper.ino, w);
          if (up.whiteoutFormat === 'oci') await this.setUpperOpaque(child.upper.ino, child.upper.attrIno, false);
          await up.rmdir(this.m, updir, name);
        } else {
          await up.unlink(this.m, updir, name);
        }
        if (ca && (isDir || ca.nlink <= 1)) this.upperKeys.delete(child.upper?.attrIno ?? -1);
        if (child.upper) this.opaqueCache.delete(`0:${child.upper.attrIno}`);
        await this.detachName(child, p, name);
        if (isDir) child.removed = true;
        this.invalidate(child);
        this.touch(p);
      });
    } finally {
      await this.unref(child);
    }
  }

  /** Is `a` an ancestor of (or equal to) `b`? */
  private isAncestor(a: OvlNode, b: OvlNode): boolean {
    for (let x: OvlNode | undefined = b; x; x = x.parent) if (x === a) return true;
    return false;
  }

  /** rename(2) / renameat2 with NOREPLACE or EXCHANGE, as kernel overlayfs does it. */
  async rename(ctx: RequestContext, parent: number, name: string, newparent: number, newname: string, flags: number): Promise<void> {
    const p = this.dirNode(parent);
    const np = this.dirNode(newparent);
    validateName(name);
    validateName(newname);
    const exchange = (flags & RenameFlags.EXCHANGE) !== 0;
    if (exchange && (flags & (RenameFlags.NOREPLACE | RenameFlags.WHITEOUT)) !== 0) throw fsErr('EINVAL');
    if ((flags & ~(RenameFlags.NOREPLACE | RenameFlags.EXCHANGE | RenameFlags.WHITEOUT)) !== 0) throw fsErr('EINVAL');
    const up = this.requireUpper();
    const old = await this.lookupFor(ctx, p, name);
    if (!old) throw fsErr('ENOENT');
    let target: OvlNode | undefined;
    try {
      target = await this.lookupFor(ctx, np, newname);
      if ((flags & RenameFlags.NOREPLACE) && target) throw fsErr('EEXIST');
      if (exchange && !target) throw fsErr('ENOENT');
      if (old.type === 'directory' && this.isAncestor(old, np)) throw fsErr('EINVAL');
      if (target && target.type === 'directory' && this.isAncestor(target, p)) {
        throw fsErr(exchange ? 'EINVAL' : 'ENOTEMPTY');
      }
      // Names of one lower hard link are one overlay inode here, but distinct inodes for the
      // kernel (index=off), whose rename of one onto the other is a real rename.
      if (target === old && (old.upper || old.type === 'directory' || (p === np && name === newname))) return;
      // vfs_rename's order: may_delete(old), may_create/may_delete(new) with its type checks.
      await this.check(ctx, p, AccessMode.W_OK | AccessMode.X_OK);
      if (this.checkPerms) checkSticky(await this.permOf(p), await this.permOf(old), ctx);
      await this.check(ctx, np, AccessMode.W_OK | AccessMode.X_OK);
      if (target && this.checkPerms) checkSticky(await this.permOf(np), await this.permOf(target), ctx);
      if (target && !exchange) {
        if (old.type === 'directory' && target.type !== 'directory') throw fsErr('ENOTDIR');
        if (old.type !== 'directory' && target.type === 'directory') throw fsErr('EISDIR');
      }
      if (this.checkPerms) {
        if (np !== p && old.type === 'directory') await this.check(ctx, old, AccessMode.W_OK);
        if (np !== p && exchange && target!.type === 'directory') await this.check(ctx, target!, AccessMode.W_OK);
      }
      if (flags & RenameFlags.WHITEOUT) throw fsErr('EINVAL');
      if (old.type === 'directory' && old.lowers.length > 0) throw fsErr('EXDEV');
      if (exchange && target!.type === 'directory' && target!.lowers.length > 0) throw fsErr('EXDEV');
      await this.mutate(() => this.doRename(up, p, name, old, np, newname, target, exchange));
    } finally {
      if (target) await this.unref(target);
      await this.unref(old);
    }
  }

  private async doRename(
    up: Layer, p: OvlNode, name: string, old: OvlNode, np: OvlNode, newname: string,
    target: OvlNode | undefined, exchange: boolean,
  ): Promise<void> {
    if (target === old) {
      await this.copyUp(p);
      await this.copyUp(old, true, { parent: p, name });
      target = undefined;
    }
    if (p.children.get(name) !== old) throw fsErr('ENOENT');
    if ((np.children.get(newname) ?? undefined) !== target && target) throw fsErr('ENOENT');
    let targetWhiteouts: string[] = [];
    // Merged or lower targets must be empty in the merged view (kernel ovl_check_empty_and_clear);
    // an upper-only target is left to the upper's own rename (ENOTEMPTY), after the opaque
    // marking below, exactly as the kernel orders it.
    if (target && !exchange && target.type === 'directory' && target.lowers.length > 0) {
      const l = await this.listMerged(target, false);
      if (l.visible.length > 0) throw fsErr('ENOTEMPTY');
      targetWhiteouts = l.upperWhiteouts;
    }
    await this.copyUp(old);
    await this.copyUp(np);
    if (exchange) await this.copyUp(target!);
    const oldDir = p.upper!.ino;
    const newDir = np.upper!.ino;
    const newUpperWhiteout = !target && await this.probeWhiteout(np, newname);
    const oldPositive = !exchange && await this.lowerPositive(p, name, old);
    // Opaque markers, as the kernel sets them before the move.
    if (old.type === 'directory' && !old.opaque && this.isMerged(np)) {
      await this.setUpperOpaque(old.upper!.ino, old.upper!.attrIno, true);
      old.opaque = true;
    }
    if (exchange && target!.type === 'directory' && !target!.opaque && this.isMerged(p)) {
      await this.setUpperOpaque(target!.upper!.ino, target!.upper!.attrIno, true);
      target!.opaque = true;
    }
    // An upper target directory that is empty in the merged view may hold whiteouts.
    if (target && !exchange && target.type === 'directory' && target.upper && target.lowers.length > 0) {
      for (const w of targetWhiteouts) await up.deleteWhiteout(this.m, target.upper.ino, w);
      await this.setUpperOpaque(target.upper.ino, target.upper.attrIno, false).catch(() => undefined);
    }
    const ta = target?.upper ? await this.realAttr(target) : undefined;
    try {
      if (exchange) {
        await up.rename(this.m, oldDir, name, newDir, newname, RenameFlags.EXCHANGE);
      } else if (oldPositive) {
        await this.renameLeavingWhiteout(up, oldDir, name, newDir, newname, newUpperWhiteout);
      } else {
        if (newUpperWhiteout && up.whiteoutFormat === 'chardev' && old.type === 'directory') {
          await up.rename(this.m, oldDir, name, newDir, newname, RenameFlags.EXCHANGE);
          await up.deleteWhiteout(this.m, oldDir, name);
        } else {
          if (newUpperWhiteout && up.whiteoutFormat !== 'chardev') await up.deleteWhiteout(this.m, newDir, newname);
          await up.rename(this.m, oldDir, name, newDir, newname, 0);
        }
      }
    } catch (e) {
      // A failed upper rename can still have moved the parents' times (ext4 puts the old
      // entry back after a RENAME_WHITEOUT that found the target not empty), as the kernel
      // overlay then shows: drop what is cached of them.
      for (const d of p === np ? [p] : [p, np]) { this.touch(d); this.changedAside(d); }
      throw e;
    }
    if (p !== np) {
      if (old.type !== 'directory' && old.key !== originKey(0, old.upper!.attrIno)) await this.setImpure(np);
      if (exchange && target!.type !== 'directory' && target!.key !== originKey(0, target!.upper!.attrIno)) await this.setImpure(p);
    }
    // Bookkeeping of names.
    if (target && !exchange) {
      if (ta && (target.type === 'directory' || ta.nlink <= 1)) this.upperKeys.delete(target.upper!.attrIno);
      if (target.upper) this.opaqueCache.delete(`0:${target.upper.attrIno}`);
      await this.detachName(target, np, newname);
      if (target.type === 'directory') target.removed = true;
      this.invalidate(target);
    }
    await this.moveName(old, p, name, np, newname);
    if (exchange) await this.moveName(target!, np, newname, p, name, true);
    this.invalidate(old);
    this.invalidate(target);
    this.touch(p);
    this.touch(np);
  }

  /** Move `src` from (p, name) to (np, newname) and leave a whiteout at the source, atomically where the layer allows. */
  private async renameLeavingWhiteout(up: Layer, oldDir: number, name: string, newDir: number, newname: string, newIsWhiteout: boolean): Promise<void> {
    if (up.whiteoutFormat === 'chardev') {
      if (newIsWhiteout) {
        // Switch whiteouts: the target's whiteout moves to the source.
        try {
          await up.rename(this.m, oldDir, name, newDir, newname, RenameFlags.EXCHANGE);
          return;
        } catch (e) {
          if (!SOFT_COPY_ERRORS.has(codeOf(e) ?? '')) throw e;
        }
      } else {
        try {
          await up.rename(this.m, oldDir, name, newDir, newname, RenameFlags.WHITEOUT);
          return;
        } catch (e) {
          if (!SOFT_COPY_ERRORS.has(codeOf(e) ?? '') && codeOf(e) !== 'EPERM') throw e;
        }
      }
      if (up.workIno !== undefined) {
        // Build the whiteout in the work dir, exchange it with the source, move the source on.
        const tmp = this.tempName();
        await up.createWhiteout(this.m, up.workIno, tmp);
        await up.rename(this.m, up.workIno, tmp, oldDir, name, RenameFlags.EXCHANGE);
        try {
          await up.rename(this.m, up.workIno, tmp, newDir, newname, 0);
        } catch (e) {
          await up.rename(this.m, up.workIno, tmp, oldDir, name, RenameFlags.EXCHANGE).catch(() => undefined);
          await up.deleteWhiteout(this.m, up.workIno, tmp).catch(() => undefined);
          throw e;
        }
        return;
      }
    }
    if (newIsWhiteout) await up.deleteWhiteout(this.m, newDir, newname).catch(() => undefined);
    await up.rename(this.m, oldDir, name, newDir, newname, 0);
    await up.createWhiteout(this.m, oldDir, name);
  }

  /** Node bookkeeping of a move of one name. */
  private async moveName(n: OvlNode, p: OvlNode, name: string, np: OvlNode, newname: string, exchanged = false): Promise<void> {
    if (!exchanged && p.children.get(name) === n) p.children.delete(name);
    np.children.set(newname, n);
    if (n.parent === p && n.name === name) {
      if (np !== p) {
        this.ref(np);
        const oldp = p;
        n.parent = np;
        n.name = newname;
        await this.unref(oldp);
      } else {
        n.name = newname;
      }
    } else {
      const a = n.aliases.find((x) => x.parent === p && x.name === name);
      if (a) { a.parent = np; a.name = newname; }
    }
    n.removed = false;
  }

  /** Make a new name for `ino` (copied up first); +1 lookup. */
  async link(ctx: RequestContext, ino: number, newparent: number, newname: string): Promise<Entry> {
    const n = this.node(ino);
    const np = this.dirNode(newparent);
    validateName(newname);
    const existing = await this.lookupFor(ctx, np, newname);
    if (existing) { await this.unref(existing); throw fsErr('EEXIST'); }
    const up = this.requireUpper();
    // The kernel's order: protected hard links (may_linkat), may_create, then no directories.
    if (this.checkPerms && ctx.uid !== 0) {
      const a = await this.realAttr(n);
      const safe = n.type === 'file' && killPriv(a.mode) === a.mode && mayAccess(a, ctx, AccessMode.R_OK | AccessMode.W_OK);
      if (ctx.uid !== a.uid && !safe) throw fsErr('EPERM');
    }
    await this.check(ctx, np, AccessMode.W_OK | AccessMode.X_OK);
    if (n.type === 'directory') throw fsErr('EPERM');
    if (np.removed) throw fsErr('ENOENT');
    return this.mutate(async () => {
      const again = await this.lookupChild(np, newname, true);
      if (again) { await this.unref(again); throw fsErr('EEXIST'); }
      await this.copyUp(n);
      await this.copyUp(np);
      const newDir = np.upper!.ino;
      const overWhiteout = await this.probeWhiteout(np, newname);
      let e: Entry;
      if (overWhiteout && up.workIno !== undefined && up.whiteoutFormat === 'chardev') {
        const tmp = this.tempName();
        e = await up.link(this.m, n.upper!.ino, up.workIno, tmp);
        try {
          await up.rename(this.m, up.workIno, tmp, newDir, newname, 0);
        } catch (err) {
          await up.unlink(this.m, up.workIno, tmp).catch(() => undefined);
          await up.forget(this.m, e.ino, 1);
          throw err;
        }
      } else {
        if (overWhiteout) await up.deleteWhiteout(this.m, newDir, newname);
        e = await up.link(this.m, n.upper!.ino, newDir, newname);
      }
      await up.forget(this.m, e.ino, 1);
      if (n.key !== originKey(0, n.upper!.attrIno) && np !== this.liveName(n)?.parent) await this.setImpure(np);
      this.ref(n);
      n.aliases = [...n.aliases, { parent: np, name: newname }];
      np.children.set(newname, n);
      if (n.removed && !this.liveName(n)) n.removed = false;
      this.invalidate(n);
      this.touch(np);
      return this.entryOf(n);
    });
  }

  // ---------------------------------------------------------------- files

  /** Open a file; opening for write (or truncate) copies a lower file up first. */
  async open(ctx: RequestContext, ino: number, flags: number): Promise<OpenResult> {
    const n = this.node(ino);
    if (n.type === 'directory' && ((flags & O_ACCMODE) !== OpenFlags.O_RDONLY || (flags & OpenFlags.O_TRUNC))) throw fsErr('EISDIR');
    const acc = flags & O_ACCMODE;
    let mask = 0;
    if (acc === OpenFlags.O_RDONLY || acc === OpenFlags.O_RDWR) mask |= AccessMode.R_OK;
    if (acc === OpenFlags.O_WRONLY || acc === OpenFlags.O_RDWR || (flags & OpenFlags.O_TRUNC)) mask |= AccessMode.W_OK;
    const write = opensForWrite(flags) && (n.type === 'file' || n.type === 'directory' || n.type === 'symlink');
    if (write && !this.upper) throw fsErr('EROFS');
    await this.check(ctx, n, mask);
    const modeBefore = (flags & OpenFlags.O_TRUNC) && ctx.uid !== 0 ? (await this.permOf(n)).mode : undefined;
    if (write && !n.upper) await this.mutate(() => this.copyUp(n, (flags & OpenFlags.O_TRUNC) === 0));
    const real = n.upper ?? n.firstLower!;
    const realFlags = flags & ~(OpenFlags.O_CREAT | OpenFlags.O_EXCL | OpenFlags.O_NOCTTY);
    const o = await real.layer.open(this.m, real.ino, realFlags);
    if (flags & OpenFlags.O_TRUNC) this.invalidate(n);
    if (modeBefore !== undefined) {
      try {
        await this.removePrivs(ctx, n, modeBefore, real, o.fh);
      } catch (e) {
        await real.layer.release(this.m, real.ino, o.fh).catch(() => undefined);
        throw e;
      }
    }
    const fh = this.nextFh++;
    this.files.set(fh, { node: n, real, fh: o.fh, flags: realFlags });
    this.ref(n);
    return {
      fh, ...(o.directIo !== undefined ? { directIo: o.directIo } : {}), ...(o.keepCache !== undefined ? { keepCache: o.keepCache } : {}),
      ...(o.noFlush ? { noFlush: true } : {}),
    };
  }

  private handle(fh: number): FileHandleState {
    const h = this.files.get(fh);
    if (!h) throw fsErr('EBADF');
    return h;
  }

  /** A read handle opened before a copy-up follows the object to the upper (as the kernel's). */
  private async currentReal(h: FileHandleState): Promise<FileHandleState> {
    const up = h.node.upper;
    if (up && h.real !== up) {
      const o = await up.layer.open(this.m, up.ino, h.flags & ~OpenFlags.O_TRUNC);
      const old = h.real;
      const oldFh = h.fh;
      if (h.real !== up) {
        h.real = up;
        h.fh = o.fh;
        await old.layer.release(this.m, old.ino, oldFh).catch(() => undefined);
      } else {
        await up.layer.release(this.m, up.ino, o.fh);
      }
    }
    return h;
  }

  /** Read from an open file. */
  async read(_ctx: RequestContext, _ino: number, fh: number, length: number, position: number, into?: Uint8Array): Promise<Uint8Array> {
    const h = await this.currentReal(this.handle(fh));
    return h.real.layer.read(this.m, h.real.ino, h.fh, length, position, into);
  }

  /** Write to an open file. */
  async write(ctx: RequestContext, _ino: number, fh: number, data: Uint8Array, position: number): Promise<number> {
    const h = await this.currentReal(this.handle(fh));
    const n = h.node;
    // Set-ID bits go before the data, as the kernel drops them (a failure to drop them then
    // writes nothing); mode and owner stay known across writes (a write changes size and
    // times only), so this costs no layer call for a file without them.
    if (data.length > 0 && ctx.uid !== 0 && this.checkPerms && n.type === 'file') {
      await this.removePrivs(ctx, n, (await this.permOf(n)).mode, h.real, h.fh);
    }
    this.touch(n);
    try {
      return await h.real.layer.write(this.m, h.real.ino, h.fh, data, position);
    } finally {
      this.touch(n);
    }
  }

  /** close(2) of a descriptor. */
  async flush(_ctx: RequestContext, _ino: number, fh: number): Promise<void> {
    const h = this.handle(fh);
    await h.real.layer.flush(this.m, h.real.ino, h.fh);
  }

  /** Last close: free the handle. */
  async release(_ctx: RequestContext, _ino: number, fh: number): Promise<void> {
    const h = this.files.get(fh);
    if (!h) return;
    this.files.delete(fh);
    try {
      await h.real.layer.release(this.m, h.real.ino, h.fh);
    } finally {
      this.invalidate(h.node);
      await this.unref(h.node);
    }
  }

  /** Flush data to stable storage. */
  async fsync(_ctx: RequestContext, _ino: number, fh: number, datasync: boolean): Promise<void> {
    const h = this.handle(fh);
    await h.real.layer.fsync(this.m, h.real.ino, h.fh, datasync);
  }

  /** Allocate or punch space (the handle is open for write, so the file is in the upper). */
  async fallocate(_ctx: RequestContext, _ino: number, fh: number, mode: number, offset: number, length: number): Promise<void> {
    const h = await this.currentReal(this.handle(fh));
    if (h.real.idx !== 0 || !this.upper) throw fsErr('EBADF');
    this.invalidate(h.node);
    await h.real.layer.fallocate(this.m, h.real.ino, h.fh, mode, offset, length);
    this.invalidate(h.node);
  }

  /** SEEK_DATA / SEEK_HOLE / SEEK_END on the real file. */
  async lseek(_ctx: RequestContext, _ino: number, fh: number, offset: number, whence: number): Promise<number> {
    const h = await this.currentReal(this.handle(fh));
    return h.real.layer.lseek(this.m, h.real.ino, h.fh, offset, whence);
  }

  /** Copy a range between two open files (within one layer by the layer, else by read/write). */
  async copyFileRange(
    ctx: RequestContext, _inoIn: number, fhIn: number, offIn: number,
    _inoOut: number, fhOut: number, offOut: number, length: number, flags: number,
  ): Promise<number> {
    const a = await this.currentReal(this.handle(fhIn));
    const b = await this.currentReal(this.handle(fhOut));
    this.invalidate(b.node);
    if (a.real.layer === b.real.layer) {
      try {
        return await a.real.layer.copyFileRange(this.m, a.real.ino, a.fh, offIn, b.real.ino, b.fh, offOut, length, flags);
      } catch (e) {
        if (!SOFT_COPY_ERRORS.has(codeOf(e) ?? '')) throw e;
      } finally {
        this.invalidate(b.node);
      }
    }
    let done = 0;
    while (done < length) {
      const buf = await this.read(ctx, a.node.ino, fhIn, Math.min(CHUNK, length - done), offIn + done);
      if (buf.length === 0) break;
      let w = 0;
      while (w < buf.length) w += await this.write(ctx, b.node.ino, fhOut, buf.subarray(w), offOut + done + w);
      done += buf.length;
    }
    return done;
  }

  // ---------------------------------------------------------------- directories

  /** Open a directory for listing (read permission needed). */
  async opendir(ctx: RequestContext, ino: number): Promise<OpenResult> {
    const n = this.dirNode(ino);
    await this.check(ctx, n, AccessMode.R_OK);
    const fh = this.nextFh++;
    this.dirs.set(fh, { node: n, entries: undefined, plus: false });
    this.ref(n);
    return { fh };
  }

  /**
   * The merged listing after `offset`. The list is built when read from offset 0 and kept
   * per handle, so offsets never skip or repeat names while the directory changes.
   */
  async readdir(_ctx: RequestContext, _ino: number, fh: number, offset: number, plus: boolean): Promise<DirEntry[]> {
    const h = this.dirs.get(fh);
    if (!h) throw fsErr('EBADF');
    if (offset === 0 || !h.entries) {
      const n = h.node;
      if (n.removed) { h.entries = []; return []; }
      if (n.listing && !plus && !n.upper) {
        h.entries = n.listing;
      } else {
        const { visible } = await this.listMerged(n, plus);
        const entries: DirListEntry[] = [];
        for (const l of visible) {
          entries.push({
            name: l.name, type: l.type, ino: compactInt(await this.listedIno(n, l)), top: l.top!.dir, dino: compactInt(l.top!.dino),
            ...(l.top!.attr ? { attr: l.top!.attr } : {}), mergeable: l.type === 'directory' && l.lowerDirs > 0,
          });
        }
        h.entries = entries;
        if (!plus && !n.upper && !n.listing && this.table.get(n.ino)?.value === n
          && this.listedEntries + entries.length <= LISTING_MAX) {
          n.listing = entries;
          this.listedEntries += entries.length;
        }
      }
      h.plus = plus;
    }
    const out: DirEntry[] = [];
    const end = Math.min(h.entries.length, offset + 4096);
    for (let i = offset; i < end; i++) {
      const e = h.entries[i]!;
      const d: DirEntry = { name: e.name, ino: e.ino, type: e.type, offset: i + 1 };
      if (plus) {
        const live = h.node.children.get(e.name);
        let a: Attr | undefined;
        let merged = false;
        if (live && this.table.get(live.ino)?.value === live && live.shownIno === e.ino) {
          a = await this.realAttr(live).catch(() => undefined);
          merged = this.isMerged(live);
        } else {
          a = e.attr ?? await this.attrOfListed(h.node, e).catch(() => undefined);
          if (a && e.mergeable) merged = await this.listedMerged(h.node, e).catch(() => false);
        }
        if (a) out.push({ ...d, attr: { ...a, ino: e.ino, dev: this.dev, nlink: merged ? 1 : a.nlink } });
        else out.push(d);
      } else {
        out.push(d);
      }
    }
    return out;
  }

  /** Whether a mergeable listed directory is merged: its top directory is not opaque. */
  private async listedMerged(p: OvlNode, e: DirListEntry): Promise<boolean> {
    const d = this.stackOf(p).find((s) => s.idx === e.top.idx)!;
    const ent = await this.layerLookup(d, e.name);
    if (!ent) return false;
    try {
      return !(await this.opaqueOf(d.layer, d.idx, ent.ino, ent.attr.ino));
    } finally {
      await d.layer.forget(this.m, ent.ino, 1);
    }
  }

  private async attrOfListed(p: OvlNode, e: DirListEntry): Promise<Attr | undefined> {
    const ent = await e.top.layer.lookup(this.m, this.stackOf(p).find((s) => s.idx === e.top.idx)!.ino, e.name);
    await e.top.layer.forget(this.m, ent.ino, 1);
    return ent.attr;
  }

  /** Free a directory handle. */
  async releasedir(_ctx: RequestContext, _ino: number, fh: number): Promise<void> {
    const h = this.dirs.get(fh);
    if (!h) return;
    this.dirs.delete(fh);
    await this.unref(h.node);
  }

  /** Flush a directory: a no-op (the overlay keeps no directory state of its own to flush). */
  async fsyncdir(_ctx: RequestContext, _ino: number, _fh: number, _datasync: boolean): Promise<void> {
    return;
  }

  /** Statistics of the upper layer (or of the top lower when read-only). */
  async statfs(_ctx: RequestContext, _ino: number): Promise<StatFs> {
    const l = this.upper ?? this.lowers[0]!;
    return l.statfs(this.m, l.rootIno);
  }

  // ---------------------------------------------------------------- xattrs

  /** True for names private to an overlay implementation. */
  private isPrivateXattr(name: string): boolean {
    return OVERLAY_PREFIXES.some((p) => name.startsWith(p));
  }

  /**
   * The real name of a user-visible xattr: the overlay's own prefix is escaped as the
   * kernel escapes it (`trusted.overlay.x` is stored as `trusted.overlay.overlay.x`); other
   * overlay implementations' names are refused (undefined).
   */
  private realXattrName(name: string): string | undefined {
    if (name.startsWith(this.xattrPrefix)) return this.xattrPrefix + 'overlay.' + name.slice(this.xattrPrefix.length);
    if (this.isPrivateXattr(name)) return undefined;
    return name;
  }

  private checkXattrWrite(ctx: RequestContext, n: OvlNode, a: Attr, name: string): void {
    if (!this.checkPerms) return;
    if (name.startsWith('trusted.') || name.startsWith('security.')) {
      if (ctx.uid !== 0 && name.startsWith('trusted.')) throw fsErr('EPERM');
      return;
    }
    if (name.startsWith('user.')) {
      if (n.type !== 'file' && n.type !== 'directory') throw fsErr('EPERM');
      if (n.type === 'directory' && (a.mode & S_ISVTX) && ctx.uid !== 0 && ctx.uid !== a.uid) throw fsErr('EPERM');
      checkAccess(a, ctx, AccessMode.W_OK);
    }
  }

  /** Set an xattr (copy-up first); overlay-private names are refused. */
  async setxattr(ctx: RequestContext, ino: number, name: string, value: Uint8Array, flags: number): Promise<void> {
    const n = this.node(ino);
    const up = this.requireUpper();
    const real = this.realXattrName(name);
    if (real === undefined) throw fsErr('EPERM');
    this.checkXattrWrite(ctx, n, await this.realAttr(n), name);
    if (!n.upper) await this.mutate(() => this.copyUp(n));
    await up.setxattr(this.m, n.upper!.ino, real, value, flags);
    this.invalidate(n);
  }

  /** Value of an xattr; overlay-private names are never visible. */
  async getxattr(ctx: RequestContext, ino: number, name: string): Promise<Uint8Array> {
    const n = this.node(ino);
    const real = this.realXattrName(name);
    if (real === undefined) throw fsErr('ENODATA');
    if (this.checkPerms && name.startsWith('user.') && (n.type === 'file' || n.type === 'directory')) await this.check(ctx, n, AccessMode.R_OK);
    const r = n.upper ?? n.firstLower!;
    return r.layer.getxattr(this.m, r.ino, real);
  }

  /** Names of the xattrs, without overlay-private ones (escaped own names shown unescaped). */
  async listxattr(_ctx: RequestContext, ino: number): Promise<string[]> {
    const n = this.node(ino);
    const r = n.upper ?? n.firstLower!;
    const names = await r.layer.listxattr(this.m, r.ino);
    const out: string[] = [];
    const esc = this.xattrPrefix + 'overlay.';
    for (const x of names) {
      if (x.startsWith(esc)) out.push(this.xattrPrefix + x.slice(esc.length));
      else if (!this.isPrivateXattr(x)) out.push(x);
    }
    return out;
  }

  /** Remove an xattr (copy-up first). */
  async removexattr(ctx: RequestContext, ino: number, name: string): Promise<void> {
    const n = this.node(ino);
    const up = this.requireUpper();
    const real = this.realXattrName(name);
    if (real === undefined) throw fsErr('ENODATA');
    this.checkXattrWrite(ctx, n, await this.realAttr(n), name);
    if (!n.upper) {
      const r = n.firstLower!;
      await r.layer.getxattr(this.m, r.ino, real);
      await this.mutate(() => this.copyUp(n));
    }
    await up.removexattr(this.m, n.upper!.ino, real);
    this.invalidate(n);
  }

  /** access(2): the caller's permissions on the merged attributes; W_OK on a read-only overlay is EROFS. */
  async access(ctx: RequestContext, ino: number, mask: number): Promise<void> {
    const n = this.node(ino);
    if ((mask & AccessMode.W_OK) && !this.upper && (n.type === 'file' || n.type === 'directory' || n.type === 'symlink')) throw fsErr('EROFS');
    checkAccess(await this.realAttr(n), ctx, mask);
  }

  /** Release every handle and every layer lookup the overlay holds. Idempotent. */
  async destroy(): Promise<void> {
    if (this.destroyed) return;
    this.destroyed = true;
    for (const [fh, h] of this.files) {
      this.files.delete(fh);
      await h.real.layer.release(this.m, h.real.ino, h.fh).catch(() => undefined);
    }
    this.dirs.clear();
    for (const r of [...this.table.records()]) {
      if (r.ino === ROOT_INO) continue;
      await this.forgetReal(r.value.upper).catch(() => undefined);
      for (const l of r.value.lowers) await this.forgetReal(l).catch(() => undefined);
    }
    if (this.destroyLayers) for (const l of this.layers) await l.destroy();
  }
}

function isZero(b: Uint8Array): boolean {
  for (let i = 0; i < b.length; i++) if (b[i] !== 0) return false;
  return true;
}
