/**
 * Tree literals: lay a directory tree out from an object literal into a `MemoryLayer`, any
 * `Filesystem`, or a host directory (`tree`, `layTree`), and read any of them back into the
 * same literal (`dump`, `dumpHost`), so a test compares whole trees with one `toEqual`.
 *
 * The literal (a `TreeSpec` is the children of a directory, by name):
 * - `'text'` or a `Uint8Array`: a regular file, mode 0o644;
 * - a plain object `{ … }`: a directory, mode 0o755, with those children;
 * - `file(content, mode, { xattrs, uid, gid })`: a file with another mode / xattrs / owner;
 * - `dir(children, mode, { opaque, xattrs, uid, gid })`, `opaque(children)`: directories;
 * - `symlink(target)`, `whiteout()`, `fifo(mode)`, `device('char' | 'block', major, minor)`;
 * - `link('a/b')`: a hard link to the file at path `a/b` of the same literal (laid out last;
 *   `dump` shows every name of a hard-linked file as an ordinary file).
 * `dump` gives back the compact form: a file with mode 0o644, no xattrs (and, unless
 * `owners`, any owner) is a string (a `Uint8Array` if its bytes are not UTF-8); a plain
 * directory is a plain object. Opaque markers (every xattr form and `.wh..wh..opq`) show as
 * `opaque: true`, never as xattrs or entries; whiteouts as `whiteout()` under the hidden name.
 */
import { execFile } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import {
  FsError, OCI_OPAQUE_MARKER, OCI_WHITEOUT_PREFIX, OPAQUE_XATTR, OPAQUE_XATTR_FUSE_OVERLAYFS,
  OPAQUE_XATTR_USER, OpenFlags, ROOT_CONTEXT, ROOT_INO, S_IFBLK, S_IFCHR, S_IFIFO, S_IFMT, S_IFSOCK,
  makedev, type Attr, type Filesystem, type Layer, type RequestContext, type WhiteoutFormat,
} from '@layerfs/core';
import { MemoryLayer, type MemoryLayerOptions } from './memory-layer.js';

const run = promisify(execFile);
const OPAQUE_NAMES: readonly string[] = [OPAQUE_XATTR, OPAQUE_XATTR_USER, OPAQUE_XATTR_FUSE_OVERLAYFS];

/** `out[name] = node` as an own property even for `__proto__` (an assignment would set the prototype). */
function put(out: Record<string, TreeNode>, name: string, node: TreeNode): void {
  Object.defineProperty(out, name, { value: node, enumerable: true, writable: true, configurable: true });
}

/** Ownership and xattrs a spec node may carry. */
export interface NodeExtras {
  /** Extended attributes, name → UTF-8 value. */
  readonly xattrs?: Readonly<Record<string, string>>;
  /** Owner (default: the laying-out context's uid). */
  readonly uid?: number;
  /** Group (default: the laying-out context's gid). */
  readonly gid?: number;
}

/** A regular file with an explicit mode, xattrs or owner. */
export class FileSpec {
  /** Discriminator. */
  readonly kind = 'file' as const;
  /** The file's bytes (a string is UTF-8). */
  readonly content: string | Uint8Array;
  /** Permission bits. */
  readonly mode: number;
  /** Extended attributes. */
  readonly xattrs?: Readonly<Record<string, string>>;
  /** Owner. */
  readonly uid?: number;
  /** Group. */
  readonly gid?: number;
  /** See `file()`. */
  constructor(content: string | Uint8Array, mode: number, extras: NodeExtras = {}) {
    this.content = content;
    this.mode = mode;
    assignExtras(this, extras);
  }
}

