/**
 * uid/gid mapping in fuse-overlayfs syntax (`H:C:N[:H:C:N…]`): attributes go out host →
 * container (unmapped ids as 65534), created files and chown come in container → host, and
 * permission checks use the container view. Plus the parser's errors.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import { OpenFlags, ROOT_INO, type RequestContext } from '@layerfs/core';
import { IdMap, OVERFLOW_ID, PassthroughLayer } from '../src/index.js';
import { ctx, rejectsWith, removeDir, tempDir, walk } from './helpers.js';

const isRoot = process.getuid?.() === 0;

describe('IdMap', () => {
  it('parses triples and maps both ways', () => {
    const m = IdMap.parse('100000:0:1000:5000:1000:10');
    expect(m.ranges).toEqual([{ host: 100000, container: 0, count: 1000 }, { host: 5000, container: 1000, count: 10 }]);
    expect(m.toContainer(100000)).toBe(0);
    expect(m.toContainer(100999)).toBe(999);
    expect(m.toContainer(5009)).toBe(1009);
    expect(m.toContainer(0)).toBe(OVERFLOW_ID);
    expect(m.toHost(0)).toBe(100000);
    expect(m.toHost(1005)).toBe(5005);
    expect(m.toHost(2000)).toBeUndefined();
    expect(IdMap.parse('0:1000:1,1:100000:65536').ranges.length).toBe(2);
    expect(new IdMap([]).toContainer(42)).toBe(42);
    for (const bad of ['', '1:2', '1:2:0', 'a:b:c', '1:2:3:4', '-1:0:1']) expect(() => IdMap.parse(bad)).toThrow(/EINVAL/);
  });
});

describe.skipIf(!isRoot)('a mapped layer (needs root to own files as other ids)', () => {
  let dir: string;
  let L: PassthroughLayer;
  beforeEach(() => {
    dir = tempDir('idmap');
    fs.writeFileSync(`${dir}/mine`, 'x');
    fs.chownSync(`${dir}/mine`, 100000, 100000);
    fs.writeFileSync(`${dir}/unmapped`, 'y');
    fs.chownSync(`${dir}/unmapped`, 7, 7);
    fs.chownSync(dir, 100000, 100000);
    L = new PassthroughLayer(dir, { uidmapping: '100000:0:65536', gidmapping: '100000:0:65536' });
  });
  afterEach(async () => {
    await L.destroy();
    removeDir(dir);
  });

  it('shows host ids as container ids, unmapped ones as 65534', async () => {
    expect((await L.getattr(ctx, ROOT_INO)).uid).toBe(0);
    const mine = await L.lookup(ctx, ROOT_INO, 'mine');
    expect([mine.attr.uid, mine.attr.gid]).toEqual([0, 0]);
    const un = await L.lookup(ctx, ROOT_INO, 'unmapped');
    expect([un.attr.uid, un.attr.gid]).toEqual([OVERFLOW_ID, OVERFLOW_ID]);
    const h = await L.opendir(ctx, ROOT_INO);
    const list = await L.readdir(ctx, ROOT_INO, h.fh, 0, true);
    expect(list.find((e) => e.name === 'mine')!.attr!.uid).toBe(0);
    await L.releasedir(ctx, ROOT_INO, h.fh);
  });

  it('creates files owned by the mapped caller and maps chown in', async () => {
    const u: RequestContext = { uid: 1000, gid: 1000, pid: 0, umask: 0o022 };
    fs.chmodSync(dir, 0o777);
    const c = await L.create(u, ROOT_INO, 'new', 0o644, OpenFlags.O_WRONLY);
    await L.release(u, c.entry.ino, c.fh);
    expect([c.entry.attr.uid, c.entry.attr.gid]).toEqual([1000, 1000]);
    const s = fs.statSync(`${dir}/new`);
    expect([s.uid, s.gid]).toEqual([101000, 101000]);
    const d = await L.mkdir(ctx, ROOT_INO, 'd', 0o755);
    expect(fs.statSync(`${dir}/d`).uid).toBe(100000);
    await L.setattr(ctx, d.ino, { uid: 5, gid: 6 });
    expect([fs.statSync(`${dir}/d`).uid, fs.statSync(`${dir}/d`).gid]).toEqual([100005, 100006]);
    await rejectsWith(L.setattr(ctx, d.ino, { uid: 70000 }), 'EINVAL');
    const outsider: RequestContext = { uid: 70000, gid: 70000, pid: 0, umask: 0o022 };
    await rejectsWith(L.mkdir(outsider, ROOT_INO, 'x', 0o755), 'EOVERFLOW');
  });

  it('checks permissions in the container view', async () => {
    const u: RequestContext = { uid: 1000, gid: 1000, pid: 0, umask: 0o022 };
    fs.chmodSync(`${dir}/mine`, 0o600);
    const mine = await walk(L, 'mine');
    await rejectsWith(L.open(u, mine, OpenFlags.O_RDONLY), 'EACCES');
    fs.chownSync(`${dir}/mine`, 101000, 101000);
    const h = await L.open(u, mine, OpenFlags.O_RDWR);
    await L.release(u, mine, h.fh);
    await L.setattr(u, mine, { mode: 0o640 });
    expect(fs.statSync(`${dir}/mine`).mode & 0o777).toBe(0o640);
  });
});
