// OverlayFs semantics over MemoryLayers: lookup, whiteouts, opaque dirs, merged readdir,
// copy-up, removal, rename, hard links, inode numbers, private xattrs and lookup counts.
import { OpenFlags, ROOT_CONTEXT, ROOT_INO, RenameFlags, Volume } from '@layerfs/core';
import { dump, opaque, whiteout, file, symlink, recording, tree } from '@layerfs/testkit';
import { describe, expect, it } from 'vitest';
import { OverlayFs } from '../src/index.js';
import { checkBrokenHardLinkInos, expectNoLeaks, memOverlay } from './helpers.js';
import { USER } from './model-helpers.js';

const ctx = ROOT_CONTEXT;

describe('lookup and merge', () => {
  it('lookup goes top-down: upper wins, whiteouts hide, opaque dirs hide, non-dirs hide, dirs merge', async () => {
    const o = await memOverlay([
      { a: 'lower-a', d: { x: 'lx', y: 'ly' }, o: { hidden: '1' }, f: { under: '1' }, w: 'gone' },
      { a: 'bottom-a', d: { z: 'lz' }, deep: 'deep' },
    ], { a: 'upper-a', d: { y: 'uy', x: whiteout() }, o: opaque({ mine: 'm' }), f: 'now a file', w: whiteout() });
    const { vol } = o;
    expect(await vol.readFile('/a', 'utf8')).toBe('upper-a');
    expect((await vol.readdir('/d')).sort()).toEqual(['y', 'z']);
    expect(await vol.readFile('/d/y', 'utf8')).toBe('uy');
    await expect(vol.stat('/d/x')).rejects.toMatchObject({ code: 'ENOENT' });
    expect(await vol.readdir('/o')).toEqual(['mine']);
    expect((await vol.stat('/f')).isFile()).toBe(true);
    await expect(vol.stat('/w')).rejects.toMatchObject({ code: 'ENOENT' });
    expect(await vol.readFile('/deep', 'utf8')).toBe('deep');
    expect((await vol.readdir('/')).sort()).toEqual(['a', 'd', 'deep', 'f', 'o']);
    await expectNoLeaks(o);
  });

  it('lookupIfExists: undefined where lookup is ENOENT (missing, whited out, under an opaque dir), the entry where it finds one', async () => {
    const o = await memOverlay([{ a: 'lower-a', o: { hidden: '1' }, w: 'gone' }], { o: opaque({}), w: whiteout() });
    const { ov } = o;
    for (const [dir, name] of [[ROOT_INO, 'missing'], [ROOT_INO, 'w']] as const) {
      expect(await ov.lookupIfExists(ctx, dir, name)).toBeUndefined();
      await expect(ov.lookup(ctx, dir, name)).rejects.toMatchObject({ code: 'ENOENT' });
    }
    const od = await ov.lookup(ctx, ROOT_INO, 'o');
    expect(await ov.lookupIfExists(ctx, od.ino, 'hidden')).toBeUndefined();
    const a = await ov.lookupIfExists(ctx, ROOT_INO, 'a');
    expect(a?.ino).toBe((await ov.lookup(ctx, ROOT_INO, 'a')).ino);
    await expect(ov.lookupIfExists(ctx, a!.ino, 'x')).rejects.toMatchObject({ code: 'ENOTDIR' });
    await ov.forget(ctx, a!.ino, 2);
    await ov.forget(ctx, od.ino, 1);
    await expectNoLeaks(o);
  });

  it('mixed whiteout formats stack: an OCI lower under a chardev upper', async () => {
    const o = await memOverlay([{ k: 'keep', gone: whiteout(), op: opaque({ i: '1' }) }, { gone: 'x', op: { j: '2' } }], { u: whiteout() }, { formats: ['chardev', 'oci', 'chardev'] });
    expect((await o.vol.readdir('/')).sort()).toEqual(['k', 'op']);
    expect(await o.vol.readdir('/op')).toEqual(['i']);
    await expectNoLeaks(o);
  });

  it('readdir: each name once, right types, d_ino == st_ino, no markers', async () => {
    const o = await memOverlay([{ d: { s: symlink('t'), sub: {}, f: 'x' } }, { d: { f: 'old', sub: { q: '1' }, g: 'g' } }], { d: { n: 'new' } }, { formats: ['chardev', 'oci', 'oci'] });
    const ents = await o.vol.readdir('/d', { withFileTypes: true });
    const byName = Object.fromEntries(ents.map((e) => [e.name, e]));
    expect(Object.keys(byName).sort()).toEqual(['f', 'g', 'n', 's', 'sub']);
    expect(byName.s!.isSymbolicLink()).toBe(true);
    expect(byName.sub!.isDirectory()).toBe(true);
    const d = await o.ov.lookup(ctx, ROOT_INO, 'd');
    const { fh } = await o.ov.opendir(ctx, d.ino);
    const list = await o.ov.readdir(ctx, d.ino, fh, 0, false);
    for (const e of list) {
      const st = await o.vol.lstat(`/d/${e.name}`);
      expect(st.ino).toBe(e.ino);
    }
    await o.ov.releasedir(ctx, d.ino, fh);
    await o.ov.forget(ctx, d.ino, 1);
    await expectNoLeaks(o);
  });

  it('readdir on one handle neither skips nor repeats names while entries change', async () => {
    const spec: Record<string, string> = {};
    for (let i = 0; i < 20; i++) spec[`f${i}`] = String(i);
    const o = await memOverlay([spec], {});
    const { fh } = await o.ov.opendir(ctx, ROOT_INO);
    const first = (await o.ov.readdir(ctx, ROOT_INO, fh, 0, false)).slice(0, 5);
    await o.vol.unlink('/f10');
    await o.vol.writeFile('/zz', 'new');
    const rest = await o.ov.readdir(ctx, ROOT_INO, fh, first[first.length - 1]!.offset, false);
    const names = [...first, ...rest].map((e) => e.name);
    expect(new Set(names).size).toBe(names.length);
    expect(names.sort()).toEqual(Object.keys(spec).sort());
    const again = await o.ov.readdir(ctx, ROOT_INO, fh, 0, false);
    expect(again.map((e) => e.name)).toContain('zz');
    expect(again.map((e) => e.name)).not.toContain('f10');
    await o.ov.releasedir(ctx, ROOT_INO, fh);
    await expectNoLeaks(o);
  });
});

