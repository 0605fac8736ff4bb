/**
 * The `layerfs` command with real mounts (root, /dev/fuse): the daemon returns only once
 * the mount is ready, `layerfs umount` ends it, a busy mount point is refused, a union
 * without upper is read-only (EROFS), SIGTERM to a foreground mount unmounts and exits 0,
 * and a stale mount left by a killed daemon is cleared by the next `layerfs mount`. As root
 * the command serves with the low-level transport by default; the last test runs a daemon on
 * `transport=libfuse`.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import * as fsp from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { findMount, unmountPath } from '@layerfs/fuse';
import { mountSkip, sh, shResult, tempDir } from './cli-helpers.js';

const execFileP = promisify(execFile);
const pkg = fileURLToPath(new URL('..', import.meta.url));
const bin = join(pkg, 'bin', 'layerfs.js');

async function layerfs(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await execFileP(process.execPath, [bin, ...args], { timeout: 30_000 });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const x = e as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof x.code === 'number' ? x.code : 1, stdout: x.stdout ?? '', stderr: x.stderr ?? '' };
  }
}

async function waitFor(cond: () => Promise<boolean>, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * Start `layerfs mount -f -o o mnt` and wait until it is mounted; a daemon that exits or
 * does not mount within 45 s fails with what it wrote on stderr (twice under the full suite's
 * load a foreground daemon had not mounted after 20 s).
 */
async function foreground(o: string, mnt: string): Promise<{ child: ChildProcess; exited: Promise<number | null> }> {
  const child = spawn(process.execPath, [bin, 'mount', '-f', '-o', o, mnt], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, LAYERFS_FUSE_TRACE: '1' } });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => { stderr += d.toString(); });
  let gone: number | null | undefined;
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => { gone = code; r(code); }));
  try {
    await waitFor(async () => {
      if (gone !== undefined) throw new Error(`layerfs mount -f exited ${gone} before mounting: ${stderr}`);
      return (await findMount(mnt)) !== undefined;
    }, 45_000);
  } catch (e) {
    child.kill('SIGKILL');
    throw new Error(`${(e as Error).message}; daemon stderr: ${stderr.slice(-2000)}`);
  }
  return { child, exited };
}

/** The mountinfo line of the mount at `mnt`. */
async function mountInfo(mnt: string): Promise<string | undefined> {
  return (await fsp.readFile('/proc/self/mountinfo', 'utf8')).split('\n').find((l) => l.includes(` ${mnt} `));
}

/** Bring dist/ up to date (the bin runs from it). */
async function ensureBuilt(): Promise<void> {
  // The command runs from dist/: let tsc -b bring it and every referenced package up to date
  // (it writes nothing when the build is current; comparing mtimes missed referenced packages
  // and rebuilt on every run, since an unchanged output is not rewritten).
  await execFileP('pnpm', ['exec', 'tsc', '-b', pkg], { cwd: join(pkg, '..', '..') });
}

