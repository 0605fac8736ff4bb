/**
 * READ replies spliced from the host file to `/dev/fuse` through pipes, as a FUSE server in C
 * does with splice(2): the file's page-cache pages go into a pipe by reference (no copy), and
 * the kernel copies them once, into the FUSE request's pages. The copy path instead reads the
 * data into a buffer (one copy on a pool thread) and writes that buffer to the device (a second
 * copy, on the JS thread, pinning the buffer page by page).
 *
 * A request gets a pair of pipes: the Filesystem fills the data pipe from its host descriptor
 * (`ReadSink`, handed down as a property of the read's `into` buffer; `readFull` of
 * `@layerfs/passthrough`'s data-io calls it), on libuv's pool through koffi's async calls,
 * since a file read can wait on a disk. The reply is then assembled on the JS thread, where
 * nothing waits: the 16-byte header is written into the reply pipe, the data pipe's buffers are
 * moved after it (a pipe-to-pipe splice moves references), and the reply pipe is spliced into
 * the device in one message. The pipes are 1 MiB (the system's `pipe-max-size` without
 * CAP_SYS_RESOURCE): one slot per page and one for the header, so a spliced reply holds at most
 * 255 pages; the session mounts with `max_read` to match. A pair goes back to the free list
 * only empty; one left in an unknown state (an error midway, an interrupted request) is closed.
 * READs under 64 KiB, unaligned ones, and Filesystems that ignore the sink take the copy path.
 */
import koffi from 'koffi';
import { closeSync, writeSync } from 'node:fs';
import { FsError, codeOf, type ReadSink } from '@layerfs/core';
import { OUT_HEADER, writeOutHeader } from './protocol.js';

const O_NONBLOCK = 0o4000;
const O_CLOEXEC = 0o2000000;
const F_SETPIPE_SZ = 1031;
const F_GETPIPE_SZ = 1032;
const SPLICE_F_NONBLOCK = 2;
const PAGE = 4096;
/**
 * Smaller READs take the copy path: a small copy costs less than the pipe work (header write,
 * two splices, an fstat), and small files are read in small requests.
 */
const MIN_BYTES = 65536;
/** Pairs kept at most (each in-flight spliced READ holds one). */
const MAX_PAIRS = 16;

type SpliceFn = ((fdIn: number, offIn: Buffer | null, fdOut: number, offOut: Buffer | null, len: number, flags: number) => number | bigint)
  & { async: (...args: unknown[]) => void };
interface Calls {
  pipe2: (fds: Int32Array, flags: number) => number;
  fcntl: (fd: number, cmd: number, arg: number) => number;
  splice: SpliceFn;
}
let calls: Calls | null | undefined;
function libc(): Calls | null {
  if (calls === undefined) {
    try {
      const l = koffi.load('libc.so.6');
      calls = {
        pipe2: l.func('int pipe2(int *fds, int flags)') as Calls['pipe2'],
        fcntl: l.func('int fcntl(int fd, int cmd, int arg)') as Calls['fcntl'],
        splice: l.func('intptr_t splice(int fd_in, void *off_in, int fd_out, void *off_out, size_t len, unsigned int flags)') as SpliceFn,
      };
    } catch {
      calls = null;
    }
  }
  return calls;
}

function errnoError(syscall: string): FsError {
  return FsError.bare(codeOf(koffi.errno()) ?? 'EIO', { syscall });
}

/**
 * A non-blocking pipe of `want` bytes (a power of two), or of the largest smaller power of two
 * the system allows (pipe-max-size, per-user limits): [read end, write end, capacity].
 */
function openPipe(c: Calls, want: number): [number, number, number] {
  const fds = new Int32Array(2);
  if (c.pipe2(fds, O_CLOEXEC | O_NONBLOCK) < 0) throw errnoError('pipe2');
  const [r, w] = [fds[0]!, fds[1]!];
  for (let size = want; size > PAGE && c.fcntl(w, F_SETPIPE_SZ, size) < 0; size /= 2) { /* smaller */ }
  const cap = c.fcntl(w, F_GETPIPE_SZ, 0);
  if (cap < 0) { const e = errnoError('fcntl'); closeSync(r); closeSync(w); throw e; }
  return [r, w, cap];
}

/** `splice` on libuv's pool: the count moved, or the errno as an FsError. */
function spliceAsync(c: Calls, fdIn: number, offIn: Buffer | null, fdOut: number, len: number): Promise<number> {
  return new Promise((resolve, reject) => {
    c.splice.async(fdIn, offIn, fdOut, null, len, SPLICE_F_NONBLOCK, (e: unknown, r: number | bigint) => {
      if (e) { reject(e); return; }
      const n = Number(r);
      if (n < 0) reject(errnoError('splice'));
      else resolve(n);
    });
  });
}

/** One request's pipes: the data pipe the sink fills, the reply pipe header and data go through. */
class Pair {
  /** Bytes in the data pipe. */
  filled = 0;
  /** The sink ran and took data (the reply goes through the pipes). */
  used = false;
  constructor(readonly data: [number, number], readonly reply: [number, number]) {}

  close(): void {
    for (const fd of [...this.data, ...this.reply]) { try { closeSync(fd); } catch { /* closed */ } }
  }
}

/** The pipes of one session's spliced READ replies. */
export class ReplySplicer {
  /** Largest reply payload a pair carries (bytes; a multiple of the page size). */
  readonly maxBytes: number;
  /** Replies sent through the pipes. */
  spliced = 0;
  private readonly free: Pair[] = [];
  private pairs = 0;
  private readonly c: Calls;
  private readonly pipeSize: number;
  private closed = false;

