/**
 * Mount options of `@layerfs/fuse`: the typed `MountOptions` with their documented defaults,
 * `resolveMountOptions()` that fills them, and `libfuseOptionString()`, the `-o` string
 * handed to libfuse 2 (mount flags for the kernel, libfuse library options and low-level
 * connection options in one list, as `fuse_main` accepts them).
 */

/** Options of `mount()`. Every field is optional; defaults are stated per field. */
export interface MountOptions {
  /** Let other users access the mount (`allow_other`; root only). Default: false. */
  allowOther?: boolean;
  /** Let the kernel check permissions from the mode bits (`default_permissions`). Default: true. */
  defaultPermissions?: boolean;
  /** Mount read-only (`ro`). Default: false. */
  readOnly?: boolean;
  /** Do not update access times (`noatime`). Default: false. */
  noatime?: boolean;
  /** The source name shown in /proc/mounts (`fsname=`). Default: `'layerfs'`. */
  fsname?: string;
  /** The subtype shown as `fuse.<subtype>` in /proc/mounts. Default: `'layerfs'`. */
  subtype?: string;
  /**
   * Seconds the kernel caches name → inode lookups (`entry_timeout`). Default: 86400. Every
   * namespace change goes through the mount, and the kernel drops or moves the names it
   * changes itself.
   */
  entryTimeout?: number;
  /**
   * Seconds the kernel caches attributes (`attr_timeout`). Default: 86400. libfuse 2's path
   * API gives every name of a hard link its own kernel inode, so a change through one name
   * would show late through the others: the mount starts with 0, and raises it to this value
   * only once it can invalidate the other names (`kernel-cache.ts`: libfuse's node table and
   * `FUSE_NOTIFY_INVAL_INODE`); where it cannot, it stays 0.
   */
  attrTimeout?: number;
  /**
   * Seconds the kernel caches a failed lookup (`negative_timeout`). Default: 86400, as
   * `entryTimeout` and for the same reason: a name appears only through the mount (create,
   * mkdir, mknod, symlink, link, rename), and the kernel turns its own negative entry into
   * the new one. A name that is looked for again and again (a search path, a missing
   * library or header) then costs one request, not one per look. 0: every miss is a request.
   */
  negativeTimeout?: number;
  /**
   * Keep the kernel page cache across opens unconditionally (`kernel_cache`). Default: false:
   * `autoCache` keeps it only while it is known to be current.
   */
  kernelCache?: boolean;
  /**
   * Keep the kernel page cache across opens while the file's size and mtime are unchanged
   * (`auto_cache`). Default: true. A change through another name of a hard link (its own
   * kernel inode under libfuse 2) marks that name's cache stale as well, so its next open
   * reads afresh. While attributes are cached, libfuse compares with the last size and mtime
   * it saw (`ac_attr_timeout` follows `attrTimeout`); otherwise it asks at each open.
   */
  autoCache?: boolean;
  /** Largest write request in bytes (`max_write`, with `big_writes`). Default: 131072 (libfuse 2's maximum). */
  maxWrite?: number;
  /** Largest read request in bytes (`max_read`). Default: 131072. */
  maxRead?: number;
  /** Largest readahead in bytes (`max_readahead`). Default: 131072. */
  maxReadahead?: number;
  /** Pass the filesystem's inode numbers to the kernel (`use_ino`, `readdir_ino`). Default: true. */
  useIno?: boolean;
  /**
   * Remove unlinked-but-open files at once (`hard_remove`) instead of libfuse's
   * `.fuse_hidden*` renames. Default: false: with `hard_remove` libfuse 2 serves no more
   * requests on such files (their path is gone), which breaks programs that keep using them.
   */
  hardRemove?: boolean;
  /** libfuse debug output on stderr (`debug`). Default: false. */
  debug?: boolean;
  /** More libfuse options, appended verbatim (e.g. `['max_background=32']`). Default: none. */
  extra?: readonly string[];
  /**
   * Entries the path → inode map keeps (each holds one lookup on the filesystem); the least
   * recently used are forgotten beyond it. Default: 32768: the benchmark's 29k-entry tree
   * fits, and a cached path (with the inodes it holds in an overlay over PassthroughLayers)
   * costs a few KB; with the kernel caching entries and attributes, only cold passes need it.
   */
  maxCachedPaths?: number;
  /** Called with each error that is not an `FsError` (mapped to EIO). Default: write to stderr. */
  onInternalError?: (err: unknown, op: string, path: string) => void;
  /** Install SIGINT/SIGTERM handlers that unmount every live mount and exit 0. Default: true. (A process-exit guard that detaches live mounts is always installed.) */
  handleSignals?: boolean;
}

