/**
 * The model-based runner: random operation sequences (`fc.commands`) applied to a system
 * under test (any `Filesystem`, driven by inode ops with every path walked by lookups and
 * forgotten) and to a reference model (a plain immutable tree, changed only with immer
 * `produce`). Each command compares the two outcomes (the value, or the errno code the
 * kernel would give) and its `toString()` reads like a strace line, so a shrunk
 * counterexample is a short syscall trace. Lookups held on purpose (`hold`) check that an
 * ino is stable and usable while referenced, even after its last name is gone; after every
 * command the lookup balance is checked, and after the run every lookup is given back, the
 * filesystem must hold only its root, and `dump(fs)` must equal the model's tree.
 */
import fc from 'fast-check';
import { produce, type Draft } from 'immer';
import {
  FsError, OpenFlags, RenameFlags, ROOT_CONTEXT, ROOT_INO, S_IFDIR, S_IFMT, typeOfMode,
  type Filesystem, type FileType, type RequestContext,
} from '@layerfs/core';
import { checkLookupBalance, checkNoLeak } from './invariants.js';
import { DirSpec, dump, file, symlink, type TreeNode, type TreeSpec } from './tree.js';
import { pathArb } from './arbitraries.js';

/** Number of fast-check runs: `base`, or `LAYERFS_FC_RUNS` when that is larger (nightly runs). */
export function fcRuns(base = 200): number {
  const env = Number(process.env['LAYERFS_FC_RUNS'] ?? 0);
  return Number.isFinite(env) && env > base ? Math.floor(env) : base;
}

/** A node of the reference model. Files and symlinks are shared by id (hard links). */
export type ModelNode =
  | { readonly kind: 'dir'; readonly id: number; readonly mode: number; readonly children: ReadonlyMap<string, ModelNode> }
  | { readonly kind: 'file'; readonly id: number }
  | { readonly kind: 'symlink'; readonly id: number; readonly target: string };

/** A directory of the reference model. */
export type ModelDir = Extract<ModelNode, { kind: 'dir' }>;

/** The reference model's whole state. */
export interface ModelState {
  /** The root directory. */
  readonly root: ModelDir;
  /** File data and mode by id (shared by every hard link). */
  readonly files: ReadonlyMap<number, { readonly content: string; readonly mode: number }>;
  /** The next model id. */
  readonly nextId: number;
  /** Model ids of the lookups held on purpose (`hold`), in order. */
  readonly held: readonly number[];
  /** Open handles (`openh`), in order: the file's model id and whether it is O_APPEND. */
  readonly handles: readonly { readonly id: number; readonly append: boolean }[];
}

/** The reference model (its state is replaced, never mutated). */
export class FsModel {
  /** Current state. */
  state: ModelState;
  /** An empty tree (root mode 0o755) operated on by `uid` (non-root: writes clear suid/sgid). */
  constructor(readonly uid = 0) {
    this.state = { root: { kind: 'dir', id: 0, mode: 0o755, children: new Map() }, files: new Map(), nextId: 1, held: [], handles: [] };
  }
}

/** The kernel's "kill priv" on a write or truncate by a non-root caller. */
function killPriv(mode: number): number {
  let m = mode & ~0o4000;
  if ((m & 0o2010) === 0o2010) m &= ~0o2000;
  return m;
}

/** One held lookup on the system under test, with the model id it stands for. */
export interface HeldLookup {
  /** The ino the lookup returned. */
  readonly ino: number;
  /** The model node it resolved to. */
  readonly modelId: number;
}

/** The system under test and what the runner holds on it. */
export interface ModelReal {
  /** The filesystem under test. */
  readonly fs: Filesystem;
  /** The caller's context for every op. */
  readonly ctx: RequestContext;
  /** Lookups held on purpose, parallel to `FsModel.state.held`. */
  readonly held: HeldLookup[];
  /** Open handles (each with one lookup on its ino), parallel to `FsModel.state.handles`. */
  readonly handles: { readonly ino: number; readonly fh: number }[];
  /** The filesystem keeps looked-up inodes' ancestors alive (see `checkLookupBalance`). */
  readonly pinsAncestors?: boolean;
}

/** Close every open handle and forget every held lookup of a run (the model too). */
export async function releaseAll(r: ModelReal, m?: FsModel): Promise<void> {
  for (const h of r.handles.splice(0)) {
    await r.fs.release(r.ctx, h.ino, h.fh);
    await r.fs.forget(r.ctx, h.ino, 1);
  }
  for (const h of r.held.splice(0)) await r.fs.forget(r.ctx, h.ino, 1);
  if (m) m.state = { ...m.state, held: [], handles: [] };
}

/** What an operation gave: a value, or an errno code. */
export type Outcome = { readonly ok: unknown } | { readonly err: string };

type Result<T> = { node: T } | { err: string };

