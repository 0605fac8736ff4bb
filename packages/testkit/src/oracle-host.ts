/**
 * The host side of the kernel-overlayfs oracle: temporary directories (`layerfs-oracle-*`
 * under `os.tmpdir()`), laying oracle layer trees out on disk (files, dirs, symlinks, hard
 * links, 0/0 char-device whiteouts, `trusted.overlay.opaque=y`, user xattrs, old times),
 * and kernel `mount -t overlay` mounts with a tracker that unmounts whatever is left (on
 * demand, in `afterAll`, and at process exit).
 */
import * as fsp from 'node:fs/promises';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join, posix } from 'node:path';
import type { OracleCase, OracleDir } from './oracle-case.js';
import { ORACLE_OLD_TIME } from './oracle-case.js';
import { runCommand } from './oracle-target.js';

/** Where one side of a case lives on disk. */
export interface OracleLayout {
  /** The directory holding everything of this side. */
  readonly dir: string;
  /** Lower layer directories, top first. */
  readonly lowerdirs: readonly string[];
  /** The upper layer directory. */
  readonly upperdir: string;
  /** An empty work directory on the upper's filesystem. */
  readonly workdir: string;
  /** An empty directory to mount on. */
  readonly mountpoint: string;
}

/** Make a fresh `layerfs-oracle-*` directory under the system temp dir. */
export function makeOracleTempDir(): Promise<string> {
  return fsp.mkdtemp(join(tmpdir(), 'layerfs-oracle-'));
}

/** The layout of one side under `dir` for `lowerCount` lowers (directories not yet created). */
export function layoutAt(dir: string, lowerCount: number): OracleLayout {
  return {
    dir,
    lowerdirs: Array.from({ length: lowerCount }, (_, i) => join(dir, `lower${i + 1}`)),
    upperdir: join(dir, 'upper'),
    workdir: join(dir, 'work'),
    mountpoint: join(dir, 'mnt'),
  };
}

/**
 * The atime and mtime (whole seconds) the layout gives the object at `path` of layer
 * `layer` (0 = upper, 1.. = lowers top first): distinct, deterministic, long ago.
 */
export function oracleNodeTime(layer: number, path: string): number {
  let h = 0;
  for (const ch of path) h = (h * 31 + ch.charCodeAt(0)) % 9973;
  return ORACLE_OLD_TIME + layer * 10_000 + h;
}

