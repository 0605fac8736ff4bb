/**
 * The model-based property tests of `@layerfs/testkit` (`runModel`: random operation
 * sequences against the reference model, same results and errnos, no inode leak, same final
 * tree), run against PassthroughLayer on fresh temporary directories — the same suite the
 * testkit runs against MemoryLayer, parameterised by the layer factory.
 */
import { afterEach, beforeEach, describe, it } from 'vitest';
import { chmodSync, chownSync, mkdirSync } from 'node:fs';
import { fcRuns, runModel } from '@layerfs/testkit';
import { PassthroughLayer } from '../src/index.js';
import { removeDir, tempDir } from './helpers.js';

const isRoot = process.getuid?.() === 0;
let base: string;
let n = 0;
const layers: PassthroughLayer[] = [];

beforeEach(() => { base = tempDir('props'); });
afterEach(async () => {
  for (const l of layers.splice(0)) await l.destroy();
  removeDir(base);
});

/** A fresh layer over a new empty directory (owned by `uid`, mode 0o755). */
function fresh(options: { uid?: number; whiteoutFormat?: 'chardev' | 'oci' } = {}): () => PassthroughLayer {
  return () => {
    const dir = `${base}/${n++}`;
    mkdirSync(dir);
    chmodSync(dir, 0o755);
    if (options.uid !== undefined) chownSync(dir, options.uid, options.uid);
    const l = new PassthroughLayer(dir, options.whiteoutFormat ? { whiteoutFormat: options.whiteoutFormat } : {});
    layers.push(l);
    return l;
  };
}

describe('PassthroughLayer model-based properties', () => {
  it('agrees with the reference model and leaks no inode (plain names)', async () => {
    await runModel(fresh(), { numRuns: fcRuns(150) });
  }, 120_000);

  it('agrees with the reference model on hostile names (unicode, 255 bytes, spaces, .wh.)', async () => {
    const long = 'é'.repeat(127) + 'x';
    await runModel(fresh({ whiteoutFormat: 'chardev' }), { names: [' a b', '名\u200b', long, '.wh.x'], numRuns: fcRuns(100), maxDepth: 2 });
  }, 120_000);

  it.skipIf(!isRoot)('agrees with the reference model for a non-root caller owning the tree (needs root to chown the root)', async () => {
    const user = { uid: 1000, gid: 1000, groups: [], pid: 0, umask: 0o022 };
    await runModel(fresh({ uid: 1000 }), { ctx: user, chmodModes: [0o755, 0o700, 0o4755, 0o2755, 0o6755], numRuns: fcRuns(100) });
  }, 120_000);

  it('agrees with the reference model in an OCI-format layer (non-marker names)', async () => {
    await runModel(fresh({ whiteoutFormat: 'oci' }), { names: ['a', 'b', 'wh'], numRuns: fcRuns(100) });
  }, 120_000);
});
