/**
 * READ replies spliced from the host file on the low-level transport (lowlevel/splice.ts): an
 * OverlayFs over PassthroughLayers served in this process and read only from child processes.
 * Data read back is the file's for reads of several sizes and offsets (each reaching the
 * server: the file's pages dropped before each), with and without read-ahead, across a copy-up
 * and after a write made while another process read; replies really went through the pipes
 * (`splicedReads`); a MemoryLayer (no host descriptor) is answered by copy; the session's pipes
 * are closed at unmount.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash, randomBytes } from 'node:crypto';
import * as fsp from 'node:fs/promises';
import { join } from 'node:path';
import { MemoryLayer } from '@layerfs/testkit';
import { mountLowLevel, type LowLevelStats, type MountHandle } from '../src/index.js';
import { mountHostOverlay, mountSkip, sh, tempDir, type HostOverlay } from './helpers.js';

const q = (p: string) => JSON.stringify(p);
const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
const MiB = 1 << 20;

/** Pipes this process holds open. */
async function pipes(): Promise<number> {
  let n = 0;
  for (const fd of await fsp.readdir('/proc/self/fd')) {
    try { if ((await fsp.readlink(`/proc/self/fd/${fd}`)).startsWith('pipe:')) n++; } catch { /* closed meanwhile */ }
  }
  return n;
}

/**
 * sha256 of each (offset, size) read of `file` in a child process, through the page cache with
 * the file's cached pages dropped before each read (POSIX_FADV_DONTNEED), so every read reaches
 * the server; `random` turns read-ahead off (POSIX_FADV_RANDOM: READs cover just the pages read).
 */
async function childReads(file: string, reads: [number, number][], random: boolean): Promise<string[]> {
  const py = [
    'import os, sys, hashlib',
    'fd = os.open(sys.argv[1], os.O_RDONLY)',
    `if ${random ? 'True' : 'False'}: os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)`,
    'for a in sys.argv[2:]:',
    '    off, size = map(int, a.split(":"))',
    '    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)',
    '    got = b""',
    '    while len(got) < size:',
    '        b = os.pread(fd, size - len(got), off + len(got))',
    '        if not b: break',
    '        got += b',
    '    print(hashlib.sha256(got).hexdigest())',
  ].join('\n');
  const out = await sh(`python3 -c '${py}' ${q(file)} ${reads.map(([o, s]) => `${o}:${s}`).join(' ')}`);
  return out.trim().split('\n');
}

