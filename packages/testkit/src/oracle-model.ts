/**
 * A reference model of Linux kernel overlayfs, in memory, for the oracle's operations: an
 * upper and lower layer trees as plain mutable objects, and every operation implemented
 * the way the kernel does it (VFS checks in the kernel's order, lookup through whiteouts
 * and opaque dirs, copy-up of parents then the object, whiteouts on unlink/rmdir/rename,
 * opaque dirs on mkdir over a whiteout and on moving an upper dir into a merged dir,
 * EXDEV for renaming a merged or lower dir, hard links of a lower broken on copy-up).
 *
 * It is itself checked against the kernel by the oracle (it is a target like any other),
 * and it is the reference where no kernel overlay can be mounted: `modelTarget` makes it
 * a `node:fs/promises`-shaped target; `dumpModelUpper` dumps its upper layer.
 */
import type { OracleCase, OracleDir } from './oracle-case.js';
import { oracleNodeTime } from './oracle-host.js';
import { showBytes } from './oracle-target.js';
import type { FsPromisesLike, OracleDirent, OracleFileHandle, OracleStats, OracleTarget, TreeDump } from './oracle-target.js';

/** A model file (shared by its hard links within one layer). */
interface MFile { kind: 'f'; data: Buffer; mode: number; mtimeMs: number; nlink: number; xattrs: Map<string, Buffer> }
/** A model directory. */
interface MDir { kind: 'd'; mode: number; mtimeMs: number; opaque: boolean; entries: Map<string, MNode>; xattrs: Map<string, Buffer> }
/** A model symlink. */
interface MLink { kind: 'l'; target: string; mtimeMs: number; nlink: number }
/** A model whiteout. */
interface MWhite { kind: 'w' }
type MNode = MFile | MDir | MLink | MWhite;

/** A merged object: its path, its upper node, and its lower stack (dirs) or top lower (non-dir). */
interface OObj {
  readonly path: readonly string[];
  upper: MFile | MDir | MLink | undefined;
  lowers: Array<MFile | MDir | MLink>;
}

const NOW = Number.MAX_SAFE_INTEGER;
const UMASK = 0o022;

function fail(code: string): never {
  throw Object.assign(new Error(code), { code });
}

function buildLayer(tree: OracleDir, layer: number): MDir {
  const root: MDir = { kind: 'd', mode: 0o755, mtimeMs: 0, opaque: false, entries: new Map(), xattrs: new Map() };
  const hard: Array<[MDir, string, string]> = [];
  const walk = (d: MDir, spec: OracleDir, rel: string): void => {
    for (const name of Object.keys(spec).sort()) {
      const n = spec[name]!;
      const p = rel === '' ? name : `${rel}/${name}`;
      const t = oracleNodeTime(layer, p) * 1000;
      const x = new Map(Object.entries('x' in n && n.x ? n.x : {}).map(([k, v]) => [k, Buffer.from(v)]));
      switch (n.t) {
        case 'f': d.entries.set(name, { kind: 'f', data: Buffer.from(n.data), mode: n.mode, mtimeMs: t, nlink: 1, xattrs: x }); break;
        case 'd': {
          const sub: MDir = { kind: 'd', mode: n.mode, mtimeMs: t, opaque: !!n.opaque, entries: new Map(), xattrs: x };
          d.entries.set(name, sub);
          walk(sub, n.c, p);
          break;
        }
        case 'l': d.entries.set(name, { kind: 'l', target: n.target, mtimeMs: t, nlink: 1 }); break;
        case 'w': d.entries.set(name, { kind: 'w' }); break;
        case 'h': hard.push([d, name, n.to]); break;
      }
    }
  };
  walk(root, tree, '');
  for (const [d, name, to] of hard) {
    let cur: MNode | undefined = root;
    for (const part of to.split('/')) cur = cur?.kind === 'd' ? cur.entries.get(part) : undefined;
    if (cur?.kind === 'f') { cur.nlink++; d.entries.set(name, cur); }
  }
  return root;
}