/** A directory with an explicit mode, opaque marker, xattrs or owner. */
export class DirSpec {
  /** Discriminator. */
  readonly kind = 'dir' as const;
  /** The children, by name. */
  readonly children: TreeSpec;
  /** Permission bits. */
  readonly mode: number;
  /** Marked opaque (in the layer's format). */
  readonly opaque?: true;
  /** Extended attributes (opaque markers excluded). */
  readonly xattrs?: Readonly<Record<string, string>>;
  /** Owner. */
  readonly uid?: number;
  /** Group. */
  readonly gid?: number;
  /** See `dir()`. */
  constructor(children: TreeSpec, mode: number, extras: NodeExtras & { opaque?: boolean } = {}) {
    this.children = children;
    this.mode = mode;
    if (extras.opaque) this.opaque = true;
    assignExtras(this, extras);
  }
}

/** A symbolic link. */
export class SymlinkSpec {
  /** Discriminator. */
  readonly kind = 'symlink' as const;
  /** See `symlink()`. */
  constructor(readonly target: string) {}
}

/** A whiteout (in the layer's format). */
export class WhiteoutSpec {
  /** Discriminator. */
  readonly kind = 'whiteout' as const;
}

/** A fifo, socket, or character / block device. */
export class SpecialSpec {
  /** Discriminator. */
  readonly kind = 'special' as const;
  /** See `fifo()` / `device()`. */
  constructor(readonly type: 'fifo' | 'socket' | 'chardev' | 'blockdev', readonly mode: number, readonly rdev = 0) {}
}

/** A hard link to another file of the same literal. */
export class LinkSpec {
  /** Discriminator. */
  readonly kind = 'link' as const;
  /** See `link()`. */
  constructor(readonly path: string) {}
}

/** One node of a tree literal. */
export type TreeNode = string | Uint8Array | TreeSpec | FileSpec | DirSpec | SymlinkSpec | WhiteoutSpec | SpecialSpec | LinkSpec;

/** The children of a directory, by name. */
export interface TreeSpec { readonly [name: string]: TreeNode }

function assignExtras(target: object, extras: NodeExtras): void {
  const t = target as { xattrs?: unknown; uid?: number; gid?: number };
  if (extras.xattrs && Object.keys(extras.xattrs).length > 0) t.xattrs = { ...extras.xattrs };
  if (extras.uid !== undefined) t.uid = extras.uid;
  if (extras.gid !== undefined) t.gid = extras.gid;
}

/** A file with `content` and `mode` (default 0o644), optional xattrs and owner. */
export function file(content: string | Uint8Array, mode = 0o644, extras: NodeExtras = {}): FileSpec {
  return new FileSpec(content, mode, extras);
}

/** A directory with `children` and `mode` (default 0o755), optionally opaque, xattrs, owner. */
export function dir(children: TreeSpec, mode = 0o755, extras: NodeExtras & { opaque?: boolean } = {}): DirSpec {
  return new DirSpec(children, mode, extras);
}

/** An opaque directory (nothing below it shows through in a union). */
export function opaque(children: TreeSpec = {}, mode = 0o755): DirSpec {
  return new DirSpec(children, mode, { opaque: true });
}

/** A symlink to `target`. */
export function symlink(target: string): SymlinkSpec {
  return new SymlinkSpec(target);
}

/** A whiteout: hides the name in lower layers. */
export function whiteout(): WhiteoutSpec {
  return new WhiteoutSpec();
}

/** A fifo. */
export function fifo(mode = 0o644): SpecialSpec {
  return new SpecialSpec('fifo', mode);
}

/** A character or block device (laying out a device needs root, except 0/0). */
export function device(type: 'char' | 'block', major: number, minor: number, mode = 0o644): SpecialSpec {
  return new SpecialSpec(type === 'char' ? 'chardev' : 'blockdev', mode, makedev(major, minor));
}

/** A hard link to the file at `path` ('/'-separated, relative to the literal's root). */
export function link(path: string): LinkSpec {
  return new LinkSpec(path);
}


const enc = new TextEncoder();
const bytesOf = (c: string | Uint8Array): Uint8Array => (typeof c === 'string' ? enc.encode(c) : c);

/** Options of `tree` / `layTree`. */
export interface TreeOptions extends Omit<MemoryLayerOptions, 'snapshot'> {
  /** Who lays the tree out (owner of new objects unless a spec says otherwise). Default root. */
  ctx?: RequestContext;
}

