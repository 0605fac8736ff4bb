// OverlayFs over PassthroughLayers on real temp directories (overlayFromDirs): host-level
// effects (whiteouts as 0/0 char devices, opaque xattrs, origin xattrs, work dir), inode
// stability across re-creation, and interoperability with kernel overlayfs in both
// directions: an upper written by layerfs mounted by the kernel shows the same tree, and an
// upper written by the kernel opens in layerfs with the same tree.
import { execFile } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ROOT_CONTEXT, Volume } from '@layerfs/core';
import { dir, dump, dumpHost, file, tree, whiteout, type TreeSpec } from '@layerfs/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PassthroughLayer } from '@layerfs/passthrough';
import { OverlayFs, overlayFromDirs } from '../src/index.js';
import { checkBrokenHardLinkInos } from './helpers.js';
import type { Layer } from '@layerfs/core';

const run = promisify(execFile);
const isRoot = process.getuid?.() === 0;
let base: string;
let n = 0;
const mounts: string[] = [];

beforeAll(async () => { base = await fsp.mkdtemp(join(tmpdir(), 'layerfs-overlay-host-')); });
afterAll(async () => {
  for (const m of mounts.reverse()) await run('umount', [m]).catch(() => run('umount', ['-l', m]).catch(() => undefined));
  await fsp.rm(base, { recursive: true, force: true });
});

interface Dirs { lower: string[]; upper: string; work: string; mnt: string }

async function layout(lowers: TreeSpec[], upper: TreeSpec = {}): Promise<Dirs> {
  const d = join(base, `case${n++}`);
  const dirs: Dirs = { lower: lowers.map((_, i) => join(d, `l${i}`)), upper: join(d, 'u'), work: join(d, 'w'), mnt: join(d, 'm') };
  for (const [i, l] of lowers.entries()) await tree(l, dirs.lower[i]!);
  await tree(upper, dirs.upper);
  await fsp.mkdir(dirs.work);
  await fsp.mkdir(dirs.mnt);
  return dirs;
}

async function open(d: Dirs, userxattr = false): Promise<{ ov: OverlayFs; vol: Volume }> {
  const ov = await overlayFromDirs({ lowerdir: d.lower, upperdir: d.upper, workdir: d.work, userxattr });
  return { ov, vol: new Volume(ov, { context: ROOT_CONTEXT }) };
}

async function kernelMount(d: Dirs, userxattr = false): Promise<void> {
  const opts = `lowerdir=${d.lower.join(':')},upperdir=${d.upper},workdir=${d.work},redirect_dir=${userxattr ? "nofollow,userxattr" : "off"},index=off,metacopy=off,xino=off`;
  await run('mount', ['-t', 'overlay', 'overlay', '-o', opts, d.mnt]);
  mounts.push(d.mnt);
}

async function kernelUmount(d: Dirs): Promise<void> {
  await run('umount', [d.mnt]);
  mounts.splice(mounts.indexOf(d.mnt), 1);
}

const LOWERS: TreeSpec[] = [
  { etc: { conf: 'lower-conf', gone: 'x' }, bin: { sh: 'sh' }, var: { log: { a: 'a' } }, keep: 'keep' },
  { etc: { base: 'base' }, usr: { lib: { so: 'so' } }, old: 'old' },
];

/** The same session of changes, through any fs/promises-like API rooted at `root`. */
async function session(fs: Pick<Volume, 'writeFile' | 'appendFile' | 'unlink' | 'rm' | 'mkdir' | 'rename' | 'symlink' | 'chmod' | 'link' | 'truncate'>, root: string): Promise<void> {
  const p = (s: string): string => join(root, s);
  await fs.appendFile(p('etc/conf'), '+edited');
  await fs.unlink(p('etc/gone'));
  await fs.rm(p('var'), { recursive: true });
  await fs.mkdir(p('var'));
  await fs.writeFile(p('var/new'), 'new');
  await fs.rename(p('keep'), p('kept'));
  await fs.rename(p('old'), p('etc/old'));
  await fs.symlink('etc/base', p('link'));
  await fs.chmod(p('bin/sh'), 0o700);
  await fs.link(p('etc/base'), p('base2'));
  await fs.truncate(p('usr/lib/so'), 1);
  await fs.mkdir(p('fresh'));
  await fs.writeFile(p('fresh/f'), 'f');
  await fs.rename(p('fresh'), p('usr/fresh'));
}

