// `pnpm bench`: the layerfs benchmark. Prepares the layers once (bench/lib/prepare.mjs),
// runs every selected workload against every available system, interleaved round by round
// (A B C A B C …, a fresh upper and mount for each measurement), then the in-process
// workloads (layerfs Volume vs ZenFS CopyOnWrite) and the memory workload; prints tables
// of medians with min–max and the layerfs ratios, and writes the raw figures as JSON to
// bench/results/<timestamp>.json. Flags: see bench/README.md or `--help`.
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { mkdir, readFile, rm } from 'node:fs/promises';
import { hostname, release, cpus, loadavg, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { summarize } from './lib/cpuprofile.mjs';
import { measureMemory } from './lib/memory.mjs';
import { layout, mountXfs, prepare, prepareMemTree, xfsUnavailable } from './lib/prepare.mjs';
import { SYSTEMS, layerfsLauncher } from './lib/systems.mjs';
import { fmtBytes, fmtMs, median, run, table } from './lib/util.mjs';
import { METRIC_ORDER, WORKLOADS } from './lib/workloads.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const repo = join(here, '..');

const FULL = { settleMs: 3000, rounds: 3, files: 20000, bigMiB: 1024, appendFiles: 2000, unlinkFiles: 2000, untarFiles: 5000, createDirs: 100, createPerDir: 100, memSizes: [100000, 1000000] };
const QUICK = { rounds: 1, files: 150, bigMiB: 16, appendFiles: 50, unlinkFiles: 50, untarFiles: 100, createDirs: 10, createPerDir: 20, memSizes: [1000], settleMs: 1000 };
const INPROC_SYSTEMS = ['layerfs', 'layerfs-mem', 'zenfs'];
/** In-process systems run unless `--inproc-systems` says otherwise (layerfs-mem is opt-in). */
const INPROC_DEFAULT = ['layerfs', 'zenfs'];

const { values: a } = parseArgs({
  options: {
    quick: { type: 'boolean' }, help: { type: 'boolean', short: 'h' }, list: { type: 'boolean' },
    rounds: { type: 'string' }, 'inproc-rounds': { type: 'string' }, workloads: { type: 'string' }, systems: { type: 'string' },
    inproc: { type: 'string' }, 'inproc-systems': { type: 'string' }, memory: { type: 'string' },
    files: { type: 'string' }, 'big-mib': { type: 'string' }, 'append-files': { type: 'string' },
    'unlink-files': { type: 'string' }, 'untar-files': { type: 'string' }, 'create-dirs': { type: 'string' },
    'create-per-dir': { type: 'string' }, 'mem-sizes': { type: 'string' }, 'mem-cycles': { type: 'string' }, retries: { type: 'string' }, 'budget-min': { type: 'string' }, workdir: { type: 'string' },
    'cpu-prof': { type: 'string' }, out: { type: 'string' }, 'prepare-only': { type: 'boolean' },
  },
});

if (a.help) {
  console.log((await readFile(join(here, 'README.md'), 'utf8')).split('\n## ').find((s) => s.startsWith('Flags')) ?? 'see bench/README.md');
  process.exit(0);
}
const base = a.quick ? QUICK : FULL;
const num = (v, d) => (v === undefined ? d : Number(v));
const listOpt = (v, all) => (v === undefined ? all : v === 'none' || v === '' ? [] : v === 'all' ? all : v.split(','));
const opts = {
  quick: !!a.quick,
  rounds: num(a.rounds, base.rounds), files: num(a.files, base.files), bigMiB: num(a['big-mib'], base.bigMiB),
  appendFiles: num(a['append-files'], base.appendFiles), unlinkFiles: num(a['unlink-files'], base.unlinkFiles),
  untarFiles: num(a['untar-files'], base.untarFiles), createDirs: num(a['create-dirs'], base.createDirs),
  createPerDir: num(a['create-per-dir'], base.createPerDir),
  memSizes: listOpt(a['mem-sizes'], base.memSizes.map(String)).map(Number),
  workdir: a.workdir ?? '/var/tmp/lfsbench',
  settleMs: base.settleMs,
  memCycles: num(a['mem-cycles'], 2),
  retries: num(a.retries, 1),
  budgetMin: num(a['budget-min'], 0),
};
opts.inprocRounds = num(a['inproc-rounds'], opts.rounds);
const workloads = listOpt(a.workloads, Object.keys(WORKLOADS));
const systems = listOpt(a.systems, Object.keys(SYSTEMS));
const inprocWl = listOpt(a.inproc, Object.keys(WORKLOADS));
const inprocSys = listOpt(a['inproc-systems'], INPROC_DEFAULT);
const memSystems = listOpt(a.memory, ['layerfs', 'fuse-overlayfs']);
for (const w of [...workloads, ...inprocWl]) if (!WORKLOADS[w]) throw new Error(`unknown workload ${w} (known: ${Object.keys(WORKLOADS).join(', ')})`);
for (const s of [...systems, ...memSystems]) if (!SYSTEMS[s]) throw new Error(`unknown system ${s} (known: ${Object.keys(SYSTEMS).join(', ')})`);
for (const s of inprocSys) if (!INPROC_SYSTEMS.includes(s)) throw new Error(`unknown in-process system ${s} (known: ${INPROC_SYSTEMS.join(', ')})`);
if (a.list) {
  console.log(`mounted systems: ${Object.keys(SYSTEMS).join(', ')}\nin-process systems: ${INPROC_SYSTEMS.join(', ')}\nworkloads:`);
  for (const [k, w] of Object.entries(WORKLOADS)) console.log(`  ${k.padEnd(16)} ${w.desc(opts, { counts: { entries: '~' + opts.files, append: opts.appendFiles, unlink: opts.unlinkFiles, untar: opts.untarFiles } })}`);
  process.exit(0);
}

const t0run = Date.now();
const log = (m) => process.stderr.write(`[+${((Date.now() - t0run) / 1000).toFixed(1).padStart(6)} s] ${m}\n`);
const L = layout(opts.workdir, opts);
await mkdir(L.base, { recursive: true });
const prep = await prepare(L, opts, log);
const ctx = { opts, files: prep.files, counts: prep.counts, untarBall: L.untarBall };
const xfsWhy = xfsUnavailable();
if (a['prepare-only']) {
  if (!xfsWhy) await (await mountXfs(L, opts, log))();
  for (const n of opts.memSizes) await prepareMemTree(L.memTree(n), n, log);
  log(`prepared ${L.base} (${prep.info.entries} entries) and memory trees ${opts.memSizes.join(', ')}`);
  process.exit(0);
}

const versionOf = async (cmd, args) => {
  const r = await run(cmd, args, { allowFail: true }).catch(() => ({ out: '', err: '' }));
  const lines = `${r.out}\n${r.err}`.split('\n').map((l) => l.trim()).filter(Boolean);
  return lines.find((l) => l.startsWith(cmd)) ?? lines[0] ?? '';
};
const results = {
  meta: {
    commit: await versionOf('git', ['-C', repo, 'rev-parse', '--short', 'HEAD']),
    fuseOverlayfs: await versionOf('fuse-overlayfs', ['--version']),
    layerfsMount: layerfsLauncher().how,
    started: new Date(t0run).toISOString(), host: hostname(), kernel: release(), node: process.version,
    cpus: cpus().length, memory: totalmem(), loadStart: loadavg(), opts, prepared: prep.info, workdir: L.base,
  },
  skipped: [], mounted: [], errors: [], inproc: [], memory: [], cpuProfiles: [],
};
const resultsDir = join(here, 'results');
mkdirSync(resultsDir, { recursive: true });
const jsonPath = a.out ?? join(resultsDir, `${results.meta.started.replace(/[:.]/g, '-')}.json`);
/** Save what is measured so far (after every section, so a crash keeps the figures). */
const save = () => writeFileSync(jsonPath, JSON.stringify(results, null, 2));
const skip = (what, reason) => { results.skipped.push({ what, reason }); log(`skip: ${what}: ${reason}`); };
/** True (and the part is listed as skipped) once the --budget-min time is used up. */
const overBudget = (what) => {
  if (!(opts.budgetMin > 0) || Date.now() - t0run < opts.budgetMin * 60_000) return false;
  skip(what, `time budget of ${opts.budgetMin} min used up`);
  return true;
};

const availableSystems = systems.filter((s) => {
  const why = SYSTEMS[s].unavailable();
  if (why) skip(`system ${s}`, why);
  return !why;
});

// Warm the page cache with the lower tree so no system pays the first disk read.
log('prime: reading the lower tree once');
await run('bash', ['-c', `tar -C ${L.lower} -cf - . | cat > /dev/null`]);

async function nativeRoot(kind, lower, scratch) {
  if (kind === 'ro') return lower;
  const dir = join(scratch, 'native');
  await mkdir(dir, { recursive: true });
  if (kind === 'copy:big') await run('cp', ['--reflink=auto', join(lower, 'big.bin'), join(dir, 'big.bin')]);
  else if (kind.startsWith('copy:')) {
    const list = prep.files[kind.slice(5)];
    await run('bash', ['-c', `tar -C ${lower} -T ${list} -cf - | tar -C ${dir} -xf -`]);
  }
  return dir;
}

async function withFs(fsKind, fn) {
  if (fsKind === 'xfs') {
    if (xfsWhy) return void skip('xfs workloads', xfsWhy);
    const umountXfs = await mountXfs(L, opts, log);
    try { return await fn({ lower: join(L.xfsMount, 'lower'), runs: L.xfsRuns }); } finally { await umountXfs(); }
  }
  return fn({ lower: L.lower, runs: L.runs });
}

async function measureMounted(wlName, sysName, round, where, extra = {}) {
  const wl = WORKLOADS[wlName];
  const scratch = join(where.runs, `${wlName}-${sysName}-r${round}`);
  await rm(scratch, { recursive: true, force: true });
  await mkdir(scratch, { recursive: true });
  // syncfs of the filesystem holding the layers only: a global sync(1) would wait on any
  // hung FUSE mount elsewhere on the machine.
  if (!opts.quick) await run('sync', ['-f', where.runs]);
  const natRoot = sysName === 'native' ? await nativeRoot(wl.native, where.lower, scratch) : undefined;
  const h = await SYSTEMS[sysName].open({ lower: where.lower, scratch, nativeRoot: natRoot, ...extra });
  try {
    return await wl.run(h.root, ctx);
  } catch (e) {
    // Keep what the server said (e.g. with LAYERFS_FUSE_TRACE=1) next to the failure.
    const said = h.stderr?.().trim();
    if (said) e.message = `${e.message}\n--- server stderr (tail) ---\n${said.slice(-3000)}`;
    const ended = h.exitInfo?.();
    if (ended) e.message = `${e.message}\n--- the server had exited: code ${ended.code}, signal ${ended.signal} ---`;
    throw e;
  } finally {
    await h.close();
    await rm(scratch, { recursive: true, force: true });
  }
}

// ---- mounted workloads, interleaved ----
// Round-major (every workload's round 1, then round 2, …), each workload interleaving the
// systems, so a run cut short by --budget-min still has a figure for every workload.
// The data workloads (minRounds) take a few seconds a round and vary the most with the disk's
// writeback and the host: without --rounds they run more rounds, for a steadier median.
const roundsOf = (wl) => (a.rounds === undefined && !opts.quick ? Math.max(opts.rounds, wl.minRounds ?? 0) : opts.rounds);
const mountedRounds = Math.max(opts.rounds, ...workloads.map((w) => roundsOf(WORKLOADS[w])));
for (let round = 1; round <= mountedRounds; round++) {
  for (const wlName of workloads) {
    const wl = WORKLOADS[wlName];
    if (round > roundsOf(wl)) continue;
    if (overBudget(`mounted ${wlName} r${round}`)) continue;
    await withFs(wl.fs, async (where) => {
      for (const sysName of availableSystems) {
        if (SYSTEMS[sysName].only && !SYSTEMS[sysName].only(wl)) continue;
        // A failed attempt is recorded under errors; it is retried on a fresh mount up to
        // --retries times, and the figure of a retry is marked `attempt` in the JSON.
        for (let attempt = 1; attempt <= 1 + opts.retries; attempt++) {
          try {
            const m = await measureMounted(wlName, sysName, round, where);
            for (const [metric, ms] of Object.entries(m)) {
              results.mounted.push({ workload: wlName, metric, system: sysName, round, ms, ...(attempt > 1 ? { attempt } : {}) });
              log(`[${metric} r${round}] ${sysName.padEnd(15)} ${fmtMs(ms)}${attempt > 1 ? ` (attempt ${attempt})` : ''}`);
            }
            break;
          } catch (e) {
            results.errors.push({ workload: wlName, system: sysName, round, attempt, error: String(e.message ?? e) });
            log(`[${wlName} r${round}] ${sysName}: ERROR ${String(e.message ?? e).split('\n').find((l) => /^\w*Error|ENOENT|EIO/.test(l)) ?? String(e.message ?? e).split('\n')[0]}`);
          }
        }
      }
    });
  }
}

save();

// ---- in-process workloads: layerfs Volume vs ZenFS CopyOnWrite ----
const inprocChild = join(here, 'lib', 'inproc.mjs');
async function layerfsInprocUnavailable() {
  try {
    const overlay = await import(join(repo, 'packages/overlay/dist/index.js'));
    const core = await import(join(repo, 'packages/core/dist/index.js'));
    if (typeof overlay.overlayFromDirs !== 'function') return '@layerfs/overlay (dist) has no overlayFromDirs yet';
    if (typeof core.Volume !== 'function') return '@layerfs/core (dist) has no Volume';
    return null;
  } catch (e) { return `cannot load the built packages (pnpm exec tsc -b): ${e.message}`; }
}
const inprocAvail = [];
for (const s of inprocSys) {
  const why = s.startsWith('layerfs') && inprocWl.length ? await layerfsInprocUnavailable() : null;
  if (why) skip('in-process layerfs', why);
  else inprocAvail.push(s);
}
for (let round = 1; round <= opts.inprocRounds; round++) {
  for (const wlName of inprocWl) {
    if (overBudget(`in-process ${wlName} r${round}`)) continue;
    await withFs(WORKLOADS[wlName].fs, async (where) => {
      for (const sysName of inprocAvail) {
        const scratch = join(where.runs, `inproc-${wlName}-${sysName}-r${round}`);
        await rm(scratch, { recursive: true, force: true });
        await mkdir(join(scratch, 'upper'), { recursive: true });
        await mkdir(join(scratch, 'work'), { recursive: true });
        if (!opts.quick) await run('sync', ['-f', where.runs]);
        const cfg = {
          lower: where.lower, upper: join(scratch, 'upper'), work: join(scratch, 'work'), hostLower: L.lower,
          files: prep.files, bigMiB: opts.bigMiB, createDirs: opts.createDirs, createPerDir: opts.createPerDir, missing: opts.files,
        };
        try {
          const { out } = await run(process.execPath, ['--max-old-space-size=8192', inprocChild, sysName, wlName, JSON.stringify(cfg)], { cwd: repo });
          const m = JSON.parse(out.trim().split('\n').pop());
          if (m.error) throw new Error(m.error);
          for (const [metric, ms] of Object.entries(m)) {
            results.inproc.push({ workload: wlName, metric, system: sysName, round, ms });
            log(`[in-process ${metric} r${round}] ${sysName.padEnd(8)} ${fmtMs(ms)}`);
          }
        } catch (e) {
          results.errors.push({ inproc: true, workload: wlName, system: sysName, round, error: String(e.message ?? e) });
          log(`[in-process ${wlName} r${round}] ${sysName}: ERROR ${String(e.message ?? e).split('\n')[0]}`);
        } finally {
          await rm(scratch, { recursive: true, force: true });
        }
      }
    });
  }
}

save();

// ---- memory ----
const memAvail = memSystems.filter((s) => {
  const why = SYSTEMS[s].unavailable();
  if (why) skip(`memory on ${s}`, why);
  return !why;
});
if (memAvail.length) {
  // With a budget, a size is skipped when the smaller size's wall time, scaled by the
  // file count, says it cannot finish in the time left (find time grows with the count).
  let prev;
  for (const n of opts.memSizes) {
    if (overBudget(`memory ${n}`)) continue;
    const leftMs = opts.budgetMin * 60_000 - (Date.now() - t0run);
    if (opts.budgetMin > 0 && prev && (prev.ms * n) / prev.n > leftMs) {
      skip(`memory ${n}`, `the ${prev.n}-file memory run took ${fmtMs(prev.ms)} here, so ${n} files would take about ${fmtMs((prev.ms * n) / prev.n)}; ${fmtMs(Math.max(0, leftMs))} of the ${opts.budgetMin}-min budget left`);
      continue;
    }
    const tree = L.memTree(n);
    await prepareMemTree(tree, n, log);
    const t0size = Date.now();
    for (const sysName of memAvail) {
      const scratch = join(L.runs, `memory-${n}-${sysName}`);
      await rm(scratch, { recursive: true, force: true });
      await mkdir(scratch, { recursive: true });
      let h;
      try {
        h = await SYSTEMS[sysName].open({ lower: tree, scratch });
        const r = await measureMemory(h, n, opts.settleMs, opts.memCycles);
        results.memory.push({ system: sysName, ...r });
        log(`[memory ${n}] ${sysName}: ${fmtBytes(r.rssAfterFind)} after find (${fmtMs(r.findMs)}), ${r.bytesPerInode.toFixed(0)} B/inode, ${fmtBytes(r.rssAfterForget1)} after forget (steady after ${fmtMs(r.forget1SettledMs)})`);
        save();
      } catch (e) {
        results.errors.push({ memory: n, system: sysName, error: String(e.message ?? e) });
        log(`[memory ${n}] ${sysName}: ERROR ${String(e.message ?? e).split('\n')[0]}`);
      } finally {
        await h?.close();
        await rm(scratch, { recursive: true, force: true });
      }
    }
    prev = { n, ms: Date.now() - t0size };
  }
}

save();

// ---- CPU profiles of the layerfs mount, one per named workload ----
for (const wlName of listOpt(a['cpu-prof'], [])) {
  if (overBudget(`cpu profile of ${wlName}`)) continue;
  if (!WORKLOADS[wlName]) throw new Error(`--cpu-prof: unknown workload ${wlName}`);
  const why = SYSTEMS.layerfs.unavailable();
  if (why) { skip('cpu profile', why); break; }
  const profDir = join(L.base, `cpuprof-${wlName}-${Date.now()}`);
  mkdirSync(profDir, { recursive: true });
  try {
    await withFs(WORKLOADS[wlName].fs, async (where) => {
      const m = await measureMounted(wlName, 'layerfs', 0, where, { cpuProfDir: profDir });
      const files = readdirSync(profDir).filter((f) => f.endsWith('.cpuprofile'));
      if (!files.length) return void skip(`cpu profile of ${wlName}`, `layerfs wrote no .cpuprofile (does it exit cleanly on SIGTERM?) in ${profDir}`);
      const s = summarize(join(profDir, files[0]), repo);
      results.cpuProfiles.push({ workload: wlName, metrics: m, file: join(profDir, files[0]), totalMs: s.totalMs, busyMs: s.busyMs, functions: s.functions.slice(0, 40), files: s.files.slice(0, 20), inclusive: s.inclusive.slice(0, 30) });
    });
  } catch (e) {
    results.errors.push({ workload: `cpu-prof ${wlName}`, system: 'layerfs', error: String(e.message ?? e) });
  }
  save();
}

// ---- report ----
const out = [];
const say = (s = '') => out.push(s);
const stats = (rows) => {
  const xs = rows.map((r) => r.ms);
  return xs.length ? { med: median(xs), min: Math.min(...xs), max: Math.max(...xs), n: xs.length } : null;
};
const cell = (s) => (s ? `${fmtMs(s.med)} [${fmtMs(s.min)}–${fmtMs(s.max)}]` : '—');
const ratio = (x, y) => (x && y ? `${(x.med / y.med).toFixed(2)}×` : '—');

say(`layerfs bench — ${results.meta.started} — commit ${results.meta.commit} — Linux ${results.meta.kernel}, ${results.meta.cpus} CPUs, Node ${results.meta.node}, ${results.meta.fuseOverlayfs}`);
const moreRounds = workloads.filter((w) => roundsOf(WORKLOADS[w]) > opts.rounds);
const roundsSaid = [results.mounted.length ? `${opts.rounds} round(s) mounted${moreRounds.length ? ` (${moreRounds.join(', ')}: ${roundsOf(WORKLOADS[moreRounds[0]])})` : ''}` : '', results.inproc.length ? `${opts.inprocRounds} round(s) in-process` : ''].filter(Boolean).join(', ');
say(`lower tree: ${prep.info.entries} entries (${prep.info.files} files, ${prep.info.dirs} dirs, ${prep.info.symlinks} symlinks, ${fmtBytes(prep.info.bytes)}) + ${opts.bigMiB} MiB file${roundsSaid ? `; ${roundsSaid}, interleaved; median [min–max] of wall time` : ''}`);
say(`layerfs mount served by the ${results.meta.layerfsMount}`);
const la = (l) => l.map((x) => x.toFixed(2)).join(' ');
say(`load average (1/5/15 min) at start ${la(results.meta.loadStart)}, at end ${la(loadavg())} (other processes on the machine share its ${results.meta.cpus} CPUs)`);
for (const s of results.skipped) say(`skipped: ${s.what}: ${s.reason}`);
const metricsIn = (rows) => METRIC_ORDER.filter((m) => rows.some((r) => r.metric === m));
if (results.mounted.length) {
  say('\nMounted workloads');
  const rows = [['workload', ...availableSystems, 'layerfs/fuse-overlayfs', 'layerfs/kernel']];
  for (const metric of metricsIn(results.mounted)) {
    const st = Object.fromEntries(availableSystems.map((s) => [s, stats(results.mounted.filter((r) => r.metric === metric && r.system === s))]));
    rows.push([metric, ...availableSystems.map((s) => cell(st[s])), ratio(st.layerfs, st['fuse-overlayfs']), ratio(st.layerfs, st.kernel)]);
  }
  for (const metric of ['read', 'write'].filter((m) => results.mounted.some((r) => r.metric === m))) {
    const tp = availableSystems.map((s) => {
      const st = stats(results.mounted.filter((r) => r.metric === metric && r.system === s));
      return st ? `${(opts.bigMiB / (st.med / 1000)).toFixed(0)} MiB/s` : '—';
    });
    rows.push([`${metric} (median)`, ...tp, '', '']);
  }
  for (const metric of ['stat-missing-cold', 'stat-missing-warm'].filter((m) => results.mounted.some((r) => r.metric === m))) {
    const per = availableSystems.map((s) => {
      const st = stats(results.mounted.filter((r) => r.metric === metric && r.system === s));
      return st ? `${((st.med * 1000) / opts.files).toFixed(1)} µs` : '—';
    });
    rows.push([`${metric} (per name)`, ...per, '', '']);
  }
  say(table(rows));
  say('(ratios are of median times: < 1 means layerfs is faster; for read/write a time ratio r is a throughput ratio 1/r)');
}
if (results.inproc.length) {
  say('\nIn-process workloads (layerfs Volume over OverlayFs vs ZenFS CopyOnWrite; layerfs-mem: a MemoryLayer upper, writes kept in memory as ZenFS keeps them)');
  const ours = inprocAvail.filter((s) => s !== 'zenfs');
  const rows = [['workload', ...inprocAvail, ...ours.map((s) => `zenfs/${s} (speed-up)`)]];
  for (const metric of metricsIn(results.inproc)) {
    const st = Object.fromEntries(inprocAvail.map((s) => [s, stats(results.inproc.filter((r) => r.metric === metric && r.system === s))]));
    rows.push([metric, ...inprocAvail.map((s) => cell(st[s])), ...ours.map((s) => ratio(st.zenfs, st[s]))]);
  }
  say(table(rows));
}
if (results.memory.length) {
  say('\nMemory of the FUSE server (find with a stat of every entry; forget = drop_caches 2, then RSS once steady: three samples 1 s apart within 1 MiB, at most 30 s)');
  const rows = [['system', 'files', 'RSS mounted', 'after find', 'B/inode', 'after forget', 'after 2nd find', 'after 2nd forget', 'growth', 'find']];
  for (const r of results.memory) {
    rows.push([r.system, String(r.n), fmtBytes(r.rssMounted), fmtBytes(r.rssAfterFind), r.bytesPerInode.toFixed(0),
      fmtBytes(r.rssAfterForget1), fmtBytes(r.rssAfterFind2), fmtBytes(r.rssAfterForget2), fmtBytes(r.growthAfterCycle), fmtMs(r.findMs)]);
  }
  say(table(rows));
}
for (const p of results.cpuProfiles) {
  say(`\nCPU profile of the layerfs mount on ${p.workload} (${Object.entries(p.metrics).map(([k, v]) => `${k} ${fmtMs(v)}`).join(', ')}; ${fmtMs(p.totalMs)} sampled, ${fmtMs(p.busyMs)} busy; % of busy) — ${p.file}`);
  say(table([['self time', '%', 'function'], ...p.functions.slice(0, 25).map((f) => [fmtMs(f.ms), f.pct.toFixed(1), f.name])], 'rrl'));
  say('\nby file');
  say(table([['self time', '%', 'file'], ...p.files.slice(0, 12).map((f) => [fmtMs(f.ms), f.pct.toFixed(1), f.name])], 'rrl'));
  say('\ninclusive time of layerfs functions');
  say(table([['total time', '%', 'function'], ...p.inclusive.slice(0, 20).map((f) => [fmtMs(f.ms), f.pct.toFixed(1), f.name])], 'rrl'));
}
if (results.errors.length) {
  say(`\nerrors (${results.errors.length}):`);
  const gist = (msg) => {
    const lines = msg.split('\n');
    return (lines.find((l) => /^(\w*Error|[A-Z_]+:)/.test(l.trim())) ?? lines[0]).trim().slice(0, 240);
  };
  for (const e of results.errors.slice(0, 30)) say(`  ${e.inproc ? 'in-process ' : ''}${e.workload ?? `memory ${e.memory}`} ${e.system}${e.round ? ` r${e.round}` : ''}${e.attempt ? ` attempt ${e.attempt}` : ''}: ${gist(e.error)}`);
}
results.meta.finished = new Date().toISOString();
results.meta.loadEnd = loadavg();
results.meta.seconds = (Date.now() - t0run) / 1000;
save();
await rm(L.runs, { recursive: true, force: true });
say(`\n${results.meta.seconds.toFixed(0)} s; raw figures: ${jsonPath}`);
console.log(out.join('\n'));
process.exit(0);
