/**
 * The fuse-native transport: loads fuse-native 2.2.6 (libfuse 2's high-level, path-based
 * API, bound in C) and subclasses its `Fuse` class to fix what its JavaScript side gets
 * wrong or leaves out, without touching its C code:
 * - the libfuse option string is ours (`use_ino`, `big_writes`, `max_write`, timeouts,
 *   `hard_remove`, kernel mount flags …; fuse-native only knows a fixed list);
 * - its 15 s per-operation timer (ETIMEDOUT) is disabled;
 * - `fgetattr` reaches our `fgetattr` (fuse-native calls `getattr` instead);
 * - `utimens` gets the real mtime: the C side passes atime twice, so the mtime is read from
 *   the request's thread-locals buffer, where the C side stored it;
 * - `getxattr`/`listxattr` answer ERANGE when the caller's buffer is too small, and the
 *   size probe of `listxattr` is exact;
 * - the `/dev/fuse` descriptor libfuse 2 opens is marked close-on-exec (libfuse leaves it
 *   inheritable: every child process the server spawns would keep the connection alive, and
 *   a child blocked on the mount after the server died would wait forever).
 */
import { readdir, readlink } from 'node:fs/promises';
import { createRequire } from 'node:module';
import koffi from 'koffi';

const require = createRequire(import.meta.url);

/** A callback as fuse-native's ops receive it: an errno (≤ 0) or a byte count, then values. */
export type NativeCallback = (code: number, ...values: unknown[]) => void;

/** The operations object fuse-native calls (path based; see fuse-native's README). */
export type NativeOps = Record<string, (...args: any[]) => void>;

/** What fuse-native's `getattr` callback accepts. */
export interface NativeStat {
  /** Type and permission bits. */
  mode: number;
  /** Owner. */
  uid: number;
  /** Group. */
  gid: number;
  /** Size in bytes. */
  size: number;
  /** Device (ignored by the kernel). */
  dev: number;
  /** Link count. */
  nlink: number;
  /** Inode number (passed as 32 bits by fuse-native's C side). */
  ino: number;
  /** Device number of a device node. */
  rdev: number;
  /** Preferred I/O size. */
  blksize: number;
  /** 512-byte blocks. */
  blocks: number;
  /** Access time, ms since the epoch (fuse-native's resolution). */
  atime: number;
  /** Modification time, ms. */
  mtime: number;
  /** Change time, ms. */
  ctime: number;
}

interface FuseInstance {
  mount(cb: (err: Error | null) => void): void;
  unmount(cb: (err: Error | null) => void): void;
  readonly mnt: string;
  _handlers: Array<((...a: unknown[]) => unknown) | undefined>;
  _thread: Buffer | null;
  ops: NativeOps;
}

interface FuseClass {
  new (mnt: string, ops: NativeOps, opts: Record<string, unknown>): FuseInstance;
  unmount(mnt: string, cb: (err: Error | null) => void): void;
}

/** Byte offset of `mtime` (a size_t of milliseconds) in fuse-native's `fuse_thread_locals_t` on 64-bit Linux. */
const LOCALS_MTIME_OFFSET = 112;
/** What `timespec_to_uint64` makes of UTIME_NOW and UTIME_OMIT (tv_sec 0, tv_nsec ≈ 2^30): 1073 ms. */
export const NATIVE_UTIME_SPECIAL_MS = 1073;

let FuseBase: FuseClass | undefined;

/** Load fuse-native (throws a clear error when `libfuse.so.2` is missing). */
export function loadFuseNative(): FuseClass {
  if (FuseBase) return FuseBase;
  try {
    FuseBase = require('fuse-native') as FuseClass;
  } catch (e) {
    throw new Error(`cannot load fuse-native (is Debian's libfuse2 installed?): ${(e as Error).message}`);
  }
  return FuseBase;
}

/** A fuse-native mount with our option string and the fixes listed in the module comment. */
export interface NativeMount {
  /** Mount; resolves once the kernel's INIT was answered (the mount is usable). */
  mount(): Promise<void>;
  /** `fusermount -uz` and detach the libfuse thread. */
  unmount(): Promise<void>;
  /** The thread-locals buffer of the request being dispatched right now (only during an op's synchronous start). */
  currentLocals(): Buffer | undefined;
  /** fuse-native's `fuse_thread_t` buffer (what libfuse's context calls `private_data`). */
  threadBuffer(): Buffer | undefined;
}

/**
 * Build a fuse-native mount of `mountpoint` with `ops` and the libfuse option string
 * `optionString` (comma separated, without `-o`).
 */
