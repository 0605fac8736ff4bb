/**
 * Data calls never block the event loop: a PassthroughLayer whose root is a FUSE mount served
 * by a child process (`fixtures/gate-server.mjs`), where every read and write waits at a gate
 * until this process answers the child's "pending" message — something only a free event loop
 * can do. `read`, `write` and a streamed copy-up (`copyUpDataWith`, no clone) each complete
 * only after this process saw the request pending and opened the gate; a layer that made the
 * call synchronously on the JS thread could never answer, and the child fails the request
 * with EIO after 20 s. A release made while a read is in flight waits for it. Ordering and
 * content are asserted, never a duration. Needs root and
 * /dev/fuse (skipped otherwise); the child unmounts on SIGTERM, and afterAll unmounts lazily
 * if it did not.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { constants, readFileSync } from 'node:fs';
import * as fsp from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { OpenFlags, ROOT_INO } from '@layerfs/core';
import { PassthroughLayer } from '../src/index.js';
import { ctx, tempDir } from './helpers.js';

async function canMount(): Promise<boolean> {
  if (process.platform !== 'linux' || process.getuid?.() !== 0) return false;
  try { await fsp.access('/dev/fuse', constants.R_OK | constants.W_OK); return true; } catch { return false; }
}
const skip = !(await canMount());
const fixtures = fileURLToPath(new URL('./fixtures/', import.meta.url));

/** 1 MiB of a pattern that differs at every 4 KiB page (so a wrong offset shows). */
function pattern(seed: number): Buffer {
  const b = Buffer.alloc(1 << 20);
  for (let i = 0; i < b.length; i += 4) b.writeUInt32LE((i * 2654435761 + seed) >>> 0, i);
  return b;
}