/** Shell-quote one argument. */
function sh(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/**
 * Lay `tree` out in the existing directory `root`. Whiteouts and xattrs are appended to
 * `script` (shell commands run in one child process); `times` collects the paths whose
 * times are set afterwards (deepest first), each to `oracleNodeTime` (hard links keep
 * the time of the file they link to).
 */
async function layTree(root: string, layer: number, tree: OracleDir, script: string[], times: Array<[string, number]>): Promise<void> {
  const hardLinks: Array<[string, string]> = [];
  const walk = async (rel: string, dir: OracleDir): Promise<void> => {
    for (const name of Object.keys(dir).sort()) {
      const node = dir[name]!;
      const abs = posix.join(root, rel, name);
      const relPath = rel === '' ? name : `${rel}/${name}`;
      switch (node.t) {
        case 'f':
          await fsp.writeFile(abs, node.data);
          await fsp.chmod(abs, node.mode);
          break;
        case 'd':
          await fsp.mkdir(abs);
          await walk(relPath, node.c);
          await fsp.chmod(abs, node.mode);
          if (node.opaque) script.push(`setfattr -n trusted.overlay.opaque -v y ${sh(abs)}`);
          break;
        case 'l':
          await fsp.symlink(node.target, abs);
          break;
        case 'h':
          hardLinks.push([relPath, node.to]);
          continue;
        case 'w':
          script.push(`mknod ${sh(abs)} c 0 0`);
          continue;
      }
      if ('x' in node && node.x) {
        for (const [k, v] of Object.entries(node.x)) script.push(`setfattr -n ${sh(k)} -v ${sh(v)} ${sh(abs)}`);
      }
      times.push([abs, oracleNodeTime(layer, relPath)]);
    }
  };
  await walk('', tree);
  for (const [from, to] of hardLinks) {
    const target = posix.join(root, to);
    const st = await fsp.lstat(target).catch(() => undefined);
    if (st?.isFile()) await fsp.link(target, posix.join(root, from));
  }
}

/**
 * Lay a case out twice: side `a` and side `b` under `dir`, identical down to times,
 * xattrs and hard links (side b is a `cp -a` of side a).
 */
export async function layOutCase(dir: string, c: OracleCase): Promise<[OracleLayout, OracleLayout]> {
  const a = layoutAt(join(dir, 'a'), c.lowers.length);
  const b = layoutAt(join(dir, 'b'), c.lowers.length);
  await fsp.mkdir(a.dir);
  for (const d of [...a.lowerdirs, a.upperdir, a.workdir, a.mountpoint]) await fsp.mkdir(d);
  const script: string[] = [];
  const times: Array<[string, number]> = [];
  for (let i = 0; i < c.lowers.length; i++) await layTree(a.lowerdirs[i]!, i + 1, c.lowers[i]!, script, times);
  await layTree(a.upperdir, 0, c.upper, script, times);
  if (script.length > 0) {
    const r = await runCommand('sh', ['-ec', script.join('\n')]);
    if (r.code !== 0) throw new Error(`laying out layers failed: ${r.stderr}`);
  }
  // Deepest first, so setting a child's times never disturbs a parent's afterwards.
  for (const [p, t] of times.sort(([x], [y]) => y.split('/').length - x.split('/').length)) await fsp.lutimes(p, t, t);
  for (const d of [...a.lowerdirs, a.upperdir]) await fsp.utimes(d, ORACLE_OLD_TIME, ORACLE_OLD_TIME);
  const r = await runCommand('cp', ['-a', a.dir, b.dir]);
  if (r.code !== 0) throw new Error(`cp -a failed: ${r.stderr}`);
  return [a, b];
}

const mounted = new Set<string>();
let exitGuard = false;

/** Mount points this process mounted and has not unmounted yet. */
export function activeOracleMounts(): string[] {
  return [...mounted];
}

/** Remember a mount point so `unmountAllOracleMounts` (and process exit) can unmount it. */
export function trackMount(mountpoint: string): void {
  mounted.add(mountpoint);
  if (!exitGuard) {
    exitGuard = true;
    process.on('exit', () => {
      for (const mp of mounted) {
        try { execFileSync('umount', ['-l', mp], { stdio: 'ignore' }); } catch { /* reported by the global teardown */ }
      }
    });
  }
}

/** Forget a tracked mount point (after it was unmounted). */
export function untrackMount(mountpoint: string): void {
  mounted.delete(mountpoint);
}

/** Kernel overlay mount options the oracle uses: the kernel defaults, made explicit. */
export const KERNEL_OVERLAY_OPTIONS = 'redirect_dir=off,index=off,metacopy=off,xino=off';

/** `mount -t overlay` the layout at its mount point (tracked for cleanup). */
export async function mountKernelOverlay(l: OracleLayout, extraOptions = KERNEL_OVERLAY_OPTIONS): Promise<void> {
  const opts = `lowerdir=${l.lowerdirs.join(':')},upperdir=${l.upperdir},workdir=${l.workdir}${extraOptions ? `,${extraOptions}` : ''}`;
  trackMount(l.mountpoint);
  const r = await runCommand('mount', ['-t', 'overlay', 'overlay', '-o', opts, l.mountpoint]);
  if (r.code !== 0) {
    untrackMount(l.mountpoint);
    throw new Error(`mount -t overlay failed (${r.code}): ${r.stderr.trim()}`);
  }
}

/** Unmount a mount point (lazily if it is busy) and stop tracking it. */
export async function unmountPath(mountpoint: string): Promise<void> {
  let r = await runCommand('umount', [mountpoint]);
  if (r.code !== 0) r = await runCommand('umount', ['-l', mountpoint]);
  if (r.code !== 0 && !/not mounted|no mount point/i.test(r.stderr)) {
    throw new Error(`umount ${mountpoint} failed: ${r.stderr.trim()}`);
  }
  untrackMount(mountpoint);
}

/** Unmount every mount this process still tracks (call from `afterAll`). */
export async function unmountAllOracleMounts(): Promise<void> {
  const errors: string[] = [];
  for (const mp of [...mounted].reverse()) await unmountPath(mp).catch((e: Error) => errors.push(e.message));
  if (errors.length) throw new Error(errors.join('\n'));
}

let availability: Promise<string | undefined> | undefined;

/**
 * Why a kernel overlay cannot be mounted here (not root, no overlay support, …), or
 * undefined when it can. Probes once with a tiny real mount.
 */
export function kernelOverlayUnavailable(): Promise<string | undefined> {
  availability ??= (async () => {
    if (process.platform !== 'linux') return `kernel overlayfs needs Linux (this is ${process.platform})`;
    if (typeof process.getuid === 'function' && process.getuid() !== 0) return 'mounting a kernel overlay needs root';
    const dir = await makeOracleTempDir();
    try {
      const l = layoutAt(dir, 1);
      for (const d of [...l.lowerdirs, l.upperdir, l.workdir, l.mountpoint]) await fsp.mkdir(d);
      await mountKernelOverlay(l);
      await unmountPath(l.mountpoint);
      return undefined;
    } catch (e) {
      return `kernel overlay mount failed: ${(e as Error).message}`;
    } finally {
      await fsp.rm(dir, { recursive: true, force: true });
    }
  })();
  return availability;
}
