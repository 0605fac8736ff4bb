/**
 * Confinement: no operation of a PassthroughLayer reads, writes or creates anything outside
 * its root, whatever the names (rejected with the kernel's errno) and whatever symlinks
 * inside the root point to — including a directory swapped for a symlink to the outside
 * between a lookup and later calls, raced for a few seconds by another process doing atomic
 * RENAME_EXCHANGE swaps, with openat2 and with the per-component O_NOFOLLOW fallback.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { OpenFlags, ROOT_INO, S_IFLNK, S_IFMT } from '@layerfs/core';
import { PassthroughLayer, libc } from '../src/index.js';
import { ctx, rejectsWith, removeDir, tempDir, walk } from './helpers.js';

const fixtures = fileURLToPath(new URL('./fixtures/', import.meta.url));

/** Everything observable about a tree: names, types, modes, sizes, contents, times, xattrs. */
function snapshot(dir: string): string[] {
  const out: string[] = [];
  const visit = (p: string, rel: string) => {
    const s = fs.lstatSync(p, { bigint: true });
    let extra = '';
    if (s.isFile()) extra = fs.readFileSync(p).toString('base64');
    if (s.isSymbolicLink()) extra = fs.readlinkSync(p);
    const xattrs = libc.llistxattr(p).sort().map((n) => `${n}=${libc.lgetxattr(p, n).toString('base64')}`).join(',');
    out.push(`${rel} ${s.mode} ${s.uid}:${s.gid} ${s.size} ${s.mtimeNs} ${s.nlink} ${extra} [${xattrs}]`);
    if (s.isDirectory()) for (const n of fs.readdirSync(p).sort()) visit(`${p}/${n}`, `${rel}/${n}`);
  };
  visit(dir, '.');
  return out;
}

let base: string;
let root: string;
let outside: string;
let before: string[];

beforeEach(() => {
  base = tempDir('confine');
  root = `${base}/root`;
  outside = `${base}/outside`;
  fs.mkdirSync(`${outside}/odir`, { recursive: true });
  fs.writeFileSync(`${outside}/secret`, 'S');
  fs.writeFileSync(`${outside}/odir/f`, 'outside f');
  fs.writeFileSync(`${outside}/odir/victim`, 'V');
  fs.mkdirSync(`${root}/d`, { recursive: true });
  fs.writeFileSync(`${root}/d/f`, 'inside f');
  fs.writeFileSync(`${root}/d/victim`, 'v');
  fs.symlinkSync('../outside', `${root}/esc`);
  fs.symlinkSync(`${outside}/odir`, `${root}/abs`);
  fs.symlinkSync('../outside/secret', `${root}/d/toSecret`);
  before = snapshot(outside);
});

afterEach(() => {
  expect(snapshot(outside)).toEqual(before);
  removeDir(base);
});

describe('names and symlinks', () => {
  it('rejects names that are not one component, with the kernel errno', async () => {
    const L = new PassthroughLayer(root);
    for (const [bad, code] of [['..', 'EINVAL'], ['.', 'EINVAL'], ['../outside', 'EINVAL'], ['/etc', 'EINVAL'], ['a\0b', 'EINVAL'], ['', 'ENOENT']] as const) {
      await rejectsWith(L.lookup(ctx, ROOT_INO, bad), code);
      await rejectsWith(L.mkdir(ctx, ROOT_INO, bad, 0o755), code);
      await rejectsWith(L.create(ctx, ROOT_INO, bad, 0o644, OpenFlags.O_WRONLY), code);
      await rejectsWith(L.symlink(ctx, ROOT_INO, bad, 'x'), code);
    }
    await rejectsWith(L.rename(ctx, ROOT_INO, 'd', ROOT_INO, '../escaped', 0), 'EINVAL');
    await L.destroy();
  });

  it('never follows a symlink inside the root: ops on it act on the link or fail', async () => {
    const L = new PassthroughLayer(root);
    for (const name of ['esc', 'abs']) {
      const e = await L.lookup(ctx, ROOT_INO, name);
      expect(e.attr.mode & S_IFMT).toBe(S_IFLNK);
      await rejectsWith(L.lookup(ctx, e.ino, 'secret'), 'ENOTDIR');
      await rejectsWith(L.mkdir(ctx, e.ino, 'x', 0o755), 'ENOTDIR');
      await rejectsWith(L.create(ctx, e.ino, 'x', 0o644, OpenFlags.O_WRONLY), 'ENOTDIR');
      await rejectsWith(L.opendir(ctx, e.ino), 'ENOTDIR');
      await rejectsWith(L.open(ctx, e.ino, OpenFlags.O_RDWR), 'ELOOP');
      await rejectsWith(L.setattr(ctx, e.ino, { mode: 0o777 }), 'EOPNOTSUPP');
      await rejectsWith(L.setattr(ctx, e.ino, { size: 0 }), 'EINVAL');
      await L.setattr(ctx, e.ino, { uid: 4242, mtime: { sec: 1, nsec: 0 } });
      await L.setxattr(ctx, e.ino, 'trusted.on-link', Buffer.from('x'), 0);
      await L.forget(ctx, e.ino, 1);
    }
    const t = await walk(L, 'd/toSecret');
    await rejectsWith(L.open(ctx, t, OpenFlags.O_WRONLY | OpenFlags.O_TRUNC), 'ELOOP');
    const d = await walk(L, 'd');
    await L.rename(ctx, d, 'toSecret', ROOT_INO, 'moved', 0);
    await L.unlink(ctx, ROOT_INO, 'moved');
    await L.destroy();
  });
});

