/**
 * `FileHandle`: what `Volume.open` returns, shaped like `node:fs/promises`' FileHandle. It
 * owns one open handle of a Filesystem inode and one lookup on it, both given back by
 * `close()`. All byte I/O of the Volume goes through here, in chunks of at most
 * `VOLUME_CHUNK`, with Node's file-position rules (a null position reads or writes at the
 * handle's position and advances it; O_APPEND writes land at the end, done by the Filesystem).
 * Errors carry Node's syscall names ('read', 'write', 'fstat', 'ftruncate', …) and no path.
 */
import { FsError } from './errors.js';
import type { Filesystem } from './filesystem.js';
import { BigIntStats, Stats } from './stats.js';
import { OpenFlags, type RequestContext } from './types.js';
import { VOLUME_CHUNK, encodingOf, toBytes, toTimespec, withErrorContext, type TimeLike } from './volume-args.js';

/** What `FileHandle.read` resolves to (as Node's). */
export interface ReadResult<T extends Uint8Array> {
  /** Bytes read (0 at end of file). */
  bytesRead: number;
  /** The buffer read into. */
  buffer: T;
}

/** What `FileHandle.write` resolves to (as Node's). */
export interface WriteResult<T> {
  /** Bytes written. */
  bytesWritten: number;
  /** The data that was passed in. */
  buffer: T;
}

/** Options of the object forms of `FileHandle.read`. */
export interface ReadOptions<T extends Uint8Array = Buffer> {
  /** Buffer to read into (default: a new 16 KiB Buffer). */
  buffer?: T;
  /** Where in the buffer to start filling (default 0). */
  offset?: number;
  /** How many bytes to read (default: the rest of the buffer). */
  length?: number;
  /** File position to read at; null/undefined/-1 = the handle's position. */
  position?: number | bigint | null;
}

/** Options of the object form of `FileHandle.write`. */
export interface WriteOptions {
  /** Where in the buffer the data starts (default 0). */
  offset?: number;
  /** How many bytes to write (default: the rest of the buffer). */
  length?: number;
  /** File position to write at; null/undefined = the handle's position. */
  position?: number | null;
}

/** `readFile`/`writeFile` options on a handle: the encoding (or the encoding itself). */
export type EncodingOption = { encoding?: BufferEncoding | null } | BufferEncoding | null | undefined;

/** An open file of a Volume. Made by `Volume.open`; holds one lookup of its inode until `close()`. */
export class FileHandle {
  readonly #fs: Filesystem;
  readonly #ctx: RequestContext;
  readonly #ino: number;
  readonly #fh: number | undefined;
  readonly #flags: number;
  #position = 0;
  #closed: Promise<void> | undefined;

  /**
   * Wrap an open handle: `fh` from `Filesystem.open`/`create` (undefined for a directory
   * opened read-only, which has no file handle). The caller hands over one lookup of `ino`.
   */
  constructor(fs: Filesystem, ctx: RequestContext, ino: number, fh: number | undefined, flags: number) {
    this.#fs = fs; this.#ctx = ctx; this.#ino = ino; this.#fh = fh; this.#flags = flags;
  }

