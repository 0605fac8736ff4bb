/**
 * A PassthroughLayer mounted through `@layerfs/fuse` is a passthrough filesystem (like
 * libfuse's passthrough example): the same sequence of `fs.promises` calls on the mount and
 * on a plain twin directory gives the same results and errnos and leaves the same host tree;
 * other processes see the files; after unmount every lookup is given back. Needs root and
 * /dev/fuse (skipped otherwise). The mount is only touched through fs.promises and child
 * processes, never with synchronous calls from this (serving) process.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as fsp from 'node:fs/promises';
import { constants } from 'node:fs';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { mount, type MountHandle } from '@layerfs/fuse';
import { PassthroughLayer } from '../src/index.js';
import { tempDir } from './helpers.js';

const run = promisify(execFile);

async function canMount(): Promise<boolean> {
  if (process.platform !== 'linux' || process.getuid?.() !== 0) return false;
  try { await fsp.access('/dev/fuse', constants.R_OK | constants.W_OK); return true; } catch { return false; }
}
const skip = !(await canMount());

/** Names, types, modes, sizes, contents and link targets of a host tree. */
async function tree(dir: string, rel = ''): Promise<string[]> {
  const out: string[] = [];
  for (const name of (await fsp.readdir(dir)).sort()) {
    const p = `${dir}/${name}`;
    const s = await fsp.lstat(p);
    const what = s.isDirectory() ? 'dir' : s.isSymbolicLink() ? `-> ${await fsp.readlink(p)}` : (await fsp.readFile(p)).toString('base64');
    out.push(`${rel}${name} ${s.mode.toString(8)} ${s.nlink} ${s.isDirectory() ? '' : s.size} ${what}`);
    if (s.isDirectory()) out.push(...(await tree(p, `${rel}${name}/`)));
  }
  return out;
}

describe.skipIf(skip)('PassthroughLayer mounted through FUSE (needs root and /dev/fuse)', () => {
  let base: string;
  let root: string;
  let mnt: string;
  let twin: string;
  let layer: PassthroughLayer;
  let h: MountHandle | undefined;

  beforeAll(async () => {
    base = tempDir('pt-mount');
    root = `${base}/root`;
    mnt = `${base}/mnt`;
    twin = `${base}/twin`;
    for (const d of [root, mnt, twin]) await fsp.mkdir(d);
    for (const d of [root, twin]) {
      await fsp.mkdir(`${d}/pre/sub`, { recursive: true });
      await fsp.writeFile(`${d}/pre/file`, 'existing');
    }
    layer = new PassthroughLayer(root);
    h = await mount(layer, mnt, { handleSignals: false });
  });

  afterAll(async () => {
    await h?.unmount();
    await layer?.destroy();
    await fsp.rm(base, { recursive: true, force: true });
  });

  it('gives the same results and errnos as the host directory, and leaves the same tree', async () => {
    const steps: ((d: string) => Promise<unknown>)[] = [
      (d) => fsp.mkdir(`${d}/a`),
      (d) => fsp.mkdir(`${d}/a`),
      (d) => fsp.writeFile(`${d}/a/f`, 'hello'),
      (d) => fsp.appendFile(`${d}/a/f`, ' world'),
      (d) => fsp.readFile(`${d}/a/f`, 'utf8'),
      (d) => fsp.readFile(`${d}/pre/file`, 'utf8'),
      (d) => fsp.symlink('f', `${d}/a/s`),
      (d) => fsp.readlink(`${d}/a/s`),
      (d) => fsp.readFile(`${d}/a/s`, 'utf8'),
      (d) => fsp.link(`${d}/a/f`, `${d}/hard`),
      (d) => fsp.stat(`${d}/hard`).then((s) => s.nlink),
      (d) => fsp.chmod(`${d}/a/f`, 0o600),
      (d) => fsp.truncate(`${d}/a/f`, 3),
      (d) => fsp.rename(`${d}/a`, `${d}/b`),
      (d) => fsp.readdir(`${d}/b`).then((l) => l.sort()),
      (d) => fsp.rmdir(`${d}/b`),
      (d) => fsp.unlink(`${d}/b`),
      (d) => fsp.stat(`${d}/nope`),
      (d) => fsp.rename(`${d}/pre`, `${d}/pre/sub/in`),
      (d) => fsp.rm(`${d}/pre`, { recursive: true }),
      (d) => fsp.utimes(`${d}/hard`, 1000, 2000).then(() => fsp.stat(`${d}/hard`)).then((s) => s.mtimeMs),
      (d) => fsp.copyFile(`${d}/hard`, `${d}/copy`),
      (d) => fsp.readdir(d).then((l) => l.sort()),
    ];
    for (const [i, step] of steps.entries()) {
      const want = await step(twin).then((v) => ({ ok: v }), (e: { code: string }) => ({ err: e.code }));
      const got = await step(mnt).then((v) => ({ ok: v }), (e: { code: string }) => ({ err: e.code }));
      expect(got, `step ${i}: ${String(steps[i])}`).toEqual(want);
    }
    expect(await tree(root)).toEqual(await tree(twin));
    const { stdout } = await run('cat', [`${mnt}/hard`]);
    expect(stdout).toBe('hel');
    const ls = await run('ls', ['-1', mnt]);
    expect(ls.stdout.trim().split('\n').sort()).toEqual((await fsp.readdir(twin)).sort());
  });

  it('gives every lookup back after unmount', async () => {
    await h!.unmount();
    h = undefined;
    expect(layer.liveInodes()).toBe(1);
  });
});
