/**
 * @layerfs/passthrough: a host directory as a layerfs `Layer` (`PassthroughLayer`), its
 * options and uid/gid mapping, the descriptor budget helpers, the clone/sparse data copy,
 * and the libc bindings it uses (through koffi).
 */
export { PassthroughLayer } from './passthrough.js';
export {
  IdMap, OVERFLOW_ID, mayMknod, resolvePassthroughOptions,
  type IdRange, type PassthroughOptions, type ResolvedPassthroughOptions,
} from './options.js';
export { DirFdCache, defaultMaxOpenFds, raiseNofileLimit } from './fd-cache.js';
export { copyData, streamSparse, type CopyMethod } from './copy.js';
export * as libc from './libc.js';
