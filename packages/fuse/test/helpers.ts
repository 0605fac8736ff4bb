/**
 * Helpers of the fuse package's mount tests: the shared ones from `@layerfs/testkit`, and
 * `mountSkip` (true when real mounts cannot run here; RUN_MOUNT_TESTS=1 forces them).
 */
import { expect } from 'vitest';
import * as fsp from 'node:fs/promises';
import { join } from 'node:path';
import { canMount } from '@layerfs/testkit';

export { canMount, recording, sh, shResult, tempDir, type Recorder } from '@layerfs/testkit';

/** True when mount tests must be skipped (no root or no /dev/fuse); RUN_MOUNT_TESTS=1 forces them. */
export const mountSkip = process.env.RUN_MOUNT_TESTS === '1' ? false : !(await canMount());

/**
 * Ordinary file operations through the kernel on an empty mount at `mnt`, as both transports'
 * tests run them (mkdir, write, read, readdir, rename, symlink, chmod, truncate, O_TRUNC,
 * unlink, rmdir); leaves the mount empty.
 */
export async function exerciseBasicOps(mnt: string): Promise<void> {
  await fsp.mkdir(join(mnt, 'd'));
  await fsp.writeFile(join(mnt, 'd', 'f'), 'hello');
  expect(await fsp.readFile(join(mnt, 'd', 'f'), 'utf8')).toBe('hello');
  expect(await fsp.readdir(join(mnt, 'd'))).toEqual(['f']);
  await fsp.rename(join(mnt, 'd', 'f'), join(mnt, 'g'));
  expect((await fsp.readdir(mnt)).sort()).toEqual(['d', 'g']);
  await fsp.symlink('g', join(mnt, 's'));
  expect(await fsp.readlink(join(mnt, 's'))).toBe('g');
  expect(await fsp.readFile(join(mnt, 's'), 'utf8')).toBe('hello');
  await fsp.chmod(join(mnt, 'g'), 0o600);
  expect((await fsp.stat(join(mnt, 'g'))).mode & 0o7777).toBe(0o600);
  await fsp.truncate(join(mnt, 'g'), 2);
  expect(await fsp.readFile(join(mnt, 'g'), 'utf8')).toBe('he');
  await fsp.writeFile(join(mnt, 'g'), 'xyz');    // O_TRUNC at open (atomic_o_trunc)
  expect(await fsp.readFile(join(mnt, 'g'), 'utf8')).toBe('xyz');
  await fsp.unlink(join(mnt, 's'));
  await fsp.unlink(join(mnt, 'g'));
  await fsp.rmdir(join(mnt, 'd'));
  expect(await fsp.readdir(mnt)).toEqual([]);
}
