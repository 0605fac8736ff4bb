/**
 * Targets of the kernel-overlayfs oracle: anything with `node:fs/promises`-shaped methods
 * rooted at a path — `node:fs/promises` on a host directory (a kernel overlay mount point or
 * a FUSE mount point) or a layerfs `Volume` — plus how one `OracleOp` is applied to a target
 * and reduced to a comparable result ("ok …" or the errno code), and how a whole visible
 * tree is dumped for the final comparison.
 *
 * Extended attributes are not in `node:fs/promises`: host targets use the `setfattr` and
 * `getfattr` commands (Debian package `attr`) in child processes, which is also what keeps
 * them safe on a FUSE mount served by this process.
 */
import * as fsp from 'node:fs/promises';
import { execFile } from 'node:child_process';
import { posix } from 'node:path';
import type { OracleOp } from './oracle-case.js';
import { ORACLE_OLD_TIME, octal } from './oracle-case.js';

/** The part of a `stat` result the oracle looks at. */
export interface OracleStats {
  /** Type and permission bits. */
  readonly mode: number;
  /** Size in bytes. */
  readonly size: number;
  /** Hard link count. */
  readonly nlink: number;
  /** Modification time in milliseconds. */
  readonly mtimeMs: number;
  /** Device number (`rdev`), to recognise 0/0 whiteouts on a host upper. */
  readonly rdev?: number;
}

/** The part of a `Dirent` the oracle looks at. */
export interface OracleDirent {
  /** Entry name. */
  readonly name: string;
  /** True for directories. */
  isDirectory(): boolean;
  /** True for regular files. */
  isFile(): boolean;
  /** True for symlinks. */
  isSymbolicLink(): boolean;
}

/** The part of an open file handle the oracle uses. */
export interface OracleFileHandle {
  /** Read up to `length` bytes into `buffer` at `offset`, from file `position`. */
  read(buffer: Uint8Array, offset: number, length: number, position: number): Promise<{ bytesRead: number }>;
  /** Write `length` bytes of `buffer` from `offset` at file `position`. */
  write(buffer: Uint8Array, offset: number, length: number, position: number): Promise<unknown>;
  /** Close the handle. */
  close(): Promise<void>;
}

/**
 * The `node:fs/promises` subset the oracle drives; `node:fs/promises` itself and the core
 * `Volume` both satisfy it (paths are absolute within the target's root).
 */
export interface FsPromisesLike {
  /** open(2) with string flags ('wx', 'r+', …) and a creation mode. */
  open(path: string, flags: string, mode?: number): Promise<OracleFileHandle>;
  /** Create/truncate/append and write. */
  writeFile(path: string, data: Uint8Array | string, options: { flag: string; mode?: number }): Promise<void>;
  /** truncate(2). */
  truncate(path: string, len: number): Promise<void>;
  /** mkdir(2). */
  mkdir(path: string, options: { mode: number }): Promise<unknown>;
  /** rmdir(2). */
  rmdir(path: string): Promise<void>;
  /** unlink(2). */
  unlink(path: string): Promise<void>;
  /** rename(2). */
  rename(from: string, to: string): Promise<void>;
  /** symlink(2): `path` → `target`. */
  symlink(target: string, path: string): Promise<void>;
  /** link(2). */
  link(existing: string, newPath: string): Promise<void>;
  /** chmod(2). */
  chmod(path: string, mode: number): Promise<void>;
  /** utimes(2) in seconds. */
  utimes(path: string, atime: number, mtime: number): Promise<void>;
  /** The whole contents. */
  readFile(path: string): Promise<Uint8Array>;
  /** Directory entries with types. */
  readdir(path: string, options: { withFileTypes: true }): Promise<OracleDirent[]>;
  /** lstat(2). */
  lstat(path: string): Promise<OracleStats>;
  /** stat(2). */
  stat(path: string): Promise<OracleStats>;
  /** readlink(2). */
  readlink(path: string): Promise<string>;
}

/** Extended attributes of a target (the calls `node:fs/promises` lacks). */
export interface OracleXattrs {
  /** setxattr(2) following symlinks, flags 0. */
  setxattr(path: string, name: string, value: Uint8Array): Promise<void>;
  /**
   * The `user.*` xattrs (and, with `markers`, `trusted.overlay.opaque`) of each of `paths`
   * (absolute in the target, never symlinks; not following), values as hex.
   */
  xattrsOf(paths: readonly string[], markers: boolean): Promise<Map<string, Record<string, string>>>;
}

