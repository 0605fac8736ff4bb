// Systems under test for the kernel-overlayfs oracle (shared by oracle*.test.ts): a Volume
// over OverlayFs, with its layers either PassthroughLayers of the laid-out host directories
// (compared with the kernel) or MemoryLayers of the case (compared with the reference model).
import { ROOT_CONTEXT, Volume } from '@layerfs/core';
import { dumpMemoryUpper, memoryLayersFor, volumeTarget, type MemorySutFactory, type SutFactory } from '@layerfs/testkit';
import { OverlayFs, overlayFromDirs } from '../src/index.js';

/** `Volume(OverlayFs)` over PassthroughLayers of the laid-out directories (chardev whiteouts). */
export function passthroughOverlaySut(): SutFactory {
  return async (l) => {
    const ov = await overlayFromDirs({ lowerdir: [...l.lowerdirs], upperdir: l.upperdir, workdir: l.workdir, whiteoutFormat: 'chardev' });
    const vol = new Volume(ov, { context: ROOT_CONTEXT });
    return { target: volumeTarget(vol, 'OverlayFs/Passthrough'), upperdir: l.upperdir, close: () => ov.destroy() };
  };
}

/** `Volume(OverlayFs)` over the case's layers laid out in MemoryLayers. */
export function memoryOverlaySut(): MemorySutFactory {
  return async (c) => {
    const { upper, lowers } = await memoryLayersFor(c);
    const ov = await OverlayFs.create({ upper, lowers });
    const vol = new Volume(ov, { context: ROOT_CONTEXT });
    return { target: volumeTarget(vol, 'OverlayFs/MemoryLayer'), close: () => ov.destroy(), dumpUpper: () => dumpMemoryUpper(upper) };
  };
}