describe('cacheFileAttrs', () => {
  it('off: the attributes of files are read from their layer for each request (kept: until a change through the overlay); directories keep theirs', async () => {
    for (const cacheFileAttrs of [true, false]) {
      const o = await memOverlay([{ d: { f: file('x', 0o644) } }], {}, { cacheFileAttrs });
      expect((await o.vol.stat('/d/f')).mode & 0o777).toBe(0o644);
      const lower = o.lowers[0]!;
      const d = await lower.lookup(ctx, ROOT_INO, 'd');
      const f = await lower.lookup(ctx, d.ino, 'f');
      await lower.setattr(ctx, f.ino, { mode: 0o600 });   // behind the overlay's back
      await lower.setattr(ctx, d.ino, { mode: 0o700 });
      expect([cacheFileAttrs, (await o.vol.stat('/d/f')).mode & 0o777, (await o.vol.stat('/d')).mode & 0o777]).toEqual([cacheFileAttrs, cacheFileAttrs ? 0o644 : 0o600, 0o755]);
      await lower.forget(ctx, f.ino, 1);
      await lower.forget(ctx, d.ino, 1);
      await expectNoLeaks(o);
    }
  });

  it('by default: off while a watchAttrs listener whose kernel holds every inode is registered, unless the option says on', async () => {
    const modeAfterBackDoorChmod = async (options: { cacheFileAttrs?: boolean }, holdsInodes: boolean | undefined, stopFirst: boolean) => {
      const o = await memOverlay([{ f: file('x', 0o644) }], {}, options);
      const stop = o.ov.watchAttrs(() => undefined, holdsInodes === undefined ? undefined : { holdsInodes });
      if (stopFirst) stop();
      await o.vol.stat('/f');
      const lower = o.lowers[0]!;
      const f = await lower.lookup(ctx, ROOT_INO, 'f');
      await lower.setattr(ctx, f.ino, { mode: 0o600 });   // behind the overlay's back
      const mode = (await o.vol.stat('/f')).mode & 0o777;
      await lower.forget(ctx, f.ino, 1);
      if (!stopFirst) stop();
      await expectNoLeaks(o);
      return mode;
    };
    expect(await modeAfterBackDoorChmod({}, true, false)).toBe(0o600);     // kernel holds: not kept
    expect(await modeAfterBackDoorChmod({}, true, true)).toBe(0o644);      // that listener stopped: kept
    expect(await modeAfterBackDoorChmod({}, false, false)).toBe(0o644);
    expect(await modeAfterBackDoorChmod({}, undefined, false)).toBe(0o644);
    expect(await modeAfterBackDoorChmod({ cacheFileAttrs: true }, true, false)).toBe(0o644);
  });

  it('off: a file keeps mode, owner and group for permission checks, so an open calls no layer getattr', async () => {
    const { fs: lower, rec } = recording(await tree({ f: file('x', 0o644) }, { writable: true }));
    const ov = await OverlayFs.create({ upper: await tree({}), lowers: [lower], options: { cacheFileAttrs: false } });
    const e = await ov.lookup(USER, ROOT_INO, 'f');
    const before = rec.calls.getattr ?? 0;
    const h = await ov.open(USER, e.ino, OpenFlags.O_RDONLY);
    expect((rec.calls.getattr ?? 0) - before).toBe(0);
    await ov.release(USER, e.ino, h.fh);
    await ov.forget(USER, e.ino, 1);
    expect(ov.liveInodes()).toBe(1);
  });
});

