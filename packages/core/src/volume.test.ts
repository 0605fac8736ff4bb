// Unit tests of Volume over a tiny in-file Filesystem (core cannot depend on the testkit):
// path resolution (relative paths, `.`/`..`, symlinks, ELOOP, trailing slashes), Node's error
// shapes, lookup bookkeeping (every lookup forgotten; an open handle holds one), chunked I/O,
// FileHandle semantics, stats with nanosecond times, xattrs, flags.
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, expect, it } from 'vitest';
import { FsError } from './errors.js';
import { FilesystemBase } from './filesystem.js';
import { validateName } from './names.js';
import {
  OpenFlags, ROOT_CONTEXT, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG, UTIME_NOW, UTIME_OMIT, nowTimespec, typeOfMode,
  type Attr, type CreateResult, type DirEntry, type Entry, type OpenResult, type RequestContext, type SetattrRequest,
  type Timespec,
} from './types.js';
import { VOLUME_CHUNK, parseOpenFlags, toTimespec } from './volume-args.js';
import { MAX_SYMLINKS, Volume } from './volume.js';

interface TNode {
  ino: number; mode: number; nlink: number; uid: number; gid: number;
  data: Uint8Array; target?: string; entries?: Map<string, number>;
  atime: Timespec; mtime: Timespec; ctime: Timespec; xattrs: Map<string, Uint8Array>;
}

/** A minimal in-memory Filesystem that counts lookups and refuses inodes used after their last forget. */
class TinyFs extends FilesystemBase {
  readonly nodes = new Map<number, TNode>();
  readonly lookups = new Map<number, number>();
  readonly handles = new Map<number, { ino: number; flags: number }>();
  largestIo = 0;
  excessForgets = 0;
  private next = 2;
  private nextFh = 1;

  constructor() {
    super();
    this.nodes.set(1, this.make(1, S_IFDIR | 0o755, ROOT_CONTEXT));
  }

  liveInodes(): number { return 1 + [...this.lookups.values()].filter((n) => n > 0).length; }

