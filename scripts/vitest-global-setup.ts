// Process-exit guard for the whole test run: after every test file has finished, any FUSE or
// kernel overlay mount still mounted under a layerfs test directory is unmounted (lazily),
// reported, and fails the run, so no test ever leaves a mount behind.
import { readFile } from 'node:fs/promises';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** Mount points under the temporary directories layerfs tests create. */
async function leftoverMounts(): Promise<string[]> {
  const text = await readFile('/proc/mounts', 'utf8').catch(() => '');
  return text.split('\n')
    .map((l) => l.split(' '))
    .filter((f) => f.length > 2 && (f[2]!.startsWith('fuse') || f[2] === 'overlay') && /layerfs-/.test(f[1]!))
    .map((f) => f[1]!.replace(/\\040/g, ' '));
}

/** Nothing to prepare; vitest calls the returned teardown at the end of the run. */
export default function setup(): () => Promise<void> {
  return async () => {
    const left = await leftoverMounts();
    for (const mp of left.reverse()) {
      await run('umount', ['-l', mp]).catch(() => run('fusermount', ['-uz', mp]).catch(() => undefined));
    }
    if (left.length > 0) throw new Error(`tests left mounts behind (now unmounted): ${left.join(', ')}`);
  };
}