describe('set-id bits after a change by a caller without CAP_FSETID', () => {
  it('a write, a truncate and an O_TRUNC open by the owner drop set-user-ID (and set-group-ID with group-execute), as the kernel overlay does; root keeps them', async () => {
    const own = { uid: USER.uid, gid: USER.gid };
    const o = await memOverlay([{
      w: file('x', 0o6755, own), t: file('x', 0o6755, own), o: file('x', 0o6755, own), g: file('x', 0o2745, own), r: file('x', 0o4755, own),
    }], {}, {});
    const user = new Volume(o.ov, { context: USER });
    await user.appendFile('/w', 'y');                 // lower file: copied up, then written
    await user.truncate('/t', 1);
    await (await user.open('/o', 'w')).close();      // O_TRUNC
    await user.appendFile('/g', 'y');                 // set-group-ID without group-execute stays
    await o.vol.appendFile('/r', 'y');                // root keeps set-user-ID
    const modes = [];
    for (const f of ['w', 't', 'o', 'g', 'r']) modes.push(((await o.vol.stat(`/${f}`)).mode & 0o7777).toString(8));
    expect(modes).toEqual(['755', '755', '755', '2745', '4755']);
    await expectNoLeaks(o);
  });
});

describe('copy-up', () => {
  it('watchAttrs reports what a copy-up changed aside: each copied object and the upper directory it landed in', async () => {
    const o = await memOverlay([{ a: { b: { f: 'x' } }, other: 'o' }]);
    const ino = async (p: string) => (await o.vol.stat(p)).ino;
    const [root, a, b, f] = [1, await ino('/a'), await ino('/a/b'), await ino('/a/b/f')];
    const seen: number[] = [];
    const stop = o.ov.watchAttrs((i) => seen.push(i));
    await o.vol.appendFile('/a/b/f', 'y');
    expect(seen).toEqual([a, root, b, a, f, b]);
    seen.length = 0;
    await o.vol.appendFile('/a/b/f', 'z');   // already up: nothing aside
    await o.vol.writeFile('/new', 'n');      // a change the request names
    expect(seen).toEqual([]);
    stop();
    await o.vol.appendFile('/other', '!');
    expect(seen).toEqual([]);
    await expectNoLeaks(o);
  });

  it('first write copies up parents first, with mode, owner, times, xattrs (not private ones)', async () => {
    const o = await memOverlay([{ d: { e: { f: file('hello', 0o640, { uid: 7, gid: 8, xattrs: { 'user.a': '1', 'trusted.overlay.x': 'no' } }) } } }]);
    const before = await o.vol.stat('/d/e/f', { bigint: true });
    await o.vol.appendFile('/d/e/f', ' world');
    expect(await o.vol.readFile('/d/e/f', 'utf8')).toBe('hello world');
    const u = new Volume(o.upper, { context: ctx });
    const ust = await u.stat('/d/e/f');
    expect([ust.mode & 0o7777, ust.uid, ust.gid]).toEqual([0o640, 7, 8]);
    expect(await u.readFile('/d/e/f', 'utf8')).toBe('hello world');
    expect((await u.listxattr('/d/e/f')).sort()).toEqual(['trusted.overlay.origin', 'user.a']);
    expect(await o.vol.listxattr('/d/e/f')).toEqual(['user.a']);
    const after = await o.vol.stat('/d/e/f', { bigint: true });
    expect(after.ino).toBe(before.ino);
    expect(await dump(o.lowers[0]!)).toMatchObject({ d: { e: { f: { content: 'hello' } } } });
    await expectNoLeaks(o);
  });

  it('keeps nanosecond times on copy-up by chmod', async () => {
    const o = await memOverlay([{ f: 'x' }]);
    const l = o.lowers[0]!;
    const e = await l.lookup(ctx, ROOT_INO, 'f');
    await l.setattr(ctx, e.ino, { mtime: { sec: 1000, nsec: 123456789 }, atime: { sec: 999, nsec: 1 } });
    await l.forget(ctx, e.ino, 1);
    await o.vol.chmod('/f', 0o600);
    const st = await o.vol.stat('/f', { bigint: true });
    expect(st.mtimeNs).toBe(1000123456789n);
    expect(st.atimeNs).toBe(999000000001n);
    expect(Number(st.mode) & 0o7777).toBe(0o600);
    await expectNoLeaks(o);
  });

  it('every change copies up: truncate, chown, utimes, setxattr, removexattr, link, rename', async () => {
    const names = ['t', 'c', 'u', 's', 'r', 'l', 'm'];
    const spec: Record<string, ReturnType<typeof file>> = {};
    for (const n of names) spec[n] = file(`data-${n}`, 0o644, { xattrs: { 'user.k': 'v' } });
    const o = await memOverlay([spec]);
    const v = o.vol;
    await v.truncate('/t', 2);
    await v.chown('/c', 5, 5);
    await v.utimes('/u', 1, 2);
    await v.setxattr('/s', 'user.n', 'x');
    await v.removexattr('/r', 'user.k');
    await v.link('/l', '/l2');
    await v.rename('/m', '/m2');
    const up = await dump(o.upper, { xattrs: false });
    for (const n of ['t', 'c', 'u', 's', 'r', 'l', 'l2', 'm2']) expect(up).toHaveProperty(n);
    expect(up.m).toEqual(whiteout());
    expect(await v.readFile('/t', 'utf8')).toBe('da');
    await expectNoLeaks(o);
  });

  it('opening read-only never copies up', async () => {
    const o = await memOverlay([{ d: { f: 'x' } }]);
    const h = await o.vol.open('/d/f', 'r');
    await h.close();
    expect(await o.vol.readFile('/d/f', 'utf8')).toBe('x');
    expect(await dump(o.upper, { xattrs: false })).toEqual({});
    await expectNoLeaks(o);
  });

  it('a reader open before copy-up stays consistent and sees later writes', async () => {
    const o = await memOverlay([{ f: 'abcdef' }]);
    const r = await o.vol.open('/f', 'r');
    const b = Buffer.alloc(3);
    await r.read(b, 0, 3, 0);
    expect(b.toString()).toBe('abc');
    const w = await o.vol.open('/f', 'r+');
    await w.write(Buffer.from('XY'), 0, 2, 3);
    await w.close();
    const b2 = Buffer.alloc(6);
    const { bytesRead } = await r.read(b2, 0, 6, 0);
    expect(b2.subarray(0, bytesRead).toString()).toBe('abcXYf');
    await r.close();
    await expectNoLeaks(o);
  });

  it('concurrent writers to one lower file copy it up once and lose no bytes', async () => {
    const o = await memOverlay([{ f: Buffer.alloc(4096, 0x61) }]);
    const writes = Array.from({ length: 8 }, async (_, i) => {
      const h = await o.vol.open('/f', 'r+');
      await h.write(Buffer.from([0x30 + i]), 0, 1, i * 100);
      await h.close();
    });
    await Promise.all(writes);
    const data = await o.vol.readFile('/f');
    expect(data.length).toBe(4096);
    for (let i = 0; i < 8; i++) expect(data[i * 100]).toBe(0x30 + i);
    const up = await dump(o.upper, { xattrs: false });
    expect(Object.keys(up)).toEqual(['f']);
    await expectNoLeaks(o);
  });

  it('copy-up keeps holes (sparse data stays sparse)', async () => {
    const big = Buffer.alloc(3 << 20);
    big.write('head', 0);
    big.write('tail', big.length - 4);
    const o = await memOverlay([{ s: big }]);
    await o.vol.chmod('/s', 0o600);
    const data = await o.vol.readFile('/s');
    expect(data.equals(big)).toBe(true);
    await expectNoLeaks(o);
  });
});

