/**
 * FsError: the one error type every layerfs failure reaches a caller as, shaped like the
 * errors `node:fs` throws (`code`, negative `errno`, `syscall`, `path`, `dest`), plus the
 * errno tables that map names to numbers and back for Linux and macOS.
 *
 * Layers throw bare codes (`FsError.of('ENOENT')`); the `Volume` facade and the FUSE adapter
 * stamp the syscall and paths on the way out (`withContext`).
 *
 * Cost: a union probes every layer for every name, so ENOENT is the common case and an error
 * must be cheap to make. Capturing a stack trace is most of an Error's cost (≈ 4 µs at depth
 * 20, against ≈ 0.4 µs without; `packages/passthrough/bench/micro.mjs`), so the bare errors
 * layers throw (`FsError.of`, `FsError.bare`) carry no frames; they get the stack of the
 * place where they leave the library when context is added (`withContext`, `toFsError`), and
 * `new FsError(…)` always captures one. `FsError.captureStacks = true` (or the environment
 * variable `LAYERFS_ERROR_STACKS=1`) gives bare errors their own frames, for debugging.
 */
import { getSystemErrorMap } from 'node:util';

/** A Unix errno name such as `'ENOENT'`. */
export type ErrnoCode = keyof typeof LINUX_ERRNO;

/** Linux errno numbers (positive, as in `<errno.h>`). */
export const LINUX_ERRNO = {
  EPERM: 1, ENOENT: 2, ESRCH: 3, EINTR: 4, EIO: 5, ENXIO: 6, E2BIG: 7, ENOEXEC: 8, EBADF: 9,
  ECHILD: 10, EAGAIN: 11, ENOMEM: 12, EACCES: 13, EFAULT: 14, ENOTBLK: 15, EBUSY: 16,
  EEXIST: 17, EXDEV: 18, ENODEV: 19, ENOTDIR: 20, EISDIR: 21, EINVAL: 22, ENFILE: 23,
  EMFILE: 24, ENOTTY: 25, ETXTBSY: 26, EFBIG: 27, ENOSPC: 28, ESPIPE: 29, EROFS: 30,
  EMLINK: 31, EPIPE: 32, EDOM: 33, ERANGE: 34, EDEADLK: 35, ENAMETOOLONG: 36, ENOLCK: 37,
  ENOSYS: 38, ENOTEMPTY: 39, ELOOP: 40, ENOMSG: 42, EIDRM: 43, ENOSTR: 60, ENODATA: 61,
  ETIME: 62, ENOSR: 63, ENOLINK: 67, EPROTO: 71, EMULTIHOP: 72, EBADMSG: 74, EOVERFLOW: 75,
  EILSEQ: 84, EUSERS: 87, ENOTSOCK: 88, EDESTADDRREQ: 89, EMSGSIZE: 90, EPROTOTYPE: 91,
  ENOPROTOOPT: 92, EPROTONOSUPPORT: 93, ESOCKTNOSUPPORT: 94, EOPNOTSUPP: 95, ENOTSUP: 95,
  EPFNOSUPPORT: 96, EAFNOSUPPORT: 97, EADDRINUSE: 98, EADDRNOTAVAIL: 99, ENETDOWN: 100,
  ENETUNREACH: 101, ENETRESET: 102, ECONNABORTED: 103, ECONNRESET: 104, ENOBUFS: 105,
  EISCONN: 106, ENOTCONN: 107, ESHUTDOWN: 108, ETIMEDOUT: 110, ECONNREFUSED: 111,
  EHOSTDOWN: 112, EHOSTUNREACH: 113, EALREADY: 114, EINPROGRESS: 115, ESTALE: 116,
  EDQUOT: 122, ECANCELED: 125, EOWNERDEAD: 130, ENOTRECOVERABLE: 131,
} as const;

