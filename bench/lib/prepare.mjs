// Prepares the benchmark's layers once per size profile and reuses them on later runs:
// the lower tree (a deterministic sample of the machine's /usr/share and /usr/lib), the
// big file, the lists the workloads use (every entry, files to append to and to unlink,
// the files of the untar archive), the untar archive itself, the XFS reflink image (kept
// as a file, mounted only while a workload needs it) and synthetic trees for memory runs.
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { mountAt, onCleanup, run, runSync, sleep, unmount } from './util.mjs';

/**
 * Version of the tree recipe, part of a profile's directory name: a change of recipe gets a
 * new directory instead of rebuilding one a concurrent run may be using. v2: symlinks to
 * directories are dropped (see prepare).
 */
const TREE_VERSION = 2;

/** Paths of one prepared profile under the bench work dir. */
export function layout(workdir, opts) {
  const key = `n${opts.files}-b${opts.bigMiB}-v${TREE_VERSION}`;
  const base = join(workdir, key);
  return {
    key,
    base,
    lower: join(base, 'lower'),            // lower/tree/... and lower/big.bin
    lists: join(base, 'lists'),
    untarBall: join(base, 'untar.tar'),
    xfsImage: join(base, 'xfs.img'),
    xfsMount: join(base, 'xfs'),
    // Scratch of this process only, so two runs of the same profile never clear each other's.
    runs: join(base, 'runs', `p${process.pid}`),
    xfsRuns: join(base, 'xfs', 'runs', `p${process.pid}`),
    xfsLock: join(base, 'xfs.lock'),
    results: join(base, 'results'),
    memTree: (n) => join(workdir, `mem-${n}`),
  };
}

function pickEvenly(items, n) {
  if (items.length <= n) return items;
  const out = [];
  const step = items.length / n;
  for (let i = 0; i < n; i++) out.push(items[Math.floor(i * step)]);
  return out;
}

/** Build one profile's lower tree, big file, lists, untar archive and marker under `base`. */
async function buildProfile(base, opts, log) {
  const L = { lower: join(base, 'lower'), lists: join(base, 'lists'), untarBall: join(base, 'untar.tar') };
  const marker = join(base, 'prepared.json');
  await rm(base, { recursive: true, force: true });
  await mkdir(join(L.lower, 'tree'), { recursive: true });
  await mkdir(L.lists, { recursive: true });
  // Candidate files: regular files up to 1 MiB and symlinks, sorted, sampled evenly.
  const { out } = await run('bash', ['-c',
    "find /usr/share /usr/lib -xdev \\( -type f -size -1025k -o -type l \\) -print0 | LC_ALL=C sort -z"],
  { maxBuffer: 1 << 30 });
  const all = out.split('\0').filter((p) => p && !/[\n\\]/.test(p));
  const chosen = pickEvenly(all, opts.files).map((p) => p.slice(1));
  writeFileSync(join(L.lists, 'copy.list'), chosen.join('\0') + '\0');
  await run('bash', ['-c',
    `tar -C / --null -T ${join(L.lists, 'copy.list')} -cf - 2>/dev/null | tar -C ${join(L.lower, 'tree')} -xf -`]);
  // Sampling leaves some symlinks dangling; a realistic tree has none (and ZenFS's
  // Passthrough backend follows links even for lstat), so drop those.
  await run('find', [join(L.lower, 'tree'), '-xtype', 'l', '-delete']);
  // Symlinks to directories go too: ZenFS's readdir reports a link by its target's type,
  // so its walk would follow them (a link to an ancestor, as llvm-14/build/Debug+Asserts
  // -> .., loops until ELOOP; any other walks a subtree twice).
  await run('find', [join(L.lower, 'tree'), '-type', 'l', '-xtype', 'd', '-delete']);
  log('prepare: writing the big file');
  await run('bash', ['-c', `head -c ${opts.bigMiB}M /dev/urandom > ${join(L.lower, 'big.bin')}`]);
  // Every entry of the tree (files, symlinks and dirs), relative to the lower root.
  const { out: ents } = await run('bash', ['-c',
    `cd ${L.lower} && find tree -mindepth 1 -printf '%y %s %p\\0' | LC_ALL=C sort -z -k3`], { maxBuffer: 1 << 30 });
  const rows = ents.split('\0').filter(Boolean).map((r) => {
    const [y, s, ...p] = r.split(' ');
    return { type: y, size: Number(s), path: p.join(' ') };
  });
  const entries = rows.map((r) => r.path);
  const smallFiles = rows.filter((r) => r.type === 'f' && r.size <= 64 * 1024).map((r) => r.path);
  const nSmall = Math.min(opts.appendFiles + opts.unlinkFiles, smallFiles.length);
  const picked = pickEvenly(smallFiles, nSmall);
  const append = picked.filter((_, i) => i % 2 === 0).slice(0, opts.appendFiles);
  const unlink = picked.filter((_, i) => i % 2 === 1).slice(0, opts.unlinkFiles);
  const untar = pickEvenly(rows.filter((r) => r.type === 'f'), opts.untarFiles).map((r) => r.path);
  writeFileSync(join(L.lists, 'entries.txt'), entries.join('\n') + '\n');
  writeFileSync(join(L.lists, 'append.txt'), append.join('\n') + '\n');
  writeFileSync(join(L.lists, 'unlink.txt'), unlink.join('\n') + '\n');
  writeFileSync(join(L.lists, 'untar.txt'), untar.join('\n') + '\n');
  await run('tar', ['-C', L.lower, '-cf', L.untarBall, '-T', join(L.lists, 'untar.txt')]);
  writeFileSync(marker, JSON.stringify({
    created: new Date().toISOString(), opts: { files: opts.files, bigMiB: opts.bigMiB },
    entries: entries.length, files: rows.filter((r) => r.type === 'f').length,
    dirs: rows.filter((r) => r.type === 'd').length, symlinks: rows.filter((r) => r.type === 'l').length,
    bytes: rows.filter((r) => r.type === 'f').reduce((a, r) => a + r.size, 0),
  }, null, 2));
}

