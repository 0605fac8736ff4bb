/**
 * Argument conversions the `Volume` path API and its `FileHandle` share, each following what
 * `node:fs` accepts: open flag strings ('r', 'w+', 'ax', …) to `OpenFlags`, utimes times
 * (Date, seconds, numeric strings, and exact Timespec/bigint nanoseconds) to `Timespec`,
 * data plus encoding to bytes, the chunk size that bounds every single read or write a
 * Filesystem is asked for, and the wrapper that gives errors Node's syscall and paths.
 */
import { FsError, toFsError, type FsErrorContext } from './errors.js';
import { OpenFlags, UTIME_NOW, UTIME_OMIT, timespecFromNs, type Timespec } from './types.js';

/** The largest single read or write the Volume asks a Filesystem for (1 MiB). */
export const VOLUME_CHUNK = 1 << 20;

const { O_RDONLY, O_WRONLY, O_RDWR, O_CREAT, O_EXCL, O_TRUNC, O_APPEND, O_SYNC } = OpenFlags;

const FLAG_STRINGS: Record<string, number> = {
  r: O_RDONLY, rs: O_RDONLY | O_SYNC, sr: O_RDONLY | O_SYNC,
  'r+': O_RDWR, 'rs+': O_RDWR | O_SYNC, 'sr+': O_RDWR | O_SYNC,
  w: O_TRUNC | O_CREAT | O_WRONLY, wx: O_TRUNC | O_CREAT | O_WRONLY | O_EXCL, xw: O_TRUNC | O_CREAT | O_WRONLY | O_EXCL,
  'w+': O_TRUNC | O_CREAT | O_RDWR, 'wx+': O_TRUNC | O_CREAT | O_RDWR | O_EXCL, 'xw+': O_TRUNC | O_CREAT | O_RDWR | O_EXCL,
  a: O_APPEND | O_CREAT | O_WRONLY, ax: O_APPEND | O_CREAT | O_WRONLY | O_EXCL, xa: O_APPEND | O_CREAT | O_WRONLY | O_EXCL,
  as: O_APPEND | O_CREAT | O_WRONLY | O_SYNC, sa: O_APPEND | O_CREAT | O_WRONLY | O_SYNC,
  'a+': O_APPEND | O_CREAT | O_RDWR, 'ax+': O_APPEND | O_CREAT | O_RDWR | O_EXCL, 'xa+': O_APPEND | O_CREAT | O_RDWR | O_EXCL,
  'as+': O_APPEND | O_CREAT | O_RDWR | O_SYNC, 'sa+': O_APPEND | O_CREAT | O_RDWR | O_SYNC,
};

/** Open flags as `node:fs` takes them: a flag string ('r', 'wx', 'a+', …) or an `OpenFlags` number. */
export type OpenFlagsLike = string | number;

/** `OpenFlags` bits of a Node flag string or number; EINVAL for a string Node does not know. */
export function parseOpenFlags(flags: OpenFlagsLike | undefined, fallback: string): number {
  if (flags === undefined || flags === null) flags = fallback;
  if (typeof flags === 'number') return flags;
  const bits = FLAG_STRINGS[flags];
  if (bits === undefined) throw new FsError('EINVAL', { detail: `unknown open flags '${flags}'` });
  return bits;
}

/**
 * A time as `utimes` takes it: a `Date`, seconds since the epoch (number or numeric string),
 * or, exactly to the nanosecond, a `Timespec` or a bigint of nanoseconds.
 */
export type TimeLike = Date | number | string | bigint | Timespec;

/**
 * A utimes time → Timespec, exactly as Node and libuv convert it: non-finite numbers mean
 * "now" (Infinity) or "leave it" (NaN), negative seconds mean "now", and fractional seconds
 * keep microseconds (libuv truncates to µs). Timespec and bigint inputs are kept exactly.
 */
export function toTimespec(time: TimeLike): Timespec {
  if (typeof time === 'bigint') return timespecFromNs(time);
  if (time instanceof Date) return secondsToTimespec(time.getTime() / 1000);
  if (typeof time === 'object' && time !== null) {
    if (!Number.isInteger(time.sec) || !Number.isInteger(time.nsec) || time.nsec < 0 || time.nsec >= 1e9) {
      throw new FsError('EINVAL', { detail: 'a Timespec needs integer sec and 0 <= nsec < 1e9' });
    }
    return { sec: time.sec, nsec: time.nsec };
  }
  if (typeof time === 'string') {
    const n = Number(time);
    if (time.trim() === '' || Number.isNaN(n)) throw new FsError('EINVAL', { detail: `not a time: '${time}'` });
    time = n;
  }
  if (typeof time !== 'number') throw new FsError('EINVAL', { detail: 'not a time' });
  if (Number.isFinite(time) && time < 0) return secondsToTimespec(Date.now() / 1000);
  return secondsToTimespec(time);
}

function secondsToTimespec(seconds: number): Timespec {
  if (seconds === Infinity || seconds === -Infinity) return { sec: 0, nsec: UTIME_NOW };
  if (Number.isNaN(seconds)) return { sec: 0, nsec: UTIME_OMIT };
  let sec = Math.trunc(seconds);
  let nsec = Math.trunc((seconds - sec) * 1e9);
  nsec -= nsec % 1000;
  if (nsec < 0) { nsec += 1e9; sec -= 1; }
  return { sec, nsec };
}

/** Data as `writeFile`/`write` take it: bytes, or a string in `encoding` (default UTF-8). */
export function toBytes(data: string | Uint8Array, encoding?: BufferEncoding | null): Uint8Array {
  if (typeof data === 'string') return Buffer.from(data, encoding ?? 'utf8');
  if (data instanceof Uint8Array) return data;
  throw new FsError('EINVAL', { detail: 'data must be a string or a Uint8Array' });
}

/** The `encoding` of an options argument that may be the encoding itself, as Node allows. */
export function encodingOf(options: { encoding?: BufferEncoding | null } | BufferEncoding | null | undefined): BufferEncoding | undefined {
  if (typeof options === 'string') return options;
  return options?.encoding ?? undefined;
}

/**
 * Run `fn`; any failure is rethrown as an `FsError` with exactly the syscall and paths given
 * (those of the `node:fs` call), keeping the code and the layer's detail text.
 */
export async function withErrorContext<T>(context: FsErrorContext, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    const err = toFsError(e);
    const full: FsErrorContext = { ...context };
    if (err.detail !== undefined) full.detail = err.detail;
    const out = new FsError(err.code, full);
    const frames = err.stack?.indexOf('\n') ?? -1;
    if (frames >= 0) out.stack = out.message + (err.stack ?? '').slice(frames);
    throw out;
  }
}