describe.skipIf(mountSkip)('mountLowLevel(): READ replies spliced from host files (needs root and /dev/fuse)', () => {
  let m: HostOverlay | undefined;
  let dir: string;
  let mnt: string;
  let h: MountHandle | undefined;
  let data: Buffer;
  let pipesBefore: number;
  const stats = () => h!.stats() as LowLevelStats;

  beforeAll(async () => {
    m = await mountHostOverlay('fuse-lowlevel-splice', (fs, mp) => mountLowLevel(fs, mp), async (d) => {
      data = randomBytes(3 * MiB + 12345);
      await fsp.writeFile(join(d, 'lower', 'big'), data);
      await fsp.writeFile(join(d, 'lower', 'small'), data.subarray(0, 1000));
      pipesBefore = await pipes();   // before the mount: its pipes are made with it
    });
    ({ dir, mnt, handle: h } = m);
  });

  afterAll(async () => {
    await m?.close();
  });

  it('mounts with max_read a spliced reply fits in (a pipe less a page)', async () => {
    const line = (await fsp.readFile('/proc/self/mounts', 'utf8')).split('\n').find((l) => l.split(' ')[1] === mnt);
    const maxRead = Number(/max_read=(\d+)/.exec(line ?? '')?.[1]);
    expect(maxRead % 4096).toBe(0);
    expect(maxRead).toBeGreaterThanOrEqual(4096);
    expect(maxRead).toBeLessThanOrEqual(MiB);
  });

  it('reads a lower file through the page cache as it is, the replies spliced', async () => {
    const before = stats().splicedReads;
    const whole = await sh(`sha256sum < ${q(join(mnt, 'big'))}`);
    expect(whole.split(' ')[0]).toBe(sha(data));
    expect(await childReads(join(mnt, 'small'), [[0, 4096]], false)).toEqual([sha(data.subarray(0, 1000))]);
    expect(stats().splicedReads - before).toBeGreaterThanOrEqual(4);
  });

  it('answers reads of several sizes and offsets with the file\'s bytes, with and without read-ahead (large READs spliced, small ones copied)', async () => {
    const reads: [number, number][] = [
      [0, 1], [0, 4096], [4096, 65536], [1, 100], [4095, 8193], [MiB - 7, MiB], [MiB, MiB], [2 * MiB, 2 * MiB],
      [3 * MiB, 12345], [3 * MiB + 12000, 4096], [3 * MiB + 12345, 10], [5 * MiB, 4096],
    ];
    const before = stats().splicedReads;
    const readsBefore = stats().ops.read ?? 0;
    const want = reads.map(([o, s]) => sha(data.subarray(Math.min(o, data.length), Math.min(o + s, data.length))));
    expect(await childReads(join(mnt, 'big'), reads, true)).toEqual(want);
    expect(await childReads(join(mnt, 'big'), reads, false)).toEqual(want);
    // Both paths answered: READs of 64 KiB and more spliced, smaller ones copied.
    const spliced = stats().splicedReads - before;
    expect(spliced).toBeGreaterThanOrEqual(5);
    expect((stats().ops.read ?? 0) - readsBefore).toBeGreaterThan(spliced);
  });

  it('reads back what a write made while another process read (across the copy-up)', async () => {
    const f = q(join(mnt, 'big'));
    const before = stats().splicedReads;
    const patch = randomBytes(MiB + 4096);
    await fsp.writeFile(join(dir, 'patch'), patch);
    // A reader loops over the file while a writer copies it up and overwrites a range.
    await sh(`(for i in 1 2 3 4 5; do cat ${f} > /dev/null; done) & ` +
      `dd if=${q(join(dir, 'patch'))} of=${f} bs=4096 seek=100 conv=notrunc status=none; wait`);
    const want = Buffer.from(data);
    patch.copy(want, 100 * 4096);
    const reads: [number, number][] = [[0, want.length], [100 * 4096, patch.length], [100 * 4096 - 3, 4096], [0, MiB]];
    const wantSums = reads.map(([o, s]) => sha(want.subarray(o, Math.min(o + s, want.length))));
    expect(await childReads(join(mnt, 'big'), reads, false)).toEqual(wantSums);
    expect(await childReads(join(mnt, 'big'), reads, true)).toEqual(wantSums);
    expect(sha(await fsp.readFile(join(dir, 'upper', 'big')))).toBe(sha(want));
    expect(stats().splicedReads).toBeGreaterThan(before);
  });

  it('closes its pipes at unmount', async () => {
    expect(await pipes()).toBeGreaterThan(pipesBefore);
    await h!.unmount();
    h = undefined;
    expect(await pipes()).toBe(pipesBefore);
  });
});

describe.skipIf(mountSkip)('mountLowLevel() of a MemoryLayer: READ replies copied (no host descriptor)', () => {
  it('reads back what was written and splices nothing', async () => {
    const dir = await tempDir('fuse-lowlevel-nosplice');
    const mnt = join(dir, 'mnt');
    await fsp.mkdir(mnt);
    const h = await mountLowLevel(new MemoryLayer(), mnt);
    try {
      const data = randomBytes(2 * MiB + 5);
      await fsp.writeFile(join(dir, 'src'), data);
      await sh(`cat ${q(join(dir, 'src'))} > ${q(join(mnt, 'f'))}`);
      expect(await childReads(join(mnt, 'f'), [[0, data.length], [4096, MiB], [7, 5000]], true))
        .toEqual([sha(data), sha(data.subarray(4096, 4096 + MiB)), sha(data.subarray(7, 5007))]);
      expect((h.stats() as LowLevelStats).splicedReads).toBe(0);
    } finally {
      await h.unmount();
      await fsp.rm(dir, { recursive: true, force: true });
    }
  });
});
