/**
 * Helpers of the fuse package's mount tests: the shared ones from `@layerfs/testkit`, and
 * `mountSkip` (true when real mounts cannot run here; RUN_MOUNT_TESTS=1 forces them).
 */
import { canMount } from '@layerfs/testkit';

export { canMount, recording, sh, shResult, tempDir, type Recorder } from '@layerfs/testkit';

/** True when mount tests must be skipped (no root or no /dev/fuse); RUN_MOUNT_TESTS=1 forces them. */
export const mountSkip = process.env.RUN_MOUNT_TESTS === '1' ? false : !(await canMount());
