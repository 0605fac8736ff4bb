// scratch (not committed): OverlayFs over PassthroughLayers vs the kernel, with the testkit oracle.
import { ROOT_CONTEXT, Volume } from '@layerfs/core';
import { runOracle, volumeTarget, type VolumeLike } from '@layerfs/testkit';
import { it } from 'vitest';
import { overlayFromDirs } from '../src/index.js';

it('kernel oracle', async () => {
  await runOracle(async (layout) => {
    const ov = await overlayFromDirs({ lowerdir: layout.lowerdirs, upperdir: layout.upperdir, workdir: layout.workdir });
    const vol = new Volume(ov, { context: ROOT_CONTEXT });
    return { target: volumeTarget(vol as unknown as VolumeLike), close: () => ov.destroy(), upperdir: layout.upperdir };
  }, { numRuns: Number(process.env.N ?? 100), seed: Number(process.env.S ?? 1), hardLinks: process.env.HL !== '0' });
}, 900_000);
