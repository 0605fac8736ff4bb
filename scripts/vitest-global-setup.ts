// Process-exit guard for the whole test run. Every test process of this run gets its own
// temporary directory (TMPDIR, mode 1777 like /tmp, inherited by the forked workers), so
// what the tests create is told apart from what other runs on the machine have mounted.
// After every test file has finished, any FUSE or kernel overlay mount still mounted under
// it is unmounted (lazily), reported, and fails the run: no test ever leaves a mount behind,
// and no other run's mount is touched.
import { chmod, mkdtemp, readFile, rm } from 'node:fs/promises';
import { execFile } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** FUSE and overlay mount points below `root`. */
async function mountsUnder(root: string): Promise<string[]> {
  const text = await readFile('/proc/mounts', 'utf8').catch(() => '');
  return text.split('\n')
    .map((l) => l.split(' '))
    .filter((f) => f.length > 2 && (f[2]!.startsWith('fuse') || f[2] === 'overlay'))
    .map((f) => f[1]!.replace(/\\040/g, ' '))
    .filter((mp) => mp.startsWith(`${root}/`));
}

/** Give the run its own TMPDIR; vitest calls the returned teardown at the end of the run. */
export default async function setup(): Promise<() => Promise<void>> {
  const root = await mkdtemp(join(tmpdir(), 'layerfs-run-'));
  await chmod(root, 0o1777);
  process.env['TMPDIR'] = root;
  return async () => {
    const left = await mountsUnder(root);
    for (const mp of left.reverse()) {
      await run('umount', ['-l', mp]).catch(() => run('fusermount', ['-uz', mp]).catch(() => undefined));
    }
    if (left.length === 0) await rm(root, { recursive: true, force: true }).catch(() => undefined);
    if (left.length > 0) throw new Error(`tests left mounts behind (now unmounted; ${root} kept): ${left.join(', ')}`);
  };
}
