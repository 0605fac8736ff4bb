// The mounted systems the workloads run against: a native directory (the physical
// reference), kernel overlayfs, fuse-overlayfs and the layerfs mount, and layerfs-empty (the
// layerfs transport over an empty layer: the transport's own cost per request). Each `open` makes a
// fresh upper/work/mount point under a scratch dir and returns the root the workload uses,
// the pid of the serving process (FUSE systems) and a `close` that unmounts it.
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { onCleanup, run, runSync, sleep, unmount, waitMounted } from './util.mjs';

const repo = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
/**
 * The layerfs command (`layerfs mount -o lowerdir=…,upperdir=…,workdir=… MNT`); the
 * environment variable LFSBENCH_LAYERFS_BIN points the bench at another build of it.
 */
export const LAYERFS_BIN = process.env.LFSBENCH_LAYERFS_BIN ?? join(repo, 'packages', 'overlay', 'bin', 'layerfs.js');
/** The API launcher used while the command does not exist yet (or with LFSBENCH_LAYERFS_API=1). */
const LAYERFS_API = join(dirname(fileURLToPath(import.meta.url)), 'layerfs-server.mjs');

/** Which program serves the layerfs mount: the command, or the API launcher. */
export function layerfsLauncher() {
  if (process.env.LFSBENCH_LAYERFS_API === '1' || !existsSync(LAYERFS_BIN)) {
    return { bin: LAYERFS_API, how: 'API launcher bench/lib/layerfs-server.mjs (overlayFromDirs + mount)' };
  }
  return { bin: LAYERFS_BIN, how: `command ${LAYERFS_BIN}` };
}

function isRoot() { return process.getuid?.() === 0; }

function fuseUnavailable() {
  if (!existsSync('/dev/fuse')) return 'no /dev/fuse';
  if (!isRoot()) return 'not root (mounts need root here)';
  return null;
}

async function dirs(scratch) {
  const d = { upper: join(scratch, 'upper'), work: join(scratch, 'work'), mnt: join(scratch, 'mnt') };
  for (const p of Object.values(d)) await mkdir(p, { recursive: true });
  return d;
}

/**
 * Spawn a foreground FUSE server, wait for its mount, return {pid, close}. `stop` says how
 * it is stopped: 'unmount' (fusermount3 -u; the server then exits) or 'signal' (SIGTERM;
 * the server unmounts and exits, which also lets `node --cpu-prof` write its profile).
 */
async function fuseServer(cmd, args, mnt, { env, stop = 'unmount' } = {}) {
  const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, ...env } });
  let stderr = '';
  child.stderr.on('data', (d) => { stderr += d; if (stderr.length > 20000) stderr = stderr.slice(-10000); });
  let exitInfo;
  const exited = new Promise((r) => child.on('exit', (code, signal) => { exitInfo = { code, signal, at: Date.now() }; r(); }));
  const remove = onCleanup(() => {
    runSync('umount', ['-l', mnt]);
    try { child.kill('SIGKILL'); } catch { /* gone */ }
  });
  try {
    await waitMounted(mnt, { fstype: 'fuse', child });
  } catch (e) {
    try { child.kill('SIGKILL'); } catch { /* gone */ }
    remove();
    throw new Error(`${e.message}\n${stderr.trim().slice(-600)}`);
  }
  return {
    pid: child.pid,
    stderr: () => stderr,
    /** How the server ended, if it already has (a crash shows as a signal or a code). */
    exitInfo: () => exitInfo,
    async close() {
      if (stop === 'signal') child.kill('SIGTERM');
      else await run('fusermount3', ['-u', mnt], { allowFail: true });
      const t = await Promise.race([exited.then(() => 'exit'), sleep(15000).then(() => 'timeout')]);
      await unmount(mnt);
      if (t === 'timeout') { child.kill('SIGTERM'); await Promise.race([exited, sleep(5000)]); }
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      remove();
    },
  };
}

