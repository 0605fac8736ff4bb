// The memory workload: RSS of a FUSE server process after `find` (with a stat of every
// entry) over a synthetic tree of N files, bytes per live inode, and RSS after the kernel
// forgets every lookup (dentry/inode cache dropped with `echo 2 > drop_caches`) once it holds
// steady, twice, to show whether memory stays flat once lookups are forgotten.
import { writeFile } from 'node:fs/promises';
import { rssOf, sleep, timeShell } from './util.mjs';

/**
 * RSS of `pid` once the forget has been served and the memory released: after `settleMs`, one
 * sample a second until three in a row lie within 1 MiB of each other (at most 30 s). A fixed
 * wait measured the release half done (probe, 1,000,000 files: a layerfs server's RSS fell from
 * 593 to 183 MiB between 2 and 4 s after the forget, in another cycle from 397 to 125 MiB
 * between 4 and 6 s).
 * Returns { rss, settledMs }.
 */
async function rssOnceSteady(pid, settleMs) {
  const t0 = Date.now();
  await sleep(settleMs);
  const samples = [rssOf(pid)];
  while (Date.now() - t0 < 30_000) {
    const last3 = samples.slice(-3);
    if (last3.length === 3 && Math.max(...last3) - Math.min(...last3) <= 1024 * 1024) break;
    await sleep(1000);
    samples.push(rssOf(pid));
  }
  return { rss: samples[samples.length - 1], settledMs: Date.now() - t0 };
}

async function forgetAll(pid, settleMs) {
  // Drops clean dentries and inodes system-wide: the kernel sends FORGET for every cached
  // FUSE inode. Harmless (caches refill), but it does touch the whole machine briefly.
  await writeFile('/proc/sys/vm/drop_caches', '2');
  return rssOnceSteady(pid, settleMs);
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
  const f1 = await forgetAll(pid, settleMs);
  r.rssAfterForget1 = f1.rss;
  r.forget1SettledMs = f1.settledMs;
  if (cycles < 2) return r;
  r.find2Ms = await timeShell(find, handle.root);
  r.rssAfterFind2 = rssOf(pid);
  const f2 = await forgetAll(pid, settleMs);
  r.rssAfterForget2 = f2.rss;
  r.forget2SettledMs = f2.settledMs;
  r.growthAfterCycle = r.rssAfterForget2 - r.rssAfterForget1;
  return r;
}
