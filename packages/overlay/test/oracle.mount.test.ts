/**
 * The kernel-overlayfs oracle through the mount: the same generated sequences are applied
 * with `node:fs` to a kernel `mount -t overlay` of one copy of the layers and to a layerfs
 * FUSE mount (OverlayFs over PassthroughLayers, served by `@layerfs/fuse`) of the other,
 * compared step by step, then the visible trees, then the upper directories. 50 sequences
 * to fit the package's time budget (LAYERFS_ORACLE_RUNS raises it; replay with
 * LAYERFS_ORACLE_SEED / _PATH).
 */
import { afterAll, describe, expect, it } from 'vitest';
import { mount } from '@layerfs/fuse';
import { kernelOverlayUnavailable, runMountOracle, unmountAllOracleMounts } from '@layerfs/testkit';
import { overlayFromDirs } from '../src/index.js';
import { mountSkip } from './cli-helpers.js';

const unavailable = await kernelOverlayUnavailable();

afterAll(async () => { await unmountAllOracleMounts(); });

describe.skipIf(mountSkip || unavailable !== undefined)(`oracle through the mount: kernel overlayfs vs layerfs FUSE (${unavailable ?? 'root, /dev/fuse and kernel overlay available'})`, () => {
  it('agrees on 50 generated sequences of up to 30 operations', async () => {
    const res = await runMountOracle(async (l) => {
      const ov = await overlayFromDirs({ lowerdir: [...l.lowerdirs], upperdir: l.upperdir, workdir: l.workdir, whiteoutFormat: 'chardev' });
      const h = await mount(ov, l.mountpoint, { handleSignals: false, destroyOnUnmount: true });
      return () => h.unmount();
    }, { numRuns: 50, sutName: 'layerfs mount' });
    expect(res.failed).toBe(false);
  }, 300_000);
});