  private constructor(c: Calls, first: Pair, cap: number) {
    this.c = c;
    this.pipeSize = cap;
    this.maxBytes = cap - PAGE;
    this.free.push(first);
    this.pairs = 1;
  }

  /**
   * A splicer whose pipes carry replies of up to `want` bytes where the system allows
   * (less when pipes cannot grow that far); undefined when there is no splice (not Linux,
   * no pipes of at least two pages).
   */
  static open(want: number): ReplySplicer | undefined {
    if (process.platform !== 'linux') return undefined;
    const c = libc();
    if (!c) return undefined;
    let size = PAGE;
    while (size < want + PAGE) size *= 2;
    try {
      const pair = ReplySplicer.newPair(c, size);
      const cap = Math.min(pair[1], size);
      if (cap < 2 * PAGE) { pair[0].close(); return undefined; }
      return new ReplySplicer(c, pair[0], cap);
    } catch {
      return undefined;
    }
  }

  private static newPair(c: Calls, size: number): [Pair, number] {
    const d = openPipe(c, size);
    let r: [number, number, number];
    try {
      r = openPipe(c, size);
    } catch (e) {
      closeSync(d[0]); closeSync(d[1]);
      throw e;
    }
    return [new Pair([d[0], d[1]], [r[0], r[1]]), Math.min(d[2], r[2])];
  }

  /**
   * A pair for a READ of `size` bytes at `offset`, or undefined (the copy path): the data must
   * start on a page (one pipe slot per page) and fit the pipes, and a pair must be free or
   * creatable.
   */
  take(offset: number, size: number): Pair | undefined {
    if (this.closed || size < MIN_BYTES || size > this.maxBytes || offset % PAGE !== 0) return undefined;
    const p = this.free.pop();
    if (p) return p;
    if (this.pairs >= MAX_PAIRS) return undefined;
    try {
      const [pair, cap] = ReplySplicer.newPair(this.c, this.pipeSize);
      if (cap < this.pipeSize) { pair.close(); return undefined; }
      this.pairs++;
      return pair;
    } catch {
      return undefined;
    }
  }

  /** The sink that fills `p`'s data pipe from a host descriptor (loops over short splices). */
  sink(p: Pair): ReadSink {
    return async (fd, position, length) => {
      if (p.used) return undefined;   // one fill per request
      const off = Buffer.alloc(8);
      let got = 0;
      while (got < length) {
        off.writeBigInt64LE(BigInt(position + got));
        let n: number;
        try {
          n = await spliceAsync(this.c, fd, off, p.data[1], length - got);
        } catch (e) {
          // Nothing taken and the descriptor cannot splice (EINVAL), or would not now (EAGAIN:
          // the pipes are non-blocking): the caller reads into the buffer instead.
          if (got === 0 && e instanceof FsError && (e.code === 'EINVAL' || e.code === 'ENOSYS' || e.code === 'EOPNOTSUPP' || e.code === 'EAGAIN')) return undefined;
          p.used = true;
          p.filled = got;
          throw e;
        }
        p.used = true;
        if (n === 0) break;
        got += n;
      }
      p.filled = got;
      return got;
    };
  }

  /**
   * Send the reply of request `unique` through `p` to device `dev` (after its sink filled it):
   * header, then the data pipe's buffers, in one message. False when the kernel no longer waits
   * for it (interrupted: ENOENT, or the device is gone); throws when the pipes misbehaved.
   */
  send(p: Pair, dev: number, unique: bigint): boolean {
    const n = p.filled;
    const h = Buffer.allocUnsafe(OUT_HEADER);
    writeOutHeader(h, OUT_HEADER + n, 0, unique);
    if (writeSync(p.reply[1], h) !== OUT_HEADER) throw new FsError('EIO', { syscall: 'write', detail: 'reply pipe' });
    if (n > 0) {
      const moved = Number(this.c.splice(p.data[0], null, p.reply[1], null, n, SPLICE_F_NONBLOCK));
      if (moved !== n) throw moved < 0 ? errnoError('splice') : new FsError('EIO', { syscall: 'splice', detail: `moved ${moved} of ${n} bytes between pipes` });
    }
    const sent = Number(this.c.splice(p.reply[0], null, dev, null, OUT_HEADER + n, SPLICE_F_NONBLOCK));
    if (sent === OUT_HEADER + n) { this.spliced++; return true; }
    const e = sent < 0 ? errnoError('splice') : new FsError('EIO', { syscall: 'splice', detail: `sent ${sent} of ${OUT_HEADER + n} bytes` });
    if (e.code === 'ENOENT' || e.code === 'ENODEV' || e.code === 'EBADF') return false;
    throw e;
  }

  /**
   * Give `p` back after its request: reused when the request left it empty (its sink never
   * ran, or the reply went out whole), else closed.
   */
  release(p: Pair, clean: boolean): void {
    if (clean && !this.closed && this.free.length < MAX_PAIRS) {
      p.used = false;
      p.filled = 0;
      this.free.push(p);
      return;
    }
    this.pairs--;
    p.close();
  }

  /** Close every free pair (pairs in use close as their requests finish). */
  close(): void {
    this.closed = true;
    for (const p of this.free.splice(0)) { this.pairs--; p.close(); }
  }
}