/** The mounted systems by name, in the default interleaving order. */
export const SYSTEMS = {
  native: {
    label: 'native',
    unavailable: () => null,
    // The native reference has no layering: the workload says which dir it works in.
    async open({ nativeRoot }) { return { root: nativeRoot, pid: undefined, async close() {} }; },
  },
  kernel: {
    label: 'kernel',
    unavailable() {
      if (!isRoot()) return 'not root';
      if (!readFileSync('/proc/filesystems', 'utf8').includes('overlay')) {
        runSync('modprobe', ['overlay']);
        if (!readFileSync('/proc/filesystems', 'utf8').includes('overlay')) return 'kernel has no overlayfs';
      }
      return null;
    },
    async open({ lower, scratch }) {
      const d = await dirs(scratch);
      await run('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${lower},upperdir=${d.upper},workdir=${d.work}`, d.mnt]);
      const remove = onCleanup(() => runSync('umount', ['-l', d.mnt]));
      return { root: d.mnt, upper: d.upper, pid: undefined, async close() { await unmount(d.mnt); remove(); } };
    },
  },
  'fuse-overlayfs': {
    label: 'fuse-overlayfs',
    unavailable() {
      const f = fuseUnavailable();
      if (f) return f;
      if (runSync('which', ['fuse-overlayfs']).status !== 0) return 'fuse-overlayfs not installed (Debian package fuse-overlayfs)';
      return null;
    },
    async open({ lower, scratch }) {
      const d = await dirs(scratch);
      const s = await fuseServer('fuse-overlayfs', ['-f', '-o', `lowerdir=${lower},upperdir=${d.upper},workdir=${d.work}`, d.mnt], d.mnt);
      return { root: d.mnt, upper: d.upper, ...s };
    },
  },
  layerfs: {
    label: 'layerfs',
    unavailable() {
      const f = fuseUnavailable();
      if (f) return f;
      if (!existsSync(join(repo, 'packages', 'overlay', 'dist', 'from-dirs.js'))) return 'packages/overlay is not built (pnpm exec tsc -b)';
      if (!existsSync(join(repo, 'packages', 'fuse', 'dist', 'mount.js'))) return 'packages/fuse is not built (pnpm exec tsc -b)';
      return null;
    },
    async open({ lower, scratch, cpuProfDir }) {
      const d = await dirs(scratch);
      const nodeArgs = cpuProfDir ? ['--cpu-prof', `--cpu-prof-dir=${cpuProfDir}`] : [];
      const s = await fuseServer(process.execPath,
        [...nodeArgs, layerfsLauncher().bin, 'mount', '-f', '-o', `lowerdir=${lower},upperdir=${d.upper},workdir=${d.work}`, d.mnt], d.mnt, { stop: 'signal' });
      return { root: d.mnt, upper: d.upper, ...s };
    },
  },
  // The transport's own cost per request: the same low-level transport serving an empty
  // MemoryLayer, so a negative lookup costs it a Map miss. Runs only the workloads marked
  // `emptyOk` (the others need the tree).
  'layerfs-empty': {
    label: 'layerfs-empty',
    only: (wl) => wl.emptyOk === true,
    unavailable() {
      const why = SYSTEMS.layerfs.unavailable();
      if (why) return why;
      if (!isRoot()) return 'the low-level transport mounts with mount(2) and needs root';
      if (!existsSync(join(repo, 'packages', 'testkit', 'dist', 'memory-layer.js'))) return 'packages/testkit is not built (pnpm exec tsc -b)';
      return null;
    },
    async open({ scratch }) {
      const d = await dirs(scratch);
      const s = await fuseServer(process.execPath, [LAYERFS_API, 'mount', '-f', d.mnt], d.mnt, { stop: 'signal', env: { LFSBENCH_EMPTY: '1' } });
      return { root: d.mnt, upper: d.upper, ...s };
    },
  },
};
// Opt-in (`--systems …,layerfs-libfuse`): not enumerable, so the default run (every key of
// SYSTEMS) leaves it out while `SYSTEMS['layerfs-libfuse']` finds it.
Object.defineProperty(SYSTEMS, 'layerfs-libfuse', {
  enumerable: false,
  value: {
    label: 'layerfs-libfuse',
    unavailable: () => SYSTEMS.layerfs.unavailable(),
    // The same overlay served by the libfuse transport (fuse-native: `-o transport=libfuse`,
    // which the API launcher reads too). `layerfs` uses the command's default, which as root
    // is the low-level transport.
    async open({ lower, scratch, cpuProfDir }) {
      const d = await dirs(scratch);
      const nodeArgs = cpuProfDir ? ['--cpu-prof', `--cpu-prof-dir=${cpuProfDir}`] : [];
      const s = await fuseServer(process.execPath,
        [...nodeArgs, layerfsLauncher().bin, 'mount', '-f', '-o', `lowerdir=${lower},upperdir=${d.upper},workdir=${d.work},transport=libfuse`, d.mnt], d.mnt,
        { stop: 'signal' });
      return { root: d.mnt, upper: d.upper, ...s };
    },
  },
});