/**
 * Build (or reuse) the lower tree, big file, lists and untar archive. Returns the loaded
 * lists. A profile is built under a private name and renamed into place when complete, so
 * a concurrent run never sees or deletes a half-built one.
 */
export async function prepare(L, opts, log) {
  const marker = join(L.base, 'prepared.json');
  if (!existsSync(marker)) {
    log(`prepare: building ${L.base} (about ${opts.files} files + ${opts.bigMiB} MiB file)`);
    const tmp = `${L.base}.tmp-${process.pid}`;
    const removeTmp = onCleanup(() => rmSync(tmp, { recursive: true, force: true }));
    await buildProfile(tmp, opts, log);
    if (!existsSync(marker)) {
      // A directory without a marker is an interrupted build: set it aside.
      const stale = `${L.base}.stale-${process.pid}`;
      await rename(L.base, stale).catch(() => {});
      await rename(tmp, L.base).catch(() => {});
      await rm(stale, { recursive: true, force: true });
    }
    // Someone else may have finished first: theirs is kept and ours dropped.
    await rm(tmp, { recursive: true, force: true });
    removeTmp();
    if (!existsSync(marker)) throw new Error(`profile ${L.base} is not complete after building it`);
  }
  const readList = (n) => readFileSync(join(L.lists, n), 'utf8').split('\n').filter(Boolean);
  const info = JSON.parse(readFileSync(marker, 'utf8'));
  mkdirSync(L.runs, { recursive: true });
  return {
    info,
    files: {
      entries: join(L.lists, 'entries.txt'), append: join(L.lists, 'append.txt'),
      unlink: join(L.lists, 'unlink.txt'), untar: join(L.lists, 'untar.txt'),
    },
    counts: {
      entries: readList('entries.txt').length, append: readList('append.txt').length,
      unlink: readList('unlink.txt').length, untar: readList('untar.txt').length,
    },
  };
}

/** Why XFS reflink cannot run here, or null. */
export function xfsUnavailable() {
  if (runSync('which', ['mkfs.xfs']).status !== 0) return 'mkfs.xfs not installed (Debian xfsprogs)';
  if (!readFileSync('/proc/filesystems', 'utf8').includes('xfs')) {
    runSync('modprobe', ['xfs']);
    if (!readFileSync('/proc/filesystems', 'utf8').includes('xfs')) return 'kernel has no XFS';
  }
  if (process.getuid?.() !== 0) return 'loop mounts need root';
  return null;
}

/**
 * Mount the XFS reflink image (creating it and its big file the first time); returns an
 * unmount function. The image is always unmounted and its loop device detached at exit.
 */
export async function mountXfs(L, opts, log) {
  const unlock = await lockXfs(L, log);
  try {
    return await mountXfsLocked(L, opts, log, unlock);
  } catch (e) {
    unlock();
    throw e;
  }
}

/**
 * Take the XFS image's lock (an atomic mkdir holding the owner's pid): another bench run of
 * the same profile waits instead of mounting the image twice. A lock whose owner is gone is
 * taken over. Returns the release function (also registered for exit/signal).
 */
async function lockXfs(L, log) {
  const owner = join(L.xfsLock, 'pid');
  for (let waited = 0; ; waited++) {
    try {
      mkdirSync(L.xfsLock);
      writeFileSync(owner, String(process.pid));
      break;
    } catch (e) {
      if (e.code !== 'EEXIST') throw e;
      const pid = Number(readFileSync(owner, { encoding: 'utf8', flag: 'a+' }) || 0);
      let alive = false;
      try { if (pid) { process.kill(pid, 0); alive = true; } } catch { /* gone */ }
      if (!alive && (pid || waited > 5)) { rmSync(L.xfsLock, { recursive: true, force: true }); continue; }
      if (waited === 0) log(`xfs: image in use by pid ${pid || '?'}, waiting`);
      await sleep(1000);
    }
  }
  const release = () => {
    try { if (readFileSync(owner, 'utf8') === String(process.pid)) rmSync(L.xfsLock, { recursive: true, force: true }); } catch { /* gone */ }
  };
  const remove = onCleanup(release);
  return () => { release(); remove(); };
}