  private make(ino: number, mode: number, ctx: RequestContext): TNode {
    const now = nowTimespec();
    const n: TNode = { ino, mode, nlink: 1, uid: ctx.uid, gid: ctx.gid, data: new Uint8Array(0), atime: now, mtime: now, ctime: now, xattrs: new Map() };
    if ((mode & S_IFMT) === S_IFDIR) { n.entries = new Map(); n.nlink = 2; }
    return n;
  }
  private node(ino: number): TNode {
    const n = this.nodes.get(ino);
    const held = ino === 1 || (this.lookups.get(ino) ?? 0) > 0 || [...this.handles.values()].some((h) => h.ino === ino);
    if (!n || !held) throw FsError.of('ESTALE', `ino ${ino} used without a lookup`);
    return n;
  }
  private dir(ino: number): Map<string, number> {
    const e = this.node(ino).entries;
    if (!e) throw FsError.of('ENOTDIR');
    return e;
  }
  private attr(n: TNode): Attr {
    const size = n.target !== undefined ? Buffer.byteLength(n.target) : n.entries ? 4096 : n.data.length;
    return { ino: n.ino, dev: 7, mode: n.mode, nlink: n.nlink, uid: n.uid, gid: n.gid, rdev: 0, size, blocks: Math.ceil(size / 512), blksize: 4096, atime: n.atime, mtime: n.mtime, ctime: n.ctime };
  }
  private entry(ino: number): Entry {
    this.lookups.set(ino, (this.lookups.get(ino) ?? 0) + 1);
    return { ino, generation: 0, attr: this.attr(this.node(ino)) };
  }
  private add(ctx: RequestContext, parent: number, name: string, mode: number): TNode {
    validateName(name);
    const d = this.dir(parent);
    if (d.has(name)) throw FsError.of('EEXIST');
    const n = this.make(this.next++, mode & ~(ctx.umask & 0o777), ctx);
    this.nodes.set(n.ino, n);
    d.set(name, n.ino);
    return n;
  }
  override async lookup(_ctx: RequestContext, parent: number, name: string): Promise<Entry> {
    validateName(name);
    const ino = this.dir(parent).get(name);
    if (ino === undefined) throw FsError.of('ENOENT');
    return this.entry(ino);
  }
  override async forget(_ctx: RequestContext, ino: number, n: number): Promise<void> {
    const left = (this.lookups.get(ino) ?? 0) - n;
    if (left < 0) this.excessForgets++;
    if (left <= 0) this.lookups.delete(ino); else this.lookups.set(ino, left);
  }
  override async getattr(_ctx: RequestContext, ino: number): Promise<Attr> { return this.attr(this.node(ino)); }
  override async setattr(_ctx: RequestContext, ino: number, c: SetattrRequest): Promise<Attr> {
    const n = this.node(ino);
    const now = nowTimespec();
    if (c.mode !== undefined) n.mode = (n.mode & S_IFMT) | (c.mode & 0o7777);
    if (c.uid !== undefined) n.uid = c.uid;
    if (c.gid !== undefined) n.gid = c.gid;
    if (c.size !== undefined) { const d = new Uint8Array(c.size); d.set(n.data.subarray(0, c.size)); n.data = d; n.mtime = now; }
    const pick = (t: Timespec | undefined, old: Timespec): Timespec => (t === undefined || t.nsec === UTIME_OMIT ? old : t.nsec === UTIME_NOW ? now : t);
    n.atime = pick(c.atime, n.atime);
    n.mtime = pick(c.mtime, n.mtime);
    return this.attr(n);
  }
  override async readlink(_ctx: RequestContext, ino: number): Promise<string> {
    const t = this.node(ino).target;
    if (t === undefined) throw FsError.of('EINVAL');
    return t;
  }
  override async mkdir(ctx: RequestContext, parent: number, name: string, mode: number): Promise<Entry> {
    const n = this.add(ctx, parent, name, S_IFDIR | mode);
    this.node(parent).nlink++;
    return this.entry(n.ino);
  }
  override async symlink(ctx: RequestContext, parent: number, name: string, target: string): Promise<Entry> {
    const n = this.add(ctx, parent, name, S_IFLNK | 0o777);
    n.target = target;
    return this.entry(n.ino);
  }
  override async unlink(_ctx: RequestContext, parent: number, name: string): Promise<void> {
    const d = this.dir(parent);
    const ino = d.get(name);
    if (ino === undefined) throw FsError.of('ENOENT');
    if (this.nodes.get(ino)?.entries) throw FsError.of('EISDIR');
    d.delete(name);
    this.nodes.get(ino)!.nlink--;
  }
  override async rmdir(_ctx: RequestContext, parent: number, name: string): Promise<void> {
    const d = this.dir(parent);
    const ino = d.get(name);
    if (ino === undefined) throw FsError.of('ENOENT');
    const n = this.nodes.get(ino)!;
    if (!n.entries) throw FsError.of('ENOTDIR');
    if (n.entries.size > 0) throw FsError.of('ENOTEMPTY');
    d.delete(name);
    this.node(parent).nlink--;
  }
  override async rename(_ctx: RequestContext, p: number, name: string, np: number, newname: string): Promise<void> {
    const from = this.dir(p);
    const to = this.dir(np);
    const ino = from.get(name);
    if (ino === undefined) throw FsError.of('ENOENT');
    validateName(newname);
    from.delete(name);
    to.set(newname, ino);
  }
  override async link(ctx: RequestContext, ino: number, np: number, newname: string): Promise<Entry> {
    const n = this.node(ino);
    if (n.entries) throw FsError.of('EPERM');
    validateName(newname);
    const d = this.dir(np);
    if (d.has(newname)) throw FsError.of('EEXIST');
    d.set(newname, ino);
    n.nlink++;
    return this.entry(ino);
  }
  private handle(ino: number, flags: number): number {
    const fh = this.nextFh++;
    this.handles.set(fh, { ino, flags });
    return fh;
  }
  override async open(_ctx: RequestContext, ino: number, flags: number): Promise<OpenResult> {
    const n = this.node(ino);
    if (flags & OpenFlags.O_TRUNC) n.data = new Uint8Array(0);
    return { fh: this.handle(ino, flags) };
  }
  override async create(ctx: RequestContext, parent: number, name: string, mode: number, flags: number): Promise<CreateResult> {
    const n = this.add(ctx, parent, name, S_IFREG | (mode & 0o7777));
    return { fh: this.handle(n.ino, flags), entry: this.entry(n.ino) };
  }
  override async read(_ctx: RequestContext, ino: number, _fh: number, length: number, position: number): Promise<Uint8Array> {
    this.largestIo = Math.max(this.largestIo, length);
    return this.node(ino).data.slice(position, position + length);
  }
  override async write(_ctx: RequestContext, ino: number, fh: number, data: Uint8Array, position: number): Promise<number> {
    this.largestIo = Math.max(this.largestIo, data.length);
    const n = this.node(ino);
    const pos = (this.handles.get(fh)!.flags & OpenFlags.O_APPEND) !== 0 ? n.data.length : position;
    const grown = new Uint8Array(Math.max(n.data.length, pos + data.length));
    grown.set(n.data);
    grown.set(data, pos);
    n.data = grown;
    return data.length;
  }
  override async release(_ctx: RequestContext, _ino: number, fh: number): Promise<void> { this.handles.delete(fh); }
  override async opendir(_ctx: RequestContext, ino: number): Promise<OpenResult> {
    this.dir(ino);
    return { fh: this.handle(ino, 0) };
  }
  override async readdir(_ctx: RequestContext, ino: number, _fh: number, offset: number): Promise<DirEntry[]> {
    const all = [...this.dir(ino)].map(([name, i], k) => ({ name, ino: i, type: typeOfMode(this.nodes.get(i)!.mode), offset: k + 1 }));
    return all.slice(offset, offset + 2); // two per call: the Volume must page through
  }
  override async releasedir(_ctx: RequestContext, _ino: number, fh: number): Promise<void> { this.handles.delete(fh); }
  override async access(_ctx: RequestContext, ino: number, mask: number): Promise<void> {
    const n = this.node(ino);
    if ((mask & 1) && !n.entries && (n.mode & 0o111) === 0) throw FsError.of('EACCES');
  }
  override async setxattr(_ctx: RequestContext, ino: number, name: string, value: Uint8Array): Promise<void> { this.node(ino).xattrs.set(name, value); }
  override async getxattr(_ctx: RequestContext, ino: number, name: string): Promise<Uint8Array> {
    const v = this.node(ino).xattrs.get(name);
    if (!v) throw FsError.of('ENODATA');
    return v;
  }
  override async listxattr(_ctx: RequestContext, ino: number): Promise<string[]> { return [...this.node(ino).xattrs.keys()]; }
  override async removexattr(_ctx: RequestContext, ino: number, name: string): Promise<void> {
    if (!this.node(ino).xattrs.delete(name)) throw FsError.of('ENODATA');
  }
}