describe('removal and creation', () => {
  it('unlink and rmdir of lower names leave whiteouts; rmdir needs merged-empty and clears upper whiteouts', async () => {
    const o = await memOverlay([{ f: 'x', d: { a: '1' }, e: {} }], { d: { b: '2' } });
    await o.vol.unlink('/f');
    await expect(o.vol.rmdir('/d')).rejects.toMatchObject({ code: 'ENOTEMPTY' });
    await o.vol.unlink('/d/a');
    await expect(o.vol.rmdir('/d')).rejects.toMatchObject({ code: 'ENOTEMPTY' });
    await o.vol.unlink('/d/b');
    expect(await dump(o.upper, { xattrs: false })).toEqual({ f: whiteout(), d: { a: whiteout() } });
    await o.vol.rmdir('/d');
    await o.vol.rmdir('/e');
    expect(await dump(o.upper, { xattrs: false })).toEqual({ f: whiteout(), d: whiteout(), e: whiteout() });
    expect(await o.vol.readdir('/')).toEqual([]);
    await expectNoLeaks(o);
  });

  it('mkdir over a whiteout makes an opaque dir; a file over a whiteout replaces it', async () => {
    const o = await memOverlay([{ d: { old: '1' }, f: 'old' }]);
    await o.vol.rm('/d', { recursive: true });
    await o.vol.unlink('/f');
    await o.vol.mkdir('/d');
    await o.vol.writeFile('/f', 'new');
    expect(await o.vol.readdir('/d')).toEqual([]);
    expect(await dump(o.upper, { xattrs: false })).toEqual({ d: opaque({}), f: 'new' });
    await expectNoLeaks(o);
  });

  it('created objects are owned by the caller, with the umask applied', async () => {
    const o = await memOverlay([{ pub: { } }], {});
    await o.vol.chmod('/pub', 0o777);
    const user = new Volume(o.ov, { context: { uid: 1000, gid: 1000, pid: 1, umask: 0o022 } });
    await user.writeFile('/pub/mine', 'x', { mode: 0o666 });
    const st = await user.stat('/pub/mine');
    expect([st.uid, st.gid, st.mode & 0o777]).toEqual([1000, 1000, 0o644]);
    await expect(user.writeFile('/nope', 'x')).rejects.toMatchObject({ code: 'EACCES' });
    await expectNoLeaks(o);
  });

  it('an O_EXCL create racing a rename onto its name never replaces what the rename put there', async () => {
    // The create looks the name up before it waits for the namespace mutex; a change made
    // in between (here over a whiteout, where a create stages and renames onto the name)
    // must be seen by the create, whatever the interleaving.
    let created = 0;
    const runs = 40;
    for (let k = 0; k < runs; k++) {
      const o = await memOverlay([{ w: 'lower' }]);
      await o.vol.unlink('/w');
      await o.vol.writeFile('/z', 'moved');
      const r = o.vol.rename('/z', '/w');
      for (let i = 0; i < k; i++) await Promise.resolve();
      const c = await o.ov.create(ctx, ROOT_INO, 'w', 0o644, OpenFlags.O_CREAT | OpenFlags.O_EXCL | OpenFlags.O_WRONLY)
        .then(async (h) => { created++; await o.ov.release(ctx, h.entry.ino, h.fh); await o.ov.forget(ctx, h.entry.ino, 1); return 'ok'; },
          (e: { code?: string }) => e.code);
      await r;
      expect(['ok', 'EEXIST']).toContain(c);
      expect(await o.vol.readFile('/w', 'utf8')).toBe('moved');
      expect(await o.vol.readdir('/')).toEqual(['w']);
      await expectNoLeaks(o);
    }
    // Some interleavings let the create win before the rename.
    expect(created).toBeGreaterThan(0);
    expect(created).toBeLessThan(runs);
  });

  it('without an upper every change is EROFS; reads work', async () => {
    const o = await memOverlay([{ f: 'x', d: {} }], null);
    expect(await o.vol.readFile('/f', 'utf8')).toBe('x');
    for (const p of [
      o.vol.writeFile('/f', 'y'), o.vol.writeFile('/g', 'y'), o.vol.unlink('/f'), o.vol.rmdir('/d'),
      o.vol.mkdir('/n'), o.vol.chmod('/f', 0o600), o.vol.rename('/f', '/g'), o.vol.setxattr('/f', 'user.a', 'b'),
    ]) await expect(p).rejects.toMatchObject({ code: 'EROFS' });
    expect(o.ov.liveInodes()).toBe(1);
  });
});