async function race(useOpenat2: boolean, ms: number): Promise<{ ops: number; swaps: number }> {
  const L = new PassthroughLayer(root, { maxOpenFds: 4 });
  if (!useOpenat2) (L as unknown as { useOpenat2: boolean }).useOpenat2 = false;
  fs.symlinkSync(`${outside}/odir`, `${root}/dlink`);
  // Looked up before the race starts: a directory inode whose name is then swapped.
  const held = await L.lookup(ctx, ROOT_INO, 'd');
  const child: ChildProcess = spawn(process.execPath, ['./swapper.mjs', `${root}/d`, `${root}/dlink`],
    { cwd: fixtures, stdio: ['ignore', 'pipe', 'inherit'] });
  let swaps = 0;
  let ready!: () => void;
  const started = new Promise<void>((r) => { ready = r; });
  child.stdout!.on('data', (b: Buffer) => {
    for (const c of b.toString()) if (c === 'R') ready(); else swaps += 256;
  });
  await Promise.race([started, new Promise((_, rej) => setTimeout(() => rej(new Error('swapper did not start')), 15_000))]);
  const end = Date.now() + ms;
  let ops = 0;
  // Other directories to push `d` out of the 4-descriptor LRU after every call, so it is
  // reopened (through the raced name) again and again.
  const others: number[] = [];
  for (const n of ['e1', 'e2', 'e3', 'e4', 'e5']) {
    fs.mkdirSync(`${root}/${n}`, { recursive: true });
    others.push((await L.lookup(ctx, ROOT_INO, n)).ino);
  }
  const churn = async () => { for (const o of others) await L.statfs(ctx, o); };
  const attempt = async (f: () => Promise<unknown>) => { ops++; await f().catch(() => undefined); await churn(); };
  try {
    while (Date.now() < end) {
      const e = await L.lookup(ctx, ROOT_INO, 'd').catch(() => undefined);
      for (const ino of [e?.ino, held.ino]) {
        if (ino === undefined) continue;
        await attempt(() => L.create(ctx, ino, 'pwn', 0o666, OpenFlags.O_WRONLY).then((c) => L.write(ctx, c.entry.ino, c.fh, Buffer.from('pwned'), 0).then(() => L.release(ctx, c.entry.ino, c.fh)).then(() => L.forget(ctx, c.entry.ino, 1))));
        await attempt(() => L.mkdir(ctx, ino, 'pwnd', 0o777).then((x) => L.forget(ctx, x.ino, 1)));
        await attempt(() => L.symlink(ctx, ino, 'pwnl', '/').then((x) => L.forget(ctx, x.ino, 1)));
        await attempt(() => L.unlink(ctx, ino, 'victim'));
        await attempt(() => L.rename(ctx, ino, 'f', ino, 'g', 0).then(() => L.rename(ctx, ino, 'g', ino, 'f', 0)));
        await attempt(() => L.setxattr(ctx, ino, 'user.pwn', Buffer.from('x'), 0));
        await attempt(() => L.setattr(ctx, ino, { mode: 0o777, uid: 4242, mtime: { sec: 7, nsec: 7 } }));
        await attempt(() => L.lookup(ctx, ino, 'f').then(async (f) => {
          await L.setattr(ctx, f.ino, { mode: 0o777, size: 1, mtime: { sec: 7, nsec: 7 } }).catch(() => undefined);
          await L.setxattr(ctx, f.ino, 'user.pwn', Buffer.from('x'), 0).catch(() => undefined);
          const h = await L.open(ctx, f.ino, OpenFlags.O_WRONLY | OpenFlags.O_TRUNC).catch(() => undefined);
          if (h) { await L.write(ctx, f.ino, h.fh, Buffer.from('pwned'), 0).catch(() => undefined); await L.release(ctx, f.ino, h.fh); }
          await L.forget(ctx, f.ino, 1);
        }));
        await attempt(() => L.lookup(ctx, ino, 'secret').then((x) => L.forget(ctx, x.ino, 1)));
      }
      if (e) await L.forget(ctx, e.ino, 1);
    }
  } finally {
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
  }
  await L.destroy();
  return { ops, swaps };
}

describe('racing a directory swapped for a symlink to the outside', () => {
  it('with openat2: nothing outside the root changes', async () => {
    const r = await race(true, 1500);
    expect(r.ops).toBeGreaterThan(100);
    expect(r.swaps).toBeGreaterThan(0);
  }, 20_000);

  it('with the per-component O_NOFOLLOW fallback: nothing outside the root changes', async () => {
    const r = await race(false, 1000);
    expect(r.ops).toBeGreaterThan(100);
  }, 20_000);
});