export function createNativeMount(mountpoint: string, ops: NativeOps, optionString: string): NativeMount {
  const Base = loadFuseNative();
  let currentLocals: Buffer | undefined;

  class LayerFuse extends (Base as unknown as new (m: string, o: NativeOps, opts: Record<string, unknown>) => FuseInstance) {
    constructor() {
      super(mountpoint, ops, { timeout: false });
      // Every handler runs synchronously into our op: remember its thread-locals buffer
      // meanwhile (the real mtime of utimens and the request's credentials are read from it).
      this._handlers.forEach((orig, op) => {
        if (!orig) return;
        this._handlers[op] = (locals: unknown, ...rest: unknown[]) => {
          currentLocals = locals as Buffer;
          try { return orig(locals, ...rest); } finally { currentLocals = undefined; }
        };
      });
    }

    _fuseOptions(): string {
      return optionString ? `-o${optionString}` : '';
    }

    _op_fgetattr(signal: NativeCallback, path: string, fd: number): void {
      this.ops.fgetattr!(path, fd, (err: number, stat?: NativeStat) => {
        if (err) return signal(err);
        return signal(0, statArray(stat));
      });
    }

    _op_utimens(signal: NativeCallback, path: string, atimeLow: number, atimeHigh: number): void {
      const atime = atimeLow + atimeHigh * 4294967296;
      const mtime = currentLocals && currentLocals.length >= LOCALS_MTIME_OFFSET + 8
        ? Number(currentLocals.readBigUInt64LE(LOCALS_MTIME_OFFSET)) : atime;
      this.ops.utimens!(path, atime, mtime, (err: number) => signal(err));
    }

    _op_getxattr(signal: NativeCallback, path: string, name: string, valueBuf: Buffer, position: number): void {
      this.ops.getxattr!(path, name, position, (err: number, value?: Buffer) => {
        if (err) return signal(err, valueBuf.buffer);
        if (!value) return signal(-61, valueBuf.buffer);
        if (valueBuf.length === 0) return signal(value.length, valueBuf.buffer);
        if (value.length > valueBuf.length) return signal(-34, valueBuf.buffer);
        value.copy(valueBuf);
        return signal(value.length, valueBuf.buffer);
      });
    }

    _op_listxattr(signal: NativeCallback, path: string, listBuf: Buffer): void {
      this.ops.listxattr!(path, (err: number, list?: string[]) => {
        if (err || !list) return signal(err || -5, listBuf.buffer);
        let size = 0;
        for (const n of list) size += Buffer.byteLength(n) + 1;
        if (listBuf.length === 0) return signal(size, listBuf.buffer);
        if (size > listBuf.length) return signal(-34, listBuf.buffer);
        let ptr = 0;
        for (const n of list) {
          ptr += listBuf.write(n, ptr);
          listBuf[ptr++] = 0;
        }
        return signal(ptr, listBuf.buffer);
      });
    }
  }

  const fuse = new LayerFuse();
  return {
    mount: async () => {
      const before = new Set(await fuseDescriptors());
      await new Promise<void>((resolve, reject) => fuse.mount((err) => (err ? reject(err) : resolve())));
      for (const fd of await fuseDescriptors()) if (!before.has(fd)) setCloexec(fd);
    },
    unmount: () => new Promise<void>((resolve, reject) => fuse.unmount((err) => (err ? reject(err) : resolve()))),
    currentLocals: () => currentLocals,
    threadBuffer: () => fuse._thread ?? undefined,
  };
}

function setDouble(arr: Uint32Array, idx: number, num: number): void {
  const low = num % 4294967296;
  arr[idx] = low;
  arr[idx + 1] = (num - low) / 4294967296;
}

/** fuse-native's stat array layout (18 uint32s), as its `getStatArray` builds it. */
export function statArray(st?: NativeStat): Uint32Array {
  const a = new Uint32Array(18);
  if (!st) return a;
  a[0] = st.mode; a[1] = st.uid; a[2] = st.gid;
  setDouble(a, 3, st.size);
  a[5] = st.dev; a[6] = st.nlink || 1; a[7] = st.ino; a[8] = st.rdev; a[9] = st.blksize;
  setDouble(a, 10, st.blocks);
  setDouble(a, 12, st.atime);
  setDouble(a, 14, st.mtime);
  setDouble(a, 16, st.ctime);
  return a;
}

/** Descriptors of this process open on `/dev/fuse`. */
async function fuseDescriptors(): Promise<number[]> {
  const out: number[] = [];
  for (const name of await readdir('/proc/self/fd').catch(() => [] as string[])) {
    const target = await readlink(`/proc/self/fd/${name}`).catch(() => '');
    if (target === '/dev/fuse') out.push(Number(name));
  }
  return out;
}

let fcntl: ((fd: number, cmd: number, ...args: unknown[]) => number) | undefined;

/** Set FD_CLOEXEC on `fd` (fcntl F_SETFD), so child processes do not inherit it. */
function setCloexec(fd: number): void {
  fcntl ??= koffi.load('libc.so.6').func('int fcntl(int fd, int cmd, ...)') as (fd: number, cmd: number, ...args: unknown[]) => number;
  const F_SETFD = 2;
  const FD_CLOEXEC = 1;
  if (fcntl(fd, F_SETFD, 'int', FD_CLOEXEC) !== 0) throw new Error(`cannot mark /dev/fuse descriptor ${fd} close-on-exec`);
}
