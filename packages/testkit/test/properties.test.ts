// Property tests of the lookup-count invariants: InodeTable (counts never negative, an identity
// keeps its ino while referenced, only the root left at the end) and MemoryLayer under random
// operation sequences against the reference model (same results and errnos, no inode leak).
// Runs fcRuns(200) cases each; LAYERFS_FC_RUNS=5000 makes a nightly-size run.
import fc from 'fast-check';
import { describe, it } from 'vitest';
import { FallocateMode, InodeTable, OpenFlags, ROOT_CONTEXT, ROOT_INO } from '@layerfs/core';
import { FsModel, MemoryLayer, checkInodeTable, dump, fcRuns, fsCommands, releaseAll, runModel, type ModelReal } from '../src/index.js';

type TableOp = { op: 'acquire'; key: string } | { op: 'forget'; key: string; n: number } | { op: 'forgetUnknown'; ino: number };

const keys = fc.constantFrom('k0', 'k1', 'k2', 'k3', 'k4', '5', '6', 'x6');
/** Tables under test: plain, and with `inoOfKey` (colliding: '6' and 'x6' ask for ino 6; forgetUnknown hits asked inos). */
const tables: Array<[string, () => InodeTable<string>]> = [
  ['plain', () => new InodeTable<string>('root', 'root')],
  ['inoOfKey', () => new InodeTable<string>('root', 'root', { inoOfKey: (k) => (k.startsWith('k') ? undefined : Number(k.replace('x', ''))) })],
];
const tableOps = fc.array(
  fc.oneof(
    { weight: 3, arbitrary: keys.map((key): TableOp => ({ op: 'acquire', key })) },
    { weight: 2, arbitrary: fc.tuple(keys, fc.integer({ min: 1, max: 3 })).map(([key, n]): TableOp => ({ op: 'forget', key, n })) },
    { weight: 1, arbitrary: fc.integer({ min: 2, max: 12 }).map((ino): TableOp => ({ op: 'forgetUnknown', ino })) },
  ),
  { maxLength: 60 },
);

describe('InodeTable properties', () => {
  it.each(tables)('counts never go negative, identities keep their ino while referenced, only the root remains (%s)', (_name, make) => {
    fc.assert(fc.property(tableOps, (ops) => {
      const table = make();
      const counts = new Map<string, number>();
      const inoOf = new Map<string, number>();
      for (const o of ops) {
        if (o.op === 'acquire') {
          const { record } = table.acquire(o.key, () => o.key);
          if (record.key !== o.key || record.value !== o.key) throw new Error(`acquire(${o.key}) gave the record of ${record.key}`);
          counts.set(o.key, (counts.get(o.key) ?? 0) + 1);
          if (!inoOf.has(o.key)) inoOf.set(o.key, record.ino);
        } else if (o.op === 'forget') {
          const ino = inoOf.get(o.key);
          if (ino === undefined) continue;
          table.forget(ino, o.n);
          const left = Math.max(0, (counts.get(o.key) ?? 0) - o.n);
          counts.set(o.key, left);
          if (left === 0) inoOf.delete(o.key);
        } else if (![...inoOf.values()].includes(o.ino)) {
          table.forget(o.ino, 1);
        }
        checkInodeTable(table, counts, inoOf);
      }
      for (const [key, ino] of inoOf) table.forget(ino, counts.get(key)!);
      if (table.size !== 1 || table.get(1) === undefined) throw new Error(`after forgetting everything the table holds ${table.size} records`);
    }), { numRuns: fcRuns(200) });
  });
});

describe('MemoryLayer model-based properties', () => {
  it('agrees with the reference model and leaks no inode (plain names)', async () => {
    await runModel(() => new MemoryLayer(), { numRuns: fcRuns(200) });
  });

  it('agrees with the reference model on hostile names (unicode, 255 bytes, spaces, .wh.)', async () => {
    const long = 'é'.repeat(127) + 'x';
    await runModel(() => new MemoryLayer(), { names: [' a b', '名\u200b', long, '.wh.x'], numRuns: fcRuns(200), maxDepth: 2 });
  });

  it('agrees with the reference model for a non-root caller owning the tree (suid/sgid cleared by writes)', async () => {
    const user = { uid: 1000, gid: 1000, groups: [], pid: 0, umask: 0o022 };
    await runModel(() => new MemoryLayer({ rootUid: 1000, rootGid: 1000 }), { ctx: user, chmodModes: [0o755, 0o700, 0o4755, 0o2755, 0o6755], numRuns: fcRuns(200) });
  });

  it('agrees with the reference model in an OCI-format layer (non-marker names)', async () => {
    await runModel(() => new MemoryLayer({ whiteoutFormat: 'oci' }), { names: ['a', 'b', 'wh'], numRuns: fcRuns(200) });
  });
});

