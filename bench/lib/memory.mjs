// The memory workload: RSS of a FUSE server process after `find` (with a stat of every
// entry) over a synthetic tree of N files, bytes per live inode, and RSS after the kernel
// forgets every lookup (dentry/inode cache dropped with `echo 2 > drop_caches`), twice, to
// show whether memory stays flat once lookups are forgotten.
import { writeFile } from 'node:fs/promises';
import { rssOf, sleep, timeShell } from './util.mjs';

async function forgetAll(settleMs) {
  // Drops clean dentries and inodes system-wide: the kernel sends FORGET for every cached
  // FUSE inode. Harmless (caches refill), but it does touch the whole machine briefly.
  await writeFile('/proc/sys/vm/drop_caches', '2');
  await sleep(settleMs);
}

/** Measure one system's server process on a tree of `n` files (`cycles` find+forget rounds, 1 or 2). */
export async function measureMemory(handle, n, settleMs = 3000, cycles = 2) {
  const pid = handle.pid;
  if (!pid) throw new Error('no server process to measure');
  await sleep(500);
  const r = { n, rssMounted: rssOf(pid) };
  const find = `find . -printf '%s\\n' > /dev/null`;
  r.findMs = await timeShell(find, handle.root);
  r.rssAfterFind = rssOf(pid);
  r.bytesPerInode = (r.rssAfterFind - r.rssMounted) / n;
  await forgetAll(settleMs);
  r.rssAfterForget1 = rssOf(pid);
  if (cycles < 2) return r;
  r.find2Ms = await timeShell(find, handle.root);
  r.rssAfterFind2 = rssOf(pid);
  await forgetAll(settleMs);
  r.rssAfterForget2 = rssOf(pid);
  r.growthAfterCycle = r.rssAfterForget2 - r.rssAfterForget1;
  return r;
}