describe('rename', () => {
  it('renaming a lower file leaves a whiteout so the lower never reappears', async () => {
    const o = await memOverlay([{ a: 'A', b: 'B' }]);
    await o.vol.rename('/a', '/c');
    await o.vol.rename('/c', '/b');
    expect((await o.vol.readdir('/')).sort()).toEqual(['b']);
    expect(await o.vol.readFile('/b', 'utf8')).toBe('A');
    expect(await dump(o.upper, { xattrs: false })).toEqual({ a: whiteout(), b: 'A' });
    await expectNoLeaks(o);
  });

  it('directories from a lower: EXDEV; upper-only directories move (made opaque in merged parents)', async () => {
    const o = await memOverlay([{ low: { x: '1' }, m: { y: '1' } }]);
    await expect(o.vol.rename('/low', '/moved')).rejects.toMatchObject({ code: 'EXDEV' });
    await o.vol.mkdir('/new');
    await o.vol.writeFile('/new/f', 'f');
    await o.vol.rename('/new', '/m/inner');
    expect(await o.vol.readFile('/m/inner/f', 'utf8')).toBe('f');
    expect(await dump(o.upper, { xattrs: false })).toEqual({ m: { inner: opaque({ f: 'f' }) } });
    await expectNoLeaks(o);
  });

  it('NOREPLACE and EXCHANGE', async () => {
    const o = await memOverlay([{ a: 'A', b: 'B' }]);
    const root = ROOT_INO;
    await expect(o.ov.rename(ctx, root, 'a', root, 'b', RenameFlags.NOREPLACE)).rejects.toMatchObject({ code: 'EEXIST' });
    await expect(o.ov.rename(ctx, root, 'a', root, 'zz', RenameFlags.EXCHANGE)).rejects.toMatchObject({ code: 'ENOENT' });
    await o.ov.rename(ctx, root, 'a', root, 'b', RenameFlags.EXCHANGE);
    expect(await o.vol.readFile('/a', 'utf8')).toBe('B');
    expect(await o.vol.readFile('/b', 'utf8')).toBe('A');
    await expect(o.ov.rename(ctx, root, 'a', root, 'b', RenameFlags.WHITEOUT)).rejects.toMatchObject({ code: 'EINVAL' });
    await expectNoLeaks(o);
  });

  it('rename errors: ENOTDIR, EISDIR, ENOTEMPTY, EINVAL into itself', async () => {
    const o = await memOverlay([{ f: 'x', d: { a: '1' }, e: {} }]);
    await o.vol.mkdir('/u');
    await o.vol.mkdir('/u/v');
    await expect(o.vol.rename('/u', '/f')).rejects.toMatchObject({ code: 'ENOTDIR' });
    await expect(o.vol.rename('/f', '/e')).rejects.toMatchObject({ code: 'EISDIR' });
    await expect(o.vol.rename('/u', '/d')).rejects.toMatchObject({ code: 'ENOTEMPTY' });
    await expect(o.vol.rename('/u', '/u/v/w')).rejects.toMatchObject({ code: 'EINVAL' });
    await o.vol.rename('/u/v', '/e');
    expect(await dump(o.upper, { xattrs: false })).toEqual({ u: {}, e: opaque({}) });
    await expectNoLeaks(o);
  });
});

