/**
 * Kernel attribute-cache invalidation for the path-based transport. libfuse 2's high-level
 * API gives every name of a hard link its own kernel inode (node id), so an attribute the
 * kernel caches for one name goes stale when the object changes through another. This
 * module owns what makes a long `attr_timeout` safe anyway:
 * - `HardLinkNames`: the names under which the kernel was given the attributes of a
 *   non-directory with more than one link (ino → paths), moved and dropped with renames and
 *   unlinks, bounded;
 * - `KernelCache`: finds the node libfuse 2.9 gave a path (its name hash table, read under
 *   its lock; the layout of libfuse 2.9.9 / fuse-native 2.2.6 on x86-64 is checked against
 *   known values before use), sends `FUSE_NOTIFY_INVAL_INODE` (attributes only) for it and
 *   clears the node's `cache_valid` bit (so that, with `auto_cache`, its next open drops the
 *   kernel's pages of it), and sets libfuse's attribute timeout (and `auto_cache`'s) once
 *   that works. Where the layout does not check out, nothing is written and the mount keeps
 *   the safe timeouts it was mounted with (0: attributes refetched, pages checked at open).
 */
import koffi from 'koffi';

type Fn = (...args: any[]) => any;

/** Offsets in fuse-native 2.2.6's `fuse_thread_t` (x86-64): `struct fuse *` and `struct fuse_chan *`. */
const FT_FUSE = 368;
const FT_CHAN = 376;
/** Offsets in libfuse 2.9's `struct fuse` (x86-64). */
const F_NAME_ARRAY = 8;
const F_NAME_SIZE = 24;
const F_NAME_SPLIT = 32;
const F_LOCK = 104;
const F_ENTRY_TIMEOUT = 160;
const F_ATTR_TIMEOUT = 176;
const F_AC_ATTR_TIMEOUT = 184;
const F_AC_ATTR_TIMEOUT_SET = 192;
const F_AUTO_CACHE = 240;
/** Offsets in libfuse 2.9's `struct node`. */
const N_NAME_NEXT = 0;
const N_NODEID = 16;
const N_PARENT = 32;
const N_NAME = 40;
/** The word holding `is_hidden : 1` (bit 0) and `cache_valid : 1` (bit 1). */
const N_FLAGS = 112;
const CACHE_VALID = 2;
const ROOT_NODEID = 1n;
const MASK64 = (1n << 64n) - 1n;

interface Lib {
  memcpyIn: Fn;
  memcpyOut: Fn;
  strlen: Fn;
  lock: Fn;
  unlock: Fn;
  inval: Fn;
}

let lib: Lib | null | undefined;

function loadLib(): Lib | null {
  if (lib !== undefined) return lib;
  try {
    if (process.platform !== 'linux' || process.arch !== 'x64') { lib = null; return lib; }
    const c = koffi.load('libc.so.6');
    const f = koffi.load('libfuse.so.2');
    lib = {
      memcpyIn: c.func('uintptr_t memcpy(void *dst, uintptr_t src, size_t n)'),
      memcpyOut: c.func('uintptr_t memcpy(uintptr_t dst, void *src, size_t n)'),
      strlen: c.func('size_t strlen(uintptr_t s)'),
      lock: c.func('int pthread_mutex_lock(uintptr_t m)'),
      unlock: c.func('int pthread_mutex_unlock(uintptr_t m)'),
      inval: f.func('int fuse_lowlevel_notify_inval_inode(uintptr_t ch, uint64_t ino, int64_t off, int64_t len)'),
    };
  } catch {
    lib = null;
  }
  return lib;
}

/** Reads libfuse's node table and sends attribute invalidations for one mount. */
export class KernelCache {
  /** Invalidations sent (for tests and statistics). */
  sent = 0;

  private constructor(private readonly l: Lib, private readonly f: bigint, private readonly ch: bigint, private readonly autoCache: boolean) {}