/** Lay `spec` out in a new MemoryLayer (options pick the whiteout format etc.). */
export async function tree(spec: TreeSpec | DirSpec, options?: TreeOptions): Promise<MemoryLayer>;
/** Lay `spec` out under host directory `path` (created if absent); resolves to `path`. */
export async function tree(spec: TreeSpec | DirSpec, path: string, options?: HostTreeOptions): Promise<string>;
// The implementation of both overloads above.
export async function tree(spec: TreeSpec | DirSpec, a?: string | TreeOptions, b?: HostTreeOptions): Promise<MemoryLayer | string> {
  if (typeof a === 'string') {
    await layHostTree(a, spec, b);
    return a;
  }
  const opts = a ?? {};
  const { ctx, ...layerOptions } = opts;
  const writable = layerOptions.writable ?? true;
  const layer = new MemoryLayer({ ...layerOptions, writable: true, workDir: layerOptions.workDir ?? writable });
  await layTree(layer, spec, ctx ?? ROOT_CONTEXT);
  if (writable) return layer;
  return MemoryLayer.fromSnapshot(layer.snapshot(), { ...layerOptions, writable: false });
}

function isLayer(fs: Filesystem): fs is Layer {
  return typeof (fs as Partial<Layer>).createWhiteout === 'function' && typeof (fs as Partial<Layer>).setOpaque === 'function';
}

/**
 * Lay `spec` out under directory `ino` (default the root) of any Filesystem. Whiteouts and
 * opaque markers use the Layer's own helpers (else a 0/0 mknod and `trusted.overlay.opaque`).
 * Every lookup taken is forgotten.
 */
export async function layTree(fs: Filesystem, spec: TreeSpec | DirSpec, ctx: RequestContext = ROOT_CONTEXT, ino = ROOT_INO): Promise<void> {
  const links: { dir: string[]; name: string; path: string }[] = [];
  const lay = async (parent: number, dirPath: string[], children: TreeSpec): Promise<void> => {
    for (const [name, node] of Object.entries(children)) {
      if (node instanceof LinkSpec) { links.push({ dir: dirPath, name, path: node.path }); continue; }
      await layNode(fs, ctx, parent, name, node, async (child, s) => lay(child, [...dirPath, name], s));
    }
  };
  const ctx0 = { ...ctx, umask: 0 };
  if (spec instanceof DirSpec) {
    await lay(ino, [], spec.children);
    await applyMeta(fs, ctx0, ino, spec);
  } else {
    await lay(ino, [], spec);
  }
  for (const l of links) {
    const target = await resolvePath(fs, ctx, ino, l.path.split('/').filter(Boolean));
    const parent = await resolvePath(fs, ctx, ino, l.dir);
    try {
      const e = await fs.link(ctx, target.ino, parent.ino, l.name);
      await fs.forget(ctx, e.ino, 1);
    } finally {
      await target.release();
      await parent.release();
    }
  }
}

async function resolvePath(fs: Filesystem, ctx: RequestContext, start: number, parts: string[]): Promise<{ ino: number; release: () => Promise<void> }> {
  const held: number[] = [];
  let cur = start;
  const release = async (): Promise<void> => { for (const i of held.reverse()) await fs.forget(ctx, i, 1); };
  try {
    for (const p of parts) {
      const e = await fs.lookup(ctx, cur, p);
      held.push(e.ino);
      cur = e.ino;
    }
  } catch (e) {
    await release();
    throw e;
  }
  return { ino: cur, release };
}