const enc = new TextEncoder();
const dec = new TextDecoder();
const UMASK = 0o022;

function fail(code: string): { err: string } {
  return { err: code };
}

function resolveNode(s: ModelState, parts: readonly string[]): Result<ModelNode> {
  let cur: ModelNode = s.root;
  for (const p of parts) {
    if (cur.kind !== 'dir') return fail('ENOTDIR');
    const next: ModelNode | undefined = cur.children.get(p);
    if (!next) return fail('ENOENT');
    cur = next;
  }
  return { node: cur };
}

function resolveParent(s: ModelState, parts: readonly string[]): Result<ModelDir> {
  const r = resolveNode(s, parts.slice(0, -1));
  if ('err' in r) return r;
  if (r.node.kind !== 'dir') return fail('ENOTDIR');
  return { node: r.node };
}

function draftDir(d: Draft<ModelState>, parts: readonly string[]): Draft<ModelDir> {
  let cur = d.root as Draft<ModelNode>;
  for (const p of parts) cur = (cur as Draft<ModelDir>).children.get(p)!;
  return cur as Draft<ModelDir>;
}

function refCount(s: ModelState, id: number): number {
  let n = 0;
  const visit = (d: ModelDir): void => {
    for (const c of d.children.values()) {
      if (c.kind === 'dir') visit(c);
      else if (c.id === id) n++;
    }
  };
  visit(s.root);
  return n;
}

function findById(s: ModelState, id: number): ModelNode | undefined {
  let found: ModelNode | undefined;
  const visit = (d: ModelDir): void => {
    if (d.id === id) found = d;
    for (const c of d.children.values()) {
      if (found) return;
      if (c.id === id) found = c;
      else if (c.kind === 'dir') visit(c);
    }
  };
  visit(s.root);
  return found;
}

function startsWith(a: readonly string[], prefix: readonly string[]): boolean {
  return prefix.length <= a.length && prefix.every((p, i) => a[i] === p);
}

function typeOf(n: ModelNode): FileType {
  return n.kind === 'dir' ? 'directory' : n.kind === 'file' ? 'file' : 'symlink';
}

function statOf(s: ModelState, n: ModelNode): unknown {
  if (n.kind === 'dir') {
    let subdirs = 0;
    for (const c of n.children.values()) if (c.kind === 'dir') subdirs++;
    return { type: 'directory', mode: n.mode, nlink: 2 + subdirs };
  }
  if (n.kind === 'file') {
    const f = s.files.get(n.id)!;
    return { type: 'file', mode: f.mode, nlink: refCount(s, n.id), size: Buffer.byteLength(f.content) };
  }
  return { type: 'symlink', mode: 0o777, nlink: refCount(s, n.id), size: Buffer.byteLength(n.target) };
}

/** The model's tree as the literal `dump()` gives for the same tree. */
export function modelToSpec(s: ModelState): TreeSpec {
  const walk = (d: ModelDir): TreeSpec => {
    const out: Record<string, TreeNode> = {};
    for (const [name, c] of d.children) {
      if (c.kind === 'symlink') out[name] = symlink(c.target);
      else if (c.kind === 'dir') out[name] = c.mode === 0o755 ? walk(c) : new DirSpec(walk(c), c.mode);
      else {
        const f = s.files.get(c.id)!;
        out[name] = f.mode === 0o644 ? f.content : file(f.content, f.mode);
      }
    }
    return out;
  };
  return walk(s.root);
}


// ---- the system-under-test side ------------------------------------------------------------

