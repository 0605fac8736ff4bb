/**
 * @layerfs/testkit: the in-memory `MemoryLayer`, tree builders (`tree`, `dump`), fast-check
 * arbitraries, the model-based runner, invariant checkers and the shared Layer conformance
 * suite.
 */
export * from './memory-layer.js';
export * from './oracle.js';
export * from './tree.js';