async function applyMeta(fs: Filesystem, ctx: RequestContext, ino: number, node: FileSpec | DirSpec | SpecialSpec): Promise<void> {
  if (!(node instanceof SpecialSpec)) {
    for (const [k, v] of Object.entries(node.xattrs ?? {})) await fs.setxattr(ctx, ino, k, enc.encode(v), 0);
    if (node instanceof DirSpec && node.opaque) {
      if (isLayer(fs)) await fs.setOpaque(ctx, ino, true);
      else await fs.setxattr(ctx, ino, OPAQUE_XATTR, enc.encode('y'), 0);
    }
    if (node.uid !== undefined || node.gid !== undefined) {
      await fs.setattr(ctx, ino, { ...(node.uid !== undefined ? { uid: node.uid } : {}), ...(node.gid !== undefined ? { gid: node.gid } : {}) });
    }
  }
  await fs.setattr(ctx, ino, { mode: node.mode });
}

async function layNode(
  fs: Filesystem, ctx: RequestContext, parent: number, name: string, node: TreeNode,
  recurse: (ino: number, children: TreeSpec) => Promise<void>,
): Promise<void> {
  const c = { ...ctx, umask: 0 };
  if (typeof node === 'string' || node instanceof Uint8Array || node instanceof FileSpec) {
    const spec = node instanceof FileSpec ? node : new FileSpec(node, 0o644);
    const { fh, entry } = await fs.create(c, parent, name, 0o600, OpenFlags.O_WRONLY | OpenFlags.O_EXCL | OpenFlags.O_CREAT);
    try {
      const data = bytesOf(spec.content);
      if (data.length > 0) await fs.write(c, entry.ino, fh, data, 0);
      await fs.release(c, entry.ino, fh);
      await applyMeta(fs, c, entry.ino, spec);
    } finally {
      await fs.forget(c, entry.ino, 1);
    }
  } else if (node instanceof SymlinkSpec) {
    const e = await fs.symlink(c, parent, name, node.target);
    await fs.forget(c, e.ino, 1);
  } else if (node instanceof WhiteoutSpec) {
    if (isLayer(fs)) await fs.createWhiteout(c, parent, name);
    else await fs.forget(c, (await fs.mknod(c, parent, name, S_IFCHR, 0)).ino, 1);
  } else if (node instanceof SpecialSpec) {
    const type = { fifo: S_IFIFO, socket: S_IFSOCK, chardev: S_IFCHR, blockdev: S_IFBLK }[node.type];
    const e = await fs.mknod(c, parent, name, type | node.mode, node.rdev);
    await fs.forget(c, e.ino, 1);
  } else if (node instanceof LinkSpec) {
    throw new FsError('EINVAL', { detail: 'link() is laid out by layTree' });
  } else {
    const spec = node instanceof DirSpec ? node : new DirSpec(node as TreeSpec, 0o755);
    const e = await fs.mkdir(c, parent, name, 0o700);
    try {
      await recurse(e.ino, spec.children);
      await applyMeta(fs, c, e.ino, spec);
    } finally {
      await fs.forget(c, e.ino, 1);
    }
  }
}

/** Options of `dump`. */
export interface DumpOptions {
  /** Who reads. Default root. */
  ctx?: RequestContext;
  /** Include xattrs (opaque markers never appear as xattrs). Default true. */
  xattrs?: boolean;
  /** Include uid/gid of every node. Default false. */
  owners?: boolean;
}

const dec = new TextDecoder('utf-8', { fatal: true });

function contentOf(data: Uint8Array): string | Uint8Array {
  try {
    const s = dec.decode(data);
    return enc.encode(s).length === data.length ? s : new Uint8Array(data);
  } catch {
    return new Uint8Array(data);
  }
}

function tolerant<T>(p: Promise<T>, fallback: T): Promise<T> {
  return p.catch((e: unknown) => {
    const code = (e as { code?: string }).code;
    if (code === 'ENOSYS' || code === 'EOPNOTSUPP' || code === 'ENODATA') return fallback;
    throw e;
  });
}

interface Meta { mode: number; uid: number; gid: number; xattrs: Record<string, string>; opaque: boolean }

