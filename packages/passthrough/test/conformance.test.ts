/**
 * The shared Layer conformance suite of `@layerfs/testkit`, run against PassthroughLayer on
 * real temporary directories (a fresh `root/` and `work/` per test), in both whiteout formats
 * and in userxattr mode. Devices, trusted xattrs and chardev whiteouts need root; as another
 * user those cases are skipped by capability flag.
 */
import { chmodSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { describeLayerConformance } from '@layerfs/testkit';
import { PassthroughLayer } from '../src/index.js';
import { removeDir, tempDir } from './helpers.js';

const isRoot = process.platform === 'linux' && process.getuid?.() === 0;

describeLayerConformance('PassthroughLayer', ({ whiteoutFormat, userxattr }) => {
  const base = tempDir('conf');
  chmodSync(base, 0o755);
  mkdirSync(`${base}/root`, { mode: 0o755 });
  chmodSync(`${base}/root`, 0o755);
  mkdirSync(`${base}/work`, { mode: 0o700 });
  return new PassthroughLayer(`${base}/root`, { whiteoutFormat, userxattr: userxattr ?? false, workdir: `${base}/work` });
}, {
  supports: {
    // Without root: no mknod of devices or chardev whiteouts, no trusted.* xattrs.
    whiteoutFormats: isRoot ? ['chardev', 'oci'] : ['oci'],
    devices: isRoot,
    trustedXattrs: isRoot,
    renameWhiteout: isRoot,
  },
  makeReadOnly: (layer) => {
    const l = layer as PassthroughLayer;
    return new PassthroughLayer(l.root, { whiteoutFormat: l.whiteoutFormat, writable: false });
  },
  cleanup: (layer) => removeDir(dirname((layer as PassthroughLayer).root)),
});
