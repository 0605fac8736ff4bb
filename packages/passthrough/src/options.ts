/**
 * PassthroughLayer options with their documented defaults (`resolvePassthroughOptions`),
 * and uid/gid mapping in fuse-overlayfs syntax (`IdMap`): `H:C:N[:H:C:N…]` maps host ids
 * H..H+N-1 to container ids C..C+N-1. Attributes go out host→container; created files and
 * chown come in container→host. Unmapped ids show as the overflow id (65534).
 */
import { FsError, type WhiteoutFormat } from '@layerfs/core';

/** The id shown for a host id outside every mapping (the kernel's overflowuid/gid). */
export const OVERFLOW_ID = 65534;

/** One range of an id mapping. */
export interface IdRange {
  /** First host id. */
  readonly host: number;
  /** First container id. */
  readonly container: number;
  /** Number of ids. */
  readonly count: number;
}

/** A uid or gid mapping between host ids (on disk) and container ids (what callers see). */
export class IdMap {
  /** The ranges, in the order given. */
  readonly ranges: readonly IdRange[];

  /** A mapping from ranges; an empty list is the identity. */
  constructor(ranges: readonly IdRange[]) {
    this.ranges = ranges;
  }

  /** Parse `H:C:N[:H:C:N…]` (`,` also separates triples); EINVAL on malformed text. */
  static parse(text: string): IdMap {
    const parts = text.split(/[:,]/).filter((p) => p.length > 0);
    if (parts.length === 0 || parts.length % 3 !== 0) throw new FsError('EINVAL', { detail: `bad id mapping '${text}'` });
    const ranges: IdRange[] = [];
    for (let i = 0; i < parts.length; i += 3) {
      const [host, container, count] = parts.slice(i, i + 3).map((p) => (/^\d+$/.test(p) ? Number(p) : NaN)) as [number, number, number];
      if (![host, container, count].every((n) => Number.isSafeInteger(n) && n >= 0 && n <= 0xffffffff) || count === 0) {
        throw new FsError('EINVAL', { detail: `bad id mapping '${text}'` });
      }
      ranges.push({ host, container, count });
    }
    return new IdMap(ranges);
  }

  /** True when the map changes nothing (no ranges). */
  get identity(): boolean {
    return this.ranges.length === 0;
  }

  /** Host id → container id (OVERFLOW_ID when unmapped). */
  toContainer(hostId: number): number {
    if (this.ranges.length === 0) return hostId;
    for (const r of this.ranges) if (hostId >= r.host && hostId < r.host + r.count) return r.container + (hostId - r.host);
    return OVERFLOW_ID;
  }

  /** Container id → host id, or undefined when the id is not mapped. */
  toHost(containerId: number): number | undefined {
    if (this.ranges.length === 0) return containerId;
    for (const r of this.ranges) if (containerId >= r.container && containerId < r.container + r.count) return r.host + (containerId - r.container);
    return undefined;
  }
}

/** Options of a PassthroughLayer. */
export interface PassthroughOptions {
  /**
   * How whiteouts and opaque markers are stored. Default: `'chardev'` on Linux when the
   * process may mknod (euid 0), else `'oci'`.
   */
  whiteoutFormat?: WhiteoutFormat;
  /** chardev format: write `user.overlay.opaque` instead of `trusted.overlay.opaque`. Default false. */
  userxattr?: boolean;
  /** False: every change fails with EROFS. Default true. */
  writable?: boolean;
  /**
   * A host directory outside `root`, on the same filesystem, exposed as `workIno` (a union
   * stages copy-ups and whiteouts there; renames between it and the tree are atomic).
   * Default: none.
   */
  workdir?: string;
  /** Uid mapping `H:C:N[:H:C:N…]` (fuse-overlayfs syntax) or ranges. Default: identity. */
  uidmapping?: string | readonly IdRange[];
  /** Gid mapping, same syntax. Default: identity. */
  gidmapping?: string | readonly IdRange[];
  /**
   * Most directory descriptors kept open at once (an LRU; evicted ones are reopened on
   * demand). Default: half of RLIMIT_NOFILE after raising it, less a reserve of 64, at
   * least 8 and at most 16384.
   */
  maxOpenFds?: number;
  /** Check permissions against the request context as the kernel would. Default true. */
  checkPermissions?: boolean;
  /** Called when a forget gives back more lookups than are held. Default: none. */
  onExcessForget?: (ino: number, held: number, asked: number) => void;
}

/** Options with every default filled in. */
export interface ResolvedPassthroughOptions {
  /** See `PassthroughOptions.whiteoutFormat`. */
  whiteoutFormat: WhiteoutFormat;
  /** See `PassthroughOptions.userxattr`. */
  userxattr: boolean;
  /** See `PassthroughOptions.writable`. */
  writable: boolean;
  /** See `PassthroughOptions.workdir`. */
  workdir: string | undefined;
  /** Parsed uid mapping. */
  uidmap: IdMap;
  /** Parsed gid mapping. */
  gidmap: IdMap;
  /** Descriptor LRU size (undefined: derive from RLIMIT_NOFILE). */
  maxOpenFds: number | undefined;
  /** See `PassthroughOptions.checkPermissions`. */
  checkPermissions: boolean;
  /** See `PassthroughOptions.onExcessForget`. */
  onExcessForget: ((ino: number, held: number, asked: number) => void) | undefined;
}

/** True when this process may create character devices (Linux, euid 0). */
export function mayMknod(): boolean {
  return process.platform === 'linux' && typeof process.geteuid === 'function' && process.geteuid() === 0;
}

function idmap(v: string | readonly IdRange[] | undefined): IdMap {
  if (v === undefined) return new IdMap([]);
  return typeof v === 'string' ? IdMap.parse(v) : new IdMap(v);
}

/** Fill in the defaults of `options`. */
export function resolvePassthroughOptions(options: PassthroughOptions = {}): ResolvedPassthroughOptions {
  if (options.maxOpenFds !== undefined && (!Number.isInteger(options.maxOpenFds) || options.maxOpenFds < 4)) {
    throw new FsError('EINVAL', { detail: 'maxOpenFds must be an integer ≥ 4' });
  }
  return {
    whiteoutFormat: options.whiteoutFormat ?? (mayMknod() ? 'chardev' : 'oci'),
    userxattr: options.userxattr ?? false,
    writable: options.writable ?? true,
    workdir: options.workdir,
    uidmap: idmap(options.uidmapping),
    gidmap: idmap(options.gidmapping),
    maxOpenFds: options.maxOpenFds,
    checkPermissions: options.checkPermissions ?? true,
    onExcessForget: options.onExcessForget,
  };
}
