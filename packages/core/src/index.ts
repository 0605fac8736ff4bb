/**
 * @layerfs/core: the contracts (`Filesystem`, `Layer`), `FsError`, name validation,
 * permission checks, `InodeTable`, and the `Volume` path API over any Filesystem.
 */
export * from './errors.js';
export * from './types.js';
export * from './filesystem.js';
export * from './names.js';
export * from './permissions.js';
export * from './inode-table.js';
export * from './volume-args.js';
export * from './stats.js';
export * from './file-handle.js';
export * from './volume-streams.js';
export * from './volume.js';
