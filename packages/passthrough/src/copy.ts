/**
 * File data copy between two open descriptors for clone copy-up: first a clone
 * (`fs.copyFile(…, COPYFILE_FICLONE_FORCE)`: FICLONE reflink on Linux, clonefile on APFS),
 * else a streamed copy that keeps holes: data segments found with SEEK_DATA/SEEK_HOLE are
 * copied with `copy_file_range` (read/write where that is refused), holes are left as holes,
 * and the size is set last. Both descriptors are addressed through `/proc/self/fd/N` on Linux,
 * so the copy reaches exactly the inodes the layer resolved, whatever their path length.
 * Every data call (`copy_file_range`, read, write) runs on libuv's pool, never on the JS
 * thread; only the `lseek`/`fstat`/`ftruncate` metadata calls are synchronous. A device pair
 * whose clone was refused as unsupported is remembered, so later copies skip the attempt.
 */
import { constants, promises as fsp, fstatSync, ftruncateSync } from 'node:fs';
import { FsError, toFsError } from '@layerfs/core';
import { preadAsync, writeAll } from './data-io.js';
import { copyFileRangeAsync, lseek } from './libc.js';

const SEEK_DATA = 3;
const SEEK_HOLE = 4;
const CHUNK = 8 << 20;

/** How `copyData` copied: by cloning extents, or by streaming the data segments. */
export type CopyMethod = 'clone' | 'stream';

/**
 * Device pairs (`"<src dev>:<dst dev>"`) where a clone was refused as unsupported (EOPNOTSUPP,
 * ENOTSUP, EXDEV, ENOSYS): a property of the two filesystems, so later copies between them go
 * straight to the streamed copy instead of paying a failed clone (a pool round trip) each.
 */
const noClone = new Set<string>();

function fdPath(fd: number): string {
  return process.platform === 'darwin' ? `/dev/fd/${fd}` : `/proc/self/fd/${fd}`;
}

/**
 * Replace the data of the file open as `dstFd` (writable) with the data of `srcFd`. Keeps
 * the destination's mode (a clone through libuv would copy the source's). Returns how.
 */
export async function copyData(srcFd: number, dstFd: number, options: { allowClone?: boolean } = {}): Promise<CopyMethod> {
  const dst = fstatSync(dstFd);
  const dstMode = dst.mode & 0o7777;
  const pair = `${fstatSync(srcFd).dev}:${dst.dev}`;
  if ((options.allowClone ?? true) && !noClone.has(pair)) {
    try {
      await fsp.copyFile(fdPath(srcFd), fdPath(dstFd), constants.COPYFILE_FICLONE_FORCE);
      const after = fstatSync(dstFd).mode & 0o7777;
      if (after !== dstMode) await fsp.chmod(fdPath(dstFd), dstMode);
      return 'clone';
    } catch (e) {
      const code = (e as { code?: string }).code;
      if (code !== 'ENOTSUP' && code !== 'EOPNOTSUPP' && code !== 'EXDEV' && code !== 'EINVAL' && code !== 'ENOSYS' && code !== 'ETXTBSY') {
        throw toFsError(e, { syscall: 'copyfile' });
      }
      if (code !== 'EINVAL' && code !== 'ETXTBSY') noClone.add(pair);
    }
  }
  await streamSparse(srcFd, dstFd);
  return 'stream';
}

/** Copy the data segments of `srcFd` into `dstFd` at the same offsets; holes stay holes. */
export async function streamSparse(srcFd: number, dstFd: number): Promise<void> {
  const size = fstatSync(srcFd).size;
  // An empty destination (a fresh copy-up target) is not truncated: on ext4 a truncate to 0
  // marks the file for a flush of all its data at close (auto_da_alloc), which cost 95 ms of
  // a 1 GiB copy-up's 340.
  if (fstatSync(dstFd).size !== 0) ftruncateSync(dstFd, 0);
  let off = 0;
  let useRange = true;
  let seekable = true;
  const buf = Buffer.allocUnsafe(Math.min(CHUNK, Math.max(size, 1)));
  while (off < size) {
    let dataStart = off;
    let dataEnd = size;
    if (seekable) {
      try {
        dataStart = lseek(srcFd, off, SEEK_DATA);
        dataEnd = lseek(srcFd, dataStart, SEEK_HOLE);
      } catch (e) {
        if (e instanceof FsError && e.code === 'ENXIO') break;
        if (e instanceof FsError && (e.code === 'EINVAL' || e.code === 'ENOSYS' || e.code === 'EOPNOTSUPP')) {
          seekable = false;
          dataStart = off;
          dataEnd = size;
        } else {
          throw e;
        }
      }
    }
    let pos = dataStart;
    while (pos < dataEnd) {
      const want = Math.min(CHUNK, dataEnd - pos);
      let n = 0;
      if (useRange) {
        try {
          n = await copyFileRangeAsync(srcFd, pos, dstFd, pos, want, 0);
        } catch (e) {
          if (e instanceof FsError && (e.code === 'EXDEV' || e.code === 'EINVAL' || e.code === 'ENOSYS' || e.code === 'EOPNOTSUPP' || e.code === 'EBADF')) {
            useRange = false;
          } else {
            throw e;
          }
        }
      }
      if (!useRange) {
        const r = await preadAsync(srcFd, buf, 0, want, pos);
        await writeAll(dstFd, buf.subarray(0, r), pos);
        n = r;
      }
      if (n === 0) { dataEnd = pos; break; }
      pos += n;
    }
    off = Math.max(dataEnd, off + 1);
  }
  ftruncateSync(dstFd, size);
}
