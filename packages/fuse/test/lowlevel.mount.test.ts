/**
 * Real mounts through the low-level transport (`mountLowLevel`: the kernel protocol on
 * /dev/fuse): a MemoryLayer touched with `node:fs` promises and shell commands (file
 * operations, errno mapping, st_ino, nanosecond times, one-time setattrs, xattrs, hard links
 * sharing one kernel inode, cached listings dropped after a change, 1 MiB write requests,
 * lookup balance after unmount); an OverlayFs over PassthroughLayers served in this process
 * and touched only from child processes (copy-up, whiteouts, lookups of the overlay and
 * every layer back to 1; the copy-up invalidations and O_DIRECT are in
 * overlay-host.mount.test.ts, for both transports); and the kernel-overlayfs oracle against a daemon that serves the
 * overlay with this transport (bench/lib/layerfs-server.mjs, LAYERFS_TRANSPORT=lowlevel).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import * as fsp from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { ROOT_CONTEXT } from '@layerfs/core';
import { MemoryLayer, kernelOverlayUnavailable, runMountOracle } from '@layerfs/testkit';
import { findMount, mountLowLevel, type LowLevelStats, type MountHandle } from '../src/index.js';
import { exerciseBasicOps, exerciseCachedMisses, mountHostOverlay, mountSkip, recording, sh, shResult, tempDir, type HostOverlay, type Recorder } from './helpers.js';

const q = (p: string) => JSON.stringify(p);

describe.skipIf(mountSkip)('mountLowLevel() of a MemoryLayer (needs root and /dev/fuse)', () => {
  let dir: string;
  let mnt: string;
  let layer: MemoryLayer;
  let rec: Recorder;
  let h: MountHandle | undefined;
  const stats = () => h!.stats() as LowLevelStats;

  beforeAll(async () => {
    dir = await tempDir('fuse-lowlevel');
    mnt = join(dir, 'mnt');
    await fsp.mkdir(mnt);
    layer = new MemoryLayer();
    const r = recording(layer, 0);
    rec = r.rec;
    h = await mountLowLevel(r.fs, mnt);
  });

  afterAll(async () => {
    await h?.unmount();
    await fsp.rm(dir, { recursive: true, force: true });
  });

  it('is a fuse.layerfs mount', async () => {
    expect(await findMount(mnt)).toMatchObject({ fstype: 'fuse.layerfs' });
  });

  it('creates, writes, reads, lists, renames and removes through the kernel', () => exerciseBasicOps(mnt));

  it('asks for no FLUSH where the handle needs none (MemoryLayer: noFlush, FOPEN_NOFLUSH); RELEASE still comes', async () => {
    const before = stats().ops;
    await sh(`echo a > ${q(join(mnt, 'nf'))} && cat ${q(join(mnt, 'nf'))} > /dev/null && echo b >> ${q(join(mnt, 'nf'))}`);
    await new Promise((r) => setTimeout(r, 100));   // RELEASE is sent after close returns
    const after = stats().ops;
    expect((after.release ?? 0) - (before.release ?? 0)).toBe(3);
    expect((after.flush ?? 0) - (before.flush ?? 0)).toBe(0);
    await fsp.unlink(join(mnt, 'nf'));
  });

  it('answers with the errno of the FsError', async () => {
    await expect(fsp.stat(join(mnt, 'nope'))).rejects.toMatchObject({ code: 'ENOENT' });
    await fsp.mkdir(join(mnt, 'full'));
    await fsp.writeFile(join(mnt, 'full', 'x'), '');
    await expect(fsp.rmdir(join(mnt, 'full'))).rejects.toMatchObject({ code: 'ENOTEMPTY' });
    await expect(fsp.readlink(join(mnt, 'full', 'x'))).rejects.toMatchObject({ code: 'EINVAL' });
    await expect(fsp.mkdir(join(mnt, 'full'))).rejects.toMatchObject({ code: 'EEXIST' });
    await expect(fsp.readFile(join(mnt, 'full'))).rejects.toMatchObject({ code: 'EISDIR' });
    const r = await shResult(`getfattr -n user.none ${q(join(mnt, 'full', 'x'))}`);
    expect(r.stderr).toMatch(/No such attribute/);
    await fsp.rm(join(mnt, 'full'), { recursive: true });
  });

  it('shows the filesystem inode number as st_ino and as d_ino', async () => {
    await fsp.writeFile(join(mnt, 'ino'), 'x');
    const e = await layer.lookup(ROOT_CONTEXT, 1, 'ino');
    await layer.forget(ROOT_CONTEXT, e.ino, 1);
    expect((await fsp.stat(join(mnt, 'ino'))).ino).toBe(e.ino);
    const lsIno = (await sh(`ls -i ${q(mnt)} | grep ' ino$'`)).trim().split(/\s+/)[0];
    expect(Number(lsIno)).toBe(e.ino);
    await fsp.unlink(join(mnt, 'ino'));
  });

  it('receives a 1 MiB write as one request of the negotiated size (max_pages 256)', async () => {
    expect(stats().maxWrite).toBe(1 << 20);
    rec.writeSizes.length = 0;
    await sh(`dd if=/dev/zero of=${q(join(mnt, 'big'))} bs=1M count=4 status=none`);
    expect(rec.writeSizes).toEqual(Array(4).fill(1 << 20));
    expect((await fsp.stat(join(mnt, 'big'))).size).toBe(4 << 20);
    expect(await sh(`md5sum < ${q(join(mnt, 'big'))}`)).toMatch(/^b5cfa9d6c8febd618f91ac2843d50a1c/);
    await fsp.unlink(join(mnt, 'big'));
    // Read-ahead raised to four requests, so sequential reads are 1 MiB requests, several in flight.
    expect(await sh(`cat /sys/class/bdi/$(mountpoint -d ${q(mnt)})/read_ahead_kb`)).toBe('4096\n');
  });

  it('sets times with nanoseconds, and atime or mtime alone', async () => {
    const p = join(mnt, 't');
    await fsp.writeFile(p, '');
    await sh(`touch -d '2001-02-03 04:05:06.123456789Z' ${q(p)}`);
    expect(await sh(`stat -c '%x|%y' ${q(p)}`)).toBe('2001-02-03 04:05:06.123456789 +0000|2001-02-03 04:05:06.123456789 +0000\n');
    await sh(`touch -m -d '2011-12-13 14:15:16Z' ${q(p)}`);
    await sh(`touch -a -d '1999-01-01 00:00:00Z' ${q(p)}`);
    expect(await sh(`stat -c '%x|%y' ${q(p)}`)).toBe('1999-01-01 00:00:00.000000000 +0000|2011-12-13 14:15:16.000000000 +0000\n');
    const before = Date.now();
    await sh(`touch ${q(p)}`);  // UTIME_NOW
    expect((await fsp.stat(p)).mtimeMs).toBeGreaterThanOrEqual(before - 1000);
    await fsp.unlink(p);
  });

  it('passes renameat2 flags (RENAME_EXCHANGE swaps, RENAME_NOREPLACE refuses)', async () => {
    await fsp.writeFile(join(mnt, 'e1'), 'one');
    await fsp.writeFile(join(mnt, 'e2'), 'two');
    const r = await shResult(`cd ${q(mnt)} && python3 -c "
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
def rn(a, b, flags):
    r = libc.renameat2(-100, a.encode(), -100, b.encode(), flags)
    return 'ok' if r == 0 else os.strerror(ctypes.get_errno())
print(rn('e1', 'e2', 2))
print(rn('e1', 'e2', 1))
"`);
    expect(r.stdout).toBe('ok\nFile exists\n');
    expect([await fsp.readFile(join(mnt, 'e1'), 'utf8'), await fsp.readFile(join(mnt, 'e2'), 'utf8')]).toEqual(['two', 'one']);
    await fsp.unlink(join(mnt, 'e1'));
    await fsp.unlink(join(mnt, 'e2'));
  });

  it('sets, reads, lists and removes extended attributes (size probe, ERANGE)', async () => {
    const p = join(mnt, 'x');
    await fsp.writeFile(p, '');
    await sh(`setfattr -n user.a -v hello ${q(p)} && setfattr -n user.b -v 2 ${q(p)}`);
    expect(await sh(`getfattr --only-values -n user.a ${q(p)}`)).toBe('hello');
    expect((await sh(`getfattr -d ${q(p)}`)).split('\n').filter((l) => l.startsWith('user.'))).toEqual(['user.a="hello"', 'user.b="2"']);
    const r = await shResult(`python3 -c "
import os, errno, sys
try:
    os.getxattr(sys.argv[1], 'user.a')
    print('ok')
except OSError as e:
    print(errno.errorcode[e.errno])
" ${q(p)}`);
    expect(r.stdout.trim()).toBe('ok');
    await sh(`setfattr -x user.a ${q(p)}`);
    expect(await shResult(`getfattr -n user.a ${q(p)}`)).toMatchObject({ code: 1 });
    await fsp.unlink(p);
  });

  it('gives hard links one kernel inode: a change through one name shows through the other', async () => {
    const a = join(mnt, 'ha');
    const b = join(mnt, 'hb');
    await fsp.writeFile(a, 'one');
    await fsp.link(a, b);
    await fsp.stat(a); await fsp.stat(b);
    await fsp.chmod(b, 0o640);
    await fsp.writeFile(b, 'two!');
    const [sa, sb] = [await fsp.stat(a), await fsp.stat(b)];
    expect([sa.ino, sa.nlink, sa.mode & 0o777, sa.size]).toEqual([sb.ino, 2, 0o640, 4]);
    expect(await fsp.readFile(a, 'utf8')).toBe('two!');
    await fsp.unlink(b);
    expect((await fsp.stat(a)).nlink).toBe(1);
    await fsp.unlink(a);
  });

  it('serves a warm listing from the kernel cache and drops it after a change in the directory', async () => {
    const d = join(mnt, 'ls');
    await fsp.mkdir(d);
    for (const n of ['a', 'b', 'c']) await fsp.writeFile(join(d, n), n);
    const listings = () => (stats().ops.readdir ?? 0) + (stats().ops.readdirplus ?? 0);
    expect(await sh(`ls ${q(d)}`)).toBe('a\nb\nc\n');
    const warm = listings();
    expect(await sh(`ls ${q(d)}`)).toBe('a\nb\nc\n');
    expect(listings()).toBe(warm);   // FOPEN_CACHE_DIR: no request
    // FUSE_NO_OPENDIR_SUPPORT: the one OPENDIR answered ENOSYS, no RELEASEDIR ever.
    expect([stats().ops.opendir, stats().ops.releasedir]).toEqual([1, undefined]);
    const steps: [string, string][] = [
      [`touch ${q(join(d, 'n'))}`, 'a\nb\nc\nn\n'],
      [`rm ${q(join(d, 'a'))}`, 'b\nc\nn\n'],
      [`mv ${q(join(d, 'b'))} ${q(join(d, 'z'))}`, 'c\nn\nz\n'],
      [`mkdir ${q(join(d, 'm'))}`, 'c\nm\nn\nz\n'],
      [`ln -s c ${q(join(d, 'l'))}`, 'c\nl\nm\nn\nz\n'],
      [`ln ${q(join(d, 'c'))} ${q(join(d, 'h'))}`, 'c\nh\nl\nm\nn\nz\n'],
      [`rmdir ${q(join(d, 'm'))}`, 'c\nh\nl\nn\nz\n'],
      [`mv ${q(join(d, 'n'))} ${q(mnt)}/`, 'c\nh\nl\nz\n'],
    ];
    for (const [cmd, want] of steps) {
      await sh(cmd);
      expect([cmd, await sh(`ls ${q(d)}`)]).toEqual([cmd, want]);
    }
    await fsp.rm(d, { recursive: true });
    await fsp.unlink(join(mnt, 'n'));
  });

  it('caches a failed lookup (negativeTimeout) and shows each name made afterwards through the mount', () =>
    exerciseCachedMisses(mnt, () => stats().ops.lookup ?? 0));

  it('answers unknown operations with ENOSYS (ioctl reaches the caller as ENOTTY)', async () => {
    await fsp.writeFile(join(mnt, 'io'), 'x');
    const r = await shResult(`python3 -c "
import fcntl, errno, sys
f = open(sys.argv[1], 'rb')
try:
    fcntl.ioctl(f.fileno(), 0x80086601, bytearray(8))
    print('ok')
except OSError as e:
    print(errno.errorcode[e.errno])
" ${q(join(mnt, 'io'))}`);
    expect(r.stdout.trim()).toBe('ENOTTY');
    await fsp.unlink(join(mnt, 'io'));
  });

  it('forgets every lookup the kernel held at unmount (liveInodes back to 1)', async () => {
    await sh(`mkdir -p ${q(join(mnt, 'a/b/c'))} && for i in 1 2 3; do echo $i > ${q(join(mnt, 'a/b/c'))}/f$i; done; ls -lR ${q(mnt)} >/dev/null; find ${q(mnt)} >/dev/null`);
    expect(layer.liveInodes()).toBeGreaterThan(1);
    await h!.unmount();
    h = undefined;
    expect(await findMount(mnt)).toBeUndefined();
    expect(layer.liveInodes()).toBe(1);
  });
});

describe.skipIf(mountSkip)('mountLowLevel() with allow_other: other users get their own credentials and groups (needs root, /dev/fuse, setpriv)', () => {
  let dir: string;
  let mnt: string;
  let h: MountHandle | undefined;
  const as = (uid: number, gid: number, groups: string, script: string) =>
    shResult(`setpriv --reuid ${uid} --regid ${gid} ${groups ? `--groups ${groups}` : '--clear-groups'} bash -c ${JSON.stringify(script)}`);

  beforeAll(async () => {
    dir = await tempDir('fuse-lowlevel-users');
    mnt = join(dir, 'mnt');
    await fsp.mkdir(mnt);
    await fsp.chmod(dir, 0o755);
    h = await mountLowLevel(new MemoryLayer(), mnt, { allowOther: true, handleSignals: false });
    await fsp.mkdir(join(mnt, 'pub'));
    await fsp.chmod(join(mnt, 'pub'), 0o1777);
  });

  afterAll(async () => {
    await h?.unmount();
    await fsp.rm(dir, { recursive: true, force: true });
  });

  it('creates files owned by the calling user; chgrp to a supplementary group works, to another group does not', async () => {
    const pub = join(mnt, 'pub');
    const r = await as(1234, 4321, '5555', `cd ${q(pub)} && echo hi > mine && mkdir d && chgrp 5555 mine && chgrp 6666 d`);
    expect(r.stderr).toMatch(/chgrp: changing group of 'd': Operation not permitted/);
    expect([(await fsp.stat(join(pub, 'mine'))).gid, (await fsp.stat(join(pub, 'd'))).uid, (await fsp.stat(join(pub, 'd'))).gid]).toEqual([5555, 1234, 4321]);
  });
});

describe.skipIf(mountSkip)('mountLowLevel() of an OverlayFs over PassthroughLayers, touched from child processes (needs root and /dev/fuse)', () => {
  let m: HostOverlay | undefined;
  let dir: string;
  let mnt: string;
  let h: MountHandle | undefined;
  let overlay: HostOverlay['overlay'];

  beforeAll(async () => {
    m = await mountHostOverlay('fuse-lowlevel-ovl', (fs, mp) => mountLowLevel(fs, mp), async (d) => {
      await sh(`cd ${q(join(d, 'lower'))} && mkdir -p sub/deep && echo low > sub/f && echo keep > k && echo deep > sub/deep/x && ln k klink && echo hl > h1 && ln h1 h2 && mkdir -p anc/b && touch anc/b/a`);
    });
    ({ dir, mnt, overlay, handle: h } = m);
  });

  afterAll(async () => {
    await m?.close();
  });

  it('copies up, whites out and lists the merged tree', async () => {
    const m = q(mnt);
    expect(await sh(`cd ${m} && find . | sort`)).toBe('.\n./anc\n./anc/b\n./anc/b/a\n./h1\n./h2\n./k\n./klink\n./sub\n./sub/deep\n./sub/deep/x\n./sub/f\n');
    await sh(`cd ${m} && echo more >> sub/f && rm k && mkdir new && echo n > new/n && mv sub/deep/x sub/y && chmod 700 sub`);
    expect(await sh(`cd ${m} && find . | sort && cat sub/f sub/y`)).toBe('.\n./anc\n./anc/b\n./anc/b/a\n./h1\n./h2\n./klink\n./new\n./new/n\n./sub\n./sub/deep\n./sub/f\n./sub/y\nlow\nmore\ndeep\n');
    expect(await sh(`stat -c %a ${q(join(mnt, 'sub'))}`)).toBe('700\n');
    expect(await sh(`cat ${q(join(dir, 'lower', 'sub', 'f'))}`)).toBe('low\n');
    expect(await sh(`stat -c %F ${q(join(dir, 'upper', 'k'))}`)).toBe('character special file\n');
    const r = await shResult(`cat ${q(join(mnt, 'k'))}`);
    expect(r.stderr).toMatch(/No such file or directory/);
  });

  it('copies up the name a lower hard link was changed through, and shows the other name unchanged', async () => {
    const m = q(mnt);
    expect(await sh(`cd ${m} && cat h1 h2 && stat -c %h h1 h2`)).toBe('hl\nhl\n2\n2\n');
    await sh(`cd ${m} && cat h2 >/dev/null && echo more >> h1`);
    expect(await sh(`cd ${m} && cat h1 && echo -- && cat h2`)).toBe('hl\nmore\n--\nhl\n');
    expect(await sh(`cat ${q(join(dir, 'upper', 'h1'))} && ls ${q(join(dir, 'upper'))}`)).toMatch(/^hl\nmore\n/);
    await sh(`cd ${m} && chmod 600 h2`);
    expect(await sh(`cd ${m} && stat -c %a h1 h2 && cat h2`)).toBe('644\n600\nhl\n');
  });

  it('gives every lookup back at unmount (the overlay and its layers back to 1)', async () => {
    await sh(`find ${q(mnt)} -exec stat {} + >/dev/null`);
    expect(overlay.liveInodes()).toBeGreaterThan(1);
    await h!.unmount();
    h = undefined;
    expect(overlay.liveInodes()).toBe(1);
    await overlay.dropCaches();   // the overlay's bounded cache of layer inodes
    for (const l of overlay.layers) expect(l.liveInodes?.()).toBe(1);
  });
});

const repo = fileURLToPath(new URL('../../..', import.meta.url));
const server = join(repo, 'bench', 'lib', 'layerfs-server.mjs');
/** Newest modification time of the `.ts` files under `dir`. */
function newestSource(dir: string): number {
  let t = 0;
  for (const f of readdirSync(dir, { recursive: true, encoding: 'utf8' })) if (f.endsWith('.ts')) t = Math.max(t, statSync(join(dir, f)).mtimeMs); // lint-allow-sync (sources, not the mount)
  return t;
}
/** The daemon imports the built packages: rebuild when a source is newer than its output. */
async function ensureBuilt(): Promise<void> {
  const built = (p: string) => {
    const f = join(repo, 'packages', p, 'dist', '.tsbuildinfo');
    return existsSync(f) ? statSync(f).mtimeMs : 0; // lint-allow-sync (build output, not the mount)
  };
  const out = join(repo, 'packages', 'fuse', 'dist', 'lowlevel', 'session.js');
  const stale = !existsSync(out) || // lint-allow-sync (build output)
    ['fuse', 'overlay', 'passthrough', 'core'].some((p) => newestSource(join(repo, 'packages', p, 'src')) > built(p));
  if (stale) await promisify(execFile)('pnpm', ['exec', 'tsc', '-b', join(repo, 'packages', 'overlay'), join(repo, 'packages', 'fuse')], { cwd: repo });
}

