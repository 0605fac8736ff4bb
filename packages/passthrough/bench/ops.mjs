// Cost of the layer's hot operations on a warm tree (run after `tsc -b packages/passthrough`):
// lookup+forget of a file, of a missing name (the overlay's probe) and of a directory plus a
// name in it, getattr, isOpaque, readlink, open+read+release, reads and writes of 4 KiB, 128 KiB
// and 1 MiB on a warm 8 MiB file, readdir plus of 1,000 entries. Prints wall
// time and the process's CPU time (user+sys) per op: on a loaded machine the CPU time is the
// steadier figure. Run: node packages/passthrough/bench/ops.mjs
import * as fs from 'node:fs';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT_CONTEXT as ctx, ROOT_INO, OpenFlags } from '@layerfs/core';
import { PassthroughLayer } from '../dist/index.js';

const dir = mkdtempSync(join(tmpdir(), 'layerfs-bench-'));
fs.mkdirSync(`${dir}/d`);
for (let i = 0; i < 1000; i++) fs.writeFileSync(`${dir}/d/f${i}`, 'x'.repeat(100));
for (let i = 0; i < 100; i++) fs.mkdirSync(`${dir}/d/s${i}`);
fs.symlinkSync('f0', `${dir}/d/link`);
const layer = new PassthroughLayer(dir);
const d = (await layer.lookup(ctx, ROOT_INO, 'd')).ino;

async function time(name, n, f) {
  for (let i = 0; i < Math.min(n, 500); i++) await f(i);
  const t = process.hrtime.bigint();
  const c = process.cpuUsage();
  for (let i = 0; i < n; i++) await f(i);
  const cpu = process.cpuUsage(c);
  const wall = Number(process.hrtime.bigint() - t) / n / 1000;
  console.log(`${name.padEnd(40)} ${wall.toFixed(1).padStart(8)} µs/op wall ${((cpu.user + cpu.system) / n).toFixed(1).padStart(8)} µs/op cpu`);
}
const f0 = (await layer.lookup(ctx, d, 'f0')).ino;
await time('lookup + forget', 50_000, async (i) => { const e = await layer.lookup(ctx, d, `f${i % 1000}`); await layer.forget(ctx, e.ino, 1); });
await time('lookup of a missing name (ENOENT)', 50_000, (i) => layer.lookup(ctx, d, `nope${i % 1000}`).catch(() => undefined));
await time('lookup dir + lookup name in it + forget', 20_000, async (i) => {
  const s = await layer.lookup(ctx, d, `s${i % 100}`);
  await layer.lookup(ctx, s.ino, 'x').catch(() => undefined);
  await layer.forget(ctx, s.ino, 1);
});
await time('getattr', 50_000, () => layer.getattr(ctx, f0));
await time('isOpaque of a directory (no marker)', 20_000, () => layer.isOpaque(ctx, d));
const ln = (await layer.lookup(ctx, d, 'link')).ino;
await time('readlink', 50_000, () => layer.readlink(ctx, ln));
await time('open + read 100 B + release', 20_000, async () => {
  const h = await layer.open(ctx, f0, OpenFlags.O_RDONLY);
  await layer.read(ctx, f0, h.fh, 4096, 0);
  await layer.release(ctx, f0, h.fh);
});
fs.writeFileSync(`${dir}/big`, Buffer.alloc(8 << 20, 7));
const big = (await layer.lookup(ctx, ROOT_INO, 'big')).ino;
const bh = await layer.open(ctx, big, OpenFlags.O_RDWR);
await time('read 4 KiB (warm page cache)', 20_000, (i) => layer.read(ctx, big, bh.fh, 4096, (i % 2048) * 4096));
await time('read 128 KiB (warm page cache)', 5_000, (i) => layer.read(ctx, big, bh.fh, 128 << 10, (i % 64) * (128 << 10)));
await time('read 1 MiB (warm page cache)', 1_000, (i) => layer.read(ctx, big, bh.fh, 1 << 20, (i % 8) * (1 << 20)));
const w4 = Buffer.alloc(4096, 1);
const w128 = Buffer.alloc(128 << 10, 2);
await time('write 4 KiB (page cache)', 20_000, (i) => layer.write(ctx, big, bh.fh, w4, (i % 2048) * 4096));
await time('write 128 KiB (page cache)', 5_000, (i) => layer.write(ctx, big, bh.fh, w128, (i % 64) * (128 << 10)));
await layer.release(ctx, big, bh.fh);
await time('opendir + readdir plus (1,101 entries)', 50, async () => {
  const h = await layer.opendir(ctx, d);
  await layer.readdir(ctx, d, h.fh, 0, true);
  await layer.releasedir(ctx, d, h.fh);
});
await layer.destroy();
rmSync(dir, { recursive: true, force: true });