/** Something the oracle applies operations to: fs calls rooted at `root`, plus xattrs. */
export interface OracleTarget {
  /** A name for reports ("kernel", "layerfs Volume", …). */
  readonly name: string;
  /** The fs calls. */
  readonly fs: FsPromisesLike;
  /** The absolute path (in `fs`'s namespace) the union's root is at. */
  readonly root: string;
  /** Extended attributes. */
  readonly xattrs: OracleXattrs;
}

/** Glibc's strerror texts (as `setfattr` prints them) → errno codes. */
const STRERROR: Record<string, string> = {
  'No such file or directory': 'ENOENT', 'Not a directory': 'ENOTDIR', 'Operation not permitted': 'EPERM',
  'Operation not supported': 'EOPNOTSUPP', 'No such attribute': 'ENODATA', 'No data available': 'ENODATA',
  'File exists': 'EEXIST', 'Too many levels of symbolic links': 'ELOOP', 'Permission denied': 'EACCES',
  'Read-only file system': 'EROFS', 'Numerical result out of range': 'ERANGE', 'No space left on device': 'ENOSPC',
  'Argument list too long': 'E2BIG', 'Invalid argument': 'EINVAL', 'File name too long': 'ENAMETOOLONG',
  'Input/output error': 'EIO', 'Is a directory': 'EISDIR', 'Invalid cross-device link': 'EXDEV',
};

/** An error with a Node-style `code`. */
function codeError(code: string, message: string): Error {
  return Object.assign(new Error(`${code}: ${message}`), { code });
}

/** Run a command; resolve with stdout/stderr/exit code (never rejects on a non-zero exit). */
export function runCommand(cmd: string, args: readonly string[]): Promise<{ stdout: string; stderr: string; code: number }> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err && typeof (err as { code?: unknown }).code !== 'number') { reject(err); return; }
      resolve({ stdout, stderr, code: err ? (err as { code: number }).code : 0 });
    });
  });
}

/** Parse `getfattr -d -e hex --absolute-names` output into path → { name: hex }. */
export function parseGetfattr(text: string): Map<string, Record<string, string>> {
  const out = new Map<string, Record<string, string>>();
  let cur: Record<string, string> | undefined;
  for (const line of text.split('\n')) {
    if (line.startsWith('# file: ')) {
      cur = {};
      out.set(line.slice('# file: '.length), cur);
    } else if (cur && line.includes('=')) {
      const i = line.indexOf('=');
      const v = line.slice(i + 1);
      cur[line.slice(0, i)] = v.startsWith('0x') ? v.slice(2) : Buffer.from(v.replace(/^"|"$/g, '')).toString('hex');
    } else if (cur && line.length > 0 && !line.startsWith('#')) {
      cur[line] = '';
    }
  }
  return out;
}

/** Xattrs of a host directory through `setfattr`/`getfattr` child processes. */
export function hostXattrs(): OracleXattrs {
  return {
    async setxattr(path, name, value) {
      const r = await runCommand('setfattr', ['-n', name, '-v', `0x${Buffer.from(value).toString('hex')}`, '--', path]);
      if (r.code !== 0) {
        const msg = r.stderr.trim().split('\n')[0] ?? '';
        const text = msg.slice(msg.lastIndexOf(': ') + 2);
        throw codeError(STRERROR[text] ?? `EUNKNOWN(${text})`, msg);
      }
    },
    async xattrsOf(paths, markers) {
      const out = new Map<string, Record<string, string>>();
      const pattern = markers ? '^(user\\.|trusted\\.overlay\\.opaque$)' : '^user\\.';
      for (let i = 0; i < paths.length; i += 200) {
        const chunk = paths.slice(i, i + 200);
        const r = await runCommand('getfattr', ['-h', '-d', '-m', pattern, '-e', 'hex', '--absolute-names', '--', ...chunk]);
        if (r.code !== 0) throw new Error(`getfattr failed: ${r.stderr.trim()}`);
        for (const [k, v] of parseGetfattr(r.stdout)) out.set(k, v);
      }
      return out;
    },
  };
}

