/**
 * PathMap: the path → inode map of the path-based FUSE transport. libfuse 2's high-level API
 * hands us paths; the core `Filesystem` speaks inodes and lookup counts. Each cached path
 * holds exactly one lookup on its inode; an entry the map drops is forgotten
 * (`forget(ino, 1)`) — unless an operation or an open file still pins it, in which case the
 * forget waits for the last unpin. Renames, unlinks and rmdirs through the mount update the
 * map (`move`, `drop`), and `clear` forgets everything, so after an unmount the filesystem's
 * lookup counts are back to zero.
 *
 * The map is two LRUs (lru-cache) sharing the `maxEntries` bound: directories, which every
 * request below them resolves through, and other objects, at most `othersFor(maxEntries)`
 * (1024 by default). The kernel caches names and attributes itself (long entry/attr
 * timeouts), so a file's path comes back to us only for the requests right after its
 * lookup (open, read, setattr …): a short LRU serves those, and a scan of a large tree no
 * longer keeps a lookup (with the filesystem's inodes behind it) per file it passed, which
 * cost memory per file long after the kernel had forgotten it, and kept every file inode
 * alive long enough to be promoted to V8's old generation (garbage there lingers).
 */
import { LRUCache } from 'lru-cache';
import { ROOT_INO, S_IFDIR, S_IFMT, type Entry, type Filesystem, type RequestContext } from '@layerfs/core';

/** One cached path: an inode with one lookup held. */
export interface PathEntry {
  /** The inode number. */
  readonly ino: number;
  /** Operations and open handles using the entry right now. */
  pins: number;
  /** Dropped from the map while pinned: forget when the last pin goes. */
  evicted: boolean;
  /** The entry is being moved to another key (its removal must not forget). */
  moving: boolean;
  /** Root: never forgotten. */
  readonly root: boolean;
  /** A directory (kept in the directories' LRU). */
  readonly dir?: boolean;
}

/** Most non-directory paths the map keeps (fewer when `maxEntries` is small). */
export const MAX_OTHER_PATHS = 1024;

/** How many of `maxEntries` paths may be non-directories: a quarter, at most `MAX_OTHER_PATHS`, at least 8. */
export function othersFor(maxEntries: number): number {
  return Math.max(8, Math.min(MAX_OTHER_PATHS, Math.floor(Math.max(16, maxEntries) / 4)));
}

/** The path → inode map (see the module comment). */
export class PathMap {
  /** Directories' paths. */
  private readonly dirs: LRUCache<string, PathEntry>;
  /** Other objects' paths. */
  private readonly others: LRUCache<string, PathEntry>;
  private readonly rootEntry: PathEntry = { ino: ROOT_INO, pins: 0, evicted: false, moving: false, root: true };
  private readonly inflight = new Map<string, Promise<PathEntry>>();
  /** Bumped by every namespace change; a lookup that raced one is not cached. */
  private epochCount = 0;
  private pendingForgets = new Set<Promise<void>>();

  /** A map over `fs`, calling it with `ctx`, keeping at most `maxEntries` paths. */
  constructor(private readonly fs: Filesystem, private readonly ctx: () => RequestContext, maxEntries: number) {
    const others = othersFor(maxEntries);
    const dispose = (entry: PathEntry) => this.release(entry);
    this.dirs = new LRUCache<string, PathEntry>({ max: Math.max(16, maxEntries) - others, dispose });
    this.others = new LRUCache<string, PathEntry>({ max: others, dispose });
  }

  private segment(entry: PathEntry): LRUCache<string, PathEntry> {
    return entry.dir ? this.dirs : this.others;
  }

  private get(path: string): PathEntry | undefined {
    return this.dirs.get(path) ?? this.others.get(path);
  }

  private delete(path: string): void {
    this.dirs.delete(path);
    this.others.delete(path);
  }

  private *allKeys(): Generator<string> {
    yield* this.dirs.keys();
    yield* this.others.keys();
  }

  /** The namespace generation now (pass it to `adopt` for a lookup started now). */
  get epoch(): number {
    return this.epochCount;
  }

  /** Number of cached paths (each holds one lookup). */
  get size(): number {
    return this.dirs.size + this.others.size;
  }

  private release(entry: PathEntry): void {
    if (entry.moving) { entry.moving = false; return; }
    if (entry.pins > 0) { entry.evicted = true; return; }
    this.forget(entry);
  }

  private forget(entry: PathEntry): void {
    if (entry.root) return;
    const p = this.fs.forget(this.ctx(), entry.ino, 1).catch(() => undefined);
    this.pendingForgets.add(p);
    void p.finally(() => this.pendingForgets.delete(p));
  }