/** The kernel-overlayfs reference model over one case's layers. */
export class OverlayModel {
  readonly upper: MDir;
  readonly lowers: MDir[];
  readonly #root: OObj;

  /** Build the layers of `c` (times as the on-disk layout gives them). */
  constructor(c: Pick<OracleCase, 'upper' | 'lowers'>) {
    this.upper = buildLayer(c.upper, 0);
    this.lowers = c.lowers.map((l, i) => buildLayer(l, i + 1));
    this.#root = { path: [], upper: this.upper, lowers: [...this.lowers] };
  }

  // ---- lookup -------------------------------------------------------------------------

  /** The merged child `name` of merged directory `dir`, or undefined. */
  #child(dir: OObj, name: string): OObj | undefined {
    const ud = dir.upper as MDir | undefined;
    let upper: MFile | MDir | MLink | undefined;
    const lowers: Array<MFile | MDir | MLink> = [];
    let stop = false;
    const u = ud?.entries.get(name);
    if (u) {
      if (u.kind === 'w') return undefined;
      upper = u;
      if (u.kind !== 'd' || u.opaque) stop = true;
    }
    if (!stop) {
      for (const ld of dir.lowers) {
        if (ld.kind !== 'd') break;
        const e = ld.entries.get(name);
        if (!e) continue;
        if (e.kind === 'w') break;
        if (e.kind !== 'd') {
          if (!upper && lowers.length === 0) lowers.push(e);
          break;
        }
        if (upper && upper.kind !== 'd') break;
        lowers.push(e);
        if (e.opaque) break;
      }
    }
    if (!upper && lowers.length === 0) return undefined;
    return { path: [...dir.path, name], upper, lowers };
  }

  /** True when the first lower of `dir`'s stack that has `name` has a non-whiteout (kernel `ovl_lower_positive`). */
  #lowerPositive(dir: OObj, name: string): boolean {
    const ud = dir.upper as MDir | undefined;
    if (ud?.opaque) return false;
    for (const ld of dir.lowers) {
      if (ld.kind !== 'd') break;
      const e = ld.entries.get(name);
      if (e) return e.kind !== 'w';
    }
    return false;
  }

  #top(o: OObj): MFile | MDir | MLink {
    return (o.upper ?? o.lowers[0])!;
  }

  #isDir(o: OObj): boolean {
    return this.#top(o).kind === 'd';
  }

  /**
   * Resolve `path` (relative to the root). `follow` follows a final symlink; with
   * `allowMissing` a missing final name resolves to its parent and the name.
   */
  #resolve(path: string, follow: boolean, allowMissing = false): { parent: OObj; name: string | null; obj: OObj | undefined } {
    return this.#walk(path === '' ? [] : path.split('/'), follow, allowMissing, { n: 0 });
  }

  #parentOf(o: OObj): OObj {
    return o.path.length === 0 ? o : this.#objAt(o.path.slice(0, -1));
  }

  #walk(parts: readonly string[], follow: boolean, allowMissing: boolean, links: { n: number }): { parent: OObj; name: string | null; obj: OObj | undefined } {
    let cur = this.#root;
    for (let i = 0; i < parts.length; i++) {
      const part = parts[i]!;
      const last = i === parts.length - 1;
      if (!this.#isDir(cur)) fail('ENOTDIR');
      if (part === '' || part === '.' || part === '..') {
        if (part === '..') cur = this.#parentOf(cur);
        if (last) return { parent: this.#parentOf(cur), name: null, obj: cur };
        continue;
      }
      const next = this.#child(cur, part);
      if (!next) {
        if (last && allowMissing) return { parent: cur, name: part, obj: undefined };
        fail('ENOENT');
      }
      const top = this.#top(next);
      if (top.kind === 'l' && (!last || follow)) {
        if (++links.n > 40) fail('ELOOP');
        const base = top.target.startsWith('/') ? [] : cur.path;
        const r = this.#walk([...base, ...top.target.split('/')], last ? follow : true, last ? allowMissing : false, links);
        if (last) return r;
        cur = r.obj!;
        continue;
      }
      if (last) return { parent: cur, name: part, obj: next };
      cur = next;
    }
    return { parent: this.#parentOf(cur), name: null, obj: cur };
  }

  #exists(path: string, follow: boolean): OObj {
    const r = this.#resolve(path, follow);
    if (!r.obj) fail('ENOENT');
    return r.obj;
  }

  // ---- copy-up ------------------------------------------------------------------------

  #objAt(path: readonly string[]): OObj {
    let cur = this.#root;
    for (const p of path) {
      const n = this.#child(cur, p);
      if (!n) throw new Error(`model: ${path.join('/')} vanished`);
      cur = n;
    }
    return cur;
  }

  /** Copy `o` (and its parents) up; returns its upper node. */
  #copyUp(o: OObj): MFile | MDir | MLink {
    if (o.upper) return o.upper;
    const parent = this.#objAt(o.path.slice(0, -1));
    const pu = this.#copyUp(parent) as MDir;
    const name = o.path[o.path.length - 1]!;
    const src = o.lowers[0]!;
    let copy: MFile | MDir | MLink;
    switch (src.kind) {
      case 'f': {
        copy = { kind: 'f', data: Buffer.from(src.data), mode: src.mode, mtimeMs: src.mtimeMs, nlink: 1, xattrs: new Map(src.xattrs) };
        const rec = this.#records.get(this.#recordKey(src, o.path));
        if (rec) rec.upper = copy;
        break;
      }
      case 'd': copy = { kind: 'd', mode: src.mode, mtimeMs: src.mtimeMs, opaque: false, entries: new Map(), xattrs: new Map(src.xattrs) }; break;
      case 'l': copy = { kind: 'l', target: src.target, mtimeMs: src.mtimeMs, nlink: 1 }; break;
    }
    pu.entries.set(name, copy);
    o.upper = copy;
    return copy;
  }

  /** The upper directory of a merged dir, copied up. */
  #upperDir(o: OObj): MDir {
    return this.#copyUp(o) as MDir;
  }

  /** Remove `name` (an object `o` of `parent`) from the union, leaving a whiteout if needed. */
  #remove(parent: OObj, name: string, o: OObj): void {
    const pu = this.#upperDir(parent);
    const lowerPos = this.#lowerPositive(parent, name);
    if (o.upper) {
      const u = pu.entries.get(name);
      if (u && u.kind !== 'w' && u.kind !== 'd') u.nlink--;
      pu.entries.delete(name);
    }
    if (lowerPos) pu.entries.set(name, { kind: 'w' });
    pu.mtimeMs = NOW;
  }

  /** Place a new upper node at `name` of `parent` (over a whiteout: opaque if a dir). */
  #create(parent: OObj, name: string, node: MFile | MDir | MLink): void {
    const pu = this.#upperDir(parent);
    const old = pu.entries.get(name);
    if (old?.kind === 'w' && node.kind === 'd') node.opaque = true;
    // A new directory in a set-group-id directory inherits the bit.
    if (node.kind === 'd' && (pu.mode & 0o2000)) node.mode |= 0o2000;
    pu.entries.set(name, node);
    pu.mtimeMs = NOW;
  }

  #list(o: OObj): Map<string, OObj> {
    const names = new Set<string>();
    const ud = o.upper as MDir | undefined;
    if (ud) for (const n of ud.entries.keys()) names.add(n);
    if (!ud?.opaque) for (const l of o.lowers) { if (l.kind !== 'd') break; for (const n of l.entries.keys()) names.add(n); if (l.opaque) break; }
    const out = new Map<string, OObj>();
    for (const n of [...names].sort()) { const c = this.#child(o, n); if (c) out.set(n, c); }
    return out;
  }

  #sameObject(a: OObj, b: OObj): boolean {
    if (a.path.join('/') === b.path.join('/')) return true;
    if (a.upper || b.upper) return a.upper === b.upper;
    const la = a.lowers[0]!;
    // Lower non-dirs with several links get a new overlay inode per name (index=off).
    if (la.kind !== 'd' && la.nlink > 1) return false;
    return la === b.lowers[0];
  }

  #isAncestor(a: readonly string[], b: readonly string[]): boolean {
    return a.length < b.length && a.every((p, i) => b[i] === p);
  }

  // ---- operations ---------------------------------------------------------------------

  /** open(path, flags) for the oracle's flag strings; returns the file to write (copied up). */
  #openForWrite(path: string, flag: 'w' | 'a' | 'r+' | 'wx', mode: number): MFile {
    if (flag === 'wx') {
      const r = this.#resolve(path, false, true);
      if (r.obj) fail('EEXIST');
      if (r.name === null) fail('EISDIR');
      const f: MFile = { kind: 'f', data: Buffer.alloc(0), mode: mode & ~UMASK & 0o7777, mtimeMs: NOW, nlink: 1, xattrs: new Map() };
      this.#create(r.parent, r.name, f);
      return f;
    }
    const r = this.#resolve(path, true, flag !== 'r+');
    if (!r.obj) {
      if (r.name === null) fail('EISDIR');
      const f: MFile = { kind: 'f', data: Buffer.alloc(0), mode: mode & ~UMASK & 0o7777, mtimeMs: NOW, nlink: 1, xattrs: new Map() };
      this.#create(r.parent, r.name, f);
      return f;
    }
    if (this.#isDir(r.obj)) fail('EISDIR');
    const f = this.#copyUp(r.obj) as MFile;
    if (flag === 'w') { f.data = Buffer.alloc(0); f.mtimeMs = NOW; }
    return f;
  }

  readonly #ids = new WeakMap<object, number>();
  #nextId = 1;
  /** Open overlay inodes of lower files: where their data is now (set on copy-up). */
  readonly #records = new Map<string, { upper?: MFile }>();

  /** The overlay-inode key of a lower file: per lower inode, or per name when it has several links (index=off). */
  #recordKey(lower: MFile, path: readonly string[]): string {
    let id = this.#ids.get(lower);
    if (id === undefined) { id = this.#nextId++; this.#ids.set(lower, id); }
    return lower.nlink > 1 ? `${id}@${path.join('/')}` : `${id}`;
  }

  /** A descriptor reading (and, if `writable`, writing) whatever file `node()` is now. */
  #handle(node: () => MFile | MDir, writable: boolean): OracleFileHandle {
    return {
      read: async (buffer, offset, length, position) => {
        const n = node();
        if (n.kind === 'd') fail('EISDIR');
        const chunk = n.data.subarray(Math.min(position, n.data.length), Math.min(position + length, n.data.length));
        Buffer.from(chunk).copy(Buffer.from(buffer.buffer, buffer.byteOffset, buffer.byteLength), offset);
        return { bytesRead: chunk.length };
      },
      write: async (buffer, offset, length, position) => {
        const n = node();
        if (!writable) fail('EBADF');
        this.#pwrite(n as MFile, Buffer.from(buffer.subarray(offset, offset + length)), position);
      },
      close: async () => undefined,
    };
  }

  /** open(path, O_RDONLY): a lower file's descriptor follows its overlay inode's copy-up (as the kernel's). */
  #openRead(path: string): OracleFileHandle {
    const o = this.#exists(path, true);
    const t = this.#top(o);
    if (t.kind === 'd') return this.#handle(() => t, false);
    if (o.upper || t.kind !== 'f') return this.#handle(() => t as MFile, false);
    const key = this.#recordKey(t, o.path);
    let rec = this.#records.get(key);
    if (!rec) { rec = {}; this.#records.set(key, rec); }
    const r = rec;
    return this.#handle(() => r.upper ?? t, false);
  }

  /** Apply a write at a position. */
  #pwrite(f: MFile, data: Buffer, pos: number): void {
    if (data.length === 0) return;
    const end = pos + data.length;
    if (end > f.data.length) { const b = Buffer.alloc(end); f.data.copy(b); f.data = b; }
    data.copy(f.data, pos);
    f.mtimeMs = NOW;
  }

  /** The fs calls of the model, shaped like `node:fs/promises` (paths relative, no leading '/'). */
  readonly fs: FsPromisesLike = {
    open: async (path, flags, mode = 0o666) => {
      if (flags === 'r') return this.#openRead(rel(path));
      const f = this.#openForWrite(rel(path), flags as 'wx' | 'r+', mode);
      return this.#handle(() => f, true);
    },
    writeFile: async (path, data, { flag, mode = 0o666 }) => {
      const f = this.#openForWrite(rel(path), flag as 'w' | 'a', mode);
      const b = Buffer.from(data);
      this.#pwrite(f, b, flag === 'a' ? f.data.length : 0);
    },
    truncate: async (path, len) => {
      const f = this.#openForWrite(rel(path), 'r+', 0);
      const b = Buffer.alloc(len);
      f.data.copy(b, 0, 0, Math.min(len, f.data.length));
      f.data = b;
      f.mtimeMs = NOW;
    },
    mkdir: async (path, { mode }) => {
      const r = this.#resolve(rel(path), false, true);
      if (r.obj) fail('EEXIST');
      this.#create(r.parent, r.name!, { kind: 'd', mode: mode & ~UMASK & 0o7777, mtimeMs: NOW, opaque: false, entries: new Map(), xattrs: new Map() });
      return undefined;
    },
    rmdir: async (path) => {
      const r = this.#resolve(rel(path), false);
      if (!r.obj) fail('ENOENT');
      if (r.name === null) fail(r.obj.path.length === 0 ? 'EBUSY' : 'EINVAL');
      if (!this.#isDir(r.obj)) fail('ENOTDIR');
      if (this.#list(r.obj).size > 0) fail('ENOTEMPTY');
      this.#remove(r.parent, r.name, r.obj);
    },
    unlink: async (path) => {
      const r = this.#resolve(rel(path), false);
      if (!r.obj) fail('ENOENT');
      if (r.name === null || this.#isDir(r.obj)) fail('EISDIR');
      this.#remove(r.parent, r.name, r.obj);
    },
    rename: async (from, to) => this.#rename(rel(from), rel(to)),
    symlink: async (target, path) => {
      const r = this.#resolve(rel(path), false, true);
      if (r.obj) fail('EEXIST');
      this.#create(r.parent, r.name!, { kind: 'l', target, mtimeMs: NOW, nlink: 1 });
    },
    link: async (existing, newPath) => {
      const src = this.#resolve(rel(existing), false);
      if (!src.obj) fail('ENOENT');
      const dst = this.#resolve(rel(newPath), false, true);
      if (dst.obj) fail('EEXIST');
      if (this.#isDir(src.obj)) fail('EPERM');
      const node = this.#copyUp(src.obj);
      if (node.kind !== 'd') node.nlink++;
      // The destination parent may have been copied up by the source's copy-up: re-resolve it.
      const parent = this.#objAt(dst.parent.path);
      this.#create(parent, dst.name!, node);
    },
    chmod: async (path, mode) => {
      const n = this.#copyUp(this.#exists(rel(path), true));
      if (n.kind !== 'l') n.mode = mode & 0o7777;
    },
    utimes: async (path, _atime, mtime) => {
      const n = this.#copyUp(this.#exists(rel(path), true));
      n.mtimeMs = mtime * 1000;
    },
    readFile: async (path) => {
      const o = this.#exists(rel(path), true);
      const t = this.#top(o);
      if (t.kind === 'd') fail('EISDIR');
      return Buffer.from((t as MFile).data);
    },
    readdir: async (path) => {
      const o = this.#exists(rel(path), true);
      if (!this.#isDir(o)) fail('ENOTDIR');
      return [...this.#list(o)].map(([name, c]): OracleDirent => {
        const k = this.#top(c).kind;
        return { name, isDirectory: () => k === 'd', isFile: () => k === 'f', isSymbolicLink: () => k === 'l' };
      });
    },
    lstat: async (path) => this.#stat(this.#exists(rel(path), false)),
    stat: async (path) => this.#stat(this.#exists(rel(path), true)),
    readlink: async (path) => {
      const t = this.#top(this.#exists(rel(path), false));
      if (t.kind !== 'l') fail('EINVAL');
      return t.target;
    },
  };

  #stat(o: OObj): OracleStats {
    const t = this.#top(o);
    const now = Date.now();
    switch (t.kind) {
      case 'f': return { mode: 0o100000 | t.mode, size: t.data.length, nlink: t.nlink, mtimeMs: t.mtimeMs === NOW ? now : t.mtimeMs };
      case 'd': {
        // Kernel: a merged directory reports nlink 1; others their real directory's count.
        const merged = o.upper ? o.lowers.length > 0 : o.lowers.length > 1;
        const subdirs = [...t.entries.values()].filter((e) => e.kind === 'd').length;
        return { mode: 0o040000 | t.mode, size: 4096, nlink: merged ? 1 : 2 + subdirs, mtimeMs: t.mtimeMs === NOW ? now : t.mtimeMs };
      }
      case 'l': return { mode: 0o120777, size: Buffer.byteLength(t.target), nlink: t.nlink, mtimeMs: t.mtimeMs === NOW ? now : t.mtimeMs };
    }
  }

  #rename(from: string, to: string): void {
    // Both parents are walked first (old, then new), then the old name must exist.
    const src = this.#resolve(from, false, true);
    const dst = this.#resolve(to, false, true);
    if (src.name === null || dst.name === null) fail('EBUSY');
    if (!src.obj) fail('ENOENT');
    const old = src.obj;
    const isDir = this.#isDir(old);
    // VFS: source must not be an ancestor of the target's parent, nor the target of the source's.
    const oldDirPath = src.parent.path;
    const newDirPath = dst.parent.path;
    if (oldDirPath.join('/') !== newDirPath.join('/')) {
      if (this.#isAncestor(old.path, newDirPath) || old.path.join('/') === newDirPath.join('/')) fail('EINVAL');
      if (dst.obj && (this.#isAncestor(dst.obj.path, oldDirPath) || dst.obj.path.join('/') === oldDirPath.join('/'))) fail('ENOTEMPTY');
    }
    const target = dst.obj;
    if (target && this.#sameObject(old, target)) return;
    if (target) {
      const tDir = this.#isDir(target);
      if (isDir && !tDir) fail('ENOTDIR');
      if (!isDir && tDir) fail('EISDIR');
      if (target.path.length === 0) fail('EBUSY');
    }
    // overlayfs: a merged or lower directory cannot move (redirect_dir=off).
    if (isDir && (old.lowers.length > 0)) fail('EXDEV');
    // A target dir with something below is checked for emptiness before any change; a pure
    // upper target only by the upper's own rename, after the copy-ups and opaque marking.
    const pureUpperTarget = target !== undefined && target.upper !== undefined && target.lowers.length === 0;
    if (target && this.#isDir(target) && !pureUpperTarget && this.#list(target).size > 0) fail('ENOTEMPTY');
    const lowerPosOld = this.#lowerPositive(src.parent, src.name);
    const node = this.#copyUp(old);
    const newParent = this.#objAt(newDirPath);
    const npu = this.#upperDir(newParent);
    const opu = this.#objAt(oldDirPath).upper as MDir;
    const newParentMerged = newParent.lowers.length > 0 && !(npu.opaque);
    if (node.kind === 'd' && !node.opaque && newParentMerged) node.opaque = true;
    if (target && pureUpperTarget && target.upper!.kind === 'd' && (target.upper as MDir).entries.size > 0) {
      // ext4 (the upper here) puts the whiteout of a RENAME_WHITEOUT in place before it finds
      // the target not empty, and puts the old entry back on the way out: the old parent's
      // times move although the rename failed.
      if (lowerPosOld) opu.mtimeMs = NOW;
      fail('ENOTEMPTY');
    }
    // Remove the source name.
    opu.mtimeMs = NOW;
    npu.mtimeMs = NOW;
    opu.entries.delete(src.name);
    if (lowerPosOld) opu.entries.set(src.name, { kind: 'w' });
    // Replace the target.
    const prev = npu.entries.get(dst.name);
    if (prev && prev.kind !== 'w' && prev.kind !== 'd') prev.nlink--;
    npu.entries.set(dst.name, node);
  }

  /** setxattr(2) following symlinks (copies the object up). */
  setxattr(path: string, name: string, value: Buffer): void {
    const n = this.#copyUp(this.#exists(path, true));
    if (n.kind === 'l') fail('EPERM');
    n.xattrs.set(name, value);
  }

  /** The `user.*` xattrs of the object at `path` (not following), values as hex. */
  userXattrs(path: string): Record<string, string> {
    const t = this.#top(this.#exists(path, false));
    if (t.kind === 'l') return {};
    return Object.fromEntries([...t.xattrs].filter(([k]) => k.startsWith('user.')).map(([k, v]) => [k, v.toString('hex')]));
  }

  /** The upper layer as the oracle's host-layer dump shows it (without times and nlink). */
  dumpUpper(): TreeDump {
    const out: TreeDump = new Map();
    const walk = (d: MDir, rel: string): void => {
      for (const name of [...d.entries.keys()].sort()) {
        const n = d.entries.get(name)!;
        const p = rel === '' ? name : `${rel}/${name}`;
        out.set(p, modelLine(n));
        if (n.kind === 'd') walk(n, p);
      }
    };
    walk(this.upper, '');
    return out;
  }
}

/** A model node as an upper-dump line (type, mode, size, data, target, opaque, user xattrs). */
function modelLine(n: MNode): string {
  const xs = (x: Map<string, Buffer>): string => {
    const e = [...x].filter(([k]) => k.startsWith('user.')).sort(([a], [b]) => (a < b ? -1 : 1));
    return e.length ? ` xattrs=${JSON.stringify(Object.fromEntries(e.map(([k, v]) => [k, v.toString('hex')])))}` : '';
  };
  switch (n.kind) {
    case 'w': return 'whiteout';
    case 'f': return `file 0o${n.mode.toString(8)} size=${n.data.length} data=${showBytes(n.data)}${xs(n.xattrs)}`;
    case 'd': return `dir 0o${n.mode.toString(8)}${n.opaque ? ' opaque=y' : ''}${xs(n.xattrs)}`;
    case 'l': return `symlink -> ${JSON.stringify(n.target)}`;
  }
}

function rel(path: string): string {
  return path.replace(/^\/+/, '');
}

/** A target over a fresh model of `c`'s layers (root `/`). */
export function modelTarget(model: OverlayModel, name = 'overlay model'): OracleTarget {
  return {
    name,
    fs: model.fs,
    root: '/',
    xattrs: {
      setxattr: async (path, xname, value) => model.setxattr(rel(path), xname, Buffer.from(value)),
      xattrsOf: async (paths) => new Map(paths.map((p) => [p, model.userXattrs(rel(p))])),
    },
  };
}

/** Make a model over `c`'s layers (the reference where no kernel overlay can be mounted). */
export function createOverlayModel(c: Pick<OracleCase, 'upper' | 'lowers'>): OverlayModel {
  return new OverlayModel(c);
}
