/**
 * Descriptor budget: `raiseNofileLimit` lifts the soft RLIMIT_NOFILE toward the hard limit
 * (once per process), and `DirFdCache` is the `lru-cache` of directory descriptors a layer
 * keeps, keyed by the directory's path below the layer root and sized from that limit. An
 * evicted descriptor is closed at once and reopened on demand by the layer. Each descriptor
 * is stored with the identity (`dev:ino`) of the directory it was opened on, so a caller that
 * knows which directory it wants never gets a descriptor of another one that took the path.
 * The cache counts, for every ancestor of a cached path, the cached paths below it, so that
 * dropping a subtree where nothing below is cached (a directory copied up into place, a fresh
 * directory renamed) costs no scan of the cache.
 */
import { closeSync } from 'node:fs';
import { LRUCache } from 'lru-cache';
import { RLIMIT_NOFILE, getrlimit, setrlimit } from './libc.js';

let raised: { soft: number; hard: number } | undefined;

/**
 * Raise the soft RLIMIT_NOFILE as far as the hard limit allows (at most 1,048,576); returns
 * the limits in force afterwards. Done once per process; later calls return the first result.
 */
export function raiseNofileLimit(): { soft: number; hard: number } {
  if (raised) return raised;
  let lim: { soft: number; hard: number };
  try {
    lim = getrlimit(RLIMIT_NOFILE);
  } catch {
    raised = { soft: 1024, hard: 1024 };
    return raised;
  }
  const want = Math.min(lim.hard, 1 << 20);
  if (lim.soft < want) {
    try {
      setrlimit(RLIMIT_NOFILE, { soft: want, hard: lim.hard });
      lim = { soft: want, hard: lim.hard };
    } catch {
      // Not allowed: keep the current soft limit.
    }
  }
  raised = lim;
  return raised;
}

/** The LRU size a layer uses when none is given: half the soft limit less 64, in [8, 16384]. */
export function defaultMaxOpenFds(): number {
  const { soft } = raiseNofileLimit();
  const n = Math.floor((Math.min(soft, 1 << 20) - 64) / 2);
  return Math.max(8, Math.min(16384, n));
}

/** A cached directory descriptor and the identity (`dev:ino`) of the directory it is open on. */
export interface CachedDirFd {
  /** The descriptor (O_PATH). */
  readonly fd: number;
  /** `dev:ino` of the directory when it was opened. */
  readonly key: string;
}

/** Call `fn` with each proper ancestor of a layer path, shortest first ("a", "a/b" for "a/b/c"). */
export function forEachAncestor(path: string, fn: (ancestor: string) => void): void {
  for (let i = path.indexOf('/'); i > 0; i = path.indexOf('/', i + 1)) fn(path.slice(0, i));
}

/** Directory descriptors by path below the layer root, closed when evicted. */
export class DirFdCache {
  private readonly lru: LRUCache<string, CachedDirFd>;
  /** For each ancestor of a cached path ("a" and "a/b" for "a/b/c"): how many cached paths lie below it. */
  private readonly below = new Map<string, number>();
  /** Descriptors opened over the cache's life (for tests and statistics). */
  opened = 0;
  /** Descriptors closed by eviction over the cache's life. */
  evicted = 0;

  /** A cache holding at most `max` descriptors. */
  constructor(max: number) {
    this.lru = new LRUCache<string, CachedDirFd>({
      max,
      dispose: (entry, key, reason) => {
        if (reason === 'evict') this.evicted++;
        this.countBelow(key, -1);
        try { closeSync(entry.fd); } catch { /* already closed */ }
      },
    });
  }

  /** The cached descriptor for `path` and its directory's identity (marks it recently used). */
  get(path: string): CachedDirFd | undefined {
    return this.lru.get(path);
  }

  /** Cache `fd`, open on the directory `key`, for `path` (closing any descriptor it replaces). */
  set(path: string, fd: number, key: string): void {
    this.opened++;
    this.lru.set(path, { fd, key });
    this.countBelow(path, 1);
  }

  /** Close and forget the descriptor of `path`. */
  delete(path: string): void {
    this.lru.delete(path);
  }

  /** Close and forget the descriptors of `path` and of every path below it. */
  deleteTree(path: string): void {
    this.lru.delete(path);
    if (!this.below.has(path)) return;
    const prefix = path + '/';
    for (const k of [...this.lru.keys()]) if (k.startsWith(prefix)) this.lru.delete(k);
  }

  /** Add `by` to the count of every ancestor of `path` (dropping counts that reach 0). */
  private countBelow(path: string, by: 1 | -1): void {
    forEachAncestor(path, (anc) => {
      const n = (this.below.get(anc) ?? 0) + by;
      if (n > 0) this.below.set(anc, n);
      else this.below.delete(anc);
    });
  }

  /** Number of descriptors held. */
  get size(): number {
    return this.lru.size;
  }

  /** The most descriptors held at once. */
  get max(): number {
    return this.lru.max;
  }

  /** Close everything. */
  clear(): void {
    this.lru.clear();
  }
}
