/**
 * @layerfs/overlay: `OverlayFs`, the union of layers with the semantics of Linux kernel
 * overlayfs, and `overlayFromDirs`, which builds one from host directories like
 * `mount -t overlay -o lowerdir=…,upperdir=…,workdir=…`.
 */
export { OverlayFs, type OverlayConfig, type OverlayOptions } from './overlay.js';
export { overlayFromDirs, splitLowerdir, type OverlayDirsConfig } from './from-dirs.js';
export { decodeOrigin, encodeOrigin, packIno, type Origin } from './origin.js';