  /** The inode this handle is open on. */
  get ino(): number { return this.#ino; }

  /** Read into a buffer, in Node's forms: `(buffer, offset, length, position)`, `(buffer, options)`, `(options)`. */
  async read<T extends Uint8Array = Buffer>(
    bufferOrOptions?: T | ReadOptions<T>, offsetOrOptions?: number | null | ReadOptions<T>,
    length?: number | null, position?: number | bigint | null,
  ): Promise<ReadResult<T>> {
    let opts: ReadOptions<T>;
    if (bufferOrOptions instanceof Uint8Array) {
      opts = typeof offsetOrOptions === 'object' && offsetOrOptions !== null
        ? { ...offsetOrOptions, buffer: bufferOrOptions }
        : { buffer: bufferOrOptions, ...defined({ offset: offsetOrOptions, length, position }) };
    } else {
      opts = bufferOrOptions ?? {};
    }
    const buffer = opts.buffer ?? (Buffer.alloc(16384) as unknown as T);
    const offset = opts.offset ?? 0;
    const len = opts.length ?? buffer.byteLength - offset;
    if (len === 0) return { bytesRead: 0, buffer }; // Node answers without a read(2)
    return withErrorContext({ syscall: 'read' }, async () => {
      checkRange(buffer, offset, len);
      const pos = positionOf(opts.position);
      const bytesRead = await this.#pread(buffer.subarray(offset, offset + len), pos ?? this.#position);
      if (pos === undefined) this.#position += bytesRead;
      return { bytesRead, buffer };
    });
  }

  /**
   * Write, in Node's forms: `(buffer, offset?, length?, position?)`, `(buffer, options)`, or
   * `(string, position?, encoding?)`.
   */
  async write<T extends Uint8Array | string>(
    data: T, offsetOrPosition?: number | null | WriteOptions, lengthOrEncoding?: number | null | BufferEncoding,
    position?: number | null,
  ): Promise<WriteResult<T>> {
    let bytes: Uint8Array;
    let pos: number | null | undefined;
    if (typeof data === 'string') {
      bytes = toBytes(data, typeof lengthOrEncoding === 'string' ? lengthOrEncoding : undefined);
      pos = typeof offsetOrPosition === 'number' ? offsetOrPosition : null;
    } else {
      if (data.byteLength === 0) return { bytesWritten: 0, buffer: data }; // Node answers without a write(2)
      const opts: WriteOptions = typeof offsetOrPosition === 'object' && offsetOrPosition !== null
        ? offsetOrPosition
        : defined({ offset: offsetOrPosition, length: typeof lengthOrEncoding === 'number' ? lengthOrEncoding : undefined, position });
      const offset = opts.offset ?? 0;
      const len = opts.length ?? data.byteLength - offset;
      checkRange(data, offset, len);
      bytes = data.subarray(offset, offset + len);
      pos = opts.position;
    }
    return withErrorContext({ syscall: 'write' }, async () => {
      const bytesWritten = await this.#writeAt(bytes, pos ?? undefined);
      return { bytesWritten, buffer: data };
    });
  }

  /** Read from the handle's position to the end of the file: a Buffer, or a string with an encoding. */
  readFile(options?: EncodingOption): Promise<Buffer>;
  /** Read from the handle's position to the end of the file, decoded. */
  readFile(options: BufferEncoding | { encoding: BufferEncoding }): Promise<string>;
  async readFile(options?: EncodingOption): Promise<Buffer | string> {
    const encoding = encodingOf(options);
    return withErrorContext({ syscall: 'read' }, async () => {
      const fh = this.#readableFh();
      // Ask for the size as known now (+1 to see the end in the same call), growing if the file does.
      const size = (await this.#fs.getattr(this.#ctx, this.#ino, fh)).size;
      const chunks: Uint8Array[] = [];
      for (;;) {
        const want = Math.min(VOLUME_CHUNK, Math.max(size - this.#position, 0) + 1);
        const got = await this.#fs.read(this.#ctx, this.#ino, fh, want, this.#position);
        const n = Math.min(got.byteLength, want);
        this.#position += n;
        if (n > 0) chunks.push(got.subarray(0, n));
        if (n < want) break;
      }
      const all = chunks.length === 1 && chunks[0] ? Buffer.from(chunks[0].buffer, chunks[0].byteOffset, chunks[0].byteLength) : Buffer.concat(chunks);
      return encoding ? all.toString(encoding) : all;
    });
  }

  /** Write all of `data` at the handle's position (at the end for an O_APPEND handle). */
  async writeFile(data: string | Uint8Array, options?: EncodingOption): Promise<void> {
    const bytes = toBytes(data, encodingOf(options));
    if (bytes.byteLength === 0) return; // nothing to write: Node makes no write(2) either
    await withErrorContext({ syscall: 'write' }, () => this.#writeAt(bytes, undefined));
  }

  /** Append `data` (as `writeFile`; Node's FileHandle.appendFile is the same call). */
  appendFile(data: string | Uint8Array, options?: EncodingOption): Promise<void> {
    return this.writeFile(data, options);
  }

  /** Attributes of the open file, as `fstat`. */
  stat(options?: { bigint?: false }): Promise<Stats>;
  /** Attributes of the open file with exact nanosecond times. */
  stat(options: { bigint: true }): Promise<BigIntStats>;
  async stat(options?: { bigint?: boolean }): Promise<Stats | BigIntStats> {
    return withErrorContext({ syscall: 'fstat' }, async () => {
      this.#check();
      const attr = await this.#fs.getattr(this.#ctx, this.#ino, this.#fh);
      return options?.bigint ? new BigIntStats(attr) : new Stats(attr);
    });
  }

  /** Set the file's size (negative lengths count as 0, as Node does); EINVAL unless open for writing. */
  async truncate(len = 0): Promise<void> {
    await withErrorContext({ syscall: 'ftruncate' }, async () => {
      this.#check();
      if (this.#fh === undefined || (this.#flags & OpenFlags.O_ACCMODE) === OpenFlags.O_RDONLY) throw FsError.of('EINVAL');
      await this.#fs.setattr(this.#ctx, this.#ino, { size: Math.max(0, len) }, this.#fh);
    });
  }

  /** Flush data and metadata to stable storage. */
  sync(): Promise<void> { return this.#fsync(false, 'fsync'); }

  /** Flush data to stable storage. */
  datasync(): Promise<void> { return this.#fsync(true, 'fdatasync'); }

  /** Change the permission bits, as `fchmod`. */
  async chmod(mode: number): Promise<void> {
    await this.#setattr('fchmod', { mode: mode & 0o7777 });
  }

  /** Change owner and group (-1 leaves one unchanged), as `fchown`. */
  async chown(uid: number, gid: number): Promise<void> {
    await this.#setattr('fchown', ownerChange(uid, gid));
  }

  /** Set access and modification times, as `futimes`. */
  async utimes(atime: TimeLike, mtime: TimeLike): Promise<void> {
    await withErrorContext({ syscall: 'futime' }, async () => {
      const changes = { atime: toTimespec(atime), mtime: toTimespec(mtime) };
      this.#check();
      await this.#fs.setattr(this.#ctx, this.#ino, changes, this.#fh);
    });
  }

  /** Flush and release the handle and give back its lookup. Closing twice is harmless. */
  close(): Promise<void> {
    this.#closed ??= withErrorContext({ syscall: 'close' }, async () => {
      try {
        if (this.#fh !== undefined) {
          try {
            await this.#fs.flush(this.#ctx, this.#ino, this.#fh);
          } finally {
            await this.#fs.release(this.#ctx, this.#ino, this.#fh);
          }
        }
      } finally {
        await this.#fs.forget(this.#ctx, this.#ino, 1);
      }
    });
    return this.#closed;
  }

  /** `await using` support: closes the handle. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  #check(): void {
    if (this.#closed) throw new FsError('EBADF', { detail: 'file handle is closed' });
  }

  /** The file handle to read with: EBADF when closed or write-only, EISDIR for a directory (as read(2)). */
  #readableFh(): number {
    this.#check();
    if (this.#fh === undefined) throw FsError.of('EISDIR');
    if ((this.#flags & OpenFlags.O_ACCMODE) === OpenFlags.O_WRONLY) throw FsError.of('EBADF', 'not open for reading');
    return this.#fh;
  }

  /** Fill `dst` from `position` in chunks; fewer bytes only at end of file. */
  async #pread(dst: Uint8Array, position: number): Promise<number> {
    const fh = this.#readableFh();
    let done = 0;
    while (done < dst.byteLength) {
      const want = Math.min(VOLUME_CHUNK, dst.byteLength - done);
      const got = await this.#fs.read(this.#ctx, this.#ino, fh, want, position + done);
      dst.set(got.subarray(0, want), done);
      done += Math.min(got.byteLength, want);
      if (got.byteLength < want) break;
    }
    return done;
  }

  /** Write all of `src` at `position` (undefined: the handle's position, which then advances). */
  async #writeAt(src: Uint8Array, position: number | undefined): Promise<number> {
    this.#check();
    if (this.#fh === undefined) throw FsError.of('EBADF', 'not open for writing');
    if ((this.#flags & OpenFlags.O_ACCMODE) === OpenFlags.O_RDONLY) throw FsError.of('EBADF', 'not open for writing');
    const start = position ?? this.#position;
    let done = 0;
    while (done < src.byteLength) {
      const chunk = src.subarray(done, done + VOLUME_CHUNK);
      const n = await this.#fs.write(this.#ctx, this.#ino, this.#fh, chunk, start + done);
      if (n <= 0) throw FsError.of('EIO', 'the filesystem wrote nothing');
      done += n;
    }
    // As write(2): the position moves only when something was written (an empty O_APPEND
    // write leaves it where it was).
    if (position === undefined && done > 0) {
      this.#position = (this.#flags & OpenFlags.O_APPEND) !== 0
        ? (await this.#fs.getattr(this.#ctx, this.#ino, this.#fh)).size
        : start + done;
    }
    return done;
  }

  async #fsync(datasync: boolean, syscall: string): Promise<void> {
    await withErrorContext({ syscall }, async () => {
      this.#check();
      if (this.#fh !== undefined) await this.#fs.fsync(this.#ctx, this.#ino, this.#fh, datasync);
    });
  }

  async #setattr(syscall: string, changes: Parameters<Filesystem['setattr']>[2]): Promise<void> {
    await withErrorContext({ syscall }, async () => {
      this.#check();
      await this.#fs.setattr(this.#ctx, this.#ino, changes, this.#fh);
    });
  }
}

/** The setattr change of `chown(uid, gid)`: -1 leaves that id unchanged. */
export function ownerChange(uid: number, gid: number): { uid?: number; gid?: number } {
  const changes: { uid?: number; gid?: number } = {};
  if (uid !== -1) changes.uid = uid;
  if (gid !== -1) changes.gid = gid;
  return changes;
}

function defined<T extends object>(o: T): { [K in keyof T]: Exclude<T[K], null | undefined> } {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined && v !== null)) as never;
}

function checkRange(buffer: Uint8Array, offset: number, length: number): void {
  if (!Number.isInteger(offset) || !Number.isInteger(length) || offset < 0 || length < 0 || offset + length > buffer.byteLength) {
    throw new FsError('EINVAL', { detail: `offset ${offset} + length ${length} outside a buffer of ${buffer.byteLength}` });
  }
}

function positionOf(position: number | bigint | null | undefined): number | undefined {
  if (position === null || position === undefined || position === -1 || position === -1n) return undefined;
  const n = Number(position);
  if (!Number.isSafeInteger(n) || n < 0) throw new FsError('EINVAL', { detail: `bad file position ${String(position)}` });
  return n;
}
