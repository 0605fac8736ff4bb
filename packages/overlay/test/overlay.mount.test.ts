/**
 * OverlayFs (over in-memory layers) served through a real FUSE mount: copy-up serialised
 * across processes (8 × 1,000 appends to one lower file), 8 parallel readers and writers
 * served concurrently, hard links of a lower file, listings equal to a fresh mount's after
 * concurrent changes, and every table (overlay and layers) back to its root after unmount.
 * Run over both transports (`TRANSPORTS`: libfuse and the low-level one).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as fsp from 'node:fs/promises';
import { join } from 'node:path';
import type { Layer } from '@layerfs/core';
import type { MountHandle } from '@layerfs/fuse';
import { tree, type MemoryLayer } from '@layerfs/testkit';
import { OverlayFs } from '../src/index.js';
import { TRANSPORTS, mountSkip, recording, sh, tempDir, type Recorder } from './cli-helpers.js';

describe.skipIf(mountSkip).each(TRANSPORTS)('OverlayFs through a %s FUSE mount (needs root and /dev/fuse)', (transport, mountWith) => {
  let dir: string;
  let mnt: string;
  let upper: MemoryLayer;
  let lowers: MemoryLayer[];
  let ov: OverlayFs;
  let rec: Recorder;
  let h: MountHandle | undefined;
  const q = (p: string) => JSON.stringify(join(mnt, p));

  beforeAll(async () => {
    dir = await tempDir(`ovl-mount-${transport}`);
    mnt = join(dir, 'mnt');
    await fsp.mkdir(mnt);
    lowers = [
      await tree({ 'log': 'base\n', 'data': { 'a.txt': 'A'.repeat(100_000), 'b.txt': 'B' }, 'shared': 'x' }, { writable: true }),
      await tree({ 'data': { 'c.txt': 'C' }, 'deep': { 'x': { 'y': 'z' } } }, { writable: true }),
    ];
    upper = await tree({});
    ov = await OverlayFs.create({ upper, lowers: lowers as Layer[] });
    const r = recording(ov, 0);
    rec = r.rec;
    h = await mountWith(r.fs, mnt);
  });

  afterAll(async () => {
    await h?.unmount();
    await fsp.rm(dir, { recursive: true, force: true });
  });

  it('serialises copy-up: 8 processes × 1,000 appends to one lower file lose no byte', async () => {
    const jobs = [];
    for (let p = 0; p < 8; p++) {
      jobs.push(sh(`exec 3>>${q('log')}; for i in $(seq 1 1000); do echo "p${p}-$i" >&3; done`));
    }
    await Promise.all(jobs);
    const lines = (await fsp.readFile(join(mnt, 'log'), 'utf8')).split('\n').filter(Boolean);
    expect(lines.length).toBe(8001);
    expect(lines[0]).toBe('base');
    for (let p = 0; p < 8; p++) {
      const mine = lines.filter((l) => l.startsWith(`p${p}-`)).map((l) => Number(l.split('-')[1]));
      expect(mine).toEqual(Array.from({ length: 1000 }, (_, i) => i + 1));
    }
  }, 120_000);

  it('serves 8 parallel readers and writers concurrently (no global lock)', async () => {
    rec.maxConcurrent = 0;
    // Each read and write waits 50 ms in the filesystem, so requests of the 8 processes
    // overlap even when a loaded machine starts the processes far apart.
    rec.delayMs = 50;
    const jobs = [];
    for (let p = 0; p < 4; p++) {
      jobs.push(sh(`for i in 1 2 3 4 5; do cat ${q('data/a.txt')} | wc -c; done`));
      jobs.push(sh(`for i in 1 2 3 4 5; do head -c 200000 /dev/zero > ${q(`w${p}`)}; done; wc -c < ${q(`w${p}`)}`));
    }
    const out = await Promise.all(jobs);
    for (let p = 0; p < 4; p++) {
      expect(out[2 * p]!.trim().split('\n')).toEqual(Array(5).fill('100000'));
      expect(out[2 * p + 1]!.trim()).toBe('200000');
    }
    expect(rec.maxConcurrent).toBeGreaterThanOrEqual(4);
    expect(h!.stats().maxInFlight).toBeGreaterThanOrEqual(4);
    rec.delayMs = 0;
  }, 60_000);

  it('hard links a lower file: every name shows the same ino, nlink, mode and ctime after a change', async () => {
    await fsp.link(join(mnt, 'shared'), join(mnt, 'shared2'));
    await fsp.chmod(join(mnt, 'shared2'), 0o600);
    const [a, b] = await Promise.all([fsp.stat(join(mnt, 'shared')), fsp.stat(join(mnt, 'shared2'))]);
    expect([a.ino, a.nlink, a.mode, a.uid, a.ctimeMs]).toEqual([b.ino, 2, b.mode, b.uid, b.ctimeMs]);
    expect(a.mode & 0o777).toBe(0o600);
  });

  it('moves a lower directory with mv (EXDEV → copy fallback) and lists freshly', async () => {
    await sh(`mv ${q('deep')} ${q('deep2')} && ls ${q('.')}`);
    expect((await fsp.readdir(mnt)).sort()).toEqual(['data', 'deep2', 'log', 'shared', 'shared2', 'w0', 'w1', 'w2', 'w3']);
    expect(await fsp.readFile(join(mnt, 'deep2/x/y'), 'utf8')).toBe('z');
  });

  it('shows after unmount the same ls -lR as a fresh mount of the same layers, with every table back to its root', async () => {
    const lsCmd = `cd ${JSON.stringify(mnt)} && ls -lRin --time-style=+%s .`;
    const before = await sh(lsCmd);
    await h!.unmount();
    h = undefined;
    expect(ov.liveInodes()).toBe(1);
    await ov.dropCaches();
    expect(upper.liveInodes()).toBe(1);
    for (const l of lowers) expect(l.liveInodes()).toBe(1);
    const ov2 = await OverlayFs.create({ upper, lowers: lowers as Layer[] });
    h = await mountWith(ov2, mnt);
    const after = await sh(lsCmd);
    expect(after).toBe(before);
    await h.unmount();
    h = undefined;
    expect(ov2.liveInodes()).toBe(1);
    await ov2.dropCaches();
    expect(upper.liveInodes()).toBe(1);
  });
});