describe('inodes, hard links, xattrs, lookup counts', () => {
  it('ino is stable across copy-up, forget, re-creation; one st_dev; hard links share an inode', async () => {
    const o = await memOverlay([{ f: 'x', d: { g: 'y' } }]);
    const i1 = (await o.vol.stat('/d/g')).ino;
    await o.vol.writeFile('/d/g', 'z');
    expect((await o.vol.stat('/d/g')).ino).toBe(i1);
    const ov2 = await OverlayFs.create({ upper: o.upper, lowers: o.lowers });
    const v2 = new Volume(ov2, { context: ctx });
    expect((await v2.stat('/d/g')).ino).toBe(i1);
    await v2.rename('/d/g', '/moved');
    expect((await v2.stat('/moved')).ino).toBe(i1);
    const devs = new Set([(await v2.stat('/')).dev, (await v2.stat('/d')).dev, (await v2.stat('/f')).dev]);
    expect(devs.size).toBe(1);
    await v2.link('/f', '/f2');
    const [a, b] = [await v2.stat('/f'), await v2.stat('/f2')];
    expect(a.ino).toBe(b.ino);
    expect(a.nlink).toBe(2);
    expect(ov2.liveInodes()).toBe(1);
    await ov2.dropCaches();
    await expectNoLeaks(o);
  });

  /** An overlay of MemoryLayers whose one lower holds `a` and `b`, two names of one file. */
  async function lowerHardLinkOverlay(): Promise<Awaited<ReturnType<typeof memOverlay>>> {
    const o = await memOverlay([{ a: 'shared', b: 'x' }]);
    const l = o.lowers[0]!;
    await l.unlink(ctx, ROOT_INO, 'b');
    const e = await l.lookup(ctx, ROOT_INO, 'a');
    await l.forget(ctx, (await l.link(ctx, e.ino, ROOT_INO, 'b')).ino, 1);
    await l.forget(ctx, e.ino, 1);
    return o;
  }

  it('lower hard links are one overlay inode until copy-up', async () => {
    const o = await lowerHardLinkOverlay();
    const ea = await o.ov.lookup(ctx, ROOT_INO, 'a');
    const eb = await o.ov.lookup(ctx, ROOT_INO, 'b');
    expect(ea.ino).toBe(eb.ino);
    expect(ea.attr.nlink).toBe(2);
    await o.ov.forget(ctx, ea.ino, 2);
    await expectNoLeaks(o);
  });

  it('a lower hard link broken by copy-up: the lower name keeps its ino, the copy reports the ino re-creation gives', async () => {
    const o = await lowerHardLinkOverlay();
    await checkBrokenHardLinkInos(o.ov, () => OverlayFs.create({ upper: o.upper, lowers: o.lowers }));
    await expectNoLeaks(o);
  });

  it('overlay-private xattrs are hidden and own ones escaped as the kernel does', async () => {
    const o = await memOverlay([{ f: file('x', 0o644, { xattrs: { 'user.ok': '1', 'user.fuseoverlayfs.opaque': 'y' } }) }]);
    expect(await o.vol.listxattr('/f')).toEqual(['user.ok']);
    await expect(o.vol.getxattr('/f', 'user.fuseoverlayfs.opaque')).rejects.toMatchObject({ code: 'ENODATA' });
    await expect(o.vol.setxattr('/f', 'user.fuseoverlayfs.x', 'y')).rejects.toMatchObject({ code: 'EPERM' });
    await o.vol.setxattr('/f', 'trusted.overlay.foo', 'bar');
    expect((await o.vol.getxattr('/f', 'trusted.overlay.foo')).toString()).toBe('bar');
    expect((await o.vol.listxattr('/f')).sort()).toEqual(['trusted.overlay.foo', 'user.ok']);
    await expect(o.vol.getxattr('/f', 'trusted.overlay.origin')).rejects.toMatchObject({ code: 'ENODATA' });
    await expectNoLeaks(o);
  });

  it('forgotten is not gone: a name is found again after its inode was forgotten', async () => {
    const o = await memOverlay([{ d: { f: 'x' } }]);
    const e1 = await o.ov.lookup(ctx, ROOT_INO, 'd');
    await o.ov.forget(ctx, e1.ino, 1);
    expect(o.ov.liveInodes()).toBe(1);
    const e2 = await o.ov.lookup(ctx, ROOT_INO, 'd');
    expect(e2.ino).toBe(e1.ino);
    await o.ov.forget(ctx, e2.ino, 1);
    await o.vol.mkdir('/n');
    await o.vol.writeFile('/n/k', 'kid');
    await o.vol.rename('/n', '/d/n');
    expect(await o.vol.readFile('/d/n/k', 'utf8')).toBe('kid');
    await expectNoLeaks(o);
  });

  it('the inode cache keeps forgotten inodes (bounded) until dropCaches, and its entries follow changes', async () => {
    const o = await memOverlay([{ d: { e: { f: 'x', g: 'y' } }, h: 'z' }], {}, { inodeCache: 2 });
    expect((await o.vol.stat('/d/e/f')).size).toBe(1);
    expect(await o.vol.readdir('/d/e')).toEqual(['f', 'g']);
    expect(o.ov.liveInodes()).toBe(1);
    expect(o.ov.cachedInodes()).toBeGreaterThan(0);
    for (const p of ['/d/e/g', '/h', '/d/e/f', '/d']) await o.vol.lstat(p);
    // At most 2 directories and 2 other objects stay cached.
    expect(o.ov.cachedInodes()).toBeLessThanOrEqual(4);
    // A cached lower-only directory's listing and cached inodes see every change made through the overlay.
    await o.vol.writeFile('/d/e/n', 'new');
    await o.vol.unlink('/d/e/f');
    await o.vol.rename('/d/e/g', '/d/e/g2');
    expect((await o.vol.readdir('/d/e')).sort()).toEqual(['g2', 'n']);
    await expect(o.vol.stat('/d/e/f')).rejects.toMatchObject({ code: 'ENOENT' });
    expect(await o.vol.readFile('/d/e/g2', 'utf8')).toBe('y');
    expect(o.ov.liveInodes()).toBe(1);
    await o.ov.dropCaches();
    expect(o.ov.cachedInodes()).toBe(0);
    await expectNoLeaks(o);
    // Disabled: nothing is kept.
    const off = await memOverlay([{ d: { f: 'x' } }], {}, { inodeCache: 0 });
    await off.vol.stat('/d/f');
    expect(off.ov.cachedInodes()).toBe(0);
    expect(off.lowers[0]!.liveInodes()).toBe(1);
  });

  it('permission checks see a chmod of a directory made after its entries changed', async () => {
    const o = await memOverlay([{ d: { f: 'x' } }]);
    const user = new Volume(o.ov, { context: USER });
    await o.vol.chmod('/d', 0o777);
    await user.writeFile('/d/a', 'a');
    await o.vol.writeFile('/d/b', 'b');
    await o.vol.chmod('/d', 0o755);
    await expect(user.writeFile('/d/c', 'c')).rejects.toMatchObject({ code: 'EACCES' });
    await expect(user.unlink('/d/a')).rejects.toMatchObject({ code: 'EACCES' });
    await o.vol.chmod('/d', 0o1777);
    await o.vol.unlink('/d/b');
    await o.vol.writeFile('/d/b', 'b');
    await expect(user.unlink('/d/b')).rejects.toMatchObject({ code: 'EPERM' });
    await user.unlink('/d/a');
    await expectNoLeaks(o);
  });

  it('open(O_CREAT|O_EXCL) on an existing name is EEXIST; create over a lower file without O_EXCL opens it', async () => {
    const o = await memOverlay([{ f: 'lower' }]);
    await expect(o.ov.create(ctx, ROOT_INO, 'f', 0o644, OpenFlags.O_CREAT | OpenFlags.O_EXCL | OpenFlags.O_RDWR)).rejects.toMatchObject({ code: 'EEXIST' });
    const c = await o.ov.create(ctx, ROOT_INO, 'f', 0o644, OpenFlags.O_CREAT | OpenFlags.O_RDONLY);
    expect(Buffer.from(await o.ov.read(ctx, c.entry.ino, c.fh, 10, 0)).toString()).toBe('lower');
    await o.ov.release(ctx, c.entry.ino, c.fh);
    await o.ov.forget(ctx, c.entry.ino, 1);
    expect(await dump(o.upper, { xattrs: false })).toEqual({});
    await expectNoLeaks(o);
  });
});