describe.skipIf(mountSkip)('layerfs command with real mounts (needs root and /dev/fuse)', () => {
  let dir: string;
  let lower: string;
  let upper: string;
  let work: string;
  let mnt: string;
  const opts = () => `lowerdir=${lower},upperdir=${upper},workdir=${work}`;

  beforeAll(async () => {
    await ensureBuilt();
    dir = await tempDir('cli-mount');
    [lower, upper, work, mnt] = ['lower', 'upper', 'work', 'mnt'].map((n) => join(dir, n)) as [string, string, string, string];
    for (const d of [lower, upper, work, mnt]) await fsp.mkdir(d);
    await fsp.mkdir(join(lower, 'etc'));
    await fsp.writeFile(join(lower, 'etc', 'hostname'), 'box\n');
    await fsp.writeFile(join(lower, 'etc', 'motd'), 'hi\n');
  }, 120_000);

  afterAll(async () => {
    if (await findMount(mnt)) await unmountPath(mnt, true).catch(() => undefined);
    await fsp.rm(dir, { recursive: true, force: true });
  });

  it('daemonises once the mount is ready; copy-up and whiteout land in the upper; umount ends the daemon', async () => {
    const r = await layerfs('mount', '-o', opts(), mnt);
    expect(r).toMatchObject({ code: 0, stderr: '' });
    // As root the default transport is the low-level one: requests up to 1 MiB (max_read a page
    // less where READ replies are spliced through 1 MiB pipes), beyond libfuse 2's 128 KiB.
    expect(Number(/max_read=(\d+)/.exec((await mountInfo(mnt)) ?? '')?.[1])).toBeGreaterThan(131072);
    expect(await fsp.readFile(join(mnt, 'etc', 'hostname'), 'utf8')).toBe('box\n');
    await fsp.appendFile(join(mnt, 'etc', 'hostname'), 'more\n');
    await fsp.unlink(join(mnt, 'etc', 'motd'));
    expect((await fsp.readdir(join(mnt, 'etc'))).sort()).toEqual(['hostname']);
    expect(await fsp.readFile(join(upper, 'etc', 'hostname'), 'utf8')).toBe('box\nmore\n');
    const wh = await fsp.lstat(join(upper, 'etc', 'motd'));
    expect([wh.isCharacterDevice(), wh.rdev]).toEqual([true, 0]);
    expect(await fsp.readFile(join(lower, 'etc', 'hostname'), 'utf8')).toBe('box\n');

    const busy = await layerfs('mount', '-o', opts(), mnt);
    expect(busy.code).toBe(1);
    expect(busy.stderr.trim()).toBe(`layerfs: mountpoint ${mnt} is busy: fuse.layerfs is mounted there (layerfs umount ${mnt})`);

    expect(await layerfs('umount', mnt)).toMatchObject({ code: 0, stderr: '' });
    expect(await findMount(mnt)).toBeUndefined();
    await waitFor(async () => (await shResult(`pgrep -f -- ${JSON.stringify(`mount -f --ready-fd 3 -o ${opts()}`)}`)).code !== 0);
  }, 60_000);

  it('mounts the example layers (OCI whiteouts below, chardev whiteouts in the upper): ls, copy-up, whiteout', async () => {
    const ex = join(pkg, '..', '..', 'examples', 'layers');
    const up = join(dir, 'ex-upper');
    const wk = join(dir, 'ex-work');
    await fsp.mkdir(up);
    await fsp.mkdir(wk);
    const r = await layerfs('mount', '-o', `lowerdir=${join(ex, 'app')}:${join(ex, 'base')},upperdir=${up},workdir=${wk},lowerwhiteout=oci`, mnt);
    expect(r).toMatchObject({ code: 0, stderr: '' });
    try {
      expect((await fsp.readdir(mnt)).sort()).toEqual(['bin', 'etc', 'srv', 'usr']);
      expect(await fsp.readdir(join(mnt, 'usr', 'share', 'doc'))).toEqual([]);
      const hostname = await fsp.readFile(join(mnt, 'etc', 'hostname'), 'utf8');
      await fsp.appendFile(join(mnt, 'etc', 'hostname'), 'copied-up\n');
      expect(await fsp.readFile(join(up, 'etc', 'hostname'), 'utf8')).toBe(`${hostname}copied-up\n`);
      await fsp.unlink(join(mnt, 'etc', 'passwd'));
      const wh = await fsp.lstat(join(up, 'etc', 'passwd'));
      expect([wh.isCharacterDevice(), wh.rdev]).toEqual([true, 0]);
      expect(await fsp.readFile(join(ex, 'base', 'etc', 'hostname'), 'utf8')).toBe(hostname);
    } finally {
      expect(await layerfs('umount', mnt)).toMatchObject({ code: 0, stderr: '' });
    }
  }, 60_000);

  it('serves a union without upper read-only (EROFS)', async () => {
    expect((await layerfs('mount', '-o', `lowerdir=${lower}`, mnt)).code).toBe(0);
    try {
      await expect(fsp.writeFile(join(mnt, 'x'), '')).rejects.toMatchObject({ code: 'EROFS' });
      expect(await fsp.readFile(join(mnt, 'etc', 'motd'), 'utf8')).toBe('hi\n');
    } finally {
      await layerfs('umount', mnt);
    }
  }, 60_000);

  it.each(['SIGTERM', 'SIGINT'] as const)('unmounts and exits 0 on %s (foreground)', async (sig) => {
    const { child, exited } = await foreground(opts(), mnt);
    try {
      expect(await fsp.readFile(join(mnt, 'etc', 'hostname'), 'utf8')).toBe('box\nmore\n');
      child.kill(sig);
      expect(await exited).toBe(0);
      expect(await findMount(mnt)).toBeUndefined();
    } finally {
      child.kill('SIGKILL');
    }
  }, 90_000);

  it('clears a stale mount left by a killed daemon at the next mount', async () => {
    const { child, exited } = await foreground(opts(), mnt);
    const before = await sh(`cat ${JSON.stringify(join(mnt, 'etc', 'hostname'))}`);
    child.kill('SIGKILL');
    await exited;
    expect(await findMount(mnt)).toBeDefined();
    await expect(fsp.stat(join(mnt, 'etc'))).rejects.toMatchObject({ code: 'ENOTCONN' });
    const r = await layerfs('mount', '-o', opts(), mnt);
    expect(r.code).toBe(0);
    expect(r.stderr.trim()).toBe(`layerfs: cleared a stale mount at ${mnt} (ENOTCONN)`);
    expect(await sh(`cat ${JSON.stringify(join(mnt, 'etc', 'hostname'))}`)).toBe(before);
    expect(await layerfs('umount', mnt)).toMatchObject({ code: 0, stderr: '' });
  }, 90_000);

  // Last: it starts and stops a daemon on the other transport.
  it('serves with transport=libfuse: copy-up and whiteout through fuse-native; umount ends the daemon', async () => {
    const o = `${opts()},transport=libfuse`;
    // The tests after this one expect the upper as the first test left it.
    const before = await fsp.readFile(join(upper, 'etc', 'hostname'));
    const r = await layerfs('mount', '-o', o, mnt);
    expect(r).toMatchObject({ code: 0, stderr: '' });
    try {
      expect((await findMount(mnt))?.fstype).toBe('fuse.layerfs');
      // libfuse 2 stays at 128 KiB requests (the low-level transport negotiates 1 MiB).
      expect(await mountInfo(mnt)).toContain('max_read=131072');
      await sh(`cat ${JSON.stringify(join(mnt, 'etc', 'hostname'))} > /dev/null && echo ll >> ${JSON.stringify(join(mnt, 'etc', 'hostname'))} && touch ${JSON.stringify(join(mnt, 'etc', 'new'))}`);
      expect(await sh(`cat ${JSON.stringify(join(mnt, 'etc', 'hostname'))}`)).toMatch(/\nll\n$/);
      expect(await fsp.readFile(join(upper, 'etc', 'hostname'), 'utf8')).toMatch(/\nll\n$/);
      expect((await fsp.stat(join(upper, 'etc', 'new'))).isFile()).toBe(true);
    } finally {
      expect(await layerfs('umount', mnt)).toMatchObject({ code: 0, stderr: '' });
    }
    expect(await findMount(mnt)).toBeUndefined();
    await waitFor(async () => (await shResult(`pgrep -f -- ${JSON.stringify(`mount -f --ready-fd 3 -o ${o}`)}`)).code !== 0);
    await fsp.rm(join(upper, 'etc', 'new'));
    await fsp.writeFile(join(upper, 'etc', 'hostname'), before);
  }, 60_000);
});
