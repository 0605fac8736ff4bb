/**
 * Helpers of the overlay package's mount tests: the shared ones from `@layerfs/testkit`,
 * `mountSkip` (true when real mounts cannot run here; RUN_MOUNT_TESTS=1 forces them) and
 * `TRANSPORTS`, the two ways `@layerfs/fuse` serves a Filesystem, for tests run over both.
 */
import type { Filesystem } from '@layerfs/core';
import { mount, mountLowLevel, type MountHandle } from '@layerfs/fuse';
import { canMount } from '@layerfs/testkit';

export { canMount, recording, sh, shResult, tempDir, type Recorder } from '@layerfs/testkit';

/** True when mount tests must be skipped (no root or no /dev/fuse); RUN_MOUNT_TESTS=1 forces them. */
export const mountSkip = process.env.RUN_MOUNT_TESTS === '1' ? false : !(await canMount());

/** Mount `fs` at `mnt` through one transport (`destroyOnUnmount`: destroy `fs` after unmounting). */
export type MountFn = (fs: Filesystem, mnt: string, o?: { destroyOnUnmount?: boolean }) => Promise<MountHandle>;

/**
 * The transports, for `describe.each`: `mount()` (fuse-native on libfuse 2, path map) and
 * `mountLowLevel()` (the kernel protocol on /dev/fuse, node id = inode number); neither
 * installs signal handlers in a test process.
 */
export const TRANSPORTS: ReadonlyArray<readonly ['libfuse' | 'lowlevel', MountFn]> = [
  ['libfuse', (fs, mnt, o) => mount(fs, mnt, { handleSignals: false, ...o })],
  ['lowlevel', (fs, mnt, o) => mountLowLevel(fs, mnt, { handleSignals: false, ...o })],
];