describe('regressions found by the model test', () => {
  it('oci upper: renaming a directory onto a whiteout', async () => {
    const o = await memOverlay([{}, {}], { a: { a: {}, b: whiteout() } }, { formats: ['oci', 'chardev', 'chardev'] });
    await o.vol.rename('/a/a', '/a/b');
    expect(await o.vol.readdir('/a')).toEqual(['b']);
    await expectNoLeaks(o);
  });

  it('oci upper: rmdir of an opaque upper-only directory', async () => {
    const o = await memOverlay([{}, {}], { b: opaque({}) }, { formats: ['oci', 'chardev', 'chardev'] });
    await o.vol.rmdir('/b');
    expect(await o.vol.readdir('/')).toEqual([]);
    expect(await dump(o.upper, { xattrs: false })).toEqual({});
    await expectNoLeaks(o);
  });
});

describe('regressions found against the kernel', () => {
  it('a failed rename (ENOTEMPTY) still leaves the source dir opaque, as the kernel orders it', async () => {
    const o = await memOverlay([{}, {}], { a: { a: {} }, c: { a: '' } });
    await expect(o.vol.rename('/a/a', '/c')).rejects.toMatchObject({ code: 'ENOTEMPTY' });
    expect(await dump(o.upper, { xattrs: false })).toEqual({ a: { a: opaque({}) }, c: { a: '' } });
    await expectNoLeaks(o);
  });
});