const unavailable = mountSkip ? 'no root or /dev/fuse' : await kernelOverlayUnavailable();

describe.skipIf(unavailable !== undefined)(`oracle through the low-level transport: kernel overlayfs vs the overlay served by mountLowLevel in a daemon (${unavailable ?? 'root, /dev/fuse and kernel overlay available'})`, () => {
  const daemons = new Set<ChildProcess>();
  beforeAll(ensureBuilt, 120_000);
  afterAll(async () => {
    for (const c of daemons) c.kill('SIGKILL');
  });

  it('agrees on 20 generated sequences of up to 30 operations', async () => {
    const res = await runMountOracle(async (l) => {
      const opts = `lowerdir=${l.lowerdirs.join(':')},upperdir=${l.upperdir},workdir=${l.workdir}`;
      const child = spawn(process.execPath, [server, 'mount', '-f', '-o', opts, l.mountpoint],
        { stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, LAYERFS_TRANSPORT: 'lowlevel' } });
      daemons.add(child);
      const exited = new Promise<void>((r) => child.on('exit', () => r()));
      const end = Date.now() + 20_000;
      while (!(await findMount(l.mountpoint))) {
        if (Date.now() > end || child.exitCode !== null) throw new Error(`the daemon did not mount ${l.mountpoint}`);
        await new Promise((r) => setTimeout(r, 20));
      }
      return async () => {
        child.kill('SIGTERM');   // the daemon unmounts and exits
        await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))]);
        daemons.delete(child);
        if (await findMount(l.mountpoint)) await sh(`umount -l ${q(l.mountpoint)}`);
      };
    }, { numRuns: 20, sutName: 'layerfs low-level mount', dirNlink: true, dirTimes: true });
    expect(res.failed).toBe(false);
  }, 300_000);
});
