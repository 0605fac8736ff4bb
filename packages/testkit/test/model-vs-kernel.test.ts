// The reference model against the real kernel: random command sequences through node:fs on
// fresh temp directories must give the model's results and errnos (fcRuns(200) cases; raise
// with LAYERFS_FC_RUNS). This keeps the model, and MemoryLayer which agrees with it, honest.
import { describe, it } from 'vitest';
import { runModelOnHost } from '../src/index.js';

describe('reference model vs the kernel (node:fs on a temp dir)', () => {
  it('gives the kernel\'s results and errnos for the same command sequences', async () => {
    await runModelOnHost();
  });

  it.skipIf(process.geteuid?.() !== 0)('…and as a non-root user (seteuid 1000; needs root to switch): writes clear suid/sgid', async () => {
    await runModelOnHost({ as: { uid: 1000, gid: 1000 } });
  });
});
