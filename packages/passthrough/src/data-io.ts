/**
 * Data I/O off the JS thread: positioned reads and writes of whole buffers through libuv's
 * pool (`fs.read`/`fs.write` with callbacks — cheaper per call than `FileHandle` here, see
 * the README), fsync/fdatasync the same way. A data call can wait on a disk (or on a slow
 * host filesystem) for milliseconds; when layerfs serves a FUSE mount from its one JS thread
 * every other request would wait behind it, so none of these ever runs synchronously. The
 * descriptors are host files only: the pool must never be sent into a mount served by this
 * process (see the fuse README, "libuv pool").
 */
import { fdatasync, fstatSync, fsync, read, write } from 'node:fs';
import { READ_SINK, type ReadSink } from '@layerfs/core';

/** `pread` on the pool; resolves the count read (0 at end of file). */
export function preadAsync(fd: number, buf: Uint8Array, offset: number, length: number, position: number): Promise<number> {
  return new Promise((resolve, reject) => {
    read(fd, buf, offset, length, position, (e, n) => (e ? reject(e) : resolve(n)));
  });
}

/** `pwrite` on the pool; resolves the count written. */
export function pwriteAsync(fd: number, buf: Uint8Array, offset: number, length: number, position: number): Promise<number> {
  return new Promise((resolve, reject) => {
    write(fd, buf, offset, length, position, (e, n) => (e ? reject(e) : resolve(n)));
  });
}

/**
 * Read up to `length` bytes at `position` into `into` (when it holds `length` bytes; the result
 * is then a view of it) or a fresh buffer, looping over short reads until
 * `length` or end of file. A short read of a regular file that reached its size (one
 * synchronous `fstat`, a metadata call) ends the read without another trip through the pool.
 * An `EAGAIN` (non-blocking fifo or device) after some data ends the read with what was got;
 * before any data it is thrown. When `into` carries a `ReadSink` (`READ_SINK`) and `fd` is a
 * regular file (`regular`, when the caller knows; else one `fstat`), the sink takes the data
 * instead: the result is then a view of `into` as long as the count the sink took, and its
 * bytes are not the file's (the caller that set the sink delivers them).
 */
export async function readFull(fd: number, length: number, position: number, into?: Uint8Array, regular?: boolean): Promise<Uint8Array> {
  const sink = (into as { [READ_SINK]?: ReadSink } | undefined)?.[READ_SINK];
  if (sink !== undefined && into !== undefined && into.length >= length && (regular ?? fstatSync(fd).isFile())) {
    const n = await sink(fd, position, length);
    if (n !== undefined) return into.subarray(0, n);
  }
  const buf = into !== undefined && into.length >= length ? into : Buffer.allocUnsafe(length);
  let got = 0;
  while (got < length) {
    let n: number;
    try {
      n = await preadAsync(fd, buf, got, length - got, position + got);
    } catch (e) {
      if ((e as { code?: string }).code === 'EAGAIN' && got > 0) break;
      throw e;
    }
    if (n === 0) break;
    got += n;
    if (got < length) {
      const st = fstatSync(fd);
      if (st.isFile() && position + got >= st.size) break;
    }
  }
  return got === buf.length ? buf : buf.subarray(0, got);
}

/** Write all of `data` at `position`, looping over short writes; resolves `data.length`. */
export async function writeAll(fd: number, data: Uint8Array, position: number): Promise<number> {
  let done = 0;
  while (done < data.length) done += await pwriteAsync(fd, data, done, data.length - done, position + done);
  return done;
}

/** fsync (or fdatasync) on the pool. */
export function fsyncAsync(fd: number, datasync: boolean): Promise<void> {
  return new Promise((resolve, reject) => {
    (datasync ? fdatasync : fsync)(fd, (e) => (e ? reject(e) : resolve()));
  });
}