describe.skipIf(!isRoot)('over host directories (root: chardev whiteouts, trusted xattrs)', () => {
  it('writes kernel-format markers in the upper and keeps the lower untouched', async () => {
    const d = await layout(LOWERS);
    const { ov, vol } = await open(d);
    await session(vol, '/');
    const seen = await dump(ov);
    await ov.destroy();
    const up = await dumpHost(d.upper, { xattrs: false });
    expect(up).toMatchObject({
      etc: { conf: 'lower-conf+edited', gone: whiteout(), old: 'old' }, var: { new: 'new' },
      keep: whiteout(), kept: 'keep', old: whiteout(), link: expect.anything(), usr: { fresh: { f: 'f' } },
    });
    for (const dir of ['var', 'usr/fresh']) {
      const { stdout } = await run('getfattr', ['-n', 'trusted.overlay.opaque', '--only-values', join(d.upper, dir)]);
      expect(stdout).toBe('y');
    }
    expect(await dumpHost(d.lower[0]!)).toEqual(await (async () => { const x = join(base, 'fresh-lower'); await fsp.rm(x, { recursive: true, force: true }); await tree(LOWERS[0]!, x); return dumpHost(x); })());
    expect(await fsp.readdir(join(d.work, 'work'))).toEqual([]);
    // Re-created on the same directories: the same tree.
    const again = await open(d);
    expect(await dump(again.ov)).toEqual(seen);
    await again.ov.destroy();
  });

  it('copy-up keeps every mode on the host: set-ID files and dirs, sticky, read-only, no permission at all', async () => {
    const files: Record<string, number> = { f4755: 0o4755, f2755: 0o2755, f6755: 0o6755, f2745: 0o2745, f0444: 0o444, f0000: 0, f0640: 0o640 };
    const dirs: Record<string, number> = { d2755: 0o2755, d1777: 0o1777, d0555: 0o555, d0700: 0o700, d0000: 0 };
    const spec: TreeSpec = Object.fromEntries([
      ...Object.entries(files).map(([k, m]) => [k, file('x', m)]),
      ...Object.entries(dirs).map(([k, m]) => [k, dir({ inner: 'i' }, m)]),
    ]);
    const d = await layout([spec]);
    const { ov, vol } = await open(d);
    // Times only: a metadata copy-up, nothing that would drop a set-ID bit.
    for (const k of Object.keys(files)) await vol.utimes(`/${k}`, 1, 2);
    for (const k of Object.keys(dirs)) await vol.utimes(`/${k}/inner`, 1, 2);
    await ov.destroy();
    for (const [k, m] of [...Object.entries(files), ...Object.entries(dirs)]) {
      expect([k, (await fsp.lstat(join(d.upper, k))).mode & 0o7777]).toEqual([k, m]);
    }
    expect((await fsp.lstat(join(d.upper, 'f0444'))).mtime.getTime()).toBe(2000);
  });

  it('the streamed copy-up (no clone) keeps holes: a sparse lower file stays sparse', async () => {
    const d = await layout([{}]);
    const big = join(d.lower[0]!, 'sparse');
    const fh = await fsp.open(big, 'w');
    await fh.write('head', 0);
    await fh.write('tail', (64 << 20) - 4);
    await fh.close();
    const lower = await PassthroughLayer.open(d.lower[0]!, { writable: false });
    const realUpper = await PassthroughLayer.open(d.upper, { workdir: d.work });
    const upper = new Proxy(realUpper, {
      get(t, prop, r) {
        if (prop === 'copyUpData') return undefined;
        const v = Reflect.get(t, prop, r) as unknown;
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(t) : v;
      },
    }) as unknown as Layer;
    const ov = await OverlayFs.create({ upper, lowers: [lower], options: { destroyLayers: true } });
    const vol = new Volume(ov, { context: ROOT_CONTEXT });
    await vol.chmod('/sparse', 0o600);
    const st = await fsp.stat(join(d.upper, 'sparse'));
    expect(st.size).toBe(64 << 20);
    expect(st.blocks * 512).toBeLessThan(1 << 20);
    const data = await vol.readFile('/sparse');
    expect(data.subarray(0, 4).toString()).toBe('head');
    expect(data.subarray(data.length - 4).toString()).toBe('tail');
    await ov.destroy();
  });

  it('ino survives copy-up, forget, and re-creation (origin recorded in trusted.overlay.origin)', async () => {
    const d = await layout([{ dir: { f: 'data' } }]);
    const a = await open(d);
    const before = (await a.vol.stat('/dir/f')).ino;
    await a.vol.appendFile('/dir/f', '!');
    expect((await a.vol.stat('/dir/f')).ino).toBe(before);
    await a.vol.rename('/dir/f', '/g');
    expect((await a.vol.stat('/g')).ino).toBe(before);
    expect(a.ov.liveInodes()).toBe(1);
    await a.ov.destroy();
    const { stdout } = await run('getfattr', ['-n', 'trusted.overlay.origin', '-e', 'hex', join(d.upper, 'g')]);
    expect(stdout).toContain('trusted.overlay.origin=0x4cfb');
    const b = await open(d);
    expect((await b.vol.stat('/g')).ino).toBe(before);
    const names = await b.vol.readdir('/', { withFileTypes: true });
    expect(names.map((x) => x.name).sort()).toEqual(['dir', 'g']);
    await b.ov.destroy();
  });

  it('a real lower hard link broken by copy-up: inos as the kernel without index, in session and after re-creation', async () => {
    const d = await layout([{ a: 'shared' }]);
    await fsp.link(join(d.lower[0]!, 'a'), join(d.lower[0]!, 'b'));
    const { ov } = await open(d);
    try {
      await checkBrokenHardLinkInos(ov, async () => (await open(d)).ov);
    } finally {
      await ov.destroy();
    }
    // The kernel on the same state: both names are separate objects with distinct inos.
    if (isRoot) {
      await kernelMount(d);
      try {
        const [a, b] = [await fsp.stat(join(d.mnt, 'a')), await fsp.stat(join(d.mnt, 'b'))];
        expect(a.ino).not.toBe(b.ino);
        expect(await fsp.readFile(join(d.mnt, 'a'), 'utf8')).toBe('shared+');
      } finally {
        await kernelUmount(d);
      }
    }
  });

  for (const userxattr of [false, true]) {
  it(`an upper written by layerfs mounts in the kernel with the same tree${userxattr ? ' (userxattr)' : ''}`, async () => {
    const d = await layout(LOWERS);
    const { ov, vol } = await open(d, userxattr);
    await session(vol, '/');
    const ours = await dump(ov, { xattrs: false });
    await ov.destroy();
    await kernelMount(d, userxattr);
    try {
      expect(await dumpHost(d.mnt, { xattrs: false })).toEqual(ours);
      // The kernel keeps working on it (lookups of files carrying our origin xattr succeed).
      await fsp.appendFile(join(d.mnt, 'etc/conf'), '!');
      expect(await fsp.readFile(join(d.mnt, 'kept'), 'utf8')).toBe('keep');
    } finally {
      await kernelUmount(d);
    }
  });

  it(`an upper written by the kernel opens in layerfs with the same tree${userxattr ? ' (userxattr)' : ''}`, async () => {
    const d = await layout(LOWERS);
    await kernelMount(d, userxattr);
    let theirs: TreeSpec;
    try {
      await session(fsp as unknown as Volume, d.mnt);
      theirs = await dumpHost(d.mnt, { xattrs: false });
    } finally {
      await kernelUmount(d);
    }
    const { ov, vol } = await open(d, userxattr);
    expect(await dump(ov, { xattrs: false })).toEqual(theirs);
    await vol.appendFile('/etc/conf', '!');
    expect(await vol.readFile('/etc/conf', 'utf8')).toBe('lower-conf+edited!');
    expect(ov.liveInodes()).toBe(1);
    await ov.destroy();
  });
  }
});
