/**
 * The path → inode map under eviction pressure through a real mount: a tree far larger than
 * `maxCachedPaths`, walked by several child processes at once (lstat of every path in
 * different orders, and `find`), with no kernel caching so that every lstat reaches the map.
 * Every lstat must succeed (a forget racing a lookup of the same path, or an eviction losing
 * a lookup, shows as ENOENT/ESTALE here), and after unmount every lookup is given back.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as fsp from 'node:fs/promises';
import { join } from 'node:path';
import { FsError, ROOT_CONTEXT } from '@layerfs/core';
import { MemoryLayer } from '@layerfs/testkit';
import { mount, type MountHandle } from '../src/index.js';
import { mountSkip, shResult, tempDir } from './helpers.js';

/** A tree of `dirs` × `subdirs` directories with `files` files each; returns every path. */
async function buildTree(layer: MemoryLayer, dirs: number, subdirs: number, files: number): Promise<string[]> {
  const paths: string[] = [];
  const c = ROOT_CONTEXT;
  for (let i = 0; i < dirs; i++) {
    const d = await layer.mkdir(c, 1, `d${i}`, 0o755);
    paths.push(`d${i}`);
    for (let j = 0; j < subdirs; j++) {
      const s = await layer.mkdir(c, d.ino, `s${j}`, 0o755);
      paths.push(`d${i}/s${j}`);
      for (let k = 0; k < files; k++) {
        const f = await layer.mknod(c, s.ino, `f${k}`, 0o100644, 0);
        await layer.forget(c, f.ino, 1);
        paths.push(`d${i}/s${j}/f${k}`);
      }
      await layer.forget(c, s.ino, 1);
    }
    await layer.forget(c, d.ino, 1);
  }
  return paths;
}

/**
 * `fs` with lookup, forget and getattr answered a turn or two of the event loop later (at
 * random), so that forgets of evicted paths and lookups of the same paths overlap; and
 * strict about lookup counts as the overlay's inode table is (the MemoryLayer keeps serving
 * an inode whose lookups were all given back): an inode used with no lookup held is ESTALE,
 * a forget of more than is held is recorded in `excess`.
 */
function strictJittered<T extends object>(fs: T): { fs: T; excess: string[] } {
  const held = new Map<number, number>([[1, 1]]);
  const excess: string[] = [];
  const slow = new Set(['lookup', 'forget', 'getattr']);
  const usesIno = new Set(['lookup', 'getattr', 'opendir', 'open', 'readlink', 'setattr', 'access']);
  const took = (ino: number) => held.set(ino, (held.get(ino) ?? 0) + 1);
  const proxy = new Proxy(fs, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver) as unknown;
      const name = String(prop);
      if (typeof v !== 'function') return v;
      return async (...args: unknown[]) => {
        if (slow.has(name)) {
          if (Math.random() < 0.5) await new Promise((r) => setImmediate(r));
          if (Math.random() < 0.2) await new Promise((r) => setTimeout(r, 0));
        }
        const ino = args[1] as number;
        if (usesIno.has(name) && !(held.get(ino)! > 0)) throw new FsError('ESTALE', { detail: `${name} of inode ${ino} with no lookup held` });
        if (name === 'forget') {
          const n = args[2] as number;
          const h = held.get(ino) ?? 0;
          if (n > h) excess.push(`forget(${ino}, ${n}) with ${h} held`);
          held.set(ino, Math.max(0, h - n));
        }
        const r = await (v as (...a: unknown[]) => unknown).apply(target, args);
        if (['lookup', 'mkdir', 'mknod', 'symlink', 'link'].includes(name)) took((r as { ino: number }).ino);
        if (name === 'create') took((r as { entry: { ino: number } }).entry.ino);
        return r;
      };
    },
  });
  return { fs: proxy, excess };
}

/** The walker child (it runs in its own process, so synchronous calls are safe there: lint-allow-sync below). */
const WALKER = `
const fs = require('fs');
const [list, root, order] = process.argv.slice(2);
let paths = fs.readFileSync(list, 'utf8').split('\\n').filter(Boolean); // lint-allow-sync (child process)
if (order === 'reverse') paths.reverse();
if (order === 'shuffle') for (let i = paths.length - 1; i > 0; i--) { const j = Math.floor(Math.random() * (i + 1)); [paths[i], paths[j]] = [paths[j], paths[i]]; }
let bad = 0;
for (let pass = 0; pass < 3; pass++) for (const p of paths) {
  try { fs.lstatSync(root + '/' + p); } catch (e) { if (bad++ < 5) console.log(e.code + ' ' + p); } // lint-allow-sync (child process)
}
console.log('bad ' + bad);
`;

describe.skipIf(mountSkip)('path map eviction under concurrent walkers (needs root and /dev/fuse)', () => {
  let dir: string;
  let mnt: string;
  let layer: MemoryLayer;
  let paths: string[];
  let h: MountHandle | undefined;
  let excess: string[];

  beforeAll(async () => {
    dir = await tempDir('fuse-evict');
    mnt = join(dir, 'mnt');
    await fsp.mkdir(mnt);
    layer = new MemoryLayer();
    paths = await buildTree(layer, 6, 6, 10);
    await fsp.writeFile(join(dir, 'list'), paths.join('\n'));
    await fsp.writeFile(join(dir, 'walker.cjs'), WALKER);
    const strict = strictJittered(layer);
    excess = strict.excess;
    h = await mount(strict.fs, mnt, { handleSignals: false, maxCachedPaths: 16, entryTimeout: 0, attrTimeout: 0 });
  });

  afterAll(async () => {
    await h?.unmount();
    await fsp.rm(dir, { recursive: true, force: true });
  });

  it('answers every lstat of 4 walkers and a find while evicting, and gives every lookup back', async () => {
    const q = JSON.stringify;
    const walk = (order: string) => shResult(`node ${q(join(dir, 'walker.cjs'))} ${q(join(dir, 'list'))} ${q(mnt)} ${order}`);
    const runs = await Promise.all([
      walk('forward'), walk('reverse'), walk('shuffle'), walk('shuffle'),
      shResult(`find ${q(mnt)} | wc -l`),
    ]);
    for (const r of runs.slice(0, 4)) expect(r).toMatchObject({ code: 0, stdout: 'bad 0\n' });
    expect(runs[4]).toMatchObject({ code: 0, stdout: `${paths.length + 1}\n` });
    const s = h!.stats();
    expect(s.cachedPaths).toBeLessThanOrEqual(16);
    expect(s.ops.getattr).toBeGreaterThan(4 * 3 * paths.length);
    expect(s.maxInFlight).toBeGreaterThan(1);
    await h!.unmount();
    h = undefined;
    expect(layer.liveInodes()).toBe(1);
    expect(excess).toEqual([]);
  }, 120_000);
});
