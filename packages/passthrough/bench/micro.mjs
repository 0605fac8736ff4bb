// Costs of the pieces of a metadata call (run after `tsc -b packages/passthrough`): an FsError,
// the layer's statx (hit and ENOENT miss), the ENOENT probe the overlay makes for each layer.
// Run: node packages/passthrough/bench/micro.mjs   (prints ns per call)
import * as fs from 'node:fs';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FsError, codeOf } from '@layerfs/core';
import { libc } from '../dist/index.js';

const dir = mkdtempSync(join(tmpdir(), 'layerfs-bench-'));
fs.writeFileSync(`${dir}/f`, 'x');
const dfd = libc.openat(libc.AT_FDCWD, dir, libc.O.PATH | libc.O.DIRECTORY);

async function time(name, n, f) {
  for (let i = 0; i < Math.min(n, 2000); i++) await f();
  const t = process.hrtime.bigint();
  for (let i = 0; i < n; i++) await f();
  const ns = Number(process.hrtime.bigint() - t) / n;
  console.log(`${name.padEnd(44)} ${ns.toFixed(0).padStart(8)} ns/call`);
}
const sync = (name, n, f) => time(name, n, f);

await sync('new Error()', 200_000, () => new Error('x'));
await sync('FsError.of(ENOENT)', 200_000, () => FsError.of('ENOENT'));
await sync('new FsError(ENOENT, {syscall, path})', 200_000, () => new FsError('ENOENT', { syscall: 'stat', path: '/a/b' }));
await sync('codeOf(2)', 200_000, () => codeOf(2));
await sync('libc.statx hit', 200_000, () => libc.statx(dfd, 'f', libc.AT_SYMLINK_NOFOLLOW));
await sync('libc.statx ENOENT (throw + catch)', 200_000, () => { try { libc.statx(dfd, 'nope', libc.AT_SYMLINK_NOFOLLOW); } catch { /* absent */ } });
if (libc.statxIfExists) await sync('libc.statxIfExists ENOENT', 200_000, () => libc.statxIfExists(dfd, 'nope', libc.AT_SYMLINK_NOFOLLOW));
await time('async throw FsError.of + await catch', 200_000, async () => { try { await (async () => { throw FsError.of('ENOENT'); })(); } catch { /* absent */ } });
fs.closeSync(dfd);
rmSync(dir, { recursive: true, force: true });