  /**
   * A handle on the mount whose fuse-native `_thread` buffer is `thread`, after checking that
   * libfuse's `struct fuse` holds the entry and attribute timeouts the mount was made with
   * (and, with `autoCache`, `auto_cache` on with `ac_attr_timeout=0`); undefined when anything
   * does not match (then nothing is ever written).
   */
  static attach(thread: Buffer | undefined, entryTimeout: number, attrTimeout: number, autoCache = false): KernelCache | undefined {
    const l = loadLib();
    if (!l || !thread || thread.length < FT_CHAN + 8) return undefined;
    const f = thread.readBigUInt64LE(FT_FUSE);
    const ch = thread.readBigUInt64LE(FT_CHAN);
    if (f === 0n || ch === 0n) return undefined;
    try {
      const k = new KernelCache(l, f, ch, autoCache);
      const conf = k.read(f + BigInt(F_ENTRY_TIMEOUT), F_AUTO_CACHE + 4 - F_ENTRY_TIMEOUT);
      const at = (off: number) => off - F_ENTRY_TIMEOUT;
      if (conf.readDoubleLE(0) !== entryTimeout || conf.readDoubleLE(at(F_ATTR_TIMEOUT)) !== attrTimeout) return undefined;
      if (autoCache && (conf.readInt32LE(at(F_AUTO_CACHE)) !== 1 || conf.readInt32LE(at(F_AC_ATTR_TIMEOUT_SET)) !== 1
        || conf.readDoubleLE(at(F_AC_ATTR_TIMEOUT)) !== 0)) return undefined;
      const size = k.u64(f + BigInt(F_NAME_SIZE));
      const split = k.u64(f + BigInt(F_NAME_SPLIT));
      if (size < 8192n || (size & (size - 1n)) !== 0n || split > size / 2n) return undefined;
      return k;
    } catch {
      return undefined;
    }
  }

  private read(addr: bigint, n: number): Buffer {
    const b = Buffer.alloc(n);
    this.l.memcpyIn(b, addr, n);
    return b;
  }

  private u64(addr: bigint): bigint {
    return this.read(addr, 8).readBigUInt64LE(0);
  }

  private cstr(addr: bigint): string {
    const n = Number(this.l.strlen(addr));
    return this.read(addr, n).toString('utf8');
  }

  /**
   * Set libfuse's attribute timeout (seconds) for the replies from now on, and `auto_cache`'s:
   * how long an open trusts the size and mtime libfuse last saw instead of asking again
   * (safe because every change through another name clears the node's `cache_valid`).
   */
  setAttrTimeout(seconds: number): void {
    const b = Buffer.alloc(8);
    b.writeDoubleLE(seconds, 0);
    this.withLock(() => {
      this.l.memcpyOut(this.f + BigInt(F_ATTR_TIMEOUT), b, 8);
      if (this.autoCache) this.l.memcpyOut(this.f + BigInt(F_AC_ATTR_TIMEOUT), b, 8);
    });
  }

  private withLock<T>(fn: () => T): T {
    const m = this.f + BigInt(F_LOCK);
    if (this.l.lock(m) !== 0) throw new Error('cannot lock libfuse');
    try { return fn(); } finally { this.l.unlock(m); }
  }

  /** libfuse 2.9's `name_hash` (64-bit arithmetic, linear-hashing split). */
  private bucket(parent: bigint, name: Buffer, size: bigint, split: bigint): bigint {
    let h = parent;
    for (const c of name) h = (h * 31n + BigInt(c)) & MASK64;
    h %= size;
    const old = h % (size / 2n);
    return old >= split ? old : h;
  }

  /** The node id libfuse gave `path` ('/'-separated, absolute), or undefined (caller holds the lock). */
  private nodeIdLocked(path: string): bigint | undefined {
    return this.nodeLocked(path)?.id;
  }

  /** libfuse's node of `path`: its address and id, or undefined (caller holds the lock). */
  private nodeLocked(path: string): { addr: bigint; id: bigint } | undefined {
    const array = this.u64(this.f + BigInt(F_NAME_ARRAY));
    const size = this.u64(this.f + BigInt(F_NAME_SIZE));
    const split = this.u64(this.f + BigInt(F_NAME_SPLIT));
    // The root is not in the name table: its address stays unknown (0).
    let at = { addr: 0n, id: ROOT_NODEID };
    for (const comp of path.split('/')) {
      if (comp === '') continue;
      const name = Buffer.from(comp);
      let node = this.u64(array + 8n * this.bucket(at.id, name, size, split));
      let found: { addr: bigint; id: bigint } | undefined;
      for (let guard = 0; node !== 0n && guard < 1_000_000; guard++) {
        const n = this.read(node, N_NAME + 8);
        const p = n.readBigUInt64LE(N_PARENT);
        const namePtr = n.readBigUInt64LE(N_NAME);
        if (p !== 0n && namePtr !== 0n && this.u64(p + BigInt(N_NODEID)) === at.id && this.cstr(namePtr) === comp) {
          found = { addr: node, id: n.readBigUInt64LE(N_NODEID) };
          break;
        }
        node = n.readBigUInt64LE(N_NAME_NEXT);
      }
      if (found === undefined) return undefined;
      at = found;
    }
    return at;
  }