describe('MemoryLayer snapshots', () => {
  it('a snapshot is unaffected by later changes, and a layer seeded from it dumps the same tree', async () => {
    const seq = fsCommands({ maxCommands: 25 });
    await fc.assert(fc.asyncProperty(seq, seq, async (before, after) => {
      const fs = new MemoryLayer();
      const real: ModelReal = { fs, ctx: ROOT_CONTEXT, held: [], handles: [] };
      const model = new FsModel();
      await fc.asyncModelRun(() => ({ model, real }), before);
      await releaseAll(real, model);
      const snap = fs.snapshot();
      const expected = await dump(fs, { owners: true });
      await fc.asyncModelRun(() => ({ model, real }), after);
      await releaseAll(real, model);
      const seeded = MemoryLayer.fromSnapshot(snap, { writable: false });
      if (JSON.stringify(await dump(seeded, { owners: true })) !== JSON.stringify(expected)) throw new Error('snapshot changed after later operations');
      if (seeded.liveInodes() !== 1 || fs.liveInodes() !== 1) throw new Error('lookups leaked');
    }), { numRuns: fcRuns(200) });
  });
});

type DataOp =
  | { op: 'write'; pos: number; len: number; byte: number }
  | { op: 'truncate'; size: number }
  | { op: 'punch'; pos: number; len: number }
  | { op: 'alloc'; pos: number; len: number; keep: boolean };

describe('MemoryLayer file data (64 KiB chunks)', () => {
  it('random pwrite/truncate/punch/fallocate across chunk boundaries agree with a flat byte array', async () => {
    const pos = fc.integer({ min: 0, max: 300_000 });
    const len = fc.integer({ min: 1, max: 140_000 });
    const ops = fc.array(fc.oneof(
      fc.record({ op: fc.constant('write' as const), pos, len, byte: fc.integer({ min: 1, max: 255 }) }),
      fc.record({ op: fc.constant('truncate' as const), size: pos }),
      fc.record({ op: fc.constant('punch' as const), pos, len }),
      fc.record({ op: fc.constant('alloc' as const), pos, len, keep: fc.boolean() }),
    ), { maxLength: 12 });
    await fc.assert(fc.asyncProperty(ops, async (list: DataOp[]) => {
      const fs = new MemoryLayer();
      const { fh, entry } = await fs.create(ROOT_CONTEXT, ROOT_INO, 'f', 0o644, OpenFlags.O_RDWR | OpenFlags.O_CREAT);
      let model = new Uint8Array(0);
      const grow = (n: number): void => { if (n > model.length) { const m = new Uint8Array(n); m.set(model); model = m; } };
      const snaps: [ReturnType<MemoryLayer['snapshot']>, Uint8Array][] = [];
      for (const o of list) {
        if (o.op === 'write') {
          await fs.write(ROOT_CONTEXT, entry.ino, fh, new Uint8Array(o.len).fill(o.byte), o.pos);
          grow(o.pos + o.len);
          model.fill(o.byte, o.pos, o.pos + o.len);
        } else if (o.op === 'truncate') {
          await fs.setattr(ROOT_CONTEXT, entry.ino, { size: o.size });
          const m = new Uint8Array(o.size);
          m.set(model.subarray(0, Math.min(o.size, model.length)));
          model = m;
        } else if (o.op === 'punch') {
          await fs.fallocate(ROOT_CONTEXT, entry.ino, fh, FallocateMode.PUNCH_HOLE | FallocateMode.KEEP_SIZE, o.pos, o.len);
          model.fill(0, o.pos, o.pos + o.len);
        } else {
          await fs.fallocate(ROOT_CONTEXT, entry.ino, fh, o.keep ? FallocateMode.KEEP_SIZE : 0, o.pos, o.len);
          if (!o.keep) grow(o.pos + o.len);
        }
        snaps.push([fs.snapshot(), model.slice()]);
        const got = await fs.read(ROOT_CONTEXT, entry.ino, fh, 1 << 20, 0);
        if ((await fs.getattr(ROOT_CONTEXT, entry.ino)).size !== model.length || Buffer.compare(Buffer.from(got), Buffer.from(model)) !== 0) {
          throw new Error(`data differs after ${JSON.stringify(o)}`);
        }
        const mid = Math.floor(model.length / 3);
        const part = await fs.read(ROOT_CONTEXT, entry.ino, fh, 70_000, mid);
        if (Buffer.compare(Buffer.from(part), Buffer.from(model.subarray(mid, mid + 70_000))) !== 0) throw new Error('partial read differs');
      }
      for (const [snap, bytes] of snaps) {
        const old = MemoryLayer.fromSnapshot(snap, { writable: false });
        const e = await old.lookup(ROOT_CONTEXT, ROOT_INO, 'f');
        const { fh: ofh } = await old.open(ROOT_CONTEXT, e.ino, OpenFlags.O_RDONLY);
        const data = await old.read(ROOT_CONTEXT, e.ino, ofh, 1 << 20, 0);
        if (Buffer.compare(Buffer.from(data), Buffer.from(bytes)) !== 0) throw new Error('a snapshot changed after later writes');
      }
    }), { numRuns: fcRuns(200) });
  });
});
