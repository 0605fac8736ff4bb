/**
 * The kernel-overlayfs oracle through the mount: the same generated sequences are applied
 * with `node:fs` to a kernel `mount -t overlay` of one copy of the layers and to a layerfs
 * FUSE mount of the other — made by the `layerfs mount` command, so a separate daemon
 * process serves it — compared step by step, then the visible trees, then the upper
 * directories. The daemon matters: served in this process, OverlayFs over PassthroughLayers
 * needs libuv's 4 pool threads, which the harness's own `fs.promises` calls on the mount
 * can all occupy (deadlock, seen). 40 sequences to fit the package's time budget
 * (LAYERFS_ORACLE_RUNS raises it; replay with LAYERFS_ORACLE_SEED / _PATH).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import * as fsp from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { findMount, unmountPath } from '@layerfs/fuse';
import { kernelOverlayUnavailable, runMountOracle, unmountAllOracleMounts } from '@layerfs/testkit';
import { mountSkip } from './cli-helpers.js';

const execFileP = promisify(execFile);
const pkg = fileURLToPath(new URL('..', import.meta.url));
const bin = join(pkg, 'bin', 'layerfs.js');
const mounted = new Set<string>();

beforeAll(async () => {
  const m = async (p: string) => (await fsp.stat(p).catch(() => undefined))?.mtimeMs ?? 0;
  const built = await m(join(pkg, 'dist', 'cli.js'));
  const srcs = await Promise.all(['cli.ts', 'cli-args.ts', 'from-dirs.ts', 'overlay.ts'].map((f) => m(join(pkg, 'src', f))));
  if (built === 0 || srcs.some((t) => t > built)) await execFileP('pnpm', ['exec', 'tsc', '-b', pkg], { cwd: join(pkg, '..', '..') });
}, 120_000);

const unavailable = await kernelOverlayUnavailable();

afterAll(async () => {
  for (const mp of mounted) if (await findMount(mp)) await unmountPath(mp, true).catch(() => undefined);
  await unmountAllOracleMounts();
});

describe.skipIf(mountSkip || unavailable !== undefined)(`oracle through the mount: kernel overlayfs vs layerfs FUSE (${unavailable ?? 'root, /dev/fuse and kernel overlay available'})`, () => {
  it('agrees on 40 generated sequences of up to 30 operations', async () => {
    const res = await runMountOracle(async (l) => {
      const opts = `lowerdir=${l.lowerdirs.join(':')},upperdir=${l.upperdir},workdir=${l.workdir},whiteout=chardev`;
      await execFileP(process.execPath, [bin, 'mount', '-o', opts, l.mountpoint], { timeout: 30_000 });
      mounted.add(l.mountpoint);
      return async () => {
        await execFileP(process.execPath, [bin, 'umount', l.mountpoint], { timeout: 30_000 });
        mounted.delete(l.mountpoint);
        // The daemon exits once it has seen the unmount and released everything.
        const end = Date.now() + 10_000;
        while (Date.now() < end) {
          const r = await execFileP('pgrep', ['-f', `--ready-fd 3 -o ${opts} `]).catch(() => undefined);
          if (!r) break;
          await new Promise((res) => setTimeout(res, 50));
        }
      };
    }, { numRuns: 40, sutName: 'layerfs mount', dirNlink: true, dirTimes: true });
    expect(res.failed).toBe(false);
  }, 300_000);
});