  /** The cached entry of `path`, if any (no pin, no lookup, LRU order unchanged). */
  peek(path: string): PathEntry | undefined {
    return path === '/' || path === '' ? this.rootEntry : (this.dirs.peek(path) ?? this.others.peek(path));
  }

  /** Give back a pin taken by `resolve`/`insert`. */
  unpin(entry: PathEntry): void {
    entry.pins--;
    if (entry.pins === 0 && entry.evicted) { entry.evicted = false; this.forget(entry); }
  }

  /** Take one more pin on an entry (for an open handle). */
  pin(entry: PathEntry): PathEntry {
    entry.pins++;
    return entry;
  }

  /** The pinned entry of `path` ('/'-separated, absolute), looking names up as needed. */
  async resolve(path: string): Promise<PathEntry> {
    if (path === '/' || path === '') return this.pin(this.rootEntry);
    const hit = this.get(path);
    if (hit) return this.pin(hit);
    const running = this.inflight.get(path);
    if (running) {
      const e = await running.catch(() => undefined);
      if (e && !e.evicted && this.get(path) === e) return this.pin(e);
    }
    const p = this.lookupPath(path);
    this.inflight.set(path, p);
    try {
      const e = await p;
      return e;
    } finally {
      if (this.inflight.get(path) === p) this.inflight.delete(path);
    }
  }

  private async lookupPath(path: string): Promise<PathEntry> {
    const cut = path.lastIndexOf('/');
    const parentPath = cut <= 0 ? '/' : path.slice(0, cut);
    const name = path.slice(cut + 1);
    const start = this.epochCount;
    const parent = await this.resolve(parentPath);
    let entry: Entry;
    try {
      entry = await this.fs.lookup(this.ctx(), parent.ino, name);
    } finally {
      this.unpin(parent);
    }
    return this.adopt(path, entry.ino, start, (entry.attr.mode & S_IFMT) === S_IFDIR);
  }

  /**
   * Put an inode on which the caller took one lookup (a lookup, create, mkdir …) under
   * `path`; returns the pinned entry. When the namespace changed since `epoch` (default: now)
   * the entry is not cached and is forgotten at its last unpin. `dir` (default false) says
   * the inode is a directory (which LRU keeps it).
   */
  adopt(path: string, ino: number, epoch = this.epochCount, dir = false): PathEntry {
    const existing = this.get(path);
    if (existing && existing.ino === ino) {
      this.forget({ ino, pins: 0, evicted: false, moving: false, root: false });
      return this.pin(existing);
    }
    const fresh: PathEntry = { ino, pins: 1, evicted: false, moving: false, root: false, dir };
    if (epoch !== this.epochCount) { fresh.evicted = true; return fresh; }
    // Replaces (and forgets) what the path named before, in either LRU.
    if (existing && !!existing.dir !== dir) this.segment(existing).delete(path);
    this.segment(fresh).set(path, fresh);
    return fresh;
  }

  /** The namespace changed: lookups running now must not be cached. */
  bump(): void {
    this.epochCount++;
  }

  /** Forget `path` and everything cached below it (after unlink, rmdir, or being replaced). */
  drop(path: string): void {
    this.bump();
    this.delete(path);
    const prefix = `${path}/`;
    for (const k of [...this.allKeys()]) if (k.startsWith(prefix)) this.delete(k);
  }

  /** `from` (and everything below it) is now named `to`; what `to` named before is dropped. */
  move(from: string, to: string): void {
    this.drop(to);
    const moves: Array<[string, PathEntry]> = [];
    const prefix = `${from}/`;
    for (const seg of [this.dirs, this.others]) {
      for (const [k, v] of seg.entries()) {
        if (k === from) moves.push([to, v]);
        else if (k.startsWith(prefix)) moves.push([to + k.slice(from.length), v]);
      }
    }
    for (const [, v] of moves) v.moving = true;
    for (const k of [from, ...[...this.allKeys()].filter((k) => k.startsWith(prefix))]) this.delete(k);
    for (const [k, v] of moves) this.segment(v).set(k, v);
  }

  /** Forget every cached path (at unmount); waits for the forgets to finish. */
  async clear(): Promise<void> {
    this.bump();
    this.dirs.clear();
    this.others.clear();
    await Promise.all([...this.pendingForgets]);
  }

  /** Wait for forgets started so far. */
  async settle(): Promise<void> {
    await Promise.all([...this.pendingForgets]);
  }
}
