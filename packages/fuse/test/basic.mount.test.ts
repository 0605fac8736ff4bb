/**
 * Real FUSE mounts of a MemoryLayer through `mount()`: ordinary file operations through the
 * kernel, errno mapping, st_ino passed through (use_ino), 128 KiB write requests
 * (big_writes/max_write), the real mtime of utimens, hard links, the page cache kept across
 * opens (auto_cache) and dropped after a change through another name, ENOTTY for unknown ioctls,
 * concurrency, and balanced lookup counts after unmount.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as fsp from 'node:fs/promises';
import { join } from 'node:path';
import { ROOT_CONTEXT } from '@layerfs/core';
import { MemoryLayer } from '@layerfs/testkit';
import { mount, type MountHandle } from '../src/index.js';
import { exerciseBasicOps, exerciseCachedMisses, mountSkip, recording, sh, shResult, tempDir, type Recorder } from './helpers.js';

describe.skipIf(mountSkip)('mount() of a MemoryLayer (needs root and /dev/fuse)', () => {
  let dir: string;
  let mnt: string;
  let layer: MemoryLayer;
  let rec: Recorder;
  let h: MountHandle | undefined;

  beforeAll(async () => {
    dir = await tempDir('fuse-basic');
    mnt = join(dir, 'mnt');
    await fsp.mkdir(mnt);
    layer = new MemoryLayer();
    const r = recording(layer, 0);
    rec = r.rec;
    h = await mount(r.fs, mnt, { handleSignals: false });
  });

  afterAll(async () => {
    await h?.unmount();
    await fsp.rm(dir, { recursive: true, force: true });
  });

  it('creates, writes, reads, lists, renames and removes through the kernel', () => exerciseBasicOps(mnt));

  it('caches a failed lookup (negativeTimeout) and shows each name made afterwards through the mount', () =>
    exerciseCachedMisses(mnt, () => (rec.calls.lookup ?? 0) + (rec.calls.lookupIfExists ?? 0)));

  it('answers with the errno of the FsError', async () => {
    await expect(fsp.stat(join(mnt, 'nope'))).rejects.toMatchObject({ code: 'ENOENT' });
    await fsp.mkdir(join(mnt, 'full'));
    await fsp.writeFile(join(mnt, 'full', 'x'), '');
    await expect(fsp.rmdir(join(mnt, 'full'))).rejects.toMatchObject({ code: 'ENOTEMPTY' });
    await expect(fsp.readlink(join(mnt, 'full', 'x'))).rejects.toMatchObject({ code: 'EINVAL' });
    await expect(fsp.mkdir(join(mnt, 'full'))).rejects.toMatchObject({ code: 'EEXIST' });
    await fsp.rm(join(mnt, 'full'), { recursive: true });
  });

  it('shows the filesystem inode number as st_ino and as d_ino (use_ino)', async () => {
    await fsp.writeFile(join(mnt, 'ino'), 'x');
    const e = await layer.lookup(ROOT_CONTEXT, 1, 'ino');
    await layer.forget(ROOT_CONTEXT, e.ino, 1);
    expect((await fsp.stat(join(mnt, 'ino'))).ino).toBe(e.ino);
    const lsIno = (await sh(`ls -i ${JSON.stringify(mnt)} | grep ' ino$'`)).trim().split(/\s+/)[0];
    expect(Number(lsIno)).toBe(e.ino);
    await fsp.unlink(join(mnt, 'ino'));
  });

  it('receives a 1 MiB write as 128 KiB requests (big_writes, max_write=131072)', async () => {
    rec.writeSizes.length = 0;
    await sh(`dd if=/dev/zero of=${JSON.stringify(join(mnt, 'big'))} bs=1M count=1 status=none`);
    expect(rec.writeSizes).toEqual(Array(8).fill(131072));
    expect((await fsp.stat(join(mnt, 'big'))).size).toBe(1 << 20);
    await fsp.unlink(join(mnt, 'big'));
  });

  it('sets atime and mtime separately (utimens)', async () => {
    const p = join(mnt, 't');
    await fsp.writeFile(p, '');
    await fsp.utimes(p, new Date('2001-02-03T04:05:06.789Z'), new Date('2011-12-13T14:15:16.250Z'));
    const st = await fsp.stat(p);
    expect(st.atime.toISOString()).toBe('2001-02-03T04:05:06.789Z');
    expect(st.mtime.toISOString()).toBe('2011-12-13T14:15:16.250Z');
    // libfuse 2 drops a setattr that sets only one of the two times (`touch -m`, `touch -a`):
    // see the README's limits. Both at once work, with millisecond precision.
    await sh(`touch -d '2020-01-01 00:00:00.5Z' ${JSON.stringify(p)}`);
    const st2 = await fsp.stat(p);
    expect(st2.atime.toISOString()).toBe('2020-01-01T00:00:00.500Z');
    expect(st2.mtime.toISOString()).toBe('2020-01-01T00:00:00.500Z');
    const before = Date.now();
    await sh(`touch ${JSON.stringify(p)}`);
    expect((await fsp.stat(p)).mtimeMs).toBeGreaterThanOrEqual(before - 1000);
    await fsp.unlink(p);
  });

  it('keeps every name of a hard link in step right after a change', async () => {
    const a = join(mnt, 'ha');
    const b = join(mnt, 'hb');
    await fsp.writeFile(a, 'one');
    await fsp.link(a, b);
    let sa = await fsp.stat(a);
    let sb = await fsp.stat(b);
    expect([sa.ino, sa.nlink]).toEqual([sb.ino, 2]);
    await fsp.chmod(b, 0o640);
    await fsp.writeFile(b, 'two!');
    sa = await fsp.stat(a);
    sb = await fsp.stat(b);
    expect(sa.mode).toBe(sb.mode);
    expect(sa.mode & 0o777).toBe(0o640);
    expect(sa.ctimeMs).toBe(sb.ctimeMs);
    expect(sa.size).toBe(4);
    expect(await fsp.readFile(a, 'utf8')).toBe('two!');
    await fsp.unlink(b);
    expect((await fsp.stat(a)).nlink).toBe(1);
    await fsp.unlink(a);
    // The kernel cached the attributes (long attr_timeout); only invalidation kept them in step.
    expect(h!.stats()).toMatchObject({ attrCaching: true });
    expect(h!.stats().invalidations).toBeGreaterThan(0);
  });

  it('keeps file pages across opens while current, and drops them after a change through another name (auto_cache)', async () => {
    const a = join(mnt, 'pa');
    const b = join(mnt, 'pb');
    const one = Buffer.alloc(256 * 1024, 1);
    const two = Buffer.alloc(256 * 1024, 2);
    const t = new Date('2020-01-01T00:00:00Z');
    await fsp.writeFile(a, one);
    await fsp.utimes(a, t, t);
    await fsp.link(a, b);
    const reads = () => h!.stats().ops.read ?? 0;
    // Compared with Buffer.equals: a failing toEqual would diff 256 Ki elements for minutes.
    const holds = async (p: string, want: Buffer) => (await fsp.readFile(p)).equals(want);
    expect(await holds(b, one)).toBe(true);
    const before = reads();
    expect(await holds(b, one)).toBe(true);
    expect(await holds(b, one)).toBe(true);
    expect(reads()).toBe(before);   // served from the page cache: no read request
    // Same size and, after utimes, the same mtime: only the invalidation through `a` can
    // tell libfuse that b's pages are stale (b is another kernel inode under libfuse 2).
    await fsp.writeFile(a, two, { flag: 'r+' });
    await fsp.utimes(a, t, t);
    expect((await fsp.stat(b)).mtimeMs).toBe(t.getTime());
    expect(await holds(b, two)).toBe(true);
    expect(reads()).toBeGreaterThan(before);
    await fsp.unlink(b);
    await fsp.unlink(a);
  });

  it('answers unknown ioctls with ENOTTY', async () => {
    await fsp.writeFile(join(mnt, 'io'), 'x');
    // 0x1234: no such ioctl; 0x80086601: FS_IOC_GETFLAGS (lsattr), which the filesystem lacks.
    const r = await shResult(`python3 -c "
import fcntl, errno, sys
f = open(sys.argv[1], 'rb')
for cmd in (0x1234, 0x80086601):
    try:
        fcntl.ioctl(f.fileno(), cmd, bytearray(8))
        print('ok')
    except OSError as e:
        print(errno.errorcode[e.errno])
" ${JSON.stringify(join(mnt, 'io'))}`);
    expect(r.stdout.trim().split('\n')).toEqual(['ENOTTY', 'ENOTTY']);
    await fsp.unlink(join(mnt, 'io'));
  });

  it('answers while every libuv pool thread is held elsewhere (caller credentials are read from /proc without the pool)', async () => {
    const q = (p: string) => JSON.stringify(p);
    const fifo = join(dir, 'pool-fifo');   // outside the mount
    await sh(`mkfifo ${q(fifo)}`);
    // An open of a FIFO for reading waits on a pool thread until a writer opens it.
    const held = Array.from({ length: Number(process.env.UV_THREADPOOL_SIZE ?? 4) }, () => fsp.open(fifo, 'r'));
    try {
      await new Promise((r) => setTimeout(r, 200));
      // A request that needs the caller's credentials, from a process whose groups are not cached.
      const r = await shResult(`timeout -k 1 5 mkdir ${q(join(mnt, 'pool'))}; echo rc=$?`);
      expect(r.stdout.trim()).toBe('rc=0');
    } finally {
      await sh(`exec 3>${q(fifo)}; sleep 0.2`);   // a writer: every waiting open returns
      for (const p of held) await (await p).close();
    }
    await fsp.rmdir(join(mnt, 'pool'));
  });

  it('does not leak the /dev/fuse descriptor into child processes', async () => {
    const fds = await sh('ls -l /proc/self/fd/');
    expect(fds).toMatch(/-> /);
    expect(fds).not.toMatch(/\/dev\/fuse/);
  });

  it('forgets every lookup it took at unmount (liveInodes back to 1)', async () => {
    await sh(`mkdir -p ${JSON.stringify(join(mnt, 'a/b/c'))} && for i in 1 2 3; do echo $i > ${JSON.stringify(join(mnt, 'a/b/c'))}/f$i; done; ls -lR ${JSON.stringify(mnt)} >/dev/null`);
    expect(layer.liveInodes()).toBeGreaterThan(1);
    await h!.unmount();
    h = undefined;
    expect(layer.liveInodes()).toBe(1);
  });
});

describe.skipIf(mountSkip)('allow_other: other users get their own credentials (needs root, /dev/fuse, setpriv)', () => {
  let dir: string;
  let mnt: string;
  let layer: MemoryLayer;
  let h: MountHandle | undefined;
  const as = (uid: number, gid: number, script: string) =>
    shResult(`setpriv --reuid ${uid} --regid ${gid} --clear-groups bash -c ${JSON.stringify(script)}`);

  beforeAll(async () => {
    dir = await tempDir('fuse-users');
    mnt = join(dir, 'mnt');
    await fsp.mkdir(mnt);
    await fsp.chmod(dir, 0o755);
    layer = new MemoryLayer();
    h = await mount(layer, mnt, { handleSignals: false, allowOther: true });
    await fsp.mkdir(join(mnt, 'pub'), { mode: 0o777 });
    await fsp.chmod(join(mnt, 'pub'), 0o1777);
    await fsp.writeFile(join(mnt, 'pub', 'roots'), 'secret', { mode: 0o600 });
  });

  afterAll(async () => {
    await h?.unmount();
    await fsp.rm(dir, { recursive: true, force: true });
  });

  it('creates files, directories and symlinks owned by the calling user', async () => {
    const r = await as(1234, 4321, `cd ${JSON.stringify(join(mnt, 'pub'))} && echo hi > mine && mkdir d && ln -s mine l && mknod p p`);
    expect(r).toMatchObject({ code: 0, stderr: '' });
    for (const n of ['mine', 'd', 'l', 'p']) {
      const st = await fsp.lstat(join(mnt, 'pub', n));
      expect([n, st.uid, st.gid]).toEqual([n, 1234, 4321]);
    }
    expect(h!.stats().callerContexts).toBeGreaterThan(0);
  });

  it('enforces permissions for other users (default_permissions)', async () => {
    const r = await as(1234, 4321, `cat ${JSON.stringify(join(mnt, 'pub', 'roots'))}`);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/Permission denied/);
    const w = await as(1234, 4321, `echo x > ${JSON.stringify(join(mnt, 'newfile'))}`);
    expect(w.stderr).toMatch(/Permission denied/);
    const sticky = await as(4444, 4444, `rm -f ${JSON.stringify(join(mnt, 'pub', 'mine'))}`);
    expect(sticky.stderr).toMatch(/Operation not permitted/);
    expect(await fsp.readFile(join(mnt, 'pub', 'mine'), 'utf8')).toBe('hi\n');
  });
});
