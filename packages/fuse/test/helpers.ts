/**
 * Helpers of the fuse package's mount tests: the shared ones from `@layerfs/testkit`,
 * `mountSkip` (true when real mounts cannot run here; RUN_MOUNT_TESTS=1 forces them), and
 * `mountHostOverlay` (an OverlayFs over host directories served in this process).
 */
import { expect } from 'vitest';
import type { Stats } from 'node:fs';
import * as fsp from 'node:fs/promises';
import { join } from 'node:path';
import type { Filesystem } from '@layerfs/core';
import { canMount, sh, tempDir } from '@layerfs/testkit';
import { overlayFromDirs } from '../../overlay/src/index.js';
import type { MountHandle } from '../src/index.js';

export { canMount, recording, sh, shResult, tempDir, type Recorder } from '@layerfs/testkit';

/** True when mount tests must be skipped (no root or no /dev/fuse); RUN_MOUNT_TESTS=1 forces them. */
export const mountSkip = process.env.RUN_MOUNT_TESTS === '1' ? false : !(await canMount());

/**
 * Misses the kernel caches (`negativeTimeout`), on a mount at `mnt` whose `lookups()` counts
 * the requests a lookup of a name makes: three failed `lstat`s of one name make one request;
 * then every way a name appears (create, mkdir, mknod, symlink, link, rename), each right after
 * a cached miss of that name, shows the new object to this process, to another one and in the
 * listing; a removed name is missing again. Leaves the mount as it found it.
 */
export async function exerciseCachedMisses(mnt: string, lookups: () => number): Promise<void> {
  const q = (p: string) => JSON.stringify(p);
  const d = join(mnt, 'neg');
  await fsp.mkdir(d);
  await fsp.writeFile(join(d, 'f'), 'f');
  const before = lookups();
  for (let i = 0; i < 3; i++) await expect(fsp.lstat(join(d, 'missing'))).rejects.toMatchObject({ code: 'ENOENT' });
  expect(lookups() - before).toBe(1);   // the kernel answered the second and third itself
  const steps: [string, string, (s: Stats) => boolean][] = [
    ['touch', `touch ${q(join(d, 'touch'))}`, (s) => s.isFile()],
    ['mkdir', `mkdir ${q(join(d, 'mkdir'))}`, (s) => s.isDirectory()],
    ['mkfifo', `mkfifo ${q(join(d, 'mkfifo'))}`, (s) => s.isFIFO()],
    ['symlink', `ln -s f ${q(join(d, 'symlink'))}`, (s) => s.isSymbolicLink()],
    ['link', `ln ${q(join(d, 'f'))} ${q(join(d, 'link'))}`, (s) => s.isFile() && s.nlink === 2],
    ['rename', `cp ${q(join(d, 'f'))} ${q(join(mnt, 'moved'))} && mv ${q(join(mnt, 'moved'))} ${q(join(d, 'rename'))}`, (s) => s.isFile()],
  ];
  for (const [name, cmd, ok] of steps) {
    const p = join(d, name);
    await expect(fsp.lstat(p)).rejects.toMatchObject({ code: 'ENOENT' });
    await expect(fsp.lstat(p)).rejects.toMatchObject({ code: 'ENOENT' });
    await sh(cmd);
    expect([name, ok(await fsp.lstat(p))]).toEqual([name, true]);
    expect(await sh(`stat -c %n ${q(p)}`)).toBe(`${p}\n`);
  }
  expect((await fsp.readdir(d)).sort()).toEqual(['f', ...steps.map(([n]) => n)].sort());
  await fsp.unlink(join(d, 'touch'));
  await expect(fsp.lstat(join(d, 'touch'))).rejects.toMatchObject({ code: 'ENOENT' });
  await fsp.rm(d, { recursive: true });
}

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

/** An OverlayFs over `<dir>/lower`, `<dir>/upper` and `<dir>/work`, served at `<dir>/mnt`. */
export interface HostOverlay {
  /** The temporary directory holding the layers and the mount point. */
  readonly dir: string;
  /** The mount point. */
  readonly mnt: string;
  /** The overlay served. */
  readonly overlay: Awaited<ReturnType<typeof overlayFromDirs>>;
  /** The mount. */
  readonly handle: MountHandle;
  /** Unmount, destroy the overlay and remove `dir`. */
  close(): Promise<void>;
}

/**
 * Make a temporary directory named after `name` with `lower`, `upper`, `work` and `mnt`, let
 * `prepare` fill it, and serve an OverlayFs over the three layers at `mnt` with `serve` (a
 * transport: `mount` or `mountLowLevel`). Touch the mount only from child processes.
 */
export async function mountHostOverlay(
  name: string, serve: (fs: Filesystem, mnt: string) => Promise<MountHandle>, prepare?: (dir: string) => Promise<void>,
): Promise<HostOverlay> {
  const dir = await tempDir(name);
  const remove = () => fsp.rm(dir, { recursive: true, force: true });
  let overlay: HostOverlay['overlay'] | undefined;
  try {
    for (const d of ['lower', 'upper', 'work', 'mnt']) await fsp.mkdir(join(dir, d));
    await prepare?.(dir);
    overlay = await overlayFromDirs({ lowerdir: join(dir, 'lower'), upperdir: join(dir, 'upper'), workdir: join(dir, 'work') });
    const mnt = join(dir, 'mnt');
    const handle = await serve(overlay, mnt);
    const ov = overlay;
    return {
      dir, mnt, overlay: ov, handle,
      async close() { await handle.unmount(); await ov.destroy(); await remove(); },
    };
  } catch (e) {
    await overlay?.destroy();
    await remove();
    throw e;
  }
}