/** A target over `node:fs/promises` on a host directory (a mount point or a plain dir). */
export function hostTarget(root: string, name = `host ${root}`): OracleTarget {
  return { name, fs: fsp as unknown as FsPromisesLike, root, xattrs: hostXattrs() };
}

/** A `Volume`-like object: the fs calls plus path-based xattr helpers (core's `Volume`). */
export interface VolumeLike extends FsPromisesLike {
  /** setxattr(2), following symlinks. */
  setxattr(path: string, name: string, value: Uint8Array, flags?: number): Promise<void>;
  /** llistxattr(2). */
  llistxattr(path: string): Promise<string[]>;
  /** lgetxattr(2). */
  lgetxattr(path: string, name: string): Promise<Uint8Array>;
}

/** Xattrs through a Volume's own helpers. */
export function volumeXattrs(vol: VolumeLike, markers = false): OracleXattrs {
  return {
    setxattr: (path, name, value) => vol.setxattr(path, name, value, 0),
    async xattrsOf(paths, wantMarkers) {
      const out = new Map<string, Record<string, string>>();
      for (const p of paths) {
        const rec: Record<string, string> = {};
        for (const name of await vol.llistxattr(p)) {
          if (name.startsWith('user.') || (markers && wantMarkers && name === 'trusted.overlay.opaque')) {
            rec[name] = Buffer.from(await vol.lgetxattr(p, name)).toString('hex');
          }
        }
        out.set(p, rec);
      }
      return out;
    },
  };
}

/** A target over a layerfs `Volume` (or anything Volume-shaped) whose union root is `/`. */
export function volumeTarget(vol: VolumeLike, name = 'layerfs Volume'): OracleTarget {
  return { name, fs: vol, root: '/', xattrs: volumeXattrs(vol) };
}

/** Resolve a union-relative path inside a target. */
function at(t: OracleTarget, p: string): string {
  return p === '' ? t.root : posix.join(t.root, p);
}

/** The comparable string of a type from a mode. */
export function typeName(mode: number): string {
  switch (mode & 0o170000) {
    case 0o040000: return 'dir';
    case 0o100000: return 'file';
    case 0o120000: return 'symlink';
    case 0o020000: return 'chardev';
    case 0o060000: return 'blockdev';
    case 0o010000: return 'fifo';
    case 0o140000: return 'socket';
    default: return `type?${(mode & 0o170000).toString(8)}`;
  }
}

/** Which attributes the projections include (defaults: everything that is deterministic). */
export interface ProjectionOptions {
  /** Include directory nlink (kernel overlayfs reports 1 for merged dirs). Default false. */
  readonly dirNlink?: boolean;
  /** Include directory mtimes (old/recent). Default false. */
  readonly dirTimes?: boolean;
  /** Only type, permission bits and (files) size: no nlink, no times (for in-memory uppers). */
  readonly lite?: boolean;
}

/** "old:<ms>" for a time set by the oracle (laid out or `utimes`), else "recent". */
function timeClass(ms: number): string {
  return ms < (ORACLE_OLD_TIME + 10 * 86_400) * 1000 + 1 ? `old:${Math.floor(ms)}` : 'recent';
}

/** The comparable projection of a stat result. */
export function projectStats(s: OracleStats, opts: ProjectionOptions = {}): string {
  const type = typeName(s.mode);
  const parts = [type];
  if (type !== 'symlink') parts.push(octal(s.mode & 0o7777));
  if (opts.lite) {
    if (type === 'file') parts.push(`size=${s.size}`);
    return parts.join(' ');
  }
  if (type === 'dir') {
    if (opts.dirNlink) parts.push(`nlink=${s.nlink}`);
    if (opts.dirTimes) parts.push(`mtime=${timeClass(s.mtimeMs)}`);
  } else {
    parts.push(`size=${s.size}`, `nlink=${s.nlink}`);
    if (type !== 'symlink') parts.push(`mtime=${timeClass(s.mtimeMs)}`);
  }
  return parts.join(' ');
}

/** Bytes as a readable string when printable ASCII, else hex. */
export function showBytes(b: Uint8Array): string {
  const s = Buffer.from(b).toString('latin1');
  return /^[\x20-\x7e\n]*$/.test(s) ? JSON.stringify(s) : `hex:${Buffer.from(b).toString('hex')}`;
}

