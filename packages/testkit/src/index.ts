/**
 * @layerfs/testkit: the in-memory `MemoryLayer`, tree builders (`tree`, `dump`), fast-check
 * arbitraries, the model-based runner, invariant checkers and the shared Layer conformance
 * suite.
 */
export * from './memory-layer.js';
export * from './oracle.js';
export * from './tree.js';
export * from './arbitraries.js';
export * from './invariants.js';
export * from './model.js';
export * from './conformance.js';
export * from './host-model.js';
export * from './mount-testing.js';
