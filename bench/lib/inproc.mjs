// Child process for the in-process workloads: builds one system — layerfs (`Volume` over
// `OverlayFs` from `overlayFromDirs`, PassthroughLayer lower and upper), layerfs-mem (the
// same over the same PassthroughLayer lower with a MemoryLayer upper, writes kept in memory
// as ZenFS's are) or ZenFS
// (`CopyOnWrite` over a `Passthrough` readable of the same lower; see README for why its
// writable side is `InMemory`) — runs one workload through its fs.promises-shaped API,
// one call at a time, and prints the timings (ms) as JSON.
//   node inproc.mjs <layerfs|zenfs> <workload> <config-json>
import * as nodefs from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const [system, workload, cfgJson] = process.argv.slice(2);
const cfg = JSON.parse(cfgJson);
const MiB = 1024 * 1024;

async function makeLayerfs({ lower, upper, work }) {
  const core = await import(join(repo, 'packages/core/dist/index.js'));
  const overlay = await import(join(repo, 'packages/overlay/dist/index.js'));
  if (typeof overlay.overlayFromDirs !== 'function') throw new Error('@layerfs/overlay has no overlayFromDirs yet');
  const ofs = await overlay.overlayFromDirs({ lowerdir: [lower], upperdir: upper, workdir: work });
  return { api: new core.Volume(ofs), close: async () => { await ofs.destroy?.(); await ofs.close?.(); } };
}

async function makeLayerfsMem({ lower }) {
  const core = await import(join(repo, 'packages/core/dist/index.js'));
  const overlay = await import(join(repo, 'packages/overlay/dist/index.js'));
  const { PassthroughLayer } = await import(join(repo, 'packages/passthrough/dist/index.js'));
  const { MemoryLayer } = await import(join(repo, 'packages/testkit/dist/index.js'));
  const ofs = await overlay.OverlayFs.create({
    upper: new MemoryLayer(), lowers: [new PassthroughLayer(lower, { writable: false })], options: { destroyLayers: true },
  });
  return { api: new core.Volume(ofs), close: async () => { await ofs.destroy(); } };
}

async function makeZenfs({ lower }) {
  const z = await import('@zenfs/core');
  await z.configureSingle({
    backend: z.CopyOnWrite,
    readable: { backend: z.Passthrough, fs: nodefs, prefix: lower },
    writable: { backend: z.InMemory },
  });
  return { api: z.fs.promises, close: async () => {} };
}

const lines = async (f) => (await readFile(f, 'utf8')).split('\n').filter(Boolean).map((p) => `/${p}`);

async function timed(fn) {
  const t0 = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - t0) / 1e6;
}

async function walk(api, dir, visit) {
  for (const d of await api.readdir(dir, { withFileTypes: true })) {
    const p = `${dir}/${d.name}`;
    await visit(p, d);
    if (d.isDirectory()) await walk(api, p, visit);
  }
}

const WORK = {
  async create(api) {
    return { create: await timed(async () => {
      await api.mkdir('/new');
      for (let d = 0; d < cfg.createDirs; d++) {
        const dp = `/new/d${String(d).padStart(3, '0')}`;
        await api.mkdir(dp);
        for (let f = 0; f < cfg.createPerDir; f++) await (await api.open(`${dp}/f${f}`, 'wx')).close();
      }
    }) };
  },
  async stat(api) {
    const paths = await lines(cfg.files.entries);
    const pass = () => timed(async () => { for (const p of paths) await api.lstat(p); });
    return { 'stat-cold': await pass(), 'stat-warm': await pass() };
  },
  async 'stat-missing'(api) {
    const pass = () => timed(async () => {
      for (let i = 0; i < cfg.missing; i++) {
        const p = `/tree/.missing-${i}`;
        try { await api.lstat(p); } catch (e) { if (e.code === 'ENOENT') continue; throw e; }
        throw new Error(`inproc: ${p} exists`);
      }
    });
    return { 'stat-missing-cold': await pass(), 'stat-missing-warm': await pass() };
  },
  async find(api) {
    const pass = () => timed(() => walk(api, '/tree', async () => {}));
    return { 'find-cold': await pass(), 'find-warm': await pass() };
  },
  async 'tar-meta'(api) {
    return { 'tar-meta': await timed(() => walk(api, '/tree', async (p) => { await api.lstat(p); })) };
  },
  async 'tar-data'(api) {
    return { 'tar-data': await timed(() => walk(api, '/tree', async (p, d) => {
      await api.lstat(p);
      if (d.isFile()) await api.readFile(p);
      else if (d.isSymbolicLink()) await api.readlink(p);
    })) };
  },
  async read(api) {
    const buf = Buffer.alloc(MiB);
    return { read: await timed(async () => {
      const h = await api.open('/big.bin', 'r');
      let pos = 0;
      for (;;) {
        const { bytesRead } = await h.read(buf, 0, MiB, pos);
        if (!bytesRead) break;
        pos += bytesRead;
      }
      await h.close();
      if (pos !== cfg.bigMiB * MiB) throw new Error(`read ${pos} bytes`);
    }) };
  },
  async write(api) {
    const buf = Buffer.alloc(MiB);
    return { write: await timed(async () => {
      const h = await api.open('/new.bin', 'w');
      for (let i = 0; i < cfg.bigMiB; i++) await h.write(buf, 0, MiB, i * MiB);
      await h.sync();
      await h.close();
    }) };
  },
  async 'append-small'(api) {
    const paths = await lines(cfg.files.append);
    return { 'append-small': await timed(async () => { for (const p of paths) await api.appendFile(p, 'x'); }) };
  },
  async 'append-big-ext4'(api) { return { 'append-big-ext4': await timed(() => api.appendFile('/big.bin', 'x')) }; },
  async 'append-big-xfs'(api) { return { 'append-big-xfs': await timed(() => api.appendFile('/big.bin', 'x')) }; },
  async unlink(api) {
    const paths = await lines(cfg.files.unlink);
    return { unlink: await timed(async () => { for (const p of paths) await api.unlink(p); }) };
  },
  async untar(api) {
    // The archive's files, read from the host beforehand; "untar" = mkdir -p + writeFile each.
    const paths = await lines(cfg.files.untar);
    const data = await Promise.all(paths.map((p) => readFile(join(cfg.hostLower, p))));
    return { untar: await timed(async () => {
      const made = new Set();
      await api.mkdir('/new');
      for (let i = 0; i < paths.length; i++) {
        const dst = `/new${paths[i]}`;
        const dir = dst.slice(0, dst.lastIndexOf('/'));
        if (!made.has(dir)) { await api.mkdir(dir, { recursive: true }); made.add(dir); }
        await api.writeFile(dst, data[i]);
      }
    }) };
  },
};

const make = { layerfs: makeLayerfs, 'layerfs-mem': makeLayerfsMem, zenfs: makeZenfs }[system];
if (!make) throw new Error(`inproc: unknown system ${system}`);
if (!WORK[workload]) throw new Error(`inproc: unknown workload ${workload}`);
try {
  const sys = await make(cfg);
  const metrics = await WORK[workload](sys.api);
  await sys.close();
  process.stdout.write(JSON.stringify(metrics) + '\n');
} catch (e) {
  // A failing call is reported with its message and the frame that threw, not a figure.
  const frame = String(e?.stack ?? '').split('\n').find((l) => l.includes(' at ')) ?? '';
  process.stdout.write(JSON.stringify({ error: `${e?.code ?? e?.name ?? 'Error'}: ${e?.message ?? e} ${frame.trim().replace(/\(?file:\/\/.*node_modules\//, '(')}` }) + '\n');
}
process.exit(0);