/** The type of a Dirent, as the projections name it. */
function direntType(d: OracleDirent): string {
  return d.isDirectory() ? 'dir' : d.isFile() ? 'file' : d.isSymbolicLink() ? 'symlink' : 'other';
}

/** The errno code of a failure (or a description when it has none). */
export function errorCode(e: unknown): string {
  const code = (e as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : `THROWN(${e instanceof Error ? e.message : String(e)})`;
}

/** The descriptors a sequence keeps open on one target (slot → handle). */
export type OracleHandles = Map<number, OracleFileHandle>;

/** Close every descriptor a sequence left open (errors ignored). */
export async function closeHandles(handles: OracleHandles): Promise<void> {
  for (const h of handles.values()) await h.close().catch(() => undefined);
  handles.clear();
}

/**
 * Apply one operation; the result is "ok", "ok <value>" or "-1 <ERRNO>". `handles` holds
 * the descriptors of `hopen` … `hclose` (an op on an empty slot answers EBADF).
 */
export async function applyOp(t: OracleTarget, op: OracleOp, proj: ProjectionOptions = {}, handles: OracleHandles = new Map()): Promise<string> {
  try {
    const fs = t.fs;
    switch (op.op) {
      case 'hopen': {
        const old = handles.get(op.slot);
        if (old) { handles.delete(op.slot); await old.close(); }
        handles.set(op.slot, await fs.open(at(t, op.path), op.flags));
        return 'ok';
      }
      case 'hread': {
        const h = handles.get(op.slot);
        if (!h) return '-1 EBADF';
        const b = Buffer.alloc(op.length);
        const { bytesRead } = await h.read(b, 0, op.length, op.position);
        return `ok ${showBytes(b.subarray(0, bytesRead))}`;
      }
      case 'hwrite': {
        const h = handles.get(op.slot);
        if (!h) return '-1 EBADF';
        const b = Buffer.from(op.data);
        await h.write(b, 0, b.length, op.position);
        return 'ok';
      }
      case 'hclose': {
        const h = handles.get(op.slot);
        if (!h) return '-1 EBADF';
        handles.delete(op.slot);
        await h.close();
        return 'ok';
      }
      case 'create': { const h = await fs.open(at(t, op.path), 'wx', op.mode); await h.close(); return 'ok'; }
      case 'writeFile': await fs.writeFile(at(t, op.path), Buffer.from(op.data), { flag: 'w' }); return 'ok';
      case 'write': {
        const h = await fs.open(at(t, op.path), 'r+');
        try { const b = Buffer.from(op.data); await h.write(b, 0, b.length, op.offset); } finally { await h.close(); }
        return 'ok';
      }
      case 'append': await fs.writeFile(at(t, op.path), Buffer.from(op.data), { flag: 'a' }); return 'ok';
      case 'truncate': await fs.truncate(at(t, op.path), op.length); return 'ok';
      case 'mkdir': await fs.mkdir(at(t, op.path), { mode: op.mode }); return 'ok';
      case 'rmdir': await fs.rmdir(at(t, op.path)); return 'ok';
      case 'unlink': await fs.unlink(at(t, op.path)); return 'ok';
      case 'rename': await fs.rename(at(t, op.from), at(t, op.to)); return 'ok';
      case 'symlink': await fs.symlink(op.target, at(t, op.path)); return 'ok';
      case 'link': await fs.link(at(t, op.from), at(t, op.to)); return 'ok';
      case 'chmod': await fs.chmod(at(t, op.path), op.mode); return 'ok';
      case 'utimes': await fs.utimes(at(t, op.path), op.time, op.time); return 'ok';
      case 'setxattr': await t.xattrs.setxattr(at(t, op.path), op.name, Buffer.from(op.value)); return 'ok';
      case 'readFile': return `ok ${showBytes(await fs.readFile(at(t, op.path)))}`;
      case 'readdir': {
        const ents = await fs.readdir(at(t, op.path), { withFileTypes: true });
        return `ok [${ents.map((d) => `${d.name}:${direntType(d)}`).sort().join(', ')}]`;
      }
      case 'lstat': return `ok ${projectStats(await fs.lstat(at(t, op.path)), proj)}`;
      case 'stat': return `ok ${projectStats(await fs.stat(at(t, op.path)), proj)}`;
      case 'readlink': return `ok ${JSON.stringify(await fs.readlink(at(t, op.path)))}`;
    }
  } catch (e) {
    return `-1 ${errorCode(e)}`;
  }
}

/** A dumped tree: root-relative path → projection line (sorted by path). */
export type TreeDump = Map<string, string>;

/** Dump the visible tree of a target: types, modes, sizes, nlink, contents, link targets, user xattrs. */
export async function dumpTarget(t: OracleTarget, proj: ProjectionOptions = {}): Promise<TreeDump> {
  const out: TreeDump = new Map();
  const plain: string[] = [''];
  const walk = async (rel: string): Promise<void> => {
    const ents = await t.fs.readdir(at(t, rel), { withFileTypes: true });
    for (const name of ents.map((d) => d.name).sort()) {
      const p = rel === '' ? name : `${rel}/${name}`;
      const st = await t.fs.lstat(at(t, p));
      let line = projectStats(st, proj);
      const type = typeName(st.mode);
      if (type === 'file') line += ` data=${showBytes(await t.fs.readFile(at(t, p)))}`;
      if (type === 'symlink') line += ` -> ${JSON.stringify(await t.fs.readlink(at(t, p)))}`;
      else plain.push(p);
      out.set(p, line);
      if (type === 'dir') await walk(p);
    }
  };
  await walk('');
  const xattrs = await t.xattrs.xattrsOf(plain.map((p) => at(t, p)), false);
  for (const p of plain) {
    const x = xattrs.get(at(t, p));
    if (x && Object.keys(x).length) out.set(p || '.', `${out.get(p) ?? 'root'} xattrs=${JSON.stringify(sortObject(x))}`);
  }
  return out;
}

/**
 * Dump a host upper directory as a union sees it: like `dumpTarget`, plus whiteouts (0/0
 * char devices, shown as `whiteout`) and opaque markers (`trusted.overlay.opaque`).
 */
export async function dumpHostLayer(root: string, proj: ProjectionOptions = {}): Promise<TreeDump> {
  const out: TreeDump = new Map();
  const plain: string[] = [];
  const walk = async (rel: string): Promise<void> => {
    const ents = await fsp.readdir(rel === '' ? root : posix.join(root, rel));
    for (const name of ents.sort()) {
      const p = rel === '' ? name : `${rel}/${name}`;
      const abs = posix.join(root, p);
      const st = await fsp.lstat(abs);
      const type = typeName(st.mode);
      let line: string;
      if (type === 'chardev' && st.rdev === 0) line = 'whiteout';
      else {
        line = projectStats(st, proj);
        if (type === 'file') line += ` data=${showBytes(await fsp.readFile(abs))}`;
        if (type === 'symlink') line += ` -> ${JSON.stringify(await fsp.readlink(abs))}`;
      }
      if (type !== 'symlink') plain.push(p);
      out.set(p, line);
      if (type === 'dir') await walk(p);
    }
  };
  await walk('');
  const xattrs = await hostXattrs().xattrsOf(plain.map((p) => posix.join(root, p)), true);
  for (const p of plain) {
    const x = { ...(xattrs.get(posix.join(root, p)) ?? {}) };
    let line = out.get(p)!;
    if ('trusted.overlay.opaque' in x) { line += ` opaque=${Buffer.from(x['trusted.overlay.opaque']!, 'hex').toString()}`; delete x['trusted.overlay.opaque']; }
    if (Object.keys(x).length) line += ` xattrs=${JSON.stringify(sortObject(x))}`;
    out.set(p, line);
  }
  return out;
}

function sortObject(o: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(o).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

/** Line-by-line differences of two dumps ("path: A | B"), empty when equal. */
export function diffDumps(a: TreeDump, b: TreeDump, nameA = 'A', nameB = 'B'): string[] {
  const keys = [...new Set([...a.keys(), ...b.keys()])].sort();
  const out: string[] = [];
  for (const k of keys) {
    const x = a.get(k);
    const y = b.get(k);
    if (x !== y) out.push(`${k}:\n    ${nameA}: ${x ?? '(absent)'}\n    ${nameB}: ${y ?? '(absent)'}`);
  }
  return out;
}