function setup(): { fs: TinyFs; vol: Volume } {
  const fs = new TinyFs();
  return { fs, vol: new Volume(fs, { context: ROOT_CONTEXT }) };
}

async function failure(p: Promise<unknown>): Promise<FsError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(FsError);
    return e as FsError;
  }
  throw new Error('expected the call to fail');
}

describe('Volume path resolution', () => {
  it('resolves relative paths from the root, `.` in place, and `..` at the root stays there', async () => {
    const { fs, vol } = setup();
    await vol.mkdir('/a/b', { recursive: true });
    await vol.writeFile('a/b/f', 'x');
    expect(await vol.readFile('/a/./b/../b/f', 'utf8')).toBe('x');
    expect(await vol.readFile('/../../a/b/f', 'utf8')).toBe('x');
    expect(await vol.readFile('../a/b/f', 'utf8')).toBe('x');
    expect(await vol.readdir('/..')).toEqual(['a']);
    expect(await vol.realpath('a/b/..')).toBe('/a');
    expect(fs.liveInodes()).toBe(1);
  });

  it('follows symlinks: absolute targets from the volume root, relative from the link, `..` physically', async () => {
    const { fs, vol } = setup();
    await vol.mkdir('/x/y', { recursive: true });
    await vol.writeFile('/x/y/f', 'deep');
    await vol.writeFile('/x/top', 'top');
    await vol.symlink('/x/y', '/abs');
    await vol.symlink('y/f', '/x/rel');
    expect(await vol.readFile('/abs/f', 'utf8')).toBe('deep');
    expect(await vol.readFile('/x/rel', 'utf8')).toBe('deep');
    expect(await vol.readFile('/abs/../top', 'utf8')).toBe('top'); // `..` of the target, not of /abs
    expect(await vol.realpath('/abs/f')).toBe('/x/y/f');
    expect((await vol.stat('/x/rel')).isFile()).toBe(true);
    expect((await vol.lstat('/x/rel')).isSymbolicLink()).toBe(true);
    expect(await vol.readlink('/abs')).toBe('/x/y');
    expect(fs.liveInodes()).toBe(1);
  });

  it(`follows ${MAX_SYMLINKS} links and fails the next one with ELOOP`, async () => {
    const { fs, vol } = setup();
    await vol.writeFile('/l0', 'end');
    for (let i = 1; i <= MAX_SYMLINKS + 1; i++) await vol.symlink(`l${i - 1}`, `/l${i}`);
    expect(await vol.readFile(`/l${MAX_SYMLINKS}`, 'utf8')).toBe('end');
    const e = await failure(vol.readFile(`/l${MAX_SYMLINKS + 1}`));
    expect([e.code, e.syscall, e.path]).toEqual(['ELOOP', 'open', `/l${MAX_SYMLINKS + 1}`]);
    await vol.symlink('self', '/self');
    expect((await failure(vol.stat('/self'))).code).toBe('ELOOP');
    expect((await vol.lstat('/self')).isSymbolicLink()).toBe(true);
    expect(fs.liveInodes()).toBe(1);
  });

  it('treats a trailing slash as "must be a directory", following a final symlink', async () => {
    const { fs, vol } = setup();
    await vol.mkdir('/d');
    await vol.writeFile('/f', '');
    await vol.symlink('d', '/ld');
    expect((await failure(vol.stat('/f/'))).code).toBe('ENOTDIR');
    expect((await vol.lstat('/ld/')).isDirectory()).toBe(true);
    expect((await failure(vol.writeFile('/new/', 'x'))).code).toBe('EISDIR');
    expect((await failure(vol.unlink('/d/'))).code).toBe('EISDIR');
    expect((await failure(vol.unlink('/f/'))).code).toBe('ENOTDIR');
    expect((await failure(vol.rmdir('/ld/'))).code).toBe('ENOTDIR');
    expect((await failure(vol.symlink('x', '/nl/'))).code).toBe('ENOENT');
    expect((await failure(vol.rename('/f', '/g/'))).code).toBe('ENOTDIR');
    expect((await failure(vol.stat('/f/.'))).code).toBe('ENOTDIR');
    await vol.mkdir('/d2/');
    expect((await vol.stat('/d2')).isDirectory()).toBe(true);
    expect(fs.liveInodes()).toBe(1);
  });

  it('creates through a dangling symlink like open(O_CREAT), but not with O_EXCL', async () => {
    const { vol } = setup();
    await vol.symlink('target', '/dangling');
    expect((await failure(vol.writeFile('/dangling', 'x', { flag: 'wx' }))).code).toBe('EEXIST');
    await vol.writeFile('/dangling', 'x');
    expect(await vol.readFile('/target', 'utf8')).toBe('x');
  });
});

