// The oracle over in-memory layers (runs everywhere: no root, no mounts): generated cases
// of two lowers, an upper with whiteouts and opaque dirs, and up to 30 operations, applied
// to `Volume(OverlayFs over MemoryLayers)` and to the testkit's kernel-overlayfs reference
// model (itself checked against the kernel by the testkit's harness tests), compared after
// every step, then the visible tree and the upper layer. Seed it with LAYERFS_ORACLE_SEED.
import { runModelOracle } from '@layerfs/testkit';
import { describe, expect, it } from 'vitest';
import { memoryOverlaySut } from './oracle-suts.js';

describe('oracle: OverlayFs over MemoryLayers vs the reference model', () => {
  it('agrees on 300 generated sequences of up to 30 operations', async () => {
    const res = await runModelOracle(memoryOverlaySut(), { numRuns: 300, sutName: 'OverlayFs', dirNlink: true, dirTimes: true });
    expect(res.failed).toBe(false);
  }, 240_000);
});
