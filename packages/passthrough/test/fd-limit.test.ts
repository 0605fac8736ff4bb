/**
 * Descriptor budget: a child process with `ulimit -n 1024` (soft and hard) lays out 100,000
 * files in 1,000 directories, lowers its soft limit to 512 (the layer raises it back to the
 * hard limit), and looks up, opens, reads and releases every one through a
 * PassthroughLayer (holding all lookups), then reads the first tenth again after their
 * directory descriptors were evicted, all without EMFILE: directory descriptors stay within
 * the LRU sized from RLIMIT_NOFILE, and evicted ones are reopened on demand.
 *
 * As root the files live on a tmpfs mounted inside the test's temporary directory (so the
 * test measures descriptors, not the disk journal); it is unmounted in afterAll.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { removeDir, tempDir } from './helpers.js';

const fixtures = fileURLToPath(new URL('./fixtures/', import.meta.url));
const isRoot = process.getuid?.() === 0;
let base: string | undefined;
let mounted: string | undefined;

afterAll(() => {
  if (mounted) { try { execFileSync('umount', [mounted]); } catch { execFileSync('umount', ['-l', mounted]); } }
  if (base) removeDir(base);
});

describe('descriptor limit', () => {
  it('reads 100,000 files with a soft and hard limit of 1,024', () => {
    base = tempDir('fdlimit');
    let root = base;
    if (isRoot) {
      root = `${base}/tmpfs`;
      mkdirSync(root);
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1g', 'tmpfs', root]);
      mounted = root;
    }
    const out = execFileSync('bash', ['-c',
      'ulimit -n 1024 && exec node --conditions=source --import ./register.mjs ./fd-limit-child.mjs "$0" 1000 100', root],
      { cwd: fixtures, encoding: 'utf8', maxBuffer: 1 << 20, timeout: 170_000 });
    const r = JSON.parse(out.trim().split('\n').pop()!);
    expect(r.inherited).toEqual({ soft: 1024, hard: 1024 });
    expect(r.before).toEqual({ soft: 512, hard: 1024 });
    expect(r.after).toEqual({ soft: 1024, hard: 1024 });
    expect(r.read).toBe(110_000);
    expect(r.wrong).toBe(0);
    expect(r.stale).toBe(0);
    expect(r.stats.max).toBe(480);
    expect(r.stats.cached).toBeLessThanOrEqual(r.stats.max);
    expect(r.stats.evicted).toBeGreaterThan(0);
    expect(r.stats.opened).toBeGreaterThan(1000);
    expect(r.maxFds).toBeLessThan(1024);
    expect(r.live).toBe(1 + 1000 + 100_000);
  }, 180_000);
});