describe('Volume errors have the shape of node:fs errors', () => {
  it('carries code, negative errno, Node syscall names, path and dest, and Node\'s message', async () => {
    const { vol } = setup();
    const open = await failure(vol.readFile('/nope'));
    expect({ ...open, message: open.message }).toMatchObject({ code: 'ENOENT', errno: -2, syscall: 'open', path: '/nope' });
    expect(open.message).toBe("ENOENT: no such file or directory, open '/nope'");
    const ren = await failure(vol.rename('/a', '/b'));
    expect(ren.message).toBe("ENOENT: no such file or directory, rename '/a' -> '/b'");
    const sym = await failure(vol.symlink('t', '/missing/l'));
    expect([sym.syscall, sym.path, sym.dest]).toEqual(['symlink', 't', '/missing/l']);
    expect((await failure(vol.readdir('/nope'))).syscall).toBe('scandir');
    expect((await failure(vol.utimes('/nope', 1, 1))).syscall).toBe('utime');
    expect((await failure(vol.lstat(''))).code).toBe('ENOENT');
    await vol.mkdir('/d');
    const dir = await failure(vol.readFile('/d'));
    expect([dir.code, dir.syscall, dir.path]).toEqual(['EISDIR', 'read', undefined]);
    const rm = await failure(vol.rm('/d'));
    expect([rm.code, rm.syscall, rm.path]).toEqual(['EISDIR', 'rm', '/d']);
    expect((await failure(vol.mkdir('/d'))).code).toBe('EEXIST');
    expect((await failure(vol.link('/d', '/d2'))).code).toBe('EPERM');
    expect((await failure(vol.readlink('/d'))).code).toBe('EINVAL');
  });

  it('reports ENOSYS with the Node syscall when the filesystem lacks an operation', async () => {
    const vol = new Volume(new FilesystemBase(), { context: ROOT_CONTEXT });
    const e = await failure(vol.stat('/'));
    expect([e.code, e.syscall, e.path]).toEqual(['ENOSYS', 'stat', '/']);
  });
});