/** macOS (Darwin) errno numbers. `ENODATA` is Darwin's `ENOATTR` (93) for xattrs. */
export const DARWIN_ERRNO: Record<ErrnoCode, number> = {
  EPERM: 1, ENOENT: 2, ESRCH: 3, EINTR: 4, EIO: 5, ENXIO: 6, E2BIG: 7, ENOEXEC: 8, EBADF: 9,
  ECHILD: 10, EAGAIN: 35, ENOMEM: 12, EACCES: 13, EFAULT: 14, ENOTBLK: 15, EBUSY: 16,
  EEXIST: 17, EXDEV: 18, ENODEV: 19, ENOTDIR: 20, EISDIR: 21, EINVAL: 22, ENFILE: 23,
  EMFILE: 24, ENOTTY: 25, ETXTBSY: 26, EFBIG: 27, ENOSPC: 28, ESPIPE: 29, EROFS: 30,
  EMLINK: 31, EPIPE: 32, EDOM: 33, ERANGE: 34, EDEADLK: 11, ENAMETOOLONG: 63, ENOLCK: 77,
  ENOSYS: 78, ENOTEMPTY: 66, ELOOP: 62, ENOMSG: 91, EIDRM: 90, ENOSTR: 99, ENODATA: 93,
  ETIME: 101, ENOSR: 98, ENOLINK: 97, EPROTO: 100, EMULTIHOP: 95, EBADMSG: 94, EOVERFLOW: 84,
  EILSEQ: 92, EUSERS: 68, ENOTSOCK: 38, EDESTADDRREQ: 39, EMSGSIZE: 40, EPROTOTYPE: 41,
  ENOPROTOOPT: 42, EPROTONOSUPPORT: 43, ESOCKTNOSUPPORT: 44, EOPNOTSUPP: 102, ENOTSUP: 45,
  EPFNOSUPPORT: 46, EAFNOSUPPORT: 47, EADDRINUSE: 48, EADDRNOTAVAIL: 49, ENETDOWN: 50,
  ENETUNREACH: 51, ENETRESET: 52, ECONNABORTED: 53, ECONNRESET: 54, ENOBUFS: 55,
  EISCONN: 56, ENOTCONN: 57, ESHUTDOWN: 58, ETIMEDOUT: 60, ECONNREFUSED: 61,
  EHOSTDOWN: 64, EHOSTUNREACH: 65, EALREADY: 37, EINPROGRESS: 36, ESTALE: 70,
  EDQUOT: 69, ECANCELED: 89, EOWNERDEAD: 105, ENOTRECOVERABLE: 104,
};

/** A platform whose errno numbering the tables know. */
export type ErrnoPlatform = 'linux' | 'darwin';

function table(platform: ErrnoPlatform): Record<string, number> {
  return platform === 'darwin' ? DARWIN_ERRNO : LINUX_ERRNO;
}

const HOST_PLATFORM: ErrnoPlatform = process.platform === 'darwin' ? 'darwin' : 'linux';

/** Positive errno number of `code` on `platform` (default: this host); undefined if unknown. */
export function errnoOf(code: string, platform: ErrnoPlatform = HOST_PLATFORM): number | undefined {
  return table(platform)[code];
}

const reverse: Partial<Record<ErrnoPlatform, Map<number, ErrnoCode>>> = {};
function reverseTable(platform: ErrnoPlatform): Map<number, ErrnoCode> {
  let m = reverse[platform];
  if (!m) {
    m = new Map();
    // The first name of a number wins, as in the table's order.
    for (const [code, value] of Object.entries(table(platform))) if (!m.has(value)) m.set(value, code as ErrnoCode);
    // ENOTSUP and EOPNOTSUPP share 95 on Linux; prefer the name Node reports.
    if (platform === 'linux') m.set(95, 'EOPNOTSUPP');
    reverse[platform] = m;
  }
  return m;
}

/** Errno name of a positive or negative errno number on `platform` (default: this host). */
export function codeOf(errno: number, platform: ErrnoPlatform = HOST_PLATFORM): ErrnoCode | undefined {
  return reverseTable(platform).get(Math.abs(errno));
}

const descriptions = new Map<string, string>();
/** Human text for an errno code, taken from libuv (as Node's own messages are). */
export function describeErrno(code: string): string {
  let text = descriptions.get(code);
  if (text === undefined) {
    const n = errnoOf(code);
    const entry = n === undefined ? undefined : systemErrorMap().get(-n);
    text = entry ? entry[1] : FALLBACK_TEXT[code] ?? code.toLowerCase();
    descriptions.set(code, text);
  }
  return text;
}

const FALLBACK_TEXT: Record<string, string> = {
  ENODATA: 'no data available',
  ESTALE: 'stale file handle',
  EDQUOT: 'disk quota exceeded',
  ENOTEMPTY: 'directory not empty',
};

let errorMap: Map<number, [string, string]> | undefined;
function systemErrorMap(): Map<number, [string, string]> {
  errorMap ??= getSystemErrorMap();
  return errorMap;
}

/** Options that add context to an FsError. */
export interface FsErrorContext {
  /** The `node:fs`-style syscall name (`open`, `scandir`, `rename`, …). */
  syscall?: string;
  /** The path the call was about. */
  path?: string;
  /** The second path of a two-path call (rename, link, symlink, copyfile). */
  dest?: string;
  /** Extra words for a person, appended to the message. */
  detail?: string;
}

const ENV_STACKS = typeof process !== 'undefined' && process.env?.['LAYERFS_ERROR_STACKS'] === '1';

/** True when `stack` holds at least one frame below its message line. */
function hasFrames(stack: string | undefined): stack is string {
  return stack !== undefined && stack.indexOf('\n    at ') >= 0;
}

/**
 * A filesystem error with Node's shape: `code` ('ENOENT'), `errno` (negative, libuv style),
 * `syscall`, `path`, `dest`. Message: `CODE: description, syscall 'path' -> 'dest'`.
 * Made with `new`, it captures a stack trace like any Error; made with `of`/`bare` (what
 * layers throw), it does not (see the module comment).
 */
export class FsError extends Error {
  /** Give bare errors (`of`, `bare`) stack frames too (default: env `LAYERFS_ERROR_STACKS=1`). */
  static captureStacks = ENV_STACKS;

