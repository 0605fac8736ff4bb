/**
 * The system calls the low-level transport mounts and unmounts with, bound through koffi:
 * `mount(2)` of a `fuse.<subtype>` filesystem on an open `/dev/fuse` descriptor and
 * `umount(8)` in a child process (an unmount may wait for the filesystem, which the JS thread
 * serves), plus the connection's abort file in fusectl.
 */
import koffi from 'koffi';
import { execFile } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { FsError, codeOf } from '@layerfs/core';

/** `MS_NOSUID`. */
export const MS_NOSUID = 2;
/** `MS_NODEV`. */
export const MS_NODEV = 4;
/** `MS_RDONLY`. */
export const MS_RDONLY = 1;
/** `MS_NOATIME`. */
export const MS_NOATIME = 1024;

type MountFn = (source: string, target: string, fstype: string, flags: number, data: string) => number;
let mountFn: MountFn | undefined;

/**
 * `mount(source, target, fstype, flags, data)`, synchronous: mount(2) of FUSE only queues the
 * INIT request (it never waits for this process to answer), so the JS thread may make it.
 */
export function sysMount(source: string, target: string, fstype: string, flags: number, data: string): void {
  mountFn ??= koffi.load('libc.so.6').func('int mount(const char *source, const char *target, const char *fstype, unsigned long flags, const char *data)') as MountFn;
  if (mountFn(source, target, fstype, flags, data) < 0) {
    throw new FsError(codeOf(koffi.errno()) ?? 'EIO', { syscall: 'mount', path: target });
  }
}

/**
 * `umount [-l] target` in a child process (an unmount can wait for requests this thread
 * serves, so it never runs on the JS thread or in libuv's pool). Resolves true when it worked.
 */
export function runUmount(target: string, lazy: boolean): Promise<boolean> {
  return new Promise((resolve) => {
    execFile('umount', lazy ? ['-l', target] : [target], (err) => resolve(!err));
  });
}

/** The device (`major:minor`) of the FUSE mount at `mountpoint`; the minor is its fusectl connection number. */
export async function deviceOf(mountpoint: string): Promise<string | undefined> {
  const text = await readFile('/proc/self/mountinfo', 'utf8');
  let found: string | undefined;
  for (const line of text.split('\n')) {
    const f = line.split(' ');
    if (f.length < 5) continue;
    const mp = f[4]!.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)));
    if (mp !== mountpoint) continue;
    const sep = f.indexOf('-');
    if (sep < 0 || !(f[sep + 1] ?? '').startsWith('fuse')) continue;
    found = f[2];
  }
  return found;
}

/** Set the read-ahead of the mount's backing device (`major:minor`) in KiB; false when it could not. */
export async function setReadAhead(dev: string, kib: number): Promise<boolean> {
  try { await writeFile(`/sys/class/bdi/${dev}/read_ahead_kb`, String(kib)); return true; } catch { return false; }
}

/** Abort FUSE connection `conn` through fusectl (pending and future requests fail with ENOTCONN). */
export async function abortConnection(conn: number): Promise<void> {
  try { await writeFile(`/sys/fs/fuse/connections/${conn}/abort`, '1'); } catch { /* gone already, or no fusectl */ }
}