  /**
   * Clear `cache_valid` of the node at `addr` (caller holds the lock): with `auto_cache` its
   * next open then drops the kernel's pages. Only when the word holds nothing but the two
   * known bits (anything else means the layout is not the one checked).
   */
  private dropPagesLocked(addr: bigint): void {
    if (addr === 0n) return;
    const w = this.read(addr + BigInt(N_FLAGS), 4);
    const v = w.readUInt32LE(0);
    if ((v & ~3) !== 0 || (v & CACHE_VALID) === 0) return;
    w.writeUInt32LE(v & ~CACHE_VALID, 0);
    this.l.memcpyOut(addr + BigInt(N_FLAGS), w, 4);
  }

  /** The node id of `path` (for tests). */
  nodeId(path: string): bigint | undefined {
    return this.withLock(() => this.nodeIdLocked(path));
  }

  /**
   * Drop the kernel's cached attributes of each of `paths` that libfuse knows, and (with
   * `auto_cache`) its pages at their next open. No page-cache range is invalidated at once:
   * that could wait on a read this thread has to answer.
   */
  invalidate(paths: Iterable<string>): void {
    const ids: bigint[] = [];
    this.withLock(() => {
      for (const p of paths) {
        const n = this.nodeLocked(p);
        if (n === undefined) continue;
        ids.push(n.id);
        if (this.autoCache) this.dropPagesLocked(n.addr);
      }
    });
    for (const id of ids) {
      // ENOENT: the kernel no longer has that inode (nothing cached to drop).
      this.l.inval(this.ch, id, -1, 0);
      this.sent++;
    }
  }
}

/**
 * The names under which attributes of multiply linked non-directories were handed to the
 * kernel: ino → paths (and path → ino). Bounded; once full it reports overflow and the
 * mount stops caching attributes.
 */
export class HardLinkNames {
  private readonly byIno = new Map<number, Set<string>>();
  private readonly byPath = new Map<string, number>();
  /** Set when more names would have been needed than `max`. */
  overflowed = false;

  /** Track at most `max` names. */
  constructor(private readonly max: number) {}

  /** Number of tracked names. */
  get size(): number {
    return this.byPath.size;
  }

  /** Record that the kernel got the attributes of `ino` under `path`. */
  add(ino: number, path: string): void {
    const old = this.byPath.get(path);
    if (old === ino) return;
    if (old !== undefined) this.remove(path);
    if (this.byPath.size >= this.max) { this.overflowed = true; return; }
    let s = this.byIno.get(ino);
    if (!s) { s = new Set(); this.byIno.set(ino, s); }
    s.add(path);
    this.byPath.set(path, ino);
  }

  /** The ino tracked for `path`. */
  inoOf(path: string): number | undefined {
    return this.byPath.get(path);
  }

  /** Every ino with tracked names. */
  inos(): number[] {
    return [...this.byIno.keys()];
  }

  /** Every tracked name of `ino`. */
  namesOf(ino: number): readonly string[] {
    const s = this.byIno.get(ino);
    return s ? [...s] : [];
  }

  private remove(path: string): void {
    const ino = this.byPath.get(path);
    if (ino === undefined) return;
    this.byPath.delete(path);
    const s = this.byIno.get(ino);
    if (s) { s.delete(path); if (s.size === 0) this.byIno.delete(ino); }
  }

  /** `path` and everything below it are gone. */
  drop(path: string): void {
    if (this.byPath.size === 0) return;
    this.remove(path);
    const prefix = `${path}/`;
    for (const p of [...this.byPath.keys()]) if (p.startsWith(prefix)) this.remove(p);
  }

  /** `from` (and everything below it) is now `to`. */
  move(from: string, to: string): void {
    if (this.byPath.size === 0) return;
    this.drop(to);
    const prefix = `${from}/`;
    const moves: Array<[string, number]> = [];
    for (const [p, ino] of this.byPath) {
      if (p === from) moves.push([to, ino]);
      else if (p.startsWith(prefix)) moves.push([to + p.slice(from.length), ino]);
    }
    this.drop(from);
    for (const [p, ino] of moves) this.add(ino, p);
  }
}
