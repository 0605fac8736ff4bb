/**
 * Node streams over a `FileHandle`: `Volume.createReadStream` and `Volume.createWriteStream`
 * are built from these. The stream opens its handle when constructed, reads or writes in
 * `highWaterMark`-sized requests at explicit positions (never more than `VOLUME_CHUNK` each),
 * and closes the handle — giving back its lookup — when it ends, fails or is destroyed.
 * Errors arrive as the stream's 'error' event, as with `fs.createReadStream`.
 */
import { Readable, Writable } from 'node:stream';
import type { FileHandle } from './file-handle.js';
import { VOLUME_CHUNK } from './volume-args.js';

/** Options of `createReadStream` (Node's names and defaults). */
export interface ReadStreamOptions {
  /** Open flags (default 'r'). */
  flags?: string | number;
  /** First byte to read (default 0). */
  start?: number;
  /** Last byte to read, inclusive (default: to the end of the file). */
  end?: number;
  /** Bytes per read request (default 64 KiB, at most `VOLUME_CHUNK`). */
  highWaterMark?: number;
  /** Decode chunks to strings. */
  encoding?: BufferEncoding;
}

/** Options of `createWriteStream` (Node's names and defaults). */
export interface WriteStreamOptions {
  /** Open flags (default 'w'). */
  flags?: string | number;
  /** Mode of a created file (default 0o666). */
  mode?: number;
  /** Position of the first write (default: the handle's position, 0 for a new handle). */
  start?: number;
  /** Buffered bytes before `write()` asks the caller to wait (default 16 KiB). */
  highWaterMark?: number;
}

/** A Readable over the handle `open()` gives; the handle is closed when the stream finishes. */
export function readStreamOf(open: () => Promise<FileHandle>, options: ReadStreamOptions = {}): Readable {
  const end = options.end ?? Infinity;
  const size = Math.min(options.highWaterMark ?? 64 * 1024, VOLUME_CHUNK);
  let pos = options.start ?? 0;
  let handle: FileHandle | undefined;
  const stream: Readable = new Readable({
    highWaterMark: size,
    ...(options.encoding ? { encoding: options.encoding } : {}),
    construct(cb) {
      open().then((h) => { handle = h; cb(); }, cb);
    },
    read() {
      const want = Math.min(size, end - pos + 1);
      if (want <= 0 || handle === undefined) {
        stream.push(null);
        return;
      }
      handle.read(Buffer.allocUnsafe(want), 0, want, pos).then(({ bytesRead, buffer }) => {
        pos += bytesRead;
        stream.push(bytesRead > 0 ? buffer.subarray(0, bytesRead) : null);
      }, (e: Error) => stream.destroy(e));
    },
    destroy(err, cb) {
      const h = handle;
      handle = undefined;
      (h ? h.close() : Promise.resolve()).then(() => cb(err), (e: Error) => cb(err ?? e));
    },
  });
  return stream;
}

/** A Writable over the handle `open()` gives; the handle is closed when the stream finishes. */
export function writeStreamOf(open: () => Promise<FileHandle>, options: WriteStreamOptions = {}): Writable {
  let pos: number | null = options.start ?? null;
  let handle: FileHandle | undefined;
  const closeWith = (err: Error | null, cb: (e?: Error | null) => void): void => {
    const h = handle;
    handle = undefined;
    (h ? h.close() : Promise.resolve()).then(() => cb(err), (e: Error) => cb(err ?? e));
  };
  return new Writable({
    highWaterMark: options.highWaterMark ?? 16 * 1024,
    construct(cb) {
      open().then((h) => { handle = h; cb(); }, cb);
    },
    write(chunk: Buffer, _encoding, cb) {
      if (handle === undefined) {
        cb(new Error('write stream is closed'));
        return;
      }
      handle.write(chunk, 0, chunk.byteLength, pos).then(({ bytesWritten }) => {
        if (pos !== null) pos += bytesWritten;
        cb();
      }, cb);
    },
    final(cb) { closeWith(null, cb); },
    destroy(err, cb) { closeWith(err, cb); },
  });
}
