/**
 * The host's mount table, as FUSE mounts need it: find the mount at a path in
 * `/proc/self/mountinfo`, tell a live FUSE mount from a stale one (its server died: every
 * access fails with ENOTCONN, or hangs), clear a stale one (abort the connection through
 * fusectl, then `umount -l`, else `fusermount -uz`) and name the exact commands when that is
 * not possible. Paths are read asynchronously with a time limit, so a hung mount cannot hang
 * the caller.
 */
import { execFile } from 'node:child_process';
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { resolve as resolvePath } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** One line of /proc/self/mountinfo. */
export interface MountInfo {
  /** The mount id (first field). */
  readonly id: string;
  /** `major:minor` of the mounted filesystem (for FUSE, the minor is the fusectl connection). */
  readonly device: string;
  /** The mount point. */
  readonly mountpoint: string;
  /** The filesystem type (`fuse.layerfs`, `overlay`, …). */
  readonly fstype: string;
  /** The mount source. */
  readonly source: string;
}

function unescapeMount(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

/** Every mount of this process's mount namespace. */
export async function listMounts(): Promise<MountInfo[]> {
  const text = await readFile('/proc/self/mountinfo', 'utf8');
  const out: MountInfo[] = [];
  for (const line of text.split('\n')) {
    if (!line) continue;
    const f = line.split(' ');
    const sep = f.indexOf('-');
    if (sep < 0 || f.length < sep + 3) continue;
    out.push({ id: f[0]!, device: f[2]!, mountpoint: unescapeMount(f[4]!), fstype: f[sep + 1]!, source: unescapeMount(f[sep + 2]!) });
  }
  return out;
}

/** The topmost mount whose mount point is exactly `path`, if any. */
export async function findMount(path: string): Promise<MountInfo | undefined> {
  const abs = resolvePath(path);
  const all = await listMounts();
  for (let i = all.length - 1; i >= 0; i--) if (all[i]!.mountpoint === abs) return all[i];
  return undefined;
}

/** What `probeMountpoint` found. */
export type MountpointState =
  | { readonly kind: 'missing' }
  | { readonly kind: 'not-directory' }
  | { readonly kind: 'free' }
  | { readonly kind: 'mounted'; readonly mount: MountInfo }
  | { readonly kind: 'stale'; readonly mount: MountInfo; readonly reason: string };

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T | 'timeout'> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => resolve('timeout'), ms);
    p.then((v) => { clearTimeout(t); resolve(v); }, (e: unknown) => { clearTimeout(t); reject(e); });
  });
}

/**
 * Look at `path` as a mount point: missing, not a directory, free, in use by a live mount,
 * or a stale FUSE mount (ENOTCONN, or no answer within `timeoutMs`).
 */
export async function probeMountpoint(path: string, timeoutMs = 3000): Promise<MountpointState> {
  const abs = resolvePath(path);
  const m = await findMount(abs);
  try {
    const st = await withTimeout(stat(abs), timeoutMs);
    if (st === 'timeout') {
      return m ? { kind: 'stale', mount: m, reason: 'does not answer' } : { kind: 'free' };
    }
    if (m) return { kind: 'mounted', mount: m };
    return st.isDirectory() ? { kind: 'free' } : { kind: 'not-directory' };
  } catch (e) {
    const code = (e as { code?: string }).code;
    if (m && (code === 'ENOTCONN' || code === 'ECONNABORTED' || code === 'EIO')) return { kind: 'stale', mount: m, reason: code };
    if (code === 'ENOENT') return { kind: 'missing' };
    if (code === 'ENOTDIR') return { kind: 'not-directory' };
    throw e;
  }
}

/** The commands that clear a stale FUSE mount at `mount` by hand. */
export function staleMountCommands(mount: MountInfo): string[] {
  const minor = mount.device.split(':')[1] ?? '?';
  return [
    'mount -t fusectl none /sys/fs/fuse/connections 2>/dev/null || true',
    `echo 1 > /sys/fs/fuse/connections/${minor}/abort`,
    `umount -l ${JSON.stringify(mount.mountpoint)} || fusermount -uz ${JSON.stringify(mount.mountpoint)}`,
  ];
}

/**
 * Clear a stale FUSE mount: abort its connection through fusectl (so nothing stays stuck
 * in it), then detach it (`umount -l`, else `fusermount -uz`). Throws an Error that names
 * the exact commands when it cannot.
 */
export async function clearStaleMount(mount: MountInfo): Promise<void> {
  const minor = mount.device.split(':')[1];
  if (mount.fstype.startsWith('fuse') && minor) {
    const conn = '/sys/fs/fuse/connections';
    await mkdir(conn, { recursive: true }).catch(() => undefined);
    await run('mount', ['-t', 'fusectl', 'none', conn]).catch(() => undefined);
    await writeFile(`${conn}/${minor}/abort`, '1').catch(() => undefined);
  }
  try {
    await run('umount', ['-l', mount.mountpoint]);
  } catch {
    try {
      await run('fusermount', ['-uz', mount.mountpoint]);
    } catch {
      throw new Error(`cannot clear the stale mount at ${mount.mountpoint}; run: ${staleMountCommands(mount).join(' && ')}`);
    }
  }
}

/** Unmount whatever is mounted at `path` (FUSE: `fusermount -u`, else `umount`; `lazy` detaches). */
export async function unmountPath(path: string, lazy = false): Promise<void> {
  const abs = resolvePath(path);
  const m = await findMount(abs);
  if (!m) throw new Error(`${abs} is not a mount point`);
  if (m.fstype.startsWith('fuse')) {
    try {
      await run('fusermount', [lazy ? '-uz' : '-u', abs]);
      return;
    } catch {
      // fall back to umount (root)
    }
  }
  await run('umount', lazy ? ['-l', abs] : [abs]);
}