describe('Volume lookups', () => {
  it('forgets every lookup, on success and on failure, and an open handle holds exactly one', async () => {
    const { fs, vol } = setup();
    await vol.mkdir('/a/b/c', { recursive: true });
    await vol.writeFile('/a/b/c/f', 'x');
    await failure(vol.writeFile('/a/b/c/f/g', 'x'));
    await failure(vol.rmdir('/a'));
    expect(fs.liveInodes()).toBe(1);
    const h = await vol.open('/a/b/c/f', 'r+');
    expect(fs.liveInodes()).toBe(2);
    expect(fs.lookups.get(h.ino)).toBe(1);
    await h.close();
    await h.close();
    expect(fs.liveInodes()).toBe(1);
    expect(fs.excessForgets).toBe(0);
    expect(fs.handles.size).toBe(0);
  });
});

describe('Volume I/O and FileHandle', () => {
  it('moves large files in chunks of at most VOLUME_CHUNK', async () => {
    const { fs, vol } = setup();
    const big = Buffer.alloc(3 * VOLUME_CHUNK + 5, 7);
    big[big.length - 1] = 9;
    await vol.writeFile('/big', big);
    expect(Buffer.compare(await vol.readFile('/big'), big)).toBe(0);
    expect(fs.largestIo).toBe(VOLUME_CHUNK);
    await vol.copyFile('/big', '/copy');
    expect((await vol.stat('/copy')).size).toBe(big.length);
  });

  it('leaves the position where it was after an empty write, O_APPEND too (as write(2); found by volume-vs-node, seed -1002164846)', async () => {
    const { vol } = setup();
    await vol.writeFile('/a', 'hello');
    const h = await vol.open('/a', 'a+');
    await h.write('');
    const buf = Buffer.alloc(20, 0x20);
    expect((await h.read(buf, 0, 20, null)).bytesRead).toBe(5);
    expect(buf.toString()).toBe('hello               ');
    await h.close();
  });

  it('reads and writes with Node\'s position rules; O_APPEND writes land at the end', async () => {
    const { vol } = setup();
    await vol.writeFile('/f', 'hello');
    const h = await vol.open('/f', 'r+');
    const buf = Buffer.alloc(3);
    expect((await h.read(buf, 0, 3, null)).bytesRead).toBe(3);
    expect(buf.toString()).toBe('hel');
    expect((await h.read({ buffer: Buffer.alloc(5) })).buffer.subarray(0, 2).toString()).toBe('lo');
    await h.write('XY', 1);
    expect(await vol.readFile('/f', 'utf8')).toBe('hXYlo');
    await h.truncate(2);
    expect((await h.stat()).size).toBe(2);
    await h.close();
    expect((await failure(h.stat())).code).toBe('EBADF');
    const a = await vol.open('/f', 'a');
    await a.write(Buffer.from('++'), 0, 2, 0);
    const w = await failure(a.read(Buffer.alloc(1), 0, 1, 0));
    expect([w.code, w.syscall]).toEqual(['EBADF', 'read']);
    await a[Symbol.asyncDispose]();
    expect(await vol.readFile('/f', 'utf8')).toBe('hX++');
    await vol.appendFile('/f', '!');
    expect(await vol.readFile('/f', 'utf8')).toBe('hX++!');
    const r = await vol.open('/f');
    expect((await failure(r.write('z'))).syscall).toBe('write');
    expect((await failure(r.truncate())).code).toBe('EINVAL');
    await r.close();
  });

  it('honours wx, COPYFILE_EXCL, mkdir -p results and rm -r/force', async () => {
    const { fs, vol } = setup();
    await vol.writeFile('/f', 'x', { mode: 0o600 });
    expect((await vol.stat('/f')).mode & 0o777).toBe(0o600);
    expect((await failure(vol.writeFile('/f', 'y', { flag: 'wx' }))).code).toBe('EEXIST');
    const cp = await failure(vol.copyFile('/f', '/f', 1));
    expect([cp.code, cp.syscall, cp.path, cp.dest]).toEqual(['EEXIST', 'copyfile', '/f', '/f']);
    expect(await vol.mkdir('/p/q/r', { recursive: true })).toBe('/p');
    expect(await vol.mkdir('/p/q', { recursive: true })).toBeUndefined();
    expect((await failure(vol.mkdir('/f/x', { recursive: true }))).code).toBe('ENOTDIR');
    await vol.writeFile('/p/q/r/file', 'z');
    await vol.symlink('/f', '/p/q/link');
    await vol.rm('/p', { recursive: true });
    expect(await vol.readdir('/')).toEqual(['f']);
    await vol.rm('/gone', { force: true });
    expect((await failure(vol.rm('/gone'))).syscall).toBe('lstat');
    expect(fs.liveInodes()).toBe(1);
  });

  it('streams a byte range out and data in, closing the handle at the end', async () => {
    const { fs, vol } = setup();
    const out = vol.createWriteStream('/s', { highWaterMark: 4 });
    await pipeline(Readable.from(['abc', 'def', 'ghij']), out);
    expect(await vol.readFile('/s', 'utf8')).toBe('abcdefghij');
    const parts: string[] = [];
    for await (const chunk of vol.createReadStream('/s', { start: 2, end: 7, highWaterMark: 4, encoding: 'utf8' })) parts.push(chunk as string);
    expect(parts).toEqual(['cdef', 'gh']);
    const failed = await new Promise<unknown>((resolve) => vol.createReadStream('/nope').on('error', resolve));
    expect((failed as FsError).code).toBe('ENOENT');
    expect(fs.liveInodes()).toBe(1);
    expect(fs.handles.size).toBe(0);
  });

  it('lists directories across several readdir pages, with Dirents', async () => {
    const { vol } = setup();
    for (const n of ['a', 'b', 'c', 'd', 'e']) await vol.writeFile(`/${n}`, '');
    await vol.mkdir('/z');
    expect(await vol.readdir('/')).toEqual(['a', 'b', 'c', 'd', 'e', 'z']);
    const ents = await vol.readdir('/', { withFileTypes: true });
    expect(ents.map((d) => [d.name, d.isFile(), d.isDirectory(), d.parentPath])).toContainEqual(['z', false, true, '/']);
    await vol.mkdir('/z/y/x', { recursive: true });
    await vol.writeFile('/z/y/f', '');
    await vol.symlink('/z', '/z/y/loop'); // listed, not descended
    expect((await vol.readdir('/z', { recursive: true })).sort()).toEqual(['y', 'y/f', 'y/loop', 'y/x']);
    const deep = await vol.readdir('/z/', { recursive: true, withFileTypes: true });
    expect(deep.map((d) => `${d.parentPath}|${d.name}`).sort()).toEqual(['/z/y|f', '/z/y|loop', '/z/y|x', '/z/|y']);
  });
});