/** `MountOptions` with every default filled in. */
export type ResolvedMountOptions = Required<Omit<MountOptions, 'onInternalError'>> & Pick<MountOptions, 'onInternalError'>;

/** Fill every default of `MountOptions`. */
export function resolveMountOptions(o: MountOptions = {}): ResolvedMountOptions {
  const r: ResolvedMountOptions = {
    allowOther: o.allowOther ?? false,
    defaultPermissions: o.defaultPermissions ?? true,
    readOnly: o.readOnly ?? false,
    noatime: o.noatime ?? false,
    fsname: o.fsname ?? 'layerfs',
    subtype: o.subtype ?? 'layerfs',
    entryTimeout: o.entryTimeout ?? 86400,
    attrTimeout: o.attrTimeout ?? 86400,
    negativeTimeout: o.negativeTimeout ?? 86400,
    kernelCache: o.kernelCache ?? false,
    autoCache: o.autoCache ?? true,
    maxWrite: o.maxWrite ?? 131072,
    maxRead: o.maxRead ?? 131072,
    maxReadahead: o.maxReadahead ?? 131072,
    useIno: o.useIno ?? true,
    hardRemove: o.hardRemove ?? false,
    debug: o.debug ?? false,
    extra: o.extra ?? [],
    maxCachedPaths: o.maxCachedPaths ?? 32768,
    handleSignals: o.handleSignals ?? true,
  };
  if (o.onInternalError) r.onInternalError = o.onInternalError;
  return r;
}

/** Escape a value for libfuse's option parser (commas and backslashes). */
function escapeOpt(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/,/g, '\\,');
}

/** The libfuse 2 option string (without `-o`) for resolved options. */
export function libfuseOptionString(o: ResolvedMountOptions): string {
  const opts: string[] = [];
  if (o.debug) opts.push('debug');
  if (o.allowOther) opts.push('allow_other');
  if (o.defaultPermissions) opts.push('default_permissions');
  opts.push(o.readOnly ? 'ro' : 'rw');
  if (o.noatime) opts.push('noatime');
  opts.push(`fsname=${escapeOpt(o.fsname)}`);
  if (o.subtype) opts.push(`subtype=${escapeOpt(o.subtype)}`);
  if (o.useIno) opts.push('use_ino', 'readdir_ino');
  // The attribute timeout is raised after mounting, once invalidation works (see attrTimeout).
  opts.push(`entry_timeout=${o.entryTimeout}`, 'attr_timeout=0', `negative_timeout=${o.negativeTimeout}`);
  if (o.kernelCache) opts.push('kernel_cache');
  else if (o.autoCache) opts.push('auto_cache', 'ac_attr_timeout=0');
  opts.push('big_writes', `max_write=${o.maxWrite}`, `max_read=${o.maxRead}`, `max_readahead=${o.maxReadahead}`);
  if (o.hardRemove) opts.push('hard_remove');
  opts.push(...o.extra);
  const s = opts.join(',');
  if (s.length > 1000) throw new Error('libfuse option string longer than fuse-native accepts (1024 bytes)');
  return s;
}