describe.skipIf(skip)('data calls leave the event loop free (needs root and /dev/fuse)', () => {
  let base: string;
  let root: string;
  let mnt: string;
  let child: ChildProcess | undefined;
  let layer: PassthroughLayer | undefined;
  let upper: PassthroughLayer | undefined;
  /** What this process saw, in order: "pending <kind>" lines of the child, and "done". */
  let events: string[] = [];

  beforeAll(async () => {
    base = tempDir('pt-nonblock');
    root = `${base}/root`;
    mnt = `${base}/mnt`;
    for (const d of [root, mnt, `${base}/upper`]) await fsp.mkdir(d);
    await fsp.writeFile(`${root}/slow-read`, pattern(1));
    await fsp.writeFile(`${root}/slow-copy`, pattern(2));
    child = spawn(process.execPath, ['--conditions=source', '--import', './register.mjs', './gate-server.mjs', root, mnt],
      { cwd: fixtures, stdio: ['pipe', 'pipe', 'inherit'] });
    let mounted!: () => void;
    const ready = new Promise<void>((resolve) => { mounted = resolve; });
    let buffered = '';
    child.stdout!.on('data', (b: Buffer) => {
      buffered += b.toString();
      const lines = buffered.split('\n');
      buffered = lines.pop()!;
      for (const line of lines) {
        if (line === 'M') mounted();
        if (line.startsWith('P ')) {
          events.push(`pending ${line.slice(2)}`);
          child!.stdin!.write('G\n');
        }
      }
    });
    await Promise.race([ready, new Promise((_, reject) => {
      child!.once('exit', (c) => reject(new Error(`gate server exited (${c})`)));
      setTimeout(() => reject(new Error('gate server did not mount')), 30_000);
    })]);
    layer = new PassthroughLayer(mnt);
    upper = new PassthroughLayer(`${base}/upper`);
  }, 60_000);

  afterAll(async () => {
    await layer?.destroy();
    await upper?.destroy();
    if (child && child.exitCode === null) {
      const exited = new Promise((resolve) => child!.once('exit', resolve));
      child.kill('SIGTERM');
      await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 10_000))]);
    }
    if (readFileSync('/proc/self/mounts', 'utf8').includes(` ${mnt} `)) {
      try { execFileSync('umount', ['-l', mnt]); } catch { execFileSync('fusermount', ['-uz', mnt]); }
    }
    if (child && child.exitCode === null) child.kill('SIGKILL');
    await fsp.rm(base, { recursive: true, force: true });
  }, 30_000);

  it('read: the loop answers the host while the read waits on it, then gets the right bytes', async () => {
    events = [];
    const e = await layer!.lookup(ctx, ROOT_INO, 'slow-read');
    const h = await layer!.open(ctx, e.ino, OpenFlags.O_RDONLY);
    const data = await layer!.read(ctx, e.ino, h.fh, 256 << 10, 512 << 10);
    events.push('done');
    expect(events[0]).toBe('pending read');
    expect(events.at(-1)).toBe('done');
    expect(Buffer.from(data).equals(pattern(1).subarray(512 << 10, 768 << 10))).toBe(true);
    await layer!.release(ctx, e.ino, h.fh);
    await layer!.forget(ctx, e.ino, 1);
  }, 60_000);

  it('release while a read is in flight closes the descriptor only after the read is done', async () => {
    events = [];
    const e = await layer!.lookup(ctx, ROOT_INO, 'slow-read');
    const h = await layer!.open(ctx, e.ino, OpenFlags.O_RDONLY);
    // Past the end: the pread gets the last 256 KiB, then the layer still needs the descriptor
    // to tell end of file — a descriptor closed under the read would fail it with EBADF.
    const reading = layer!.read(ctx, e.ino, h.fh, 512 << 10, 768 << 10).then((d) => { events.push('read done'); return d; });
    const releasing = layer!.release(ctx, e.ino, h.fh).then(() => { events.push('released'); });
    const [data] = await Promise.all([reading, releasing]);
    expect(events[0]).toBe('pending read');
    expect(events.filter((x) => !x.startsWith('pending')).sort()).toEqual(['read done', 'released']);
    expect(Buffer.from(data).equals(pattern(1).subarray(768 << 10))).toBe(true);
    await layer!.forget(ctx, e.ino, 1);
  }, 60_000);

  it('write: the loop answers the host while the write waits on it; the data lands', async () => {
    events = [];
    const c = await layer!.create(ctx, ROOT_INO, 'slow-write', 0o644, OpenFlags.O_WRONLY);
    const written = await layer!.write(ctx, c.entry.ino, c.fh, pattern(3).subarray(0, 128 << 10), 4096);
    events.push('done');
    expect(written).toBe(128 << 10);
    expect(events[0]).toBe('pending write');
    expect(events.at(-1)).toBe('done');
    await layer!.release(ctx, c.entry.ino, c.fh);
    await layer!.forget(ctx, c.entry.ino, 1);
    const host = await fsp.readFile(`${root}/slow-write`);
    expect(host.length).toBe(4096 + (128 << 10));
    expect(host.subarray(4096).equals(pattern(3).subarray(0, 128 << 10))).toBe(true);
  }, 60_000);

  it('streamed copy-up: the loop answers the host while the copy reads from it', async () => {
    events = [];
    const src = await layer!.lookup(ctx, ROOT_INO, 'slow-copy');
    const dst = await upper!.create(ctx, ROOT_INO, 'copy', 0o644, OpenFlags.O_WRONLY);
    await upper!.release(ctx, dst.entry.ino, dst.fh);
    const how = await upper!.copyUpDataWith({ layer: layer!, ino: src.ino }, dst.entry.ino, { allowClone: false });
    events.push('done');
    expect(how).toBe('stream');
    expect(events[0]).toBe('pending read');
    expect(events.at(-1)).toBe('done');
    expect((await fsp.readFile(`${base}/upper/copy`)).equals(pattern(2))).toBe(true);
    await upper!.forget(ctx, dst.entry.ino, 1);
    await layer!.forget(ctx, src.ino, 1);
  }, 60_000);
});
