// Every intermediate state of the upper layer is a valid overlay: a probe overlay built on the
// same layers after each single upper-layer call must never show a lower object the operation
// hides (rename and unlink over a copied-up lower file, rmdir of a merged dir), and a stale
// work-dir entry is cleaned when an overlay is created.
import { ROOT_CONTEXT, ROOT_INO, Volume, type Layer } from '@layerfs/core';
import { MemoryLayer, dump, tree } from '@layerfs/testkit';
import { describe, expect, it } from 'vitest';
import { OverlayFs } from '../src/index.js';

const ctx = ROOT_CONTEXT;
const MUTATING = new Set(['rename', 'unlink', 'rmdir', 'mkdir', 'mknod', 'create', 'symlink', 'link', 'createWhiteout', 'deleteWhiteout', 'setOpaque', 'setattr', 'setxattr']);

/** Wrap `layer` so `probe` runs after every mutating call (not re-entered by the probe itself). */
function probed(layer: MemoryLayer, probe: () => Promise<void>): Layer {
  let inProbe = false;
  return new Proxy(layer, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver) as unknown;
      if (typeof v !== 'function') return v;
      return async (...args: unknown[]) => {
        const r = await (v as (...a: unknown[]) => Promise<unknown>).apply(target, args);
        if (!inProbe && MUTATING.has(String(prop))) {
          inProbe = true;
          try { await probe(); } finally { inProbe = false; }
        }
        return r;
      };
    },
  }) as unknown as Layer;
}

async function visible(upper: Layer, lowers: Layer[], path: string): Promise<string | undefined> {
  const probe = await OverlayFs.create({ upper, lowers, options: { cleanWorkdir: false } });
  try {
    return await new Volume(probe, { context: ctx }).readFile(path, 'utf8');
  } catch (e) {
    if ((e as { code?: string }).code === 'ENOENT') return undefined;
    throw e;
  }
}

describe('no intermediate state shows a hidden lower object', () => {
  // Only a chardev upper with a work dir can be atomic through the Layer API: an OCI whiteout
  // `.wh.x` cannot be created while `x` exists, so an OCI upper has a window (documented).
  for (const format of ['chardev'] as const) {
    it(`rename and unlink over copied-up lower files (${format} upper)`, async () => {
      const lower = await tree({ a: 'LOWER-A', c: 'LOWER-C', d: { x: 'LOWER-X' } });
      const rawUpper = await tree({}, { whiteoutFormat: format });
      const seen: Array<string | undefined> = [];
      let watch: string | undefined;
      const upper = probed(rawUpper, async () => {
        if (watch) seen.push(await visible(upper, [lower], watch));
      });
      const ov = await OverlayFs.create({ upper, lowers: [lower] });
      const v = new Volume(ov, { context: ctx });
      await v.writeFile('/a', 'UP-A');
      await v.writeFile('/c', 'UP-C');
      await v.writeFile('/d/x', 'UP-X');
      watch = '/a';
      await v.rename('/a', '/b');
      watch = '/c';
      await v.unlink('/c');
      watch = '/d/x';
      await v.unlink('/d/x');
      watch = undefined;
      expect(seen.length).toBeGreaterThan(0);
      expect(seen.filter((s) => s?.startsWith('LOWER'))).toEqual([]);
      expect(await v.readdir('/')).toEqual(expect.arrayContaining(['b', 'd']));
      expect((await v.readdir('/')).sort()).toEqual(['b', 'd']);
      expect(ov.liveInodes()).toBe(1);
    });
  }

  it('a copy-up in progress never shows a partial file', async () => {
    const orig = 'L'.repeat(3 << 20);
    const lower = await tree({ big: orig, d: { e: { f: 'deep' } } });
    const raw = await tree({});
    const seen = new Set<string | undefined>();
    let watch: string | undefined;
    const upper = probed(raw, async () => { if (watch) seen.add(await visible(upper, [lower], watch)); });
    const ov = await OverlayFs.create({ upper, lowers: [lower] });
    const v = new Volume(ov, { context: ctx });
    watch = '/big';
    await v.appendFile('/big', '+');
    watch = '/d/e/f';
    await v.appendFile('/d/e/f', '+');
    expect([...seen].map((x) => x?.length)).toEqual(expect.arrayContaining([orig.length]));
    for (const x of seen) expect([orig, orig + '+', 'deep', 'deep+']).toContain(x);
    expect(ov.liveInodes()).toBe(1);
  });

  it('lookups and reads of other files are not blocked by a long copy-up', async () => {
    const raw = await tree({ big: 'B'.repeat(8 << 20), other: 'other' });
    let started!: () => void;
    const copying = new Promise<void>((r) => { started = r; });
    const slow = new Proxy(raw, {
      get(t, prop, r) {
        const v = Reflect.get(t, prop, r) as unknown;
        if (prop === 'read') {
          return async (...args: Parameters<MemoryLayer['read']>) => {
            started();
            await new Promise((res) => setTimeout(res, 25));
            return t.read(...args);
          };
        }
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(t) : v;
      },
    }) as unknown as Layer;
    const ov = await OverlayFs.create({ upper: await tree({}), lowers: [slow] });
    const v = new Volume(ov, { context: ctx });
    let appended = false;
    const append = v.appendFile('/big', '!').then(() => { appended = true; });
    await copying;
    expect((await v.stat('/other')).size).toBe(5);
    expect(await v.readdir('/')).toEqual(expect.arrayContaining(['big', 'other']));
    expect(appended).toBe(false);
    await append;
    expect((await v.stat('/big')).size).toBe((8 << 20) + 1);
    expect(ov.liveInodes()).toBe(1);
  });

  it('stale work-dir entries are removed when an overlay is created', async () => {
    const lower = await tree({ f: 'x' });
    const upper = new MemoryLayer();
    const w = upper.workIno!;
    await upper.forget(ctx, (await upper.mkdir(ctx, w, '#stale-dir', 0o700)).ino, 1);
    const c = await upper.create(ctx, w, '#stale-file', 0o600, 0o101);
    await upper.release(ctx, c.entry.ino, c.fh);
    await upper.forget(ctx, c.entry.ino, 1);
    await upper.createWhiteout(ctx, w, '#stale-wh');
    const ov = await OverlayFs.create({ upper, lowers: [lower] });
    const { fh } = await upper.opendir(ctx, w);
    expect(await upper.readdir(ctx, w, fh, 0, false)).toEqual([]);
    await upper.releasedir(ctx, w, fh);
    expect(await dump(ov)).toEqual({ f: 'x' });
    expect(ROOT_INO).toBe(1);
  });
});