describe('Volume metadata', () => {
  it('keeps nanoseconds from Timespec input and follows Node for seconds and Dates', async () => {
    const { vol } = setup();
    await vol.writeFile('/f', '');
    await vol.utimes('/f', { sec: 1_700_000_000, nsec: 123_456_789 }, 1_600_000_000n * 1_000_000_000n + 987_654_321n);
    const big = await vol.stat('/f', { bigint: true });
    expect(big.atimeNs).toBe(1_700_000_000_123_456_789n);
    expect(big.mtimeNs).toBe(1_600_000_000_987_654_321n);
    expect(big.mtimeMs).toBe(1_600_000_000_987n);
    await vol.utimes('/f', new Date(1_500_000_000_250), '1400000000.5');
    const st = await vol.stat('/f');
    expect(st.atimeMs).toBe(1_500_000_000_250);
    expect(st.mtimeMs).toBe(1_400_000_000_500);
    expect(st.mtime.getTime()).toBe(1_400_000_000_500);
    expect(toTimespec(1.0000019)).toEqual({ sec: 1, nsec: 1000 }); // libuv keeps microseconds
  });

  it('changes mode and owner, checks access, and handles xattrs with and without following', async () => {
    const { vol } = setup();
    await vol.writeFile('/f', '');
    await vol.symlink('f', '/l');
    await vol.chmod('/l', 0o640);
    expect((await vol.stat('/f')).mode).toBe(S_IFREG | 0o640);
    await vol.chown('/f', 12, 34);
    await vol.lchown('/l', 56, -1);
    expect([(await vol.stat('/f')).uid, (await vol.stat('/f')).gid, (await vol.lstat('/l')).uid]).toEqual([12, 34, 56]);
    expect((await failure(vol.access('/f', 1))).code).toBe('EACCES');
    await vol.access('/f');
    await vol.setxattr('/l', 'user.k', 'v');
    expect((await vol.getxattr('/f', 'user.k')).toString()).toBe('v');
    expect(await vol.llistxattr('/l')).toEqual([]);
    await vol.lsetxattr('/l', 'user.own', 'w');
    expect(await vol.listxattr('/l')).toEqual(['user.k']);
    await vol.removexattr('/f', 'user.k');
    const e = await failure(vol.getxattr('/f', 'user.k'));
    expect([e.code, e.syscall]).toEqual(['ENODATA', 'getxattr']);
  });

  it('maps Node flag strings to OpenFlags and rejects unknown ones', () => {
    const { O_WRONLY, O_RDWR, O_CREAT, O_EXCL, O_APPEND, O_TRUNC } = OpenFlags;
    expect(parseOpenFlags('ax', 'r')).toBe(O_APPEND | O_CREAT | O_WRONLY | O_EXCL);
    expect(parseOpenFlags('w+', 'r')).toBe(O_TRUNC | O_CREAT | O_RDWR);
    expect(parseOpenFlags(undefined, 'a+')).toBe(O_APPEND | O_CREAT | O_RDWR);
    expect(() => parseOpenFlags('rw', 'r')).toThrow(FsError);
  });
});
