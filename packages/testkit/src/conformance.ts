/**
 * The shared Layer conformance suite: `describeLayerConformance(name, makeLayer, options)`
 * registers vitest cases every `Layer` must pass — each op's success and error cases with
 * the kernel's errnos (ext4 for a non-root caller, root bypasses for uid 0), names, files,
 * directories, symlinks, hard links and nlink, devices, rename flags, unlinked-but-open
 * inodes, xattrs, times, permissions, whiteouts and opaque markers in each format, the
 * work directory, stable readdir offsets, and balanced lookup counts (after each test every
 * lookup is forgotten and `liveInodes()`, where the layer has it, must be 1).
 *
 * Usage (in a layer's test file):
 *
 *   describeLayerConformance('PassthroughLayer', async ({ whiteoutFormat, userxattr }) => …, {
 *     supports: { devices: isRoot },
 *     cleanup: async (layer) => …,
 *   });
 *
 * Capability flags (`LayerSupports`) gate optional features with `it.skipIf`; a skipped
 * case's name says which flag skipped it.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  AccessMode, FallocateMode, OCI_OPAQUE_MARKER, OPAQUE_XATTR, OPAQUE_XATTR_FUSE_OVERLAYFS, OpenFlags,
  RenameFlags, ROOT_CONTEXT, ROOT_INO, S_IFBLK, S_IFCHR, S_IFDIR, S_IFIFO, S_IFLNK, S_IFMT, S_IFREG, S_ISGID,
  S_ISUID, S_ISVTX, UTIME_NOW, UTIME_OMIT, Whence, XattrFlags, lookupIfExists, makedev,
  type DirEntry, type Entry, type Layer, type RequestContext, type WhiteoutFormat,
} from '@layerfs/core';

/** What a layer under test supports; every flag defaults to true unless said otherwise. */
export interface LayerSupports {
  /** Whiteout formats `makeLayer` can produce. Default ['chardev', 'oci']. */
  whiteoutFormats?: readonly WhiteoutFormat[];
  /** `user.*` xattrs. */
  xattrs?: boolean;
  /** `trusted.*` xattrs (and `trusted.overlay.opaque`); needs root on a host. */
  trustedXattrs?: boolean;
  /** `userxattr` mode (`user.overlay.opaque`) in the chardev format. */
  userxattr?: boolean;
  /** Character and block devices other than 0/0 (mknod as root). */
  devices?: boolean;
  /** Permission checks against a non-root request context (uid 1000), as the kernel makes them. */
  permissions?: boolean;
  /** `RENAME_WHITEOUT`. */
  renameWhiteout?: boolean;
  /** A `workIno` outside the tree, from which renames into the tree work. */
  workDir?: boolean;
  /** Nanosecond timestamps set by setattr are kept exactly. */
  nanosecondTimes?: boolean;
  /** `fallocate` (mode 0, KEEP_SIZE, PUNCH_HOLE|KEEP_SIZE). */
  fallocate?: boolean;
  /** `lseek` SEEK_DATA / SEEK_HOLE. */
  lseek?: boolean;
  /** `copyFileRange`. */
  copyFileRange?: boolean;
  /** Opaque markers of other formats are read too (`user.fuseoverlayfs.opaque`; `.wh..wh..opq` in chardev). */
  foreignOpaqueMarkers?: boolean;
  /** `makeReadOnly` is given: read-only layers refuse every change with EROFS. Default: when given. */
  readOnly?: boolean;
}

/** What `makeLayer` is asked for. */
export interface LayerRequest {
  /** The whiteout format the new layer must store markers in. */
  readonly whiteoutFormat: WhiteoutFormat;
  /** chardev format: mark opaque directories with `user.overlay.opaque`. */
  readonly userxattr?: boolean;
}

/** Options of `describeLayerConformance`. */
export interface LayerConformanceOptions {
  /** Capability flags (see `LayerSupports`; each defaults to true). */
  supports?: LayerSupports;
  /** Called after each test with the layer (after `destroy`), e.g. to remove its host dir. */
  cleanup?: (layer: Layer) => void | Promise<void>;
  /** A read-only layer showing the same tree as `layer` (for the EROFS cases). */
  makeReadOnly?: (layer: Layer) => Layer | Promise<Layer>;
  /** The non-root caller of the permission cases. Default uid 1000, gid 1000, no groups, umask 0o022. */
  user?: RequestContext;
}

const enc = new TextEncoder();
const dec = new TextDecoder();
const bytes = (s: string): Uint8Array => enc.encode(s);

/** Book-keeping of one test: every lookup and handle taken, given back by `close()`. */
class Session {
  private readonly held: number[] = [];
  private readonly handles: { ino: number; fh: number; dir: boolean }[] = [];
  constructor(readonly fs: Layer, readonly root: RequestContext = ROOT_CONTEXT) {}

  async take(p: Promise<Entry>): Promise<Entry> {
    const e = await p;
    this.held.push(e.ino);
    return e;
  }
  lookup(parent: number, name: string, ctx = this.root): Promise<Entry> {
    return this.take(this.fs.lookup(ctx, parent, name));
  }
  mkdir(parent: number, name: string, mode = 0o755, ctx = this.root): Promise<Entry> {
    return this.take(this.fs.mkdir(ctx, parent, name, mode));
  }
  symlink(parent: number, name: string, target: string, ctx = this.root): Promise<Entry> {
    return this.take(this.fs.symlink(ctx, parent, name, target));
  }
  mknod(parent: number, name: string, mode: number, rdev = 0, ctx = this.root): Promise<Entry> {
    return this.take(this.fs.mknod(ctx, parent, name, mode, rdev));
  }
  link(ino: number, parent: number, name: string, ctx = this.root): Promise<Entry> {
    return this.take(this.fs.link(ctx, ino, parent, name));
  }
  async create(parent: number, name: string, mode = 0o644, flags = OpenFlags.O_RDWR | OpenFlags.O_CREAT, ctx = this.root): Promise<{ fh: number; entry: Entry }> {
    const r = await this.fs.create(ctx, parent, name, mode, flags);
    this.held.push(r.entry.ino);
    this.handles.push({ ino: r.entry.ino, fh: r.fh, dir: false });
    return { fh: r.fh, entry: r.entry };
  }
  async open(ino: number, flags: number, ctx = this.root): Promise<number> {
    const { fh } = await this.fs.open(ctx, ino, flags);
    this.handles.push({ ino, fh, dir: false });
    return fh;
  }
  async opendir(ino: number, ctx = this.root): Promise<number> {
    const { fh } = await this.fs.opendir(ctx, ino);
    this.handles.push({ ino, fh, dir: true });
    return fh;
  }
  async release(ino: number, fh: number, ctx = this.root): Promise<void> {
    const i = this.handles.findIndex((h) => h.fh === fh && h.ino === ino);
    if (i >= 0) this.handles.splice(i, 1);
    await this.fs.release(ctx, ino, fh);
  }
  async releasedir(ino: number, fh: number, ctx = this.root): Promise<void> {
    const i = this.handles.findIndex((h) => h.fh === fh && h.ino === ino);
    if (i >= 0) this.handles.splice(i, 1);
    await this.fs.releasedir(ctx, ino, fh);
  }
  /** Create `name` with `content` (closed again); returns its entry (lookup held). */
  async file(parent: number, name: string, content = '', mode = 0o644, ctx = this.root): Promise<Entry> {
    const { fh, entry } = await this.create(parent, name, mode, OpenFlags.O_WRONLY | OpenFlags.O_CREAT | OpenFlags.O_EXCL, ctx);
    if (content.length > 0) await this.fs.write(ctx, entry.ino, fh, bytes(content), 0);
    await this.release(entry.ino, fh, ctx);
    return entry;
  }
  async read(ino: number, ctx = this.root): Promise<string> {
    const fh = await this.open(ino, OpenFlags.O_RDONLY, ctx);
    const chunks: Uint8Array[] = [];
    for (let pos = 0; ;) {
      const b = await this.fs.read(ctx, ino, fh, 65536, pos);
      if (b.length === 0) break;
      chunks.push(b);
      pos += b.length;
    }
    await this.release(ino, fh, ctx);
    return dec.decode(Buffer.concat(chunks));
  }
  async list(ino: number, plus = false, ctx = this.root): Promise<DirEntry[]> {
    const fh = await this.opendir(ino, ctx);
    const out: DirEntry[] = [];
    for (let off = 0; ;) {
      const batch = await this.fs.readdir(ctx, ino, fh, off, plus);
      if (batch.length === 0) break;
      out.push(...batch);
      off = batch[batch.length - 1]!.offset;
    }
    await this.releasedir(ino, fh, ctx);
    return out;
  }
  async names(ino: number, ctx = this.root): Promise<string[]> {
    return (await this.list(ino, false, ctx)).map((e) => e.name).sort();
  }
  async forget(ino: number, n = 1): Promise<void> {
    for (let k = 0; k < n; k++) {
      const i = this.held.indexOf(ino);
      if (i >= 0) this.held.splice(i, 1);
    }
    await this.fs.forget(this.root, ino, n);
  }
  async close(): Promise<void> {
    for (const h of this.handles.splice(0).reverse()) {
      await (h.dir ? this.fs.releasedir(this.root, h.ino, h.fh) : this.fs.release(this.root, h.ino, h.fh)).catch(() => undefined);
    }
    const counts = new Map<number, number>();
    for (const ino of this.held.splice(0)) counts.set(ino, (counts.get(ino) ?? 0) + 1);
    for (const [ino, n] of counts) await this.fs.forget(this.root, ino, n);
  }
}