function compact(kind: 'file' | 'dir', meta: Meta, payload: string | Uint8Array | TreeSpec, owners: boolean): TreeNode {
  const perm = meta.mode & 0o7777;
  const extras: NodeExtras & { opaque?: boolean } = {
    xattrs: meta.xattrs,
    ...(owners ? { uid: meta.uid, gid: meta.gid } : {}),
    ...(meta.opaque ? { opaque: true } : {}),
  };
  const plain = Object.keys(meta.xattrs).length === 0 && !owners && !meta.opaque;
  if (kind === 'file') return plain && perm === 0o644 ? payload : file(payload as string | Uint8Array, perm, extras);
  return plain && perm === 0o755 ? payload : dir(payload as TreeSpec, perm, extras);
}

function specialOf(attr: Attr): SpecialSpec {
  const fmt = attr.mode & S_IFMT;
  const type = fmt === S_IFIFO ? 'fifo' : fmt === S_IFSOCK ? 'socket' : fmt === S_IFCHR ? 'chardev' : 'blockdev';
  return new SpecialSpec(type, attr.mode & 0o7777, attr.rdev);
}

/**
 * Read directory `ino` (default the root) of any Filesystem into a tree literal (the
 * compact form described in the module comment). Forgets every lookup it takes.
 */
export async function dump(fs: Filesystem, options: DumpOptions = {}, ino = ROOT_INO): Promise<TreeSpec> {
  const ctx = options.ctx ?? ROOT_CONTEXT;
  const withX = options.xattrs ?? true;
  const owners = options.owners ?? false;
  const layer = isLayer(fs) ? fs : undefined;

  const meta = async (n: number, attr: Attr, isDir: boolean): Promise<Meta> => {
    const xattrs: Record<string, string> = {};
    let opq = false;
    const names = withX || (isDir && !layer) ? await tolerant(fs.listxattr(ctx, n), []) : [];
    for (const name of names) {
      if (OPAQUE_NAMES.includes(name)) { if (!layer) opq = true; continue; }
      if (!withX) continue;
      const v = await tolerant(fs.getxattr(ctx, n, name), undefined);
      if (v !== undefined) xattrs[name] = Buffer.from(v).toString('utf8');
    }
    if (isDir && layer) opq = await layer.isOpaque(ctx, n);
    return { mode: attr.mode, uid: attr.uid, gid: attr.gid, xattrs, opaque: opq };
  };

  const readAll = async (n: number): Promise<Uint8Array> => {
    const { fh } = await fs.open(ctx, n, OpenFlags.O_RDONLY);
    const chunks: Uint8Array[] = [];
    try {
      let pos = 0;
      for (;;) {
        const b = await fs.read(ctx, n, fh, 1 << 20, pos);
        if (b.length === 0) break;
        chunks.push(b);
        pos += b.length;
      }
    } finally {
      await fs.release(ctx, n, fh);
    }
    return Buffer.concat(chunks);
  };

  const walk = async (dirIno: number): Promise<TreeSpec> => {
    const out: Record<string, TreeNode> = {};
    const { fh } = await fs.opendir(ctx, dirIno);
    const entries: { name: string; whiteout: boolean }[] = [];
    try {
      let offset = 0;
      for (;;) {
        const batch = await fs.readdir(ctx, dirIno, fh, offset, false);
        if (batch.length === 0) break;
        for (const e of batch) entries.push({ name: e.name, whiteout: e.whiteout === true });
        offset = batch[batch.length - 1]!.offset;
      }
    } finally {
      await fs.releasedir(ctx, dirIno, fh);
    }
    for (const { name, whiteout: wh } of entries) {
      if (wh) { put(out, name, whiteout()); continue; }
      const e = await fs.lookup(ctx, dirIno, name);
      try {
        if (e.whiteout) { put(out, name, whiteout()); continue; }
        const fmt = e.attr.mode & S_IFMT;
        if (fmt === 0o040000) put(out, name, compact('dir', await meta(e.ino, e.attr, true), await walk(e.ino), owners));
        else if (fmt === 0o100000) put(out, name, compact('file', await meta(e.ino, e.attr, false), contentOf(await readAll(e.ino)), owners));
        else if (fmt === 0o120000) put(out, name, symlink(await fs.readlink(ctx, e.ino)));
        else put(out, name, specialOf(e.attr));
      } finally {
        await fs.forget(ctx, e.ino, 1);
      }
    }
    return out;
  };
  return walk(ino);
}