/** Walk `parts` by lookups; `release` forgets every lookup taken. */
export async function walkPath(fs: Filesystem, ctx: RequestContext, parts: readonly string[]): Promise<{ ino: number; release: () => Promise<void> }> {
  const held: number[] = [];
  const release = async (): Promise<void> => { for (const i of held.splice(0).reverse()) await fs.forget(ctx, i, 1); };
  let cur = ROOT_INO;
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

/** Walk to a directory, as the kernel's parent walk does: ENOTDIR when it is not one. */
async function walkDir(r: ModelReal, parts: readonly string[]): Promise<{ ino: number; release: () => Promise<void> }> {
  const w = await walkPath(r.fs, r.ctx, parts);
  const a = await r.fs.getattr(r.ctx, w.ino).catch(async (e: unknown) => { await w.release(); throw e; });
  if ((a.mode & S_IFMT) !== S_IFDIR) {
    await w.release();
    throw FsError.of('ENOTDIR');
  }
  return w;
}

async function outcome(fn: () => Promise<unknown>): Promise<Outcome> {
  try {
    return { ok: await fn() };
  } catch (e) {
    if (e instanceof FsError) return { err: e.code };
    throw e;
  }
}

/** Run `fn` on the parent directory of `parts` (walked and forgotten around it). */
async function inParent<T>(r: ModelReal, parts: readonly string[], fn: (parent: number, name: string) => Promise<T>): Promise<T> {
  const w = await walkPath(r.fs, r.ctx, parts.slice(0, -1));
  try {
    return await fn(w.ino, parts[parts.length - 1]!);
  } finally {
    await w.release();
  }
}

async function onNode<T>(r: ModelReal, parts: readonly string[], fn: (ino: number) => Promise<T>): Promise<T> {
  const w = await walkPath(r.fs, r.ctx, parts);
  try {
    return await fn(w.ino);
  } finally {
    await w.release();
  }
}

async function readAll(r: ModelReal, ino: number): Promise<string> {
  const { fh } = await r.fs.open(r.ctx, ino, OpenFlags.O_RDONLY);
  try {
    const chunks: Uint8Array[] = [];
    for (let pos = 0; ;) {
      const b = await r.fs.read(r.ctx, ino, fh, 65536, pos);
      if (b.length === 0) break;
      chunks.push(b);
      pos += b.length;
    }
    return dec.decode(Buffer.concat(chunks));
  } finally {
    await r.fs.release(r.ctx, ino, fh);
  }
}

// ---- commands ---------------------------------------------------------------------------------

const show = (parts: readonly string[]): string => JSON.stringify('/' + parts.join('/'));
const oct = (m: number): string => '0' + m.toString(8);

/**
 * One operation: `model` computes the expected outcome (and replaces the model state on
 * success), `real` performs it on the system under test; `run` compares them and checks the
 * lookup balance.
 */
export class FsCommand implements fc.AsyncCommand<FsModel, ModelReal> {
  /** A command printed as `label`. */
  constructor(
    readonly label: string,
    readonly model: (m: FsModel) => Outcome,
    readonly real: (r: ModelReal, expected: Outcome) => Promise<Outcome>,
  ) {}

  /** Every command applies in every state (errors are outcomes too). */
  check(): boolean {
    return true;
  }

  /** Apply to both sides and compare. */
  async run(m: FsModel, r: ModelReal): Promise<void> {
    const expected = this.model(m);
    const actual = await this.real(r, expected);
    const e = JSON.stringify(expected);
    const a = JSON.stringify(actual);
    if (e !== a) throw new Error(`${this.label}: expected ${e}, got ${a}`);
    await checkLookupBalance(r.fs, [...r.held.map((h) => h.ino), ...r.handles.map((h) => h.ino)], { pinsAncestors: r.pinsAncestors ?? false });
  }

  /** The strace-like line. */
  toString(): string {
    return this.label;
  }
}

function mutate(m: FsModel, fn: (d: Draft<ModelState>) => void): void {
  m.state = produce(m.state, fn);
}

/** How `writeFile` opens: O_TRUNC, O_APPEND, O_EXCL, or plain at an offset. */
export type WriteHow = 'trunc' | 'append' | 'excl' | { readonly at: number };

function writeFlags(how: WriteHow): number {
  const base = OpenFlags.O_WRONLY | OpenFlags.O_CREAT;
  if (how === 'trunc') return base | OpenFlags.O_TRUNC;
  if (how === 'append') return base | OpenFlags.O_APPEND;
  if (how === 'excl') return base | OpenFlags.O_EXCL;
  return base;
}

function spliceContent(old: string, content: string, how: WriteHow): string {
  if (how === 'trunc' || how === 'excl') return content;
  if (content.length === 0) return old;
  if (how === 'append') return old + content;
  const padded = old.length < how.at ? old + '\0'.repeat(how.at - old.length) : old;
  return padded.slice(0, how.at) + content + padded.slice(how.at + content.length);
}

/** `mkdir(path, mode)`. */
export function mkdirCmd(parts: readonly string[], mode: number): FsCommand {
  return new FsCommand(`mkdir(${show(parts)}, ${oct(mode)})`, (m) => {
    const p = resolveParent(m.state, parts);
    if ('err' in p) return p;
    const name = parts[parts.length - 1]!;
    if (p.node.children.has(name)) return fail('EEXIST');
    // A setgid directory passes S_ISGID on to new subdirectories.
    const inherit = p.node.mode & 0o2000;
    mutate(m, (d) => {
      draftDir(d, parts.slice(0, -1)).children.set(name, { kind: 'dir', id: d.nextId++, mode: (mode & ~UMASK & 0o7777) | inherit, children: new Map() });
    });
    return { ok: null };
  }, (r) => outcome(() => inParent(r, parts, async (parent, name) => {
    const e = await r.fs.mkdir(r.ctx, parent, name, mode);
    await r.fs.forget(r.ctx, e.ino, 1);
    return null;
  })));
}

/** `open(path, O_CREAT|…) + write(content) + close`. */
export function writeFileCmd(parts: readonly string[], content: string, how: WriteHow): FsCommand {
  const flagText = how === 'trunc' ? 'O_TRUNC' : how === 'append' ? 'O_APPEND' : how === 'excl' ? 'O_EXCL' : `pwrite@${how.at}`;
  return new FsCommand(`open(${show(parts)}, O_WRONLY|O_CREAT|${flagText}) + write(${JSON.stringify(content)})`, (m) => {
    const p = resolveParent(m.state, parts);
    if ('err' in p) return p;
    const name = parts[parts.length - 1]!;
    const existing = p.node.children.get(name);
    if (existing && how === 'excl') return fail('EEXIST');
    if (existing?.kind === 'dir') return fail('EISDIR');
    if (existing?.kind === 'symlink') return fail('ELOOP');
    mutate(m, (d) => {
      if (existing) {
        const f = d.files.get(existing.id)!;
        f.content = spliceContent(f.content, content, how);
        if (m.uid !== 0 && (how === 'trunc' || content.length > 0)) f.mode = killPriv(f.mode);
      } else {
        const id = d.nextId++;
        d.files.set(id, { content: spliceContent('', content, how), mode: 0o666 & ~UMASK });
        draftDir(d, parts.slice(0, -1)).children.set(name, { kind: 'file', id });
      }
    });
    return { ok: Buffer.byteLength(content) };
  }, (r) => outcome(() => inParent(r, parts, async (parent, name) => {
    const { fh, entry } = await r.fs.create(r.ctx, parent, name, 0o666, writeFlags(how));
    try {
      const pos = typeof how === 'object' ? how.at : 0;
      return await r.fs.write(r.ctx, entry.ino, fh, enc.encode(content), pos);
    } finally {
      await r.fs.release(r.ctx, entry.ino, fh);
      await r.fs.forget(r.ctx, entry.ino, 1);
    }
  })));
}

/** `unlink(path)`. */
export function unlinkCmd(parts: readonly string[]): FsCommand {
  return new FsCommand(`unlink(${show(parts)})`, (m) => {
    const p = resolveParent(m.state, parts);
    if ('err' in p) return p;
    const name = parts[parts.length - 1]!;
    const c = p.node.children.get(name);
    if (!c) return fail('ENOENT');
    if (c.kind === 'dir') return fail('EISDIR');
    mutate(m, (d) => { draftDir(d, parts.slice(0, -1)).children.delete(name); });
    return { ok: null };
  }, (r) => outcome(() => inParent(r, parts, async (parent, name) => { await r.fs.unlink(r.ctx, parent, name); return null; })));
}

/** `rmdir(path)`. */
export function rmdirCmd(parts: readonly string[]): FsCommand {
  return new FsCommand(`rmdir(${show(parts)})`, (m) => {
    const p = resolveParent(m.state, parts);
    if ('err' in p) return p;
    const name = parts[parts.length - 1]!;
    const c = p.node.children.get(name);
    if (!c) return fail('ENOENT');
    if (c.kind !== 'dir') return fail('ENOTDIR');
    if (c.children.size > 0) return fail('ENOTEMPTY');
    mutate(m, (d) => { draftDir(d, parts.slice(0, -1)).children.delete(name); });
    return { ok: null };
  }, (r) => outcome(() => inParent(r, parts, async (parent, name) => { await r.fs.rmdir(r.ctx, parent, name); return null; })));
}

/** `renameat2(from, to, flags)`. */
export function renameCmd(from: readonly string[], to: readonly string[], flags: number): FsCommand {
  const flagText = flags === 0 ? '0' : flags === RenameFlags.NOREPLACE ? 'RENAME_NOREPLACE' : flags === RenameFlags.EXCHANGE ? 'RENAME_EXCHANGE' : String(flags);
  return new FsCommand(`renameat2(${show(from)}, ${show(to)}, ${flagText})`, (m) => {
    const s = m.state;
    // Both parents are resolved first, source then target (the kernel's parentat order).
    const fp = resolveParent(s, from);
    if ('err' in fp) return fp;
    const tp = resolveParent(s, to);
    if ('err' in tp) return tp;
    const fname = from[from.length - 1]!;
    const tname = to[to.length - 1]!;
    const src = fp.node.children.get(fname);
    if (!src) return fail('ENOENT');
    const dst = tp.node.children.get(tname);
    if ((flags & RenameFlags.NOREPLACE) && dst) return fail('EEXIST');
    if ((flags & RenameFlags.EXCHANGE) && !dst) return fail('ENOENT');
    if (src.kind === 'dir' && startsWith(to.slice(0, -1), from)) return fail('EINVAL');
    if (dst && dst.kind === 'dir' && startsWith(from.slice(0, -1), to)) return fail((flags & RenameFlags.EXCHANGE) ? 'EINVAL' : 'ENOTEMPTY');
    if (dst && dst.id === src.id) return { ok: null };
    if (!(flags & RenameFlags.EXCHANGE) && dst) {
      if (src.kind === 'dir' && dst.kind !== 'dir') return fail('ENOTDIR');
      if (src.kind !== 'dir' && dst.kind === 'dir') return fail('EISDIR');
      if (dst.kind === 'dir' && dst.children.size > 0) return fail('ENOTEMPTY');
    }
    mutate(m, (d) => {
      const fd = draftDir(d, from.slice(0, -1));
      const srcNode = fd.children.get(fname)!;
      if (flags & RenameFlags.EXCHANGE) {
        const td = draftDir(d, to.slice(0, -1));
        const dstNode = td.children.get(tname)!;
        fd.children.set(fname, dstNode);
        td.children.set(tname, srcNode);
      } else {
        fd.children.delete(fname);
        draftDir(d, to.slice(0, -1)).children.set(tname, srcNode);
      }
    });
    return { ok: null };
  }, (r) => outcome(async () => {
    const fp = await walkDir(r, from.slice(0, -1));
    try {
      const tp = await walkDir(r, to.slice(0, -1));
      try {
        await r.fs.rename(r.ctx, fp.ino, from[from.length - 1]!, tp.ino, to[to.length - 1]!, flags);
        return null;
      } finally {
        await tp.release();
      }
    } finally {
      await fp.release();
    }
  }));
}

/** `link(from, to)`. */
export function linkCmd(from: readonly string[], to: readonly string[]): FsCommand {
  return new FsCommand(`link(${show(from)}, ${show(to)})`, (m) => {
    const s = m.state;
    const src = resolveNode(s, from);
    if ('err' in src) return src;
    const tp = resolveParent(s, to);
    if ('err' in tp) return tp;
    const tname = to[to.length - 1]!;
    if (tp.node.children.has(tname)) return fail('EEXIST');
    if (src.node.kind === 'dir') return fail('EPERM');
    const node = src.node;
    mutate(m, (d) => { draftDir(d, to.slice(0, -1)).children.set(tname, node); });
    return { ok: null };
  }, (r) => outcome(() => onNode(r, from, (ino) => inParent(r, to, async (parent, name) => {
    const e = await r.fs.link(r.ctx, ino, parent, name);
    await r.fs.forget(r.ctx, e.ino, 1);
    return null;
  }))));
}

/** `symlink(target, path)`. */
export function symlinkCmd(parts: readonly string[], target: string): FsCommand {
  return new FsCommand(`symlink(${JSON.stringify(target)}, ${show(parts)})`, (m) => {
    const p = resolveParent(m.state, parts);
    if ('err' in p) return p;
    const name = parts[parts.length - 1]!;
    if (p.node.children.has(name)) return fail('EEXIST');
    mutate(m, (d) => { draftDir(d, parts.slice(0, -1)).children.set(name, { kind: 'symlink', id: d.nextId++, target }); });
    return { ok: null };
  }, (r) => outcome(() => inParent(r, parts, async (parent, name) => {
    const e = await r.fs.symlink(r.ctx, parent, name, target);
    await r.fs.forget(r.ctx, e.ino, 1);
    return null;
  })));
}

/** `open(path, O_RDONLY) + read + close`. */
export function readFileCmd(parts: readonly string[]): FsCommand {
  return new FsCommand(`read(${show(parts)})`, (m) => {
    const n = resolveNode(m.state, parts);
    if ('err' in n) return n;
    if (n.node.kind === 'dir') return fail('EISDIR');
    if (n.node.kind === 'symlink') return fail('ELOOP');
    return { ok: m.state.files.get(n.node.id)!.content };
  }, (r) => outcome(() => onNode(r, parts, (ino) => readAll(r, ino))));
}

async function realStat(r: ModelReal, ino: number): Promise<unknown> {
  const a = await r.fs.getattr(r.ctx, ino);
  const type = typeOfMode(a.mode & S_IFMT);
  const base = { type, mode: a.mode & 0o7777, nlink: a.nlink };
  return type === 'directory' ? base : { ...base, size: a.size };
}

/** `lstat(path)`: type, permission bits, nlink, size (not of directories). */
export function statCmd(parts: readonly string[]): FsCommand {
  return new FsCommand(`lstat(${show(parts)})`, (m) => {
    const n = resolveNode(m.state, parts);
    return 'err' in n ? n : { ok: statOf(m.state, n.node) };
  }, (r) => outcome(() => onNode(r, parts, (ino) => realStat(r, ino))));
}

/** `getdents(path)`: sorted names and types. */
export function readdirCmd(parts: readonly string[]): FsCommand {
  return new FsCommand(`getdents(${show(parts)})`, (m) => {
    const n = resolveNode(m.state, parts);
    if ('err' in n) return n;
    if (n.node.kind !== 'dir') return fail('ENOTDIR');
    return { ok: [...n.node.children].map(([name, c]) => [name, typeOf(c)]).sort((a, b) => (a[0]! < b[0]! ? -1 : 1)) };
  }, (r) => outcome(() => onNode(r, parts, async (ino) => {
    const { fh } = await r.fs.opendir(r.ctx, ino);
    const out: [string, FileType][] = [];
    try {
      for (let off = 0; ;) {
        const batch = await r.fs.readdir(r.ctx, ino, fh, off, false);
        if (batch.length === 0) break;
        for (const e of batch) out.push([e.name, e.type]);
        off = batch[batch.length - 1]!.offset;
      }
    } finally {
      await r.fs.releasedir(r.ctx, ino, fh);
    }
    return out.sort((a, b) => (a[0] < b[0] ? -1 : 1));
  })));
}

/** `chmod(path, mode)` (EOPNOTSUPP on a symlink, as `fchmodat(AT_SYMLINK_NOFOLLOW)`). */
export function chmodCmd(parts: readonly string[], mode: number): FsCommand {
  return new FsCommand(`chmod(${show(parts)}, ${oct(mode)})`, (m) => {
    const n = resolveNode(m.state, parts);
    if ('err' in n) return n;
    const node = n.node;
    if (node.kind === 'symlink') return fail('EOPNOTSUPP');
    mutate(m, (d) => {
      if (node.kind === 'file') d.files.get(node.id)!.mode = mode;
      else draftDir(d, parts).mode = mode;
    });
    return { ok: null };
  }, (r) => outcome(() => onNode(r, parts, async (ino) => { await r.fs.setattr(r.ctx, ino, { mode }); return null; })));
}

/** `truncate(path, size)`. */
export function truncateCmd(parts: readonly string[], size: number): FsCommand {
  return new FsCommand(`truncate(${show(parts)}, ${size})`, (m) => {
    const n = resolveNode(m.state, parts);
    if ('err' in n) return n;
    const node = n.node;
    if (node.kind === 'dir') return fail('EISDIR');
    if (node.kind === 'symlink') return fail('EINVAL');
    mutate(m, (d) => {
      const f = d.files.get(node.id)!;
      if (m.uid !== 0) f.mode = killPriv(f.mode);
      f.content = f.content.length >= size ? f.content.slice(0, size) : f.content + '\0'.repeat(size - f.content.length);
    });
    return { ok: null };
  }, (r) => outcome(() => onNode(r, parts, async (ino) => { await r.fs.setattr(r.ctx, ino, { size }); return null; })));
}

/** `lookup(path)` kept: the lookup is held until a `forget`; checks ino stability. */
export function holdCmd(parts: readonly string[]): FsCommand {
  return new FsCommand(`hold = lookup(${show(parts)})`, (m) => {
    const n = resolveNode(m.state, parts);
    if ('err' in n) return n;
    const id = n.node.id;
    mutate(m, (d) => { d.held.push(id); });
    return { ok: id };
  }, (r, expected) => outcome(async () => {
    const w = await walkPath(r.fs, r.ctx, parts.slice(0, -1));
    try {
      const e = await r.fs.lookup(r.ctx, w.ino, parts[parts.length - 1]!);
      const modelId = 'ok' in expected ? (expected.ok as number) : -1;
      for (const h of r.held) {
        if (h.modelId === modelId && h.ino !== e.ino) throw new Error(`ino changed while referenced: ${h.ino} → ${e.ino}`);
        if (h.ino === e.ino && h.modelId !== modelId) throw new Error(`ino ${e.ino} handed to a second object while referenced`);
      }
      r.held.push({ ino: e.ino, modelId });
      return modelId;
    } finally {
      await w.release();
    }
  }));
}

/** `forget(held[i], 1)`. */
export function forgetCmd(i: number): FsCommand {
  return new FsCommand(`forget(held[${i}], 1)`, (m) => {
    if (m.state.held.length === 0) return { ok: null };
    const k = i % m.state.held.length;
    mutate(m, (d) => { d.held.splice(k, 1); });
    return { ok: null };
  }, (r) => outcome(async () => {
    if (r.held.length === 0) return null;
    const [h] = r.held.splice(i % r.held.length, 1);
    await r.fs.forget(r.ctx, h!.ino, 1);
    return null;
  }));
}

/** `getattr(held[i])`: a held ino stays usable, even unlinked (nlink 0). */
export function statHeldCmd(i: number): FsCommand {
  return new FsCommand(`getattr(held[${i}])`, (m) => {
    const s = m.state;
    if (s.held.length === 0) return { ok: null };
    const id = s.held[i % s.held.length]!;
    const n = findById(s, id);
    if (!n) return { ok: { linked: false } };
    return { ok: { linked: true, ...(statOf(s, n) as object) } };
  }, (r) => outcome(async () => {
    if (r.held.length === 0) return null;
    const h = r.held[i % r.held.length]!;
    const st = (await realStat(r, h.ino)) as { nlink: number };
    return st.nlink === 0 ? { linked: false } : { linked: true, ...st };
  }));
}

/** `open(path, O_RDWR[|O_APPEND])`, kept open (with its lookup) until `close`. */
export function openHandleCmd(parts: readonly string[], append: boolean): FsCommand {
  return new FsCommand(`h = open(${show(parts)}, O_RDWR${append ? '|O_APPEND' : ''})`, (m) => {
    const n = resolveNode(m.state, parts);
    if ('err' in n) return n;
    if (n.node.kind === 'dir') return fail('EISDIR');
    if (n.node.kind === 'symlink') return fail('ELOOP');
    const id = n.node.id;
    mutate(m, (d) => { d.handles.push({ id, append }); });
    return { ok: null };
  }, (r) => outcome(async () => {
    const w = await walkPath(r.fs, r.ctx, parts.slice(0, -1));
    try {
      const e = await r.fs.lookup(r.ctx, w.ino, parts[parts.length - 1]!);
      try {
        const { fh } = await r.fs.open(r.ctx, e.ino, OpenFlags.O_RDWR | (append ? OpenFlags.O_APPEND : 0));
        r.handles.push({ ino: e.ino, fh });
      } catch (err) {
        await r.fs.forget(r.ctx, e.ino, 1);
        throw err;
      }
      return null;
    } finally {
      await w.release();
    }
  }));
}

/** `pwrite(handles[i], content, pos)` (at the end for O_APPEND handles), even after unlink. */
export function writeHandleCmd(i: number, content: string, pos: number): FsCommand {
  return new FsCommand(`pwrite(h[${i}], ${JSON.stringify(content)}, ${pos})`, (m) => {
    const hs = m.state.handles;
    if (hs.length === 0) return { ok: null };
    const h = hs[i % hs.length]!;
    mutate(m, (d) => {
      const f = d.files.get(h.id)!;
      f.content = spliceContent(f.content, content, h.append ? 'append' : { at: pos });
      if (m.uid !== 0 && content.length > 0) f.mode = killPriv(f.mode);
    });
    return { ok: Buffer.byteLength(content) };
  }, (r) => outcome(async () => {
    if (r.handles.length === 0) return null;
    const h = r.handles[i % r.handles.length]!;
    return r.fs.write(r.ctx, h.ino, h.fh, enc.encode(content), pos);
  }));
}

/** `pread(handles[i], 64, 0)`: the whole content through the handle, even after unlink. */
export function readHandleCmd(i: number): FsCommand {
  return new FsCommand(`pread(h[${i}], 64, 0)`, (m) => {
    const hs = m.state.handles;
    if (hs.length === 0) return { ok: null };
    return { ok: m.state.files.get(hs[i % hs.length]!.id)!.content.slice(0, 64) };
  }, (r) => outcome(async () => {
    if (r.handles.length === 0) return null;
    const h = r.handles[i % r.handles.length]!;
    return dec.decode(await r.fs.read(r.ctx, h.ino, h.fh, 64, 0));
  }));
}

/** `close(handles[i])` (release, and forget its lookup). */
export function closeHandleCmd(i: number): FsCommand {
  return new FsCommand(`close(h[${i}])`, (m) => {
    if (m.state.handles.length === 0) return { ok: null };
    const k = i % m.state.handles.length;
    mutate(m, (d) => { d.handles.splice(k, 1); });
    return { ok: null };
  }, (r) => outcome(async () => {
    if (r.handles.length === 0) return null;
    const [h] = r.handles.splice(i % r.handles.length, 1);
    await r.fs.release(r.ctx, h!.ino, h!.fh);
    await r.fs.forget(r.ctx, h!.ino, 1);
    return null;
  }));
}

/** Options of the generated command sequences. */
export interface FsCommandsOptions {
  /** The name pool paths are drawn from. Default ['a', 'b', 'c']. */
  names?: readonly string[];
  /** Deepest path. Default 3. */
  maxDepth?: number;
  /** Longest sequence (fast-check picks lengths up to it). Default 40. */
  maxCommands?: number;
  /**
   * Modes `chmod` picks from. Default 0755, 0700, 0644, 0600, 04755, 02755, 06755. A non-root
   * run should keep owner rwx (the model does not model permission denials).
   */
  chmodModes?: readonly number[];
}

/** Random operation sequences over a small name pool (so names collide and errors happen). */
export function fsCommands(options: FsCommandsOptions = {}): fc.Arbitrary<Iterable<fc.AsyncCommand<FsModel, ModelReal>>> {
  const names = options.names ?? ['a', 'b', 'c'];
  const path = pathArb(names, options.maxDepth ?? 3);
  const content = fc.string({ unit: fc.constantFrom('x', 'y', 'z', '\n'), maxLength: 6 });
  const how: fc.Arbitrary<WriteHow> = fc.oneof(
    fc.constantFrom<WriteHow>('trunc', 'append', 'excl'),
    fc.nat(12).map((at) => ({ at })),
  );
  const mode = fc.constantFrom(...(options.chmodModes ?? [0o755, 0o700, 0o644, 0o600, 0o4755, 0o2755, 0o6755]));
  const mkdir = fc.tuple(path, fc.constantFrom(0o755, 0o700)).map(([p, md]) => mkdirCmd(p, md));
  const write = fc.tuple(path, content, how).map(([p, c, h]) => writeFileCmd(p, c, h));
  const rename = fc.tuple(path, path, fc.constantFrom(0, 0, RenameFlags.NOREPLACE, RenameFlags.EXCHANGE)).map(([a, b, f]) => renameCmd(a, b, f));
  // Creations and renames are listed more than once: fc.commands picks uniformly.
  const cmds: fc.Arbitrary<fc.AsyncCommand<FsModel, ModelReal>>[] = [
    mkdir, mkdir, mkdir, write, write, write, rename, rename,
    path.map(unlinkCmd),
    path.map(rmdirCmd),
    fc.tuple(path, path).map(([a, b]) => linkCmd(a, b)),
    fc.tuple(path, fc.constantFrom('a', '../b', '/etc/x')).map(([p, t]) => symlinkCmd(p, t)),
    path.map(readFileCmd),
    path.map(statCmd),
    fc.array(fc.constantFrom(...names), { maxLength: 2 }).map(readdirCmd),
    fc.tuple(path, mode).map(([p, md]) => chmodCmd(p, md)),
    fc.tuple(path, fc.nat(10)).map(([p, s]) => truncateCmd(p, s)),
    path.map(holdCmd),
    fc.nat(8).map(forgetCmd),
    fc.nat(8).map(statHeldCmd),
    fc.tuple(path, fc.boolean()).map(([p, a]) => openHandleCmd(p, a)),
    fc.tuple(fc.nat(8), content, fc.nat(10)).map(([i, c, pos]) => writeHandleCmd(i, c, pos)),
    fc.nat(8).map(readHandleCmd),
    fc.nat(8).map(closeHandleCmd),
  ];
  return fc.commands(cmds, { maxCommands: options.maxCommands ?? 40, size: 'max' });
}

/** Options of `runModel`. */
export interface RunModelOptions extends FsCommandsOptions {
  /** Runs. Default `fcRuns(200)`. */
  numRuns?: number;
  /** Caller context. Default root (umask 0o022). */
  ctx?: RequestContext;
  /** fast-check seed / path to replay a failure. */
  seed?: number;
  /** fast-check replay path. */
  path?: string;
  /**
   * The filesystem keeps looked-up inodes' parent directories alive (as `OverlayFs` does):
   * between steps only "every held inode is live" is checked; after every lookup is
   * forgotten only the root must remain, as for any filesystem. Default false.
   */
  pinsAncestors?: boolean;
}

/**
 * Property: for random command sequences, the filesystem made by `makeFs` (empty root, mode
 * 0o755) agrees with the reference model op by op, keeps its lookup balance, and after every
 * lookup is given back holds only its root and dumps to the model's tree.
 */
export async function runModel(makeFs: () => Filesystem | Promise<Filesystem>, options: RunModelOptions = {}): Promise<void> {
  const ctx = options.ctx ?? ROOT_CONTEXT;
  await fc.assert(
    fc.asyncProperty(fsCommands(options), async (cmds) => {
      const fs = await makeFs();
      const real: ModelReal = { fs, ctx, held: [], handles: [], pinsAncestors: options.pinsAncestors ?? false };
      const model = new FsModel(ctx.uid);
      try {
        await fc.asyncModelRun(() => ({ model, real }), cmds);
        await releaseAll(real, model);
        await checkNoLeak(fs);
        const tree = await dump(fs, { ctx, xattrs: false });
        const expected = modelToSpec(model.state);
        if (JSON.stringify(normalizeSpec(tree)) !== JSON.stringify(normalizeSpec(expected))) {
          throw new Error(`final tree differs:\n  fs:    ${JSON.stringify(normalizeSpec(tree))}\n  model: ${JSON.stringify(normalizeSpec(expected))}`);
        }
        await checkNoLeak(fs);
      } finally {
        await fs.destroy();
      }
    }),
    {
      numRuns: options.numRuns ?? fcRuns(200),
      ...(options.seed !== undefined ? { seed: options.seed } : {}),
      ...(options.path !== undefined ? { path: options.path } : {}),
    },
  );
}

/** A tree literal as plain JSON with sorted keys (for comparing and printing trees). */
export function normalizeSpec(t: unknown): unknown {
  if (t === null || typeof t !== 'object') return t;
  if (t instanceof Uint8Array) return { bytes: [...t] };
  const o = t as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(o).sort()) out[k] = normalizeSpec(o[k]);
  return out;
}