  /** Errno name, as `node:fs` errors carry it. */
  readonly code: ErrnoCode;
  /** Negative errno on this host, as `node:fs` errors carry it. */
  readonly errno: number;
  /** The syscall that failed, when known. */
  syscall?: string;
  /** The path involved, when known. */
  path?: string;
  /** The second path of a two-path call, when known. */
  dest?: string;
  /** Extra explanation given where the error was made. */
  readonly detail?: string;

  /** Build an error for `code`, optionally with syscall, paths and a detail text. */
  constructor(code: ErrnoCode, context: FsErrorContext = {}) {
    if (making !== 0) {
      // A bare error: construct without capturing frames (the costly part of an Error).
      const limit = Error.stackTraceLimit;
      Error.stackTraceLimit = 0;
      try { super(''); } finally { Error.stackTraceLimit = limit; }
    } else {
      super('');
    }
    this.name = 'Error';
    this.code = code;
    this.errno = -(errnoOf(code) ?? LINUX_ERRNO[code]);
    if (context.syscall !== undefined) this.syscall = context.syscall;
    if (context.path !== undefined) this.path = context.path;
    if (context.dest !== undefined) this.dest = context.dest;
    if (context.detail !== undefined) this.detail = context.detail;
    this.message = this.format();
  }

  /** `FsError(code, { detail })` without stack frames: what layers throw for bare codes. */
  static of(code: ErrnoCode, detail?: string): FsError {
    return FsError.bare(code, detail === undefined ? NO_CONTEXT : { detail });
  }

  /**
   * `FsError(code, context)` without stack frames (unless `captureStacks`): for errors that
   * are often caught inside the library (a layer's ENOENT probe), cheap to make. Context added
   * later (`withContext`, `toFsError`) gives it the stack of that place.
   */
  static bare(code: ErrnoCode, context: FsErrorContext = NO_CONTEXT): FsError {
    if (FsError.captureStacks) return new FsError(code, context);
    making++;
    try { return new FsError(code, context); } finally { making--; }
  }

  /** The same error with syscall and paths filled in where they are not yet known. */
  withContext(context: FsErrorContext): FsError {
    const merged: FsErrorContext = {};
    const syscall = this.syscall ?? context.syscall;
    const path = this.path ?? context.path;
    const dest = this.dest ?? context.dest;
    const detail = this.detail ?? context.detail;
    if (syscall !== undefined) merged.syscall = syscall;
    if (path !== undefined) merged.path = path;
    if (dest !== undefined) merged.dest = dest;
    if (detail !== undefined) merged.detail = detail;
    const err = new FsError(this.code, merged);
    // Keep the frames of where the error was made; a bare error takes those of this call.
    const stack = this.stack;
    if (hasFrames(stack)) err.stack = err.message + stack.slice(stack.indexOf('\n'));
    return err;
  }

  private format(): string {
    let msg = `${this.code}: ${describeErrno(this.code)}`;
    if (this.syscall !== undefined) msg += `, ${this.syscall}`;
    if (this.path !== undefined) msg += ` '${this.path}'`;
    if (this.dest !== undefined) msg += ` -> '${this.dest}'`;
    if (this.detail !== undefined) msg += ` (${this.detail})`;
    return msg;
  }
}

const NO_CONTEXT: FsErrorContext = Object.freeze({});
/** Nonzero while `FsError.bare` constructs (the constructor then skips the stack trace). */
let making = 0;

/** True if `e` is an FsError, optionally with the given code. */
export function isFsError(e: unknown, code?: ErrnoCode): e is FsError {
  return e instanceof FsError && (code === undefined || e.code === code);
}

/**
 * Convert anything thrown (a Node fs error, a koffi errno, an FsError) into an FsError.
 * Unknown errors become `EIO` with the original message as the detail.
 */
export function toFsError(e: unknown, context: FsErrorContext = {}): FsError {
  if (e instanceof FsError) return e.withContext(context);
  if (e && typeof e === 'object') {
    const o = e as { code?: unknown; errno?: unknown; message?: unknown };
    let code: string | undefined = typeof o.code === 'string' ? o.code : undefined;
    if ((code === undefined || errnoOf(code) === undefined) && typeof o.errno === 'number') code = codeOf(o.errno);
    if (code === 'ENOTSUP') code = 'EOPNOTSUPP';
    if (code !== undefined && errnoOf(code) !== undefined) {
      const ctx: FsErrorContext = { ...context };
      const withPath = o as { syscall?: unknown; path?: unknown; dest?: unknown };
      if (ctx.syscall === undefined && typeof withPath.syscall === 'string') ctx.syscall = withPath.syscall;
      return new FsError(code as ErrnoCode, ctx);
    }
    return new FsError('EIO', { ...context, detail: String(o.message ?? e) });
  }
  return new FsError('EIO', { ...context, detail: String(e) });
}

/** Throw `FsError(code)`: a one-liner for guard clauses. */
export function fail(code: ErrnoCode, detail?: string): never {
  throw FsError.of(code, detail);
}
