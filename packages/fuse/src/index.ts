/**
 * @layerfs/fuse: mount any core `Filesystem` through the kernel's FUSE (transport:
 * fuse-native on libfuse 2), plus the mount-table helpers (stale-mount detection and
 * clearing) that the `layerfs` command uses.
 */
export { mount, liveMounts, type MountHandle, type MountStats, type ServeOptions } from './mount.js';
export { resolveMountOptions, libfuseOptionString, type MountOptions, type ResolvedMountOptions } from './options.js';
export {
  listMounts, findMount, probeMountpoint, clearStaleMount, staleMountCommands, unmountPath,
  type MountInfo, type MountpointState,
} from './mounts.js';
export { PathMap, type PathEntry } from './path-map.js';
export { LOW_LEVEL_SHARED_OPTIONS, mountLowLevel, type LowLevelOptions, type LowLevelStats } from './lowlevel/session.js';