async function mountXfsLocked(L, opts, log, unlock) {
  const fresh = !existsSync(L.xfsImage);
  if (fresh) {
    const sizeMiB = opts.bigMiB * 3 + 512;
    log(`prepare: creating a ${sizeMiB} MiB XFS reflink=1 image`);
    await run('truncate', ['-s', `${sizeMiB}M`, L.xfsImage]);
    await run('mkfs.xfs', ['-q', '-f', '-m', 'reflink=1', L.xfsImage]);
  }
  await mkdir(L.xfsMount, { recursive: true });
  const detach = () => {
    if (mountAt(L.xfsMount)) runSync('umount', [L.xfsMount]);
    const loops = runSync('losetup', ['-j', L.xfsImage]).stdout || '';
    for (const line of loops.split('\n').filter(Boolean)) runSync('losetup', ['-d', line.split(':')[0]]);
  };
  const remove = onCleanup(detach);
  // A mount left behind by a killed run (its lock is gone, so nobody uses it) goes first.
  if (mountAt(L.xfsMount)) detach();
  await run('mount', ['-o', 'loop', L.xfsImage, L.xfsMount]);
  const big = join(L.xfsMount, 'lower', 'big.bin');
  const st = await stat(big).catch(() => null);
  if (!st || st.size !== opts.bigMiB * 1024 * 1024) {
    log('prepare: copying the big file into the XFS image');
    await mkdir(join(L.xfsMount, 'lower'), { recursive: true });
    await run('cp', [join(L.lower, 'big.bin'), big]);
    await run('sync', ['-f', big]);
  }
  // Scratch left by earlier (killed) runs goes too: only the lock holder has it mounted.
  await rm(join(L.xfsMount, 'runs'), { recursive: true, force: true });
  await mkdir(L.xfsRuns, { recursive: true });
  return async () => {
    await rm(join(L.xfsMount, 'runs'), { recursive: true, force: true }).catch(() => {});
    await unmount(L.xfsMount);
    detach();
    remove();
    unlock();
  };
}

/** True if `dir` is a complete memory tree of `n` files (its marker says so). */
async function memTreeValid(dir, n) {
  const text = await readFile(join(dir, '.complete'), 'utf8').catch(() => null);
  if (text === null) return false;
  try { return JSON.parse(text).n === n; } catch { /* an older, unchecked marker */ }
  // An older marker holds no count: count the files once and rewrite it if they match.
  let count = 0;
  for (const d of await readdir(join(dir, 't')).catch(() => [])) count += (await readdir(join(dir, 't', d))).length;
  if (count !== n) return false;
  await writeFile(join(dir, '.complete'), JSON.stringify({ n }));
  return true;
}

/**
 * Build (or reuse) a synthetic tree of `n` empty files in dirs of 1,000 for memory runs.
 * It is built under a private name and renamed into place when complete, so a concurrent
 * bench run never sees (or deletes) a half-built tree; the marker records `n`.
 */
export async function prepareMemTree(dir, n, log) {
  if (await memTreeValid(dir, n)) return;
  const tmp = `${dir}.tmp-${process.pid}`;
  log(`prepare: creating a tree of ${n} empty files in ${dir}`);
  await rm(tmp, { recursive: true, force: true });
  await mkdir(tmp, { recursive: true });
  const removeTmp = onCleanup(() => rmSync(tmp, { recursive: true, force: true }));
  // A child process does the creating (sync calls are fine there: nothing is mounted).
  const script = `
    const fs = require('node:fs'); const n = ${n}; const root = ${JSON.stringify(tmp)};
    for (let d = 0; d * 1000 < n; d++) {
      const dp = root + '/t/d' + String(d).padStart(4, '0'); fs.mkdirSync(dp, { recursive: true });
      for (let f = 0; f < 1000 && d * 1000 + f < n; f++) fs.closeSync(fs.openSync(dp + '/f' + f, 'w'));
    }`;
  await run(process.execPath, ['-e', script]);
  await writeFile(join(tmp, '.complete'), JSON.stringify({ n }));
  if (!(await memTreeValid(dir, n))) {
    // Whatever is there is incomplete (an interrupted or raced older build): set it aside.
    const stale = `${dir}.stale-${process.pid}`;
    await rename(dir, stale).catch(() => {});
    await rename(tmp, dir).catch(() => {});
    await rm(stale, { recursive: true, force: true });
  }
  // Someone else may have finished first: theirs is kept and ours dropped.
  await rm(tmp, { recursive: true, force: true });
  removeTmp();
  if (!(await memTreeValid(dir, n))) throw new Error(`memory tree ${dir} is not complete after building it`);
}
