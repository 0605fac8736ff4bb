/**
 * The end of a low-level session and the Filesystem's `watchAttrs` listener (real mount, needs
 * root): the session says its kernel holds every inode; the listener is stopped when the connection ends, nothing is written to the closed
 * device when it is called after the end, and a stop function that throws does not keep
 * `unmount()` (and `closed`) from settling; a session that cannot start (here: `watchAttrs`
 * throws) rejects with an FsError and leaves no mount behind.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as fsp from 'node:fs/promises';
import { join } from 'node:path';
import type { Filesystem, KernelCaching } from '@layerfs/core';
import { MemoryLayer } from '@layerfs/testkit';
import { FsError } from '@layerfs/core';
import { findMount, mountLowLevel, type MountHandle } from '../src/index.js';
import { mountSkip, tempDir } from './helpers.js';

describe.skipIf(mountSkip)('mountLowLevel(): the watchAttrs listener at the end of the session (needs root and /dev/fuse)', () => {
  let dir: string;
  let h: MountHandle | undefined;

  beforeAll(async () => {
    dir = await tempDir('fuse-lowlevel-end');
    await fsp.mkdir(join(dir, 'mnt'));
  });

  afterAll(async () => {
    await h?.unmount();
    await fsp.rm(dir, { recursive: true, force: true });
  });

  it('stops the listener at unmount, settles even when the stop function throws, and sends nothing after', async () => {
    const layer = new MemoryLayer();
    let listener: ((ino: number) => void) | undefined;
    let told: KernelCaching | undefined;
    let stops = 0;
    // The layer with a watchAttrs whose stop function throws.
    const fs = new Proxy(layer, {
      get(target, prop, receiver) {
        if (prop === 'watchAttrs') {
          return (l: (ino: number) => void, k?: KernelCaching) => { listener = l; told = k; return () => { stops++; throw new Error('stop failed'); }; };
        }
        const v = Reflect.get(target, prop, receiver) as unknown;
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    }) as Filesystem;
    h = await mountLowLevel(fs, join(dir, 'mnt'), { handleSignals: false });
    expect(listener).toBeTypeOf('function');
    expect(told).toEqual({ holdsInodes: true });   // its kernel holds every inode it saw
    listener!(1);
    expect(h.stats().invalidations).toBe(1);
    const m = h;
    h = undefined;
    const stuck = new Promise<string>((r) => setTimeout(() => r('unmount did not settle in 10 s'), 10_000).unref());
    expect(await Promise.race([m.unmount().then(() => 'settled'), stuck])).toBe('settled');
    expect(stops).toBe(1);
    listener!(1);
    expect(m.stats().invalidations).toBe(1);
  });

  it('rejects with an FsError and leaves no mount when the session cannot start', async () => {
    const layer = new MemoryLayer();
    const fs = new Proxy(layer, {
      get(target, prop, receiver) {
        if (prop === 'watchAttrs') return () => { throw new Error('no listener today'); };
        const v = Reflect.get(target, prop, receiver) as unknown;
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    }) as Filesystem;
    const mnt = join(dir, 'mnt');
    const err = await mountLowLevel(fs, mnt, { handleSignals: false }).then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(FsError);
    expect(err).toMatchObject({ code: 'EIO', syscall: 'mount', path: mnt });
    expect(await findMount(mnt)).toBeUndefined();
    expect(layer.liveInodes()).toBe(1);
  });
});