describe('d_ino == st_ino for every kind of entry', () => {
  it('upper files with and without origin, merged and opaque upper dirs, lower entries', async () => {
    const o = await memOverlay([{ d: { m: { x: '1' }, o: { y: '1' }, f: 'lower', g: 'g' } }], {});
    await o.vol.appendFile('/d/f', '+');
    await o.vol.mkdir('/d/m/new');
    await o.vol.rm('/d/o', { recursive: true });
    await o.vol.mkdir('/d/o');
    await o.vol.writeFile('/d/n', 'new');
    const fresh = await OverlayFs.create({ upper: o.upper, lowers: o.lowers });
    const v = new Volume(fresh, { context: ctx });
    const d = await fresh.lookup(ctx, ROOT_INO, 'd');
    const { fh } = await fresh.opendir(ctx, d.ino);
    const list = await fresh.readdir(ctx, d.ino, fh, 0, true);
    await fresh.releasedir(ctx, d.ino, fh);
    expect(list.map((e) => e.name).sort()).toEqual(['f', 'g', 'm', 'n', 'o']);
    for (const e of list) {
      const st = await v.lstat(`/d/${e.name}`);
      expect([e.name, e.ino, e.attr?.ino]).toEqual([e.name, st.ino, st.ino]);
    }
    expect((await v.stat('/d/f')).ino).toBe((await o.vol.stat('/d/f')).ino);
    await fresh.forget(ctx, d.ino, 1);
    expect(fresh.liveInodes()).toBe(1);
    await fresh.dropCaches();
    await expectNoLeaks(o);
  });
});

describe('other implementations\' markers and exchange of directories', () => {
  it('an upper directory marked opaque by fuse-overlayfs (user.fuseoverlayfs.opaque) hides the lower one', async () => {
    const o = await memOverlay([{ d: { below: '1' } }], { d: { mine: '2' } });
    const d = await o.upper.lookup(ctx, ROOT_INO, 'd');
    await o.upper.setxattr(ctx, d.ino, 'user.fuseoverlayfs.opaque', Buffer.from('y'), 0);
    await o.upper.forget(ctx, d.ino, 1);
    const fresh = await OverlayFs.create({ upper: o.upper, lowers: o.lowers });
    expect(await new Volume(fresh, { context: ctx }).readdir('/d')).toEqual(['mine']);
    expect(fresh.liveInodes()).toBe(1);
  });

  it('RENAME_EXCHANGE of an upper-only directory and a lower file in a merged parent', async () => {
    const o = await memOverlay([{ f: 'lower-file' }]);
    await o.vol.mkdir('/dir');
    await o.vol.writeFile('/dir/x', 'x');
    await o.ov.rename(ctx, ROOT_INO, 'dir', ROOT_INO, 'f', RenameFlags.EXCHANGE);
    expect(await o.vol.readFile('/dir', 'utf8')).toBe('lower-file');
    expect(await o.vol.readFile('/f/x', 'utf8')).toBe('x');
    // As the kernel: the moved upper-only directory is made opaque in the merged parent.
    expect(await dump(o.upper, { xattrs: false })).toEqual({ dir: 'lower-file', f: opaque({ x: 'x' }) });
    await expectNoLeaks(o);
  });
});