async function code(p: Promise<unknown>, expected: string): Promise<void> {
  await expect(p).rejects.toMatchObject({ code: expected });
}

const INVALID_NAMES: readonly [string, string][] = [
  ['', 'ENOENT'], ['.', 'EINVAL'], ['..', 'EINVAL'], ['a/b', 'EINVAL'], ['a\0b', 'EINVAL'], ['x'.repeat(256), 'ENAMETOOLONG'],
  ['é'.repeat(128), 'ENAMETOOLONG'],
];

/**
 * Register the shared conformance suite for a Layer. `makeLayer` builds a fresh, empty,
 * writable layer (root mode 0o755 owned by root) in the requested whiteout format; it is
 * destroyed (and `cleanup` called) after each test. See `LayerSupports` for the flags.
 */
export function describeLayerConformance(
  name: string,
  makeLayer: (request: LayerRequest) => Layer | Promise<Layer>,
  options: LayerConformanceOptions = {},
): void {
  const sup = options.supports ?? {};
  const on = (flag: keyof LayerSupports): boolean => (flag === 'readOnly' ? (sup.readOnly ?? options.makeReadOnly !== undefined) : sup[flag] !== false);
  const formats = sup.whiteoutFormats ?? ['chardev', 'oci'];
  const user: RequestContext = options.user ?? { uid: 1000, gid: 1000, groups: [], pid: 0, umask: 0o022 };
  const root = ROOT_CONTEXT;

  let fs: Layer;
  let s: Session;
  const setup = (request: LayerRequest): void => {
    beforeEach(async () => {
      fs = await makeLayer(request);
      s = new Session(fs);
    });
    afterEach(async () => {
      await s.close();
      const live = fs.liveInodes?.();
      await fs.destroy();
      await options.cleanup?.(fs);
      if (live !== undefined) expect(live, 'liveInodes() after every lookup was forgotten').toBe(1);
    });
  };
  /** A directory owned by the non-root user, mode 0o755. */
  const home = async (mode = 0o755): Promise<Entry> => {
    const d = await s.mkdir(ROOT_INO, 'home', 0o755);
    await fs.setattr(root, d.ino, { uid: user.uid, gid: user.gid, mode });
    return d;
  };

  describe(`Layer conformance: ${name}`, () => {
    describe(`core operations (${formats[0]} layer)`, () => {
      setup({ whiteoutFormat: formats[0]! });

      it('the root is a directory; lookup of a missing name is ENOENT, inside a file ENOTDIR', async () => {
        const a = await fs.getattr(root, ROOT_INO);
        expect(a.mode & S_IFMT).toBe(S_IFDIR);
        expect(a.ino).toBe(ROOT_INO);
        expect(fs.rootIno).toBe(ROOT_INO);
        await code(fs.lookup(root, ROOT_INO, 'missing'), 'ENOENT');
        const f = await s.file(ROOT_INO, 'f', 'x');
        await code(fs.lookup(root, f.ino, 'x'), 'ENOTDIR');
        await code(fs.mkdir(root, f.ino, 'x', 0o755), 'ENOTDIR');
      });

      it('lookupIfExists (the layer\'s own, or core\'s fallback over lookup) agrees with lookup: undefined for a missing name, the entry with one lookup taken, the same errors otherwise', async () => {
        expect(await lookupIfExists(fs, root, ROOT_INO, 'missing')).toBeUndefined();
        await s.file(ROOT_INO, 'f', 'x');
        await s.close();
        if (fs.liveInodes) expect(fs.liveInodes()).toBe(1);
        const e = await lookupIfExists(fs, root, ROOT_INO, 'f');
        expect(e?.attr.size).toBe(1);
        expect(e?.ino).toBe((await fs.getattr(root, e!.ino)).ino);
        if (fs.liveInodes) expect(fs.liveInodes()).toBe(2);
        await fs.forget(root, e!.ino, 1);
        if (fs.liveInodes) expect(fs.liveInodes()).toBe(1);
        await code(lookupIfExists(fs, root, ROOT_INO, 'x'.repeat(256)), 'ENAMETOOLONG');
        const g = await s.file(ROOT_INO, 'g', 'x');
        await code(lookupIfExists(fs, root, g.ino, 'x'), 'ENOTDIR');
      });

      it('refuses invalid names in every name-taking op with the kernel errno', async () => {
        const f = await s.file(ROOT_INO, 'f', 'x');
        for (const [bad, errno] of INVALID_NAMES) {
          await code(fs.lookup(root, ROOT_INO, bad), errno);
          await code(fs.mkdir(root, ROOT_INO, bad, 0o755), errno);
          await code(fs.create(root, ROOT_INO, bad, 0o644, OpenFlags.O_CREAT | OpenFlags.O_RDWR), errno);
          await code(fs.symlink(root, ROOT_INO, bad, 't'), errno);
          await code(fs.mknod(root, ROOT_INO, bad, S_IFIFO | 0o644, 0), errno);
          await code(fs.link(root, f.ino, ROOT_INO, bad), errno);
          if (bad !== '.' && bad !== '..') {
            await code(fs.unlink(root, ROOT_INO, bad), errno);
            await code(fs.rmdir(root, ROOT_INO, bad), errno);
            await code(fs.rename(root, ROOT_INO, 'f', ROOT_INO, bad, 0), errno);
          }
        }
        await code(fs.rmdir(root, ROOT_INO, '.'), 'EINVAL');
        await code(fs.rmdir(root, ROOT_INO, '..'), 'ENOTEMPTY');
        await code(fs.rename(root, ROOT_INO, 'f', ROOT_INO, '..', 0), 'EBUSY');
      });

      it('stores hostile names faithfully (unicode, 255 bytes, spaces, leading dots and dashes)', async () => {
        const names = ['é'.repeat(127) + 'x', 'x'.repeat(255), '😀'.repeat(63) + 'abc', ' ', 'a b', '...', '-rf', 'e\u0301', '\n', '名前'];
        for (const n of names) await s.file(ROOT_INO, n, n);
        expect(await s.names(ROOT_INO)).toEqual([...names].sort());
        for (const n of names) expect(await s.read((await s.lookup(ROOT_INO, n)).ino)).toBe(n);
      });

      it('lookup returns one stable ino per object; getattr and readdir agree', async () => {
        const f = await s.file(ROOT_INO, 'f', 'abc');
        const again = await s.lookup(ROOT_INO, 'f');
        expect(again.ino).toBe(f.ino);
        expect((await fs.getattr(root, f.ino)).ino).toBe(f.ino);
        const listed = await s.list(ROOT_INO, true);
        expect(listed.map((e) => [e.name, e.ino, e.type])).toEqual([['f', f.ino, 'file']]);
        expect(listed[0]!.attr?.size).toBe(3);
        await fs.rename(root, ROOT_INO, 'f', ROOT_INO, 'g', 0);
        expect((await s.lookup(ROOT_INO, 'g')).ino).toBe(f.ino);
      });

      it('create: umask, O_EXCL, opening an existing file, EISDIR over a directory', async () => {
        const ctx = { ...root, umask: 0o027 };
        const { entry } = await s.create(ROOT_INO, 'f', 0o666, OpenFlags.O_RDWR | OpenFlags.O_CREAT, ctx);
        expect(entry.attr.mode).toBe(S_IFREG | 0o640);
        expect(entry.attr.nlink).toBe(1);
        expect(entry.attr.size).toBe(0);
        await code(fs.create(root, ROOT_INO, 'f', 0o644, OpenFlags.O_RDWR | OpenFlags.O_CREAT | OpenFlags.O_EXCL), 'EEXIST');
        const again = await s.create(ROOT_INO, 'f', 0o600, OpenFlags.O_RDWR | OpenFlags.O_CREAT);
        expect(again.entry.ino).toBe(entry.ino);
        expect(again.entry.attr.mode).toBe(S_IFREG | 0o640);
        await s.mkdir(ROOT_INO, 'd');
        await code(fs.create(root, ROOT_INO, 'd', 0o644, OpenFlags.O_RDWR | OpenFlags.O_CREAT), 'EISDIR');
      });

      it('read and write: short reads at EOF, sparse zero fill past EOF, O_APPEND, O_TRUNC', async () => {
        const { fh, entry } = await s.create(ROOT_INO, 'f');
        const ino = entry.ino;
        expect(await fs.write(root, ino, fh, bytes('hello'), 0)).toBe(5);
        expect(dec.decode(await fs.read(root, ino, fh, 100, 0))).toBe('hello');
        expect(dec.decode(await fs.read(root, ino, fh, 3, 3))).toBe('lo');
        expect((await fs.read(root, ino, fh, 10, 5)).length).toBe(0);
        expect((await fs.read(root, ino, fh, 10, 50)).length).toBe(0);
        await fs.write(root, ino, fh, bytes('!'), 8);
        expect([...(await fs.read(root, ino, fh, 100, 0))]).toEqual([...bytes('hello'), 0, 0, 0, 33]);
        expect((await fs.getattr(root, ino)).size).toBe(9);
        await s.release(ino, fh);
        const afh = await s.open(ino, OpenFlags.O_WRONLY | OpenFlags.O_APPEND);
        await fs.write(root, ino, afh, bytes('AB'), 0);
        await s.release(ino, afh);
        expect((await s.read(ino)).endsWith('!AB')).toBe(true);
        const tfh = await s.open(ino, OpenFlags.O_WRONLY | OpenFlags.O_TRUNC);
        expect((await fs.getattr(root, ino)).size).toBe(0);
        await fs.write(root, ino, tfh, bytes('new'), 0);
        await s.release(ino, tfh);
        expect(await s.read(ino)).toBe('new');
      });

      it('read into a caller buffer (into): the same bytes, a result of the asked length, into unchanged past it', async () => {
        const { fh, entry } = await s.create(ROOT_INO, 'f');
        await fs.write(root, entry.ino, fh, bytes('hello world'), 0);
        const into = new Uint8Array(64).fill(7);
        const a = await fs.read(root, entry.ino, fh, 5, 6, into);
        expect(dec.decode(a)).toBe('world');
        const b = await fs.read(root, entry.ino, fh, 3, 0, into);
        expect(dec.decode(b)).toBe('hel');
        // At EOF: shorter; past it: empty. A filesystem that used `into` wrote nothing past
        // what it returned.
        expect(dec.decode(await fs.read(root, entry.ino, fh, 20, 8, into))).toBe('rld');
        expect((await fs.read(root, entry.ino, fh, 20, 11, into)).length).toBe(0);
        expect([...into.subarray(11)]).toEqual(Array(53).fill(7));
        await s.release(entry.ino, fh);
      });

      it('handles enforce their access mode (EBADF) and directories refuse writes (EISDIR)', async () => {
        const f = await s.file(ROOT_INO, 'f', 'data');
        const r = await s.open(f.ino, OpenFlags.O_RDONLY);
        await code(fs.write(root, f.ino, r, bytes('x'), 0), 'EBADF');
        const w = await s.open(f.ino, OpenFlags.O_WRONLY);
        await code(fs.read(root, f.ino, w, 10, 0), 'EBADF');
        const d = await s.mkdir(ROOT_INO, 'd');
        await code(fs.open(root, d.ino, OpenFlags.O_WRONLY), 'EISDIR');
        await code(fs.opendir(root, f.ino), 'ENOTDIR');
      });

      it('setattr size truncates and extends with zeros; EISDIR on a directory', async () => {
        const f = await s.file(ROOT_INO, 'f', 'abcdef');
        expect((await fs.setattr(root, f.ino, { size: 3 })).size).toBe(3);
        expect(await s.read(f.ino)).toBe('abc');
        await fs.setattr(root, f.ino, { size: 5 });
        expect(await s.read(f.ino)).toBe('abc\0\0');
        const d = await s.mkdir(ROOT_INO, 'd');
        await code(fs.setattr(root, d.ino, { size: 0 }), 'EISDIR');
      });

      it('mkdir/rmdir: umask, nlink 2 + subdirectories, EEXIST, ENOTEMPTY, ENOTDIR, EISDIR', async () => {
        const d = await s.mkdir(ROOT_INO, 'd', 0o777);
        expect(d.attr.mode).toBe(S_IFDIR | 0o755);
        expect(d.attr.nlink).toBe(2);
        const rootLinks = (await fs.getattr(root, ROOT_INO)).nlink;
        await s.mkdir(d.ino, 'a');
        await s.mkdir(d.ino, 'b');
        await s.file(d.ino, 'f');
        expect((await fs.getattr(root, d.ino)).nlink).toBe(4);
        await code(fs.mkdir(root, ROOT_INO, 'd', 0o755), 'EEXIST');
        await code(fs.rmdir(root, ROOT_INO, 'd'), 'ENOTEMPTY');
        await code(fs.rmdir(root, d.ino, 'f'), 'ENOTDIR');
        await code(fs.unlink(root, d.ino, 'a'), 'EISDIR');
        await code(fs.rmdir(root, d.ino, 'missing'), 'ENOENT');
        await code(fs.unlink(root, d.ino, 'missing'), 'ENOENT');
        await fs.rmdir(root, d.ino, 'a');
        expect((await fs.getattr(root, d.ino)).nlink).toBe(3);
        expect(await s.names(d.ino)).toEqual(['b', 'f']);
        expect((await fs.getattr(root, ROOT_INO)).nlink).toBe(rootLinks);
      });

      it('readdir lists each entry once with its type and, with plus, attributes (no lookup taken)', async () => {
        await s.file(ROOT_INO, 'f', 'x');
        await s.mkdir(ROOT_INO, 'd');
        await s.symlink(ROOT_INO, 'l', 'f');
        await s.mknod(ROOT_INO, 'p', S_IFIFO | 0o644);
        await s.close();
        const live = fs.liveInodes?.();
        const entries = await s.list(ROOT_INO, true);
        expect(entries.map((e) => [e.name, e.type]).sort()).toEqual([['d', 'directory'], ['f', 'file'], ['l', 'symlink'], ['p', 'fifo']]);
        for (const e of entries) {
          expect(e.attr?.ino).toBe(e.ino);
          expect(e.whiteout ?? false).toBe(false);
        }
        if (live !== undefined) expect(fs.liveInodes?.()).toBe(live);
        const fh = await s.opendir(ROOT_INO);
        await code(fs.readdir(root, ROOT_INO, fh + 1000, 0, false), 'EBADF');
      });

      it('readdir offsets stay valid while entries are added and removed on one open handle', async () => {
        const names = Array.from({ length: 24 }, (_, i) => `n${String(i).padStart(2, '0')}`);
        for (const n of names) await s.file(ROOT_INO, n);
        await s.close();
        const fh = await s.opendir(ROOT_INO);
        const first = await fs.readdir(root, ROOT_INO, fh, 0, false);
        const head = first.slice(0, 6);
        const seen = head.map((e) => e.name);
        for (const n of names.filter((x) => !seen.includes(x)).slice(0, 5)) await fs.unlink(root, ROOT_INO, n);
        for (const n of ['zz1', 'aa1', 'mm1']) await s.file(ROOT_INO, n);
        await fs.unlink(root, ROOT_INO, seen[0]!);
        const rest: string[] = [];
        for (let off = head[head.length - 1]!.offset; ;) {
          const batch = await fs.readdir(root, ROOT_INO, fh, off, false);
          if (batch.length === 0) break;
          rest.push(...batch.map((e) => e.name));
          off = batch[batch.length - 1]!.offset;
        }
        const all = [...seen, ...rest];
        expect(new Set(all).size).toBe(all.length);
        const removed = new Set(names.filter((x) => !seen.includes(x)).slice(0, 5));
        for (const n of names) if (!removed.has(n)) expect(all).toContain(n);
        await s.releasedir(ROOT_INO, fh);
      });

      it('symlinks: readlink, size, EINVAL on non-links, ENOENT for an empty target', async () => {
        const l = await s.symlink(ROOT_INO, 'l', '../target/é');
        expect(l.attr.mode & S_IFMT).toBe(S_IFLNK);
        expect(l.attr.size).toBe(Buffer.byteLength('../target/é'));
        expect(await fs.readlink(root, l.ino)).toBe('../target/é');
        const f = await s.file(ROOT_INO, 'f');
        await code(fs.readlink(root, f.ino), 'EINVAL');
        await code(fs.symlink(root, ROOT_INO, 'empty', ''), 'ENOENT');
        await code(fs.symlink(root, ROOT_INO, 'l', 'x'), 'EEXIST');
      });

      it('hard links share the inode and count nlink; EPERM on directories, EEXIST on a taken name', async () => {
        const f = await s.file(ROOT_INO, 'f', 'shared');
        const d = await s.mkdir(ROOT_INO, 'd');
        const l = await s.link(f.ino, d.ino, 'g');
        expect(l.ino).toBe(f.ino);
        expect(l.attr.nlink).toBe(2);
        expect(await s.read((await s.lookup(d.ino, 'g')).ino)).toBe('shared');
        await code(fs.link(root, d.ino, ROOT_INO, 'dl'), 'EPERM');
        await code(fs.link(root, f.ino, ROOT_INO, 'd'), 'EEXIST');
        await fs.unlink(root, ROOT_INO, 'f');
        expect((await fs.getattr(root, f.ino)).nlink).toBe(1);
        expect(await s.read(f.ino)).toBe('shared');
      });

      it('an unlinked inode stays usable while looked up and open', async () => {
        const { fh, entry } = await s.create(ROOT_INO, 'f');
        await fs.unlink(root, ROOT_INO, 'f');
        await code(fs.lookup(root, ROOT_INO, 'f'), 'ENOENT');
        expect(await fs.write(root, entry.ino, fh, bytes('still'), 0)).toBe(5);
        expect(dec.decode(await fs.read(root, entry.ino, fh, 10, 0))).toBe('still');
        expect((await fs.getattr(root, entry.ino)).nlink).toBe(0);
        const d = await s.mkdir(ROOT_INO, 'd');
        await fs.rmdir(root, ROOT_INO, 'd');
        expect((await fs.getattr(root, d.ino)).nlink).toBe(0);
        await code(fs.mkdir(root, d.ino, 'x', 0o755), 'ENOENT');
        expect(await s.list(d.ino)).toEqual([]);
      });

      it('mknod: fifos, sockets, regular files; EPERM for a directory mode', async () => {
        const p = await s.mknod(ROOT_INO, 'p', S_IFIFO | 0o640);
        expect(p.attr.mode).toBe(S_IFIFO | 0o640 & ~0o022);
        const r = await s.mknod(ROOT_INO, 'r', S_IFREG | 0o600);
        expect(r.attr.mode & S_IFMT).toBe(S_IFREG);
        await code(fs.mknod(root, ROOT_INO, 'd', S_IFDIR | 0o755, 0), 'EPERM');
        await code(fs.mknod(root, ROOT_INO, 'p', S_IFIFO | 0o644, 0), 'EEXIST');
      });

      it.skipIf(!on('devices'))('mknod: character and block devices keep rdev (supports.devices)', async () => {
        const c = await s.mknod(ROOT_INO, 'null', S_IFCHR | 0o666, makedev(1, 3));
        expect(c.attr.mode & S_IFMT).toBe(S_IFCHR);
        expect(c.attr.rdev).toBe(makedev(1, 3));
        const b = await s.mknod(ROOT_INO, 'loop', S_IFBLK | 0o660, makedev(7, 0));
        expect(b.attr.rdev).toBe(makedev(7, 0));
      });

      it('rename: moves and replaces, keeping inos; directories update both parents\' nlink', async () => {
        const a = await s.mkdir(ROOT_INO, 'a');
        const b = await s.mkdir(ROOT_INO, 'b');
        const f = await s.file(a.ino, 'f', 'one');
        const g = await s.file(b.ino, 'g', 'two');
        await fs.rename(root, a.ino, 'f', b.ino, 'g', 0);
        expect(await s.names(a.ino)).toEqual([]);
        expect((await s.lookup(b.ino, 'g')).ino).toBe(f.ino);
        expect((await fs.getattr(root, g.ino)).nlink).toBe(0);
        const sub = await s.mkdir(a.ino, 'sub');
        await fs.rename(root, a.ino, 'sub', b.ino, 'moved', 0);
        expect((await fs.getattr(root, a.ino)).nlink).toBe(2);
        expect((await fs.getattr(root, b.ino)).nlink).toBe(3);
        expect((await s.lookup(b.ino, 'moved')).ino).toBe(sub.ino);
        await code(fs.rename(root, a.ino, 'missing', b.ino, 'x', 0), 'ENOENT');
        await fs.rename(root, b.ino, 'g', b.ino, 'g', 0);
        expect(await s.read(f.ino)).toBe('one');
      });

      it('rename errnos: EINVAL into own subtree, ENOTEMPTY over ancestor or full dir, EISDIR, ENOTDIR', async () => {
        const a = await s.mkdir(ROOT_INO, 'a');
        const b = await s.mkdir(a.ino, 'b');
        await s.mkdir(b.ino, 'c');
        await s.file(ROOT_INO, 'f');
        const e = await s.mkdir(ROOT_INO, 'e');
        await code(fs.rename(root, ROOT_INO, 'a', b.ino, 'x', 0), 'EINVAL');
        await code(fs.rename(root, ROOT_INO, 'a', a.ino, 'x', 0), 'EINVAL');
        await code(fs.rename(root, a.ino, 'b', ROOT_INO, 'a', 0), 'ENOTEMPTY');
        await code(fs.rename(root, ROOT_INO, 'e', ROOT_INO, 'a', 0), 'ENOTEMPTY');
        await code(fs.rename(root, ROOT_INO, 'f', ROOT_INO, 'e', 0), 'EISDIR');
        await code(fs.rename(root, ROOT_INO, 'e', ROOT_INO, 'f', 0), 'ENOTDIR');
        await code(fs.rename(root, ROOT_INO, 'f', ROOT_INO, 'e', RenameFlags.NOREPLACE | RenameFlags.EXCHANGE), 'EINVAL');
        await code(fs.rename(root, ROOT_INO, 'f', ROOT_INO, 'e', 0x100), 'EINVAL');
        const empty = await s.mkdir(ROOT_INO, 'empty');
        await fs.rename(root, ROOT_INO, 'e', ROOT_INO, 'empty', 0);
        expect((await s.lookup(ROOT_INO, 'empty')).ino).toBe(e.ino);
        expect((await fs.getattr(root, empty.ino)).nlink).toBe(0);
      });

      it('rename flags: NOREPLACE (EEXIST), EXCHANGE (swaps, ENOENT without a target)', async () => {
        const f = await s.file(ROOT_INO, 'f', 'F');
        const d = await s.mkdir(ROOT_INO, 'd');
        const g = await s.file(d.ino, 'g', 'G');
        await code(fs.rename(root, ROOT_INO, 'f', d.ino, 'g', RenameFlags.NOREPLACE), 'EEXIST');
        await fs.rename(root, ROOT_INO, 'f', ROOT_INO, 'h', RenameFlags.NOREPLACE);
        await fs.rename(root, ROOT_INO, 'h', d.ino, 'g', RenameFlags.EXCHANGE);
        expect((await s.lookup(ROOT_INO, 'h')).ino).toBe(g.ino);
        expect((await s.lookup(d.ino, 'g')).ino).toBe(f.ino);
        await code(fs.rename(root, ROOT_INO, 'h', ROOT_INO, 'none', RenameFlags.EXCHANGE), 'ENOENT');
        const sub = await s.mkdir(ROOT_INO, 'sub');
        await fs.rename(root, ROOT_INO, 'sub', d.ino, 'g', RenameFlags.EXCHANGE);
        expect((await s.lookup(d.ino, 'g')).ino).toBe(sub.ino);
        expect((await fs.getattr(root, d.ino)).nlink).toBe(3);
      });

      it('rename between two names of one inode does nothing', async () => {
        const f = await s.file(ROOT_INO, 'f', 'x');
        await s.link(f.ino, ROOT_INO, 'g');
        await fs.rename(root, ROOT_INO, 'f', ROOT_INO, 'g', 0);
        expect(await s.names(ROOT_INO)).toEqual(['f', 'g']);
        expect((await fs.getattr(root, f.ino)).nlink).toBe(2);
      });

      it.skipIf(!on('renameWhiteout'))('rename RENAME_WHITEOUT leaves a whiteout at the source (supports.renameWhiteout)', async () => {
        await s.file(ROOT_INO, 'f', 'x');
        await fs.rename(root, ROOT_INO, 'f', ROOT_INO, 'g', RenameFlags.WHITEOUT);
        expect(await fs.isWhiteout(root, ROOT_INO, 'f')).toBe(true);
        expect((await s.lookup(ROOT_INO, 'f')).whiteout).toBe(true);
        expect(await s.read((await s.lookup(ROOT_INO, 'g')).ino)).toBe('x');
        await code(fs.rename(root, ROOT_INO, 'g', ROOT_INO, 'f', RenameFlags.WHITEOUT | RenameFlags.EXCHANGE), 'EINVAL');
      });

      it('times: nanoseconds kept, UTIME_OMIT leaves, UTIME_NOW sets now; ctime follows changes', async () => {
        const f = await s.file(ROOT_INO, 'f', 'x');
        const t = { sec: 1_600_000_000, nsec: on('nanosecondTimes') ? 123_456_789 : 0 };
        const a = await fs.setattr(root, f.ino, { atime: t, mtime: t });
        expect(a.mtime).toEqual(t);
        expect(a.atime).toEqual(t);
        const b = await fs.setattr(root, f.ino, { atime: { sec: 0, nsec: UTIME_NOW }, mtime: { sec: 0, nsec: UTIME_OMIT } });
        expect(b.mtime).toEqual(t);
        expect(b.atime.sec).toBeGreaterThan(t.sec);
        const before = Date.now() / 1000 - 5;
        const fh = await s.open(f.ino, OpenFlags.O_WRONLY);
        await fs.write(root, f.ino, fh, bytes('y'), 0);
        await s.release(f.ino, fh);
        const c = await fs.getattr(root, f.ino);
        expect(c.mtime.sec).toBeGreaterThan(before);
        expect(c.ctime.sec).toBeGreaterThan(before);
        await fs.setattr(root, ROOT_INO, { mtime: t });
        await s.file(ROOT_INO, 'g');
        expect((await fs.getattr(root, ROOT_INO)).mtime.sec).toBeGreaterThan(before);
      });

      it('chmod keeps the type bits; chown by root; mode change of a symlink is refused', async () => {
        const f = await s.file(ROOT_INO, 'f');
        expect((await fs.setattr(root, f.ino, { mode: 0o4711 })).mode).toBe(S_IFREG | 0o4711);
        const a = await fs.setattr(root, f.ino, { uid: 1234, gid: 5678 });
        expect([a.uid, a.gid]).toEqual([1234, 5678]);
        expect(a.mode & S_ISUID).toBe(0);
        const l = await s.symlink(ROOT_INO, 'l', 'f');
        await code(fs.setattr(root, l.ino, { mode: 0o700 }), 'EOPNOTSUPP');
      });

      it('statfs reports a 255-byte name limit and sane sizes', async () => {
        const st = await fs.statfs(root, ROOT_INO);
        expect(st.namemax).toBe(255);
        expect(st.bsize).toBeGreaterThan(0);
        expect(st.blocks).toBeGreaterThanOrEqual(st.bfree);
      });

      it('access: F_OK, R/W/X for root (X needs an x bit on files)', async () => {
        const f = await s.file(ROOT_INO, 'f', '', 0o644);
        await fs.access(root, f.ino, AccessMode.F_OK);
        await fs.access(root, f.ino, AccessMode.R_OK | AccessMode.W_OK);
        await code(fs.access(root, f.ino, AccessMode.X_OK), 'EACCES');
        await fs.setattr(root, f.ino, { mode: 0o744 });
        await fs.access(root, f.ino, AccessMode.X_OK);
      });

      it.skipIf(!on('xattrs'))('xattrs: set/get/list/remove, CREATE/REPLACE, ENODATA, namespaces (supports.xattrs)', async () => {
        const f = await s.file(ROOT_INO, 'f');
        const value = new Uint8Array([0, 1, 2, 255]);
        await fs.setxattr(root, f.ino, 'user.a', value, 0);
        await fs.setxattr(root, f.ino, 'user.empty', new Uint8Array(0), 0);
        expect([...(await fs.getxattr(root, f.ino, 'user.a'))]).toEqual([0, 1, 2, 255]);
        expect((await fs.getxattr(root, f.ino, 'user.empty')).length).toBe(0);
        expect((await fs.listxattr(root, f.ino)).filter((n) => n.startsWith('user.')).sort()).toEqual(['user.a', 'user.empty']);
        await code(fs.setxattr(root, f.ino, 'user.a', value, XattrFlags.CREATE), 'EEXIST');
        await code(fs.setxattr(root, f.ino, 'user.b', value, XattrFlags.REPLACE), 'ENODATA');
        await fs.setxattr(root, f.ino, 'user.a', bytes('v2'), XattrFlags.REPLACE);
        expect(dec.decode(await fs.getxattr(root, f.ino, 'user.a'))).toBe('v2');
        await code(fs.getxattr(root, f.ino, 'user.missing'), 'ENODATA');
        await code(fs.removexattr(root, f.ino, 'user.missing'), 'ENODATA');
        await fs.removexattr(root, f.ino, 'user.a');
        await code(fs.getxattr(root, f.ino, 'user.a'), 'ENODATA');
        await code(fs.setxattr(root, f.ino, 'nonsense.a', value, 0), 'EOPNOTSUPP');
        const l = await s.symlink(ROOT_INO, 'l', 'f');
        await code(fs.setxattr(root, l.ino, 'user.a', value, 0), 'EPERM');
        const d = await s.mkdir(ROOT_INO, 'd');
        await fs.setxattr(root, d.ino, 'user.dir', bytes('ok'), 0);
        expect(dec.decode(await fs.getxattr(root, d.ino, 'user.dir'))).toBe('ok');
      });

      it.skipIf(!on('trustedXattrs'))('xattrs: trusted.* for root (supports.trustedXattrs)', async () => {
        const f = await s.file(ROOT_INO, 'f');
        await fs.setxattr(root, f.ino, 'trusted.t', bytes('y'), 0);
        expect(dec.decode(await fs.getxattr(root, f.ino, 'trusted.t'))).toBe('y');
        expect(await fs.listxattr(root, f.ino)).toContain('trusted.t');
      });

      it.skipIf(!on('fallocate'))('fallocate: extends, KEEP_SIZE keeps the size, PUNCH_HOLE zeros (supports.fallocate)', async () => {
        const { fh, entry } = await s.create(ROOT_INO, 'f');
        await fs.write(root, entry.ino, fh, bytes('abcdef'), 0);
        await fs.fallocate(root, entry.ino, fh, 0, 0, 10);
        expect((await fs.getattr(root, entry.ino)).size).toBe(10);
        await fs.fallocate(root, entry.ino, fh, FallocateMode.KEEP_SIZE, 0, 100);
        expect((await fs.getattr(root, entry.ino)).size).toBe(10);
        await fs.fallocate(root, entry.ino, fh, FallocateMode.PUNCH_HOLE | FallocateMode.KEEP_SIZE, 1, 2);
        expect([...(await fs.read(root, entry.ino, fh, 6, 0))]).toEqual([97, 0, 0, 100, 101, 102]);
        await code(fs.fallocate(root, entry.ino, fh, 0, 0, 0), 'EINVAL');
        await code(fs.fallocate(root, entry.ino, fh, FallocateMode.PUNCH_HOLE, 0, 1), 'EOPNOTSUPP');
      });

      it.skipIf(!on('lseek'))('lseek: SEEK_DATA/SEEK_HOLE within the file, ENXIO at the end (supports.lseek)', async () => {
        const { fh, entry } = await s.create(ROOT_INO, 'f');
        await fs.write(root, entry.ino, fh, bytes('0123456789'), 0);
        expect(await fs.lseek(root, entry.ino, fh, 3, Whence.SEEK_DATA)).toBe(3);
        const hole = await fs.lseek(root, entry.ino, fh, 0, Whence.SEEK_HOLE);
        expect(hole).toBeGreaterThan(0);
        expect(hole).toBeLessThanOrEqual(10);
        await code(fs.lseek(root, entry.ino, fh, 10, Whence.SEEK_DATA), 'ENXIO');
        await code(fs.lseek(root, entry.ino, fh, 11, Whence.SEEK_HOLE), 'ENXIO');
      });

      it.skipIf(!on('copyFileRange'))('copyFileRange copies bytes between open files (supports.copyFileRange)', async () => {
        const a = await s.create(ROOT_INO, 'a');
        await fs.write(root, a.entry.ino, a.fh, bytes('0123456789'), 0);
        const b = await s.create(ROOT_INO, 'b');
        expect(await fs.copyFileRange(root, a.entry.ino, a.fh, 2, b.entry.ino, b.fh, 0, 5, 0)).toBe(5);
        expect(dec.decode(await fs.read(root, b.entry.ino, b.fh, 100, 0))).toBe('23456');
        expect(await fs.copyFileRange(root, a.entry.ino, a.fh, 10, b.entry.ino, b.fh, 0, 5, 0)).toBe(0);
        await code(fs.copyFileRange(root, a.entry.ino, a.fh, 0, b.entry.ino, b.fh, 0, 5, 1), 'EINVAL');
      });

      it('lookup counts: repeated lookups and over-forgetting are balanced, never thrown', async () => {
        const f = await s.file(ROOT_INO, 'f');
        await s.close();
        for (let i = 0; i < 3; i++) await fs.lookup(root, ROOT_INO, 'f');
        if (fs.liveInodes) expect(fs.liveInodes()).toBe(2);
        await fs.forget(root, f.ino, 3);
        if (fs.liveInodes) expect(fs.liveInodes()).toBe(1);
        await fs.forget(root, f.ino, 2);
        await fs.forget(root, ROOT_INO, 5);
        expect((await fs.getattr(root, ROOT_INO)).ino).toBe(ROOT_INO);
        const again = await s.lookup(ROOT_INO, 'f');
        expect(again.attr.nlink).toBe(1);
      });

      it.skipIf(!on('workDir'))('the work directory is outside the tree; renames from it into the tree work (supports.workDir)', async () => {
        const work = fs.workIno;
        expect(work).toBeDefined();
        expect((await fs.getattr(root, work!)).mode & S_IFMT).toBe(S_IFDIR);
        const { fh, entry } = await s.create(work!, 'stage', 0o600);
        await fs.write(root, entry.ino, fh, bytes('staged'), 0);
        await s.release(entry.ino, fh);
        expect((await s.list(ROOT_INO)).map((e) => e.ino)).not.toContain(work);
        await fs.rename(root, work!, 'stage', ROOT_INO, 'final', 0);
        const final = await s.lookup(ROOT_INO, 'final');
        expect(final.ino).toBe(entry.ino);
        expect(await s.read(final.ino)).toBe('staged');
        expect(await s.names(work!)).toEqual([]);
      });

      describe.skipIf(!on('readOnly'))('read-only layer (supports.readOnly: makeReadOnly)', () => {
        it('refuses every change with EROFS and still reads', async () => {
          const d = await s.mkdir(ROOT_INO, 'd');
          const f = await s.file(d.ino, 'f', 'data');
          await s.close();
          expect(f.attr.size).toBe(0);
          const ro = await options.makeReadOnly!(fs);
          const r = new Session(ro);
          try {
            expect(ro.writable).toBe(false);
            const rd = await r.lookup(ROOT_INO, 'd');
            const rf = await r.lookup(rd.ino, 'f');
            expect(await r.read(rf.ino)).toBe('data');
            await code(ro.mkdir(root, rd.ino, 'x', 0o755), 'EROFS');
            await code(ro.create(root, rd.ino, 'x', 0o644, OpenFlags.O_CREAT | OpenFlags.O_WRONLY), 'EROFS');
            await code(ro.symlink(root, rd.ino, 'x', 't'), 'EROFS');
            await code(ro.mknod(root, rd.ino, 'x', S_IFIFO | 0o644, 0), 'EROFS');
            await code(ro.link(root, rf.ino, rd.ino, 'x'), 'EROFS');
            await code(ro.unlink(root, rd.ino, 'f'), 'EROFS');
            await code(ro.rmdir(root, ROOT_INO, 'd'), 'EROFS');
            await code(ro.rename(root, rd.ino, 'f', rd.ino, 'g', 0), 'EROFS');
            await code(ro.setattr(root, rf.ino, { mode: 0o600 }), 'EROFS');
            await code(ro.setattr(root, rf.ino, { size: 0 }), 'EROFS');
            await code(ro.open(root, rf.ino, OpenFlags.O_WRONLY), 'EROFS');
            await code(ro.open(root, rf.ino, OpenFlags.O_RDONLY | OpenFlags.O_TRUNC), 'EROFS');
            await code(ro.setxattr(root, rf.ino, 'user.x', bytes('1'), 0), 'EROFS');
            await code(ro.createWhiteout(root, rd.ino, 'w'), 'EROFS');
            await code(ro.setOpaque(root, rd.ino, true), 'EROFS');
            await code(ro.access(root, rf.ino, AccessMode.W_OK), 'EROFS');
          } finally {
            await r.close();
            const live = ro.liveInodes?.();
            await ro.destroy();
            if (live !== undefined) expect(live).toBe(1);
          }
        });
      });

      describe.skipIf(!on('permissions'))(`permissions for a non-root caller (supports.permissions)`, () => {
        it('creating needs write+search on the directory; EEXIST wins over EACCES; umask applies', async () => {
          const h = await home(0o755);
          await s.mkdir(h.ino, 'exists');
          const ro = await s.mkdir(ROOT_INO, 'rootdir');
          await code(fs.mkdir(user, ro.ino, 'x', 0o755), 'EACCES');
          await code(fs.create(user, ro.ino, 'x', 0o644, OpenFlags.O_CREAT | OpenFlags.O_WRONLY), 'EACCES');
          await s.mkdir(ro.ino, 'taken');
          await code(fs.mkdir(user, ro.ino, 'taken', 0o755), 'EEXIST');
          const mine = await s.mkdir(h.ino, 'mine', 0o777, user);
          expect([mine.attr.uid, mine.attr.gid, mine.attr.mode & 0o7777]).toEqual([user.uid, user.gid, 0o755]);
          const f = await s.file(mine.ino, 'f', 'x', 0o666, user);
          expect([f.attr.uid, f.attr.mode & 0o7777]).toEqual([user.uid, 0o644]);
        });

        it('removing needs write on the directory; ENOENT first; sticky directories (EPERM)', async () => {
          const ro = await s.mkdir(ROOT_INO, 'rootdir');
          await s.file(ro.ino, 'f');
          await code(fs.unlink(user, ro.ino, 'missing'), 'ENOENT');
          await code(fs.unlink(user, ro.ino, 'f'), 'EACCES');
          const tmp = await s.mkdir(ROOT_INO, 'tmp', 0o777);
          await fs.setattr(root, tmp.ino, { mode: 0o1777 });
          await s.file(tmp.ino, 'roots');
          await code(fs.unlink(user, tmp.ino, 'roots'), 'EPERM');
          await code(fs.rename(user, tmp.ino, 'roots', tmp.ino, 'x', 0), 'EPERM');
          await s.file(tmp.ino, 'mine', '', 0o644, user);
          await fs.unlink(user, tmp.ino, 'mine');
          expect((await fs.getattr(root, tmp.ino)).mode & S_ISVTX).toBe(S_ISVTX);
        });

        it('lookup needs search (EACCES), opendir needs read, open needs the access mode', async () => {
          const h = await home();
          const ns = await s.mkdir(h.ino, 'nosearch', 0o755, user);
          await s.file(ns.ino, 'x', 'x', 0o644, user);
          await fs.setattr(user, ns.ino, { mode: 0o600 });
          await code(fs.lookup(user, ns.ino, 'x'), 'EACCES');
          await fs.setattr(user, ns.ino, { mode: 0o311 });
          await code(fs.opendir(user, ns.ino), 'EACCES');
          const x = await s.lookup(ns.ino, 'x', user);
          await fs.setattr(user, x.ino, { mode: 0o200 });
          await code(fs.open(user, x.ino, OpenFlags.O_RDONLY), 'EACCES');
          await s.open(x.ino, OpenFlags.O_WRONLY, user);
          await fs.setattr(user, x.ino, { mode: 0o400 });
          await code(fs.open(user, x.ino, OpenFlags.O_RDONLY | OpenFlags.O_TRUNC), 'EACCES');
          await code(fs.access(user, x.ino, AccessMode.W_OK), 'EACCES');
          await fs.access(user, x.ino, AccessMode.R_OK);
          const rootFh = await s.open(x.ino, OpenFlags.O_RDWR);
          expect(rootFh).toBeGreaterThanOrEqual(0);
        });

        it('chmod/chown/utimes ownership rules (EPERM / EACCES) and setgid handling', async () => {
          const rootFile = await s.file(ROOT_INO, 'rootfile', '', 0o666);
          await fs.setattr(root, rootFile.ino, { mode: 0o666 });
          await code(fs.setattr(user, rootFile.ino, { mode: 0o777 }), 'EPERM');
          await code(fs.setattr(user, rootFile.ino, { uid: user.uid }), 'EPERM');
          await code(fs.setattr(user, rootFile.ino, { mtime: { sec: 1, nsec: 0 } }), 'EPERM');
          await fs.setattr(user, rootFile.ino, { atime: { sec: 0, nsec: UTIME_NOW }, mtime: { sec: 0, nsec: UTIME_NOW } });
          const r644 = await s.file(ROOT_INO, 'r644', '', 0o644);
          await code(fs.setattr(user, r644.ino, { atime: { sec: 0, nsec: UTIME_NOW }, mtime: { sec: 0, nsec: UTIME_NOW } }), 'EACCES');
          const h = await home();
          const own = await s.file(h.ino, 'own', '', 0o644, user);
          await code(fs.setattr(user, own.ino, { gid: 0 }), 'EPERM');
          await fs.setattr(user, own.ino, { uid: user.uid, gid: user.gid });
          const a = await fs.setattr(user, own.ino, { mode: 0o2755 });
          expect(a.mode & 0o7777).toBe(0o2755);
          await fs.setattr(root, own.ino, { gid: 4242 });
          const b = await fs.setattr(user, own.ino, { mode: 0o2755 });
          expect(b.mode & S_ISGID).toBe(0);
        });

        it('moving a directory to another parent needs write permission on it (EACCES); renaming in place does not', async () => {
          const h = await home();
          const a = await s.mkdir(h.ino, 'a', 0o755, user);
          const b = await s.mkdir(h.ino, 'b', 0o755, user);
          await s.mkdir(a.ino, 'd', 0o755);
          await code(fs.rename(user, a.ino, 'd', b.ino, 'd', 0), 'EACCES');
          await fs.rename(user, a.ino, 'd', a.ino, 'd2', 0);
          expect(await s.names(a.ino)).toEqual(['d2']);
        });

        it('a write or truncate by a non-root caller clears set-user-id (root\'s does not)', async () => {
          const h = await home();
          const f = await s.file(h.ino, 'f', 'x', 0o644, user);
          await fs.setattr(user, f.ino, { mode: 0o4755 });
          const fh = await s.open(f.ino, OpenFlags.O_WRONLY, user);
          await fs.write(user, f.ino, fh, bytes('y'), 1);
          expect((await fs.getattr(root, f.ino)).mode & 0o7777).toBe(0o755);
          await fs.setattr(user, f.ino, { mode: 0o4755 });
          await fs.setattr(user, f.ino, { size: 1 });
          expect((await fs.getattr(root, f.ino)).mode & 0o7777).toBe(0o755);
          await fs.setattr(root, f.ino, { mode: 0o4755 });
          await fs.write(root, f.ino, fh, bytes('z'), 0);
          expect((await fs.getattr(root, f.ino)).mode & 0o7777).toBe(0o4755);
        });

        it('setgid directories pass their group (and setgid to subdirectories)', async () => {
          const d = await s.mkdir(ROOT_INO, 'sg', 0o777);
          await fs.setattr(root, d.ino, { gid: 4321, mode: 0o2777 });
          const sub = await s.mkdir(d.ino, 'sub', 0o755, user);
          expect(sub.attr.gid).toBe(4321);
          expect(sub.attr.mode & S_ISGID).toBe(S_ISGID);
          const f = await s.file(d.ino, 'f', '', 0o644, user);
          expect(f.attr.gid).toBe(4321);
        });

        it('protected hard links: linking a file one does not own needs read+write (EPERM)', async () => {
          const h = await home();
          const r644 = await s.file(ROOT_INO, 'r644', '', 0o644);
          const r666 = await s.file(ROOT_INO, 'r666', '', 0o666);
          await fs.setattr(root, r666.ino, { mode: 0o666 });
          await code(fs.link(user, r644.ino, h.ino, 'l1'), 'EPERM');
          await s.link(r666.ino, h.ino, 'l2', user);
        });

        it.skipIf(!on('xattrs'))('xattr permissions: user.* needs write; trusted.* is root-only', async () => {
          const f = await s.file(ROOT_INO, 'f', '', 0o644);
          await code(fs.setxattr(user, f.ino, 'user.x', bytes('1'), 0), 'EACCES');
          await code(fs.setxattr(user, f.ino, 'trusted.x', bytes('1'), 0), 'EPERM');
          if (on('trustedXattrs')) {
            await fs.setxattr(root, f.ino, 'trusted.x', bytes('1'), 0);
            await code(fs.getxattr(user, f.ino, 'trusted.x'), 'ENODATA');
            expect(await fs.listxattr(user, f.ino)).not.toContain('trusted.x');
          }
        });
      });
    });

    for (const format of formats) {
      describe(`whiteouts and opaque directories (${format})`, () => {
        setup({ whiteoutFormat: format });

        it('createWhiteout/isWhiteout/deleteWhiteout; lookup and readdir report it under the hidden name', async () => {
          expect(fs.whiteoutFormat).toBe(format);
          const d = await s.mkdir(ROOT_INO, 'd');
          await fs.createWhiteout(root, d.ino, 'gone');
          await s.file(d.ino, 'kept');
          expect(await fs.isWhiteout(root, d.ino, 'gone')).toBe(true);
          expect(await fs.isWhiteout(root, d.ino, 'kept')).toBe(false);
          expect(await fs.isWhiteout(root, d.ino, 'missing')).toBe(false);
          expect((await s.lookup(d.ino, 'gone')).whiteout).toBe(true);
          expect((await s.lookup(d.ino, 'kept')).whiteout ?? false).toBe(false);
          const listed = await s.list(d.ino, true);
          expect(listed.map((e) => [e.name, e.whiteout ?? false]).sort()).toEqual([['gone', true], ['kept', false]]);
          for (const e of listed) expect(e.name.startsWith('.wh.')).toBe(false);
          await code(fs.lookup(root, d.ino, '.wh.gone'), 'ENOENT');
          await code(fs.createWhiteout(root, d.ino, 'gone'), 'EEXIST');
          await code(fs.createWhiteout(root, d.ino, 'kept'), 'EEXIST');
          await code(fs.deleteWhiteout(root, d.ino, 'kept'), 'ENOENT');
          await code(fs.deleteWhiteout(root, d.ino, 'missing'), 'ENOENT');
          await fs.deleteWhiteout(root, d.ino, 'gone');
          expect(await fs.isWhiteout(root, d.ino, 'gone')).toBe(false);
          await code(fs.lookup(root, d.ino, 'gone'), 'ENOENT');
          expect(await s.names(d.ino)).toEqual(['kept']);
        });

        it.skipIf(format !== 'chardev')('a whiteout keeps its name from being created anew until deleted (chardev only: an OCI marker is another name)', async () => {
          await fs.createWhiteout(root, ROOT_INO, 'x');
          await code(fs.mkdir(root, ROOT_INO, 'x', 0o755), 'EEXIST');
          await fs.deleteWhiteout(root, ROOT_INO, 'x');
          await s.mkdir(ROOT_INO, 'x');
        });

        it('setOpaque/isOpaque; the marker never shows as an entry', async () => {
          const d = await s.mkdir(ROOT_INO, 'd');
          expect(await fs.isOpaque(root, d.ino)).toBe(false);
          await fs.setOpaque(root, d.ino, true);
          expect(await fs.isOpaque(root, d.ino)).toBe(true);
          expect(await s.names(d.ino)).toEqual([]);
          if (format === 'oci') await code(fs.lookup(root, d.ino, OCI_OPAQUE_MARKER), 'ENOENT');
          await fs.setOpaque(root, d.ino, false);
          expect(await fs.isOpaque(root, d.ino)).toBe(false);
          const f = await s.file(ROOT_INO, 'f');
          expect(await fs.isOpaque(root, f.ino)).toBe(false);
        });

        it.skipIf(!on('foreignOpaqueMarkers') || !on('xattrs'))('isOpaque reads markers other tools write (supports.foreignOpaqueMarkers)', async () => {
          const a = await s.mkdir(ROOT_INO, 'a');
          await fs.setxattr(root, a.ino, OPAQUE_XATTR_FUSE_OVERLAYFS, bytes('y'), 0);
          expect(await fs.isOpaque(root, a.ino)).toBe(true);
          if (on('trustedXattrs')) {
            const b = await s.mkdir(ROOT_INO, 'b');
            await fs.setxattr(root, b.ino, OPAQUE_XATTR, bytes('y'), 0);
            expect(await fs.isOpaque(root, b.ino)).toBe(true);
          }
          if (format === 'chardev') {
            const c = await s.mkdir(ROOT_INO, 'c');
            await s.file(c.ino, OCI_OPAQUE_MARKER);
            expect(await fs.isOpaque(root, c.ino)).toBe(true);
          }
        });

        it.skipIf(!on('workDir'))('a whiteout staged in the work directory can be renamed over a name (supports.workDir)', async () => {
          const work = fs.workIno!;
          await s.file(ROOT_INO, 'victim', 'x');
          await fs.createWhiteout(root, work, 'wh');
          await fs.rename(root, work, 'wh', ROOT_INO, 'victim', 0);
          expect(await fs.isWhiteout(root, ROOT_INO, 'victim')).toBe(true);
          expect(await s.names(work)).toEqual([]);
        });
      });
    }

    if (formats.includes('chardev') && on('userxattr')) {
      describe('userxattr mode (chardev, supports.userxattr)', () => {
        setup({ whiteoutFormat: 'chardev', userxattr: true });
        it('setOpaque writes user.overlay.opaque', async () => {
          const d = await s.mkdir(ROOT_INO, 'd');
          await fs.setOpaque(root, d.ino, true);
          expect(await fs.isOpaque(root, d.ino)).toBe(true);
          if (on('xattrs')) expect(dec.decode(await fs.getxattr(root, d.ino, 'user.overlay.opaque'))).toBe('y');
        });
      });
    }
  });
}