// ---- host directories -------------------------------------------------------------------

/** Options of laying a tree out in a host directory. */
export interface HostTreeOptions {
  /** How whiteouts and opaque markers are written. Default 'chardev' (needs root for mknod). */
  whiteoutFormat?: WhiteoutFormat;
  /** chardev format: mark opaque with `user.overlay.opaque` instead of `trusted.overlay.opaque`. */
  userxattr?: boolean;
}

async function setHostXattr(path: string, name: string, value: string): Promise<void> {
  await run('setfattr', ['-h', '-n', name, '-v', '0x' + Buffer.from(value).toString('hex'), path]);
}

async function layHostTree(root: string, spec: TreeSpec | DirSpec, options: HostTreeOptions = {}): Promise<void> {
  const format = options.whiteoutFormat ?? 'chardev';
  const links: { at: string; path: string }[] = [];
  const meta = async (p: string, node: FileSpec | DirSpec | SpecialSpec): Promise<void> => {
    if (!(node instanceof SpecialSpec)) {
      for (const [k, v] of Object.entries(node.xattrs ?? {})) await setHostXattr(p, k, v);
      if (node instanceof DirSpec && node.opaque) {
        if (format === 'oci') await fsp.writeFile(join(p, OCI_OPAQUE_MARKER), '', { mode: 0 });
        else await setHostXattr(p, options.userxattr ? OPAQUE_XATTR_USER : OPAQUE_XATTR, 'y');
      }
      if (node.uid !== undefined || node.gid !== undefined) {
        const st = await fsp.lstat(p);
        await fsp.lchown(p, node.uid ?? st.uid, node.gid ?? st.gid);
      }
    }
    await fsp.chmod(p, node.mode);
  };
  const lay = async (dirPath: string, children: TreeSpec): Promise<void> => {
    for (const [name, node] of Object.entries(children)) {
      const p = join(dirPath, name);
      if (typeof node === 'string' || node instanceof Uint8Array || node instanceof FileSpec) {
        const s = node instanceof FileSpec ? node : new FileSpec(node, 0o644);
        await fsp.writeFile(p, bytesOf(s.content), { flag: 'wx' });
        await meta(p, s);
      } else if (node instanceof SymlinkSpec) {
        await fsp.symlink(node.target, p);
      } else if (node instanceof WhiteoutSpec) {
        if (format === 'oci') await fsp.writeFile(join(dirPath, OCI_WHITEOUT_PREFIX + name), '', { flag: 'wx', mode: 0 });
        else await run('mknod', ['-m', '000', p, 'c', '0', '0']);
      } else if (node instanceof SpecialSpec) {
        if (node.type === 'fifo') await run('mkfifo', ['-m', node.mode.toString(8), p]);
        else if (node.type === 'socket') throw new FsError('EINVAL', { detail: 'sockets cannot be laid out on a host' });
        else {
          const major = (node.rdev >> 8) & 0xfff;
          const minor = (node.rdev & 0xff) | ((node.rdev >> 12) & 0xfff00);
          await run('mknod', ['-m', node.mode.toString(8), p, node.type === 'chardev' ? 'c' : 'b', String(major), String(minor)]);
        }
      } else if (node instanceof LinkSpec) {
        links.push({ at: p, path: node.path });
      } else {
        const s = node instanceof DirSpec ? node : new DirSpec(node as TreeSpec, 0o755);
        await fsp.mkdir(p, { mode: 0o700 });
        await lay(p, s.children);
        await meta(p, s);
      }
    }
  };
  await fsp.mkdir(root, { recursive: true });
  if (spec instanceof DirSpec) {
    await lay(root, spec.children);
    await meta(root, spec);
  } else {
    await lay(root, spec);
  }
  for (const l of links) await fsp.link(join(root, ...l.path.split('/').filter(Boolean)), l.at);
}

