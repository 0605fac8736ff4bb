// Measures what one attribute lookup of a host file costs by each route the passthrough
// layer could take: koffi `fstatat`/`statx` (sync and on koffi's worker thread), Node's
// `lstatSync` (absolute path and /proc/self/fd/N/name), and `fs.promises.lstat`.
// Run: node packages/passthrough/bench/fstatat.mjs   (prints ns per call)
import koffi from 'koffi';
import * as fs from 'node:fs';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const lib = koffi.load('libc.so.6');
const fstatat = lib.func('int fstatat(int dirfd, const char *path, _Out_ uint8_t *buf, int flags)');
const statx = lib.func('int statx(int dirfd, const char *path, int flags, unsigned int mask, _Out_ uint8_t *buf)');
const dir = mkdtempSync(join(tmpdir(), 'layerfs-bench-'));
fs.writeFileSync(`${dir}/f`, 'x');
const dfd = fs.openSync(dir, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
const buf = Buffer.alloc(256);
const AT_SYMLINK_NOFOLLOW = 0x100;

async function time(name, n, f) {
  for (let i = 0; i < Math.min(n, 1000); i++) await f();
  const t = process.hrtime.bigint();
  for (let i = 0; i < n; i++) await f();
  const ns = Number(process.hrtime.bigint() - t) / n;
  console.log(`${name.padEnd(40)} ${ns.toFixed(0).padStart(8)} ns/call`);
}

await time('koffi fstatat (sync)', 200_000, () => fstatat(dfd, 'f', buf, AT_SYMLINK_NOFOLLOW));
await time('koffi statx (sync, decoded by the layer)', 200_000, () => statx(dfd, 'f', AT_SYMLINK_NOFOLLOW, 0xfff, buf));
await time('fs.lstatSync(abs path, bigint)', 200_000, () => fs.lstatSync(`${dir}/f`, { bigint: true }));
await time('fs.lstatSync(/proc/self/fd/N/f, bigint)', 200_000, () => fs.lstatSync(`/proc/self/fd/${dfd}/f`, { bigint: true }));
await time('koffi fstatat.async (worker thread)', 20_000, () => new Promise((res, rej) => fstatat.async(dfd, 'f', buf, AT_SYMLINK_NOFOLLOW, (e, r) => (e ? rej(e) : res(r)))));
await time('fs.promises.lstat(abs path, bigint)', 20_000, () => fs.promises.lstat(`${dir}/f`, { bigint: true }));
fs.closeSync(dfd);
rmSync(dir, { recursive: true, force: true });
