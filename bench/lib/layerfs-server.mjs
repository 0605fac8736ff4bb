// A layerfs mount served through the packages' API, for benchmarking before (or besides)
// the `layerfs` command: `overlayFromDirs` + `mount` from the built dist/, unmounted on
// SIGTERM/SIGINT, exiting when the mount goes away (with LFSBENCH_EMPTY=1: an empty
// MemoryLayer on the low-level transport instead). Same arguments as the command:
//   node layerfs-server.mjs mount -f -o lowerdir=…,upperdir=…,workdir=… MNT
// Memory diagnostics (for the memory workload): SIGUSR2 appends one JSON line to
// $LFSBENCH_MEMLOG (default stderr) with process.memoryUsage() and the sizes of the tables
// and caches that hold memory per inode (overlay, layers, mount); with LFSBENCH_MEMLOG_GC=1
// also the figures after a full GC (live heap vs garbage); with $LFSBENCH_HEAPSNAP=DIR it
// writes a V8 heap snapshot there. $LFSBENCH_V8_FLAGS is passed to v8.setFlagsFromString at
// start (flags V8 reads at run time, e.g. --heap-growing-percent=10).
import { appendFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { setFlagsFromString, writeHeapSnapshot } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { fileURLToPath } from 'node:url';

const repo = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const { overlayFromDirs } = await import(join(repo, 'packages/overlay/dist/index.js'));
const { mount, mountLowLevel } = await import(join(repo, 'packages/fuse/dist/index.js'));

if (process.env.LFSBENCH_V8_FLAGS) setFlagsFromString(process.env.LFSBENCH_V8_FLAGS);
const args = process.argv.slice(2);
const o = args[args.indexOf('-o') + 1] ?? '';
const mnt = args[args.length - 1];
const kv = Object.fromEntries(o.split(',').map((p) => p.split('=')));
// The transport as the command picks it: LAYERFS_TRANSPORT=lowlevel|libfuse, or from -o
// transport=…; by default the low-level one as root, else libfuse.
const transport = process.env.LAYERFS_TRANSPORT ?? kv.transport ?? (process.getuid?.() === 0 ? 'lowlevel' : 'libfuse');
// LFSBENCH_EMPTY=1 (the layerfs-empty system): the low-level transport over an empty
// MemoryLayer instead of the overlay, for what a request costs in the transport itself.
const empty = process.env.LFSBENCH_EMPTY === '1';
const fs = empty
  ? new (await import(join(repo, 'packages/testkit/dist/index.js'))).MemoryLayer()
  : await overlayFromDirs({ lowerdir: kv.lowerdir, upperdir: kv.upperdir, workdir: kv.workdir });
const handle = empty || transport === 'lowlevel'
  ? await mountLowLevel(fs, mnt, { destroyOnUnmount: true, handleSignals: false })
  : await mount(fs, mnt, { destroyOnUnmount: true, handleSignals: false });
let stopping = false;
const stop = async () => {
  if (stopping) return;
  stopping = true;
  await handle.unmount();
  process.exit(0);
};
/** Sizes of every Map/Set-like field of `o` (private TypeScript fields are plain JS fields). */
function sizes(o) {
  const r = {};
  for (const [k, v] of Object.entries(o ?? {})) {
    if (v && typeof v === 'object' && typeof v.size === 'number') r[k] = v.size;
    else if (v && typeof v === 'object' && v.lru && typeof v.lru.size === 'number') r[k] = v.lru.size;
  }
  return r;
}
let gc;
/** One line of memory figures (see the module comment). */
function report() {
  const m = process.memoryUsage();
  if (process.env.LFSBENCH_MEMLOG_GC === '1') {
    gc ??= (setFlagsFromString('--expose-gc'), runInNewContext('gc'));
    gc();
    const g = process.memoryUsage();
    m.afterGc = { rss: g.rss, heapTotal: g.heapTotal, heapUsed: g.heapUsed };
  }
  const line = JSON.stringify({
    afterGc: m.afterGc, t: Date.now(), rss: m.rss, heapTotal: m.heapTotal, heapUsed: m.heapUsed, external: m.external, arrayBuffers: m.arrayBuffers,
    overlay: { ...sizes(fs), table: fs.table?.size, live: fs.liveInodes?.(), cached: fs.cachedInodes?.() },
    layers: fs.layers.map((l) => ({ ...sizes(l), table: l.table?.size })),
    mount: { ...sizes(handle), map: handle.map?.size },
  });
  if (process.env.LFSBENCH_HEAPSNAP) writeHeapSnapshot(join(process.env.LFSBENCH_HEAPSNAP, `layerfs-${process.pid}-${Date.now()}.heapsnapshot`));
  if (process.env.LFSBENCH_MEMLOG) appendFileSync(process.env.LFSBENCH_MEMLOG, `${line}\n`);
  else process.stderr.write(`${line}\n`);
}
process.on('SIGUSR2', report);
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
await handle.closed;
process.exit(0);