async function hostXattrs(root: string): Promise<Map<string, Record<string, string>>> {
  const out = new Map<string, Record<string, string>>();
  let text: string;
  try {
    ({ stdout: text } = await run('getfattr', ['-R', '-P', '-d', '-m', '^(user|trusted)\\.', '-e', 'hex', '--absolute-names', root], { maxBuffer: 1 << 28 }));
  } catch (e) {
    const stdout = (e as { stdout?: string }).stdout;
    if (typeof stdout !== 'string') throw e;
    text = stdout;
  }
  let current: Record<string, string> | undefined;
  for (const line of text.split('\n')) {
    if (line.startsWith('# file: ')) {
      current = {};
      out.set(line.slice(8), current);
    } else if (current && line.includes('=')) {
      const i = line.indexOf('=');
      const v = line.slice(i + 1);
      current[line.slice(0, i)] = v.startsWith('0x') ? Buffer.from(v.slice(2), 'hex').toString('utf8') : v.replace(/^"|"$/g, '');
    }
  }
  return out;
}

/** Options of `dumpHost`. */
export interface DumpHostOptions {
  /**
   * Include xattrs (`user.*`, `trusted.*`; opaque markers never appear as xattrs). Default
   * true. False skips reading xattrs at all (opaque then only by `.wh..wh..opq`).
   */
  xattrs?: boolean;
  /** Include uid/gid of every node. Default false. */
  owners?: boolean;
  /** Read `.wh.` files as OCI markers (whiteouts / opaque). Default true. */
  oci?: boolean;
}

/**
 * Read host directory `root` into a tree literal, showing whiteouts (0/0 char devices and,
 * unless `oci: false`, `.wh.<name>` files) as `whiteout()` and every opaque marker as
 * `opaque: true` — the view a kernel overlay's upper or a layer directory has.
 */
export async function dumpHost(root: string, options: DumpHostOptions = {}): Promise<TreeSpec> {
  const withX = options.xattrs ?? true;
  const owners = options.owners ?? false;
  const oci = options.oci ?? true;
  const xattrs = withX ? await hostXattrs(root).catch(() => new Map<string, Record<string, string>>()) : new Map<string, Record<string, string>>();
  const walk = async (dirPath: string): Promise<TreeSpec> => {
    const names = (await fsp.readdir(dirPath)).sort();
    const out: Record<string, TreeNode> = {};
    const present = new Set(names);
    for (const name of names) {
      const p = join(dirPath, name);
      if (oci && name.startsWith(OCI_WHITEOUT_PREFIX)) {
        if (name === OCI_OPAQUE_MARKER) continue;
        const hidden = name.slice(OCI_WHITEOUT_PREFIX.length);
        if (hidden.length > 0 && !present.has(hidden)) put(out, hidden, whiteout());
        continue;
      }
      const st = await fsp.lstat(p);
      if (st.isCharacterDevice() && st.rdev === 0) { put(out, name, whiteout()); continue; }
      const x = { ...(xattrs.get(p) ?? {}) };
      let opq = false;
      for (const k of OPAQUE_NAMES) if (k in x) { if (x[k] === 'y') opq = true; delete x[k]; }
      const m: Meta = { mode: st.mode, uid: st.uid, gid: st.gid, xattrs: withX ? x : {}, opaque: false };
      if (st.isDirectory()) {
        if (oci) {
          try { await fsp.lstat(join(p, OCI_OPAQUE_MARKER)); opq = true; } catch { /* not opaque by marker */ }
        }
        m.opaque = opq;
        put(out, name, compact('dir', m, await walk(p), owners));
      } else if (st.isFile()) {
        put(out, name, compact('file', m, contentOf(await fsp.readFile(p)), owners));
      } else if (st.isSymbolicLink()) {
        put(out, name, symlink(await fsp.readlink(p)));
      } else {
        put(out, name, specialOf({ mode: st.mode, rdev: st.rdev } as Attr));
      }
    }
    return out;
  };
  return walk(root);
}
