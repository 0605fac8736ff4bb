// The kernel-overlayfs oracle for OverlayFs: generated cases (two lowers, an upper with
// whiteouts and opaque dirs, up to 30 operations) are laid out twice on disk; `node:fs` on a
// kernel `mount -t overlay` of one copy is compared with `Volume(OverlayFs over
// PassthroughLayers)` on the other, call by call (result or errno), then the whole visible
// tree, then the two upper directories (whiteouts and opaque markers included). Needs root
// and kernel overlayfs; skipped with the reason otherwise (the memory-layer suite in
// oracle-memory.test.ts runs everywhere). Replay with LAYERFS_ORACLE_SEED / _PATH.
import { kernelOverlayUnavailable, runOracle, unmountAllOracleMounts } from '@layerfs/testkit';
import { afterAll, describe, expect, it } from 'vitest';
import { passthroughOverlaySut } from './oracle-suts.js';

const unavailable = await kernelOverlayUnavailable();

afterAll(async () => { await unmountAllOracleMounts(); });

describe.skipIf(unavailable !== undefined)(`oracle: kernel overlayfs vs OverlayFs over PassthroughLayers (${unavailable ?? 'kernel overlay available'})`, () => {
  it('agrees on 300 generated sequences of up to 30 operations', async () => {
    const res = await runOracle(passthroughOverlaySut(), { numRuns: 300, sutName: 'OverlayFs', dirNlink: true, dirTimes: true });
    expect(res.failed).toBe(false);
  }, 300_000);
});
