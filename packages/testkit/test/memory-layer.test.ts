// MemoryLayer: its own behaviour (snapshots, read-only seeding, marker storage, the work
// directory, freeing of unlinked inodes), plus the shared Layer conformance suite.
import { describe, expect, it } from 'vitest';
import {
  OCI_OPAQUE_MARKER, OPAQUE_XATTR, OPAQUE_XATTR_USER, OpenFlags, ROOT_CONTEXT, ROOT_INO, S_IFREG,
} from '@layerfs/core';
import { MemoryLayer, describeLayerConformance, snapshotNode } from '../src/index.js';

const ctx = ROOT_CONTEXT;
const enc = new TextEncoder();

async function writeFile(fs: MemoryLayer, parent: number, name: string, text: string): Promise<number> {
  const { fh, entry } = await fs.create(ctx, parent, name, 0o644, OpenFlags.O_WRONLY);
  await fs.write(ctx, entry.ino, fh, enc.encode(text), 0);
  await fs.release(ctx, entry.ino, fh);
  await fs.forget(ctx, entry.ino, 1);
  return entry.ino;
}

describe('MemoryLayer specifics', () => {
  it('snapshots are cheap, immutable and seed a read-only layer', async () => {
    const a = new MemoryLayer();
    await writeFile(a, ROOT_INO, 'f', 'one');
    const snap = a.snapshot();
    await writeFile(a, ROOT_INO, 'g', 'two');
    expect(snap.nodeCount).toBeLessThan(a.snapshot().nodeCount);
    const ro = MemoryLayer.fromSnapshot(snap, { writable: false });
    expect(ro.writable).toBe(false);
    expect(ro.workIno).toBeUndefined();
    const e = await ro.lookup(ctx, ROOT_INO, 'f');
    const { fh } = await ro.open(ctx, e.ino, OpenFlags.O_RDONLY);
    expect(new TextDecoder().decode(await ro.read(ctx, e.ino, fh, 100, 0))).toBe('one');
    await expect(ro.lookup(ctx, ROOT_INO, 'g')).rejects.toMatchObject({ code: 'ENOENT' });
    await expect(ro.mkdir(ctx, ROOT_INO, 'd', 0o755)).rejects.toMatchObject({ code: 'EROFS' });
    await expect(ro.open(ctx, e.ino, OpenFlags.O_WRONLY)).rejects.toMatchObject({ code: 'EROFS' });
    await expect(ro.setattr(ctx, e.ino, { mode: 0o600 })).rejects.toMatchObject({ code: 'EROFS' });
    await expect(ro.unlink(ctx, ROOT_INO, 'f')).rejects.toMatchObject({ code: 'EROFS' });
    await ro.release(ctx, e.ino, fh);
    await ro.forget(ctx, e.ino, 1);
    expect(ro.liveInodes()).toBe(1);
  });

  it('stores OCI whiteouts as .wh. files and opaque dirs as .wh..wh..opq', async () => {
    const fs = new MemoryLayer({ whiteoutFormat: 'oci' });
    await fs.createWhiteout(ctx, ROOT_INO, 'gone');
    const d = await fs.mkdir(ctx, ROOT_INO, 'd', 0o755);
    await fs.setOpaque(ctx, d.ino, true);
    const root = snapshotNode(fs.snapshot(), ROOT_INO)!;
    expect([...root.entries!.keys()].sort()).toEqual(['.wh.gone', 'd']);
    expect([...snapshotNode(fs.snapshot(), d.ino)!.entries!.keys()]).toEqual([OCI_OPAQUE_MARKER]);
    const marker = snapshotNode(fs.snapshot(), root.entries!.get('.wh.gone')!)!;
    expect(marker.mode).toBe(S_IFREG);
    expect(await fs.isOpaque(ctx, d.ino)).toBe(true);
    await expect(fs.mkdir(ctx, ROOT_INO, '.wh.x', 0o755)).rejects.toMatchObject({ code: 'EINVAL' });
    await fs.forget(ctx, d.ino, 1);
  });

  it('OCI whiteouts occupy their name: unlink removes the marker, a rename over it replaces it', async () => {
    const fs = new MemoryLayer({ whiteoutFormat: 'oci' });
    await fs.createWhiteout(ctx, ROOT_INO, 'a');
    await expect(fs.mkdir(ctx, ROOT_INO, 'a', 0o755)).rejects.toMatchObject({ code: 'EEXIST' });
    await fs.unlink(ctx, ROOT_INO, 'a');
    expect([...snapshotNode(fs.snapshot(), ROOT_INO)!.entries!.keys()]).toEqual([]);
    await fs.createWhiteout(ctx, ROOT_INO, 'b');
    await writeFile(fs, ROOT_INO, 'c', 'data');
    await fs.rename(ctx, ROOT_INO, 'c', ROOT_INO, 'b', 0);
    expect([...snapshotNode(fs.snapshot(), ROOT_INO)!.entries!.keys()]).toEqual(['b']);
    await fs.rename(ctx, ROOT_INO, 'b', ROOT_INO, 'd', 0x4);
    expect([...snapshotNode(fs.snapshot(), ROOT_INO)!.entries!.keys()].sort()).toEqual(['.wh.b', 'd']);
    expect(await fs.isWhiteout(ctx, ROOT_INO, 'b')).toBe(true);
    expect(fs.liveInodes()).toBe(1);
  });

  it('answers ESTALE for an ino nobody holds (a caller that forgot too early)', async () => {
    const fs = new MemoryLayer();
    const e = await fs.mkdir(ctx, ROOT_INO, 'd', 0o755);
    await fs.forget(ctx, e.ino, 1);
    await expect(fs.getattr(ctx, e.ino)).rejects.toMatchObject({ code: 'ESTALE' });
    await expect(fs.lookup(ctx, e.ino, 'x')).rejects.toMatchObject({ code: 'ESTALE' });
    await expect(fs.getattr(ctx, 9999)).rejects.toMatchObject({ code: 'ESTALE' });
    const again = await fs.lookup(ctx, ROOT_INO, 'd');
    expect(again.ino).toBe(e.ino);
    await fs.forget(ctx, e.ino, 1);
  });

  it('reports excess forgets without throwing', async () => {
    const seen: number[][] = [];
    const fs = new MemoryLayer({ onExcessForget: (ino, held, asked) => seen.push([ino, held, asked]) });
    const e = await fs.mkdir(ctx, ROOT_INO, 'd', 0o755);
    await fs.forget(ctx, e.ino, 3);
    expect(fs.excessForgets).toBe(2);
    expect(seen).toEqual([[e.ino, 1, 3]]);
    expect(fs.liveInodes()).toBe(1);
  });

  it('writes trusted.overlay.opaque, or user.overlay.opaque with userxattr', async () => {
    for (const [userxattr, name] of [[false, OPAQUE_XATTR], [true, OPAQUE_XATTR_USER]] as const) {
      const fs = new MemoryLayer({ userxattr });
      const d = await fs.mkdir(ctx, ROOT_INO, 'd', 0o755);
      await fs.setOpaque(ctx, d.ino, true);
      expect(await fs.listxattr(ctx, d.ino)).toEqual([name]);
      await fs.setOpaque(ctx, d.ino, false);
      expect(await fs.listxattr(ctx, d.ino)).toEqual([]);
      await fs.forget(ctx, d.ino, 1);
    }
  });

  it('frees an unlinked inode only after its last lookup and handle are gone', async () => {
    const fs = new MemoryLayer();
    const { fh, entry } = await fs.create(ctx, ROOT_INO, 'f', 0o644, OpenFlags.O_RDWR);
    const before = fs.storedNodes;
    await fs.unlink(ctx, ROOT_INO, 'f');
    await fs.write(ctx, entry.ino, fh, enc.encode('still here'), 0);
    expect((await fs.getattr(ctx, entry.ino)).nlink).toBe(0);
    await fs.forget(ctx, entry.ino, 1);
    expect(fs.storedNodes).toBe(before);
    expect(new TextDecoder().decode(await fs.read(ctx, entry.ino, fh, 100, 0))).toBe('still here');
    await fs.release(ctx, entry.ino, fh);
    expect(fs.storedNodes).toBe(before - 1);
    await expect(fs.getattr(ctx, entry.ino)).rejects.toMatchObject({ code: 'ESTALE' });
  });

  it('has a work directory outside the tree, from which renames into the tree work', async () => {
    const fs = new MemoryLayer();
    const work = fs.workIno!;
    expect(work).toBeGreaterThan(ROOT_INO);
    const { fh, entry } = await fs.create(ctx, work, 'tmp', 0o644, OpenFlags.O_WRONLY);
    await fs.release(ctx, entry.ino, fh);
    await fs.rename(ctx, work, 'tmp', ROOT_INO, 'final', 0);
    const e = await fs.lookup(ctx, ROOT_INO, 'final');
    expect(e.ino).toBe(entry.ino);
    await fs.forget(ctx, e.ino, 2);
    await fs.forget(ctx, work, 5);
    expect(fs.liveInodes()).toBe(1);
    expect((await fs.getattr(ctx, work)).nlink).toBe(2);
  });
});

describeLayerConformance('MemoryLayer', ({ whiteoutFormat, userxattr }) => new MemoryLayer({ whiteoutFormat, userxattr: userxattr ?? false }), {
  makeReadOnly: (layer) => MemoryLayer.fromSnapshot((layer as MemoryLayer).snapshot(), { writable: false }),
});
