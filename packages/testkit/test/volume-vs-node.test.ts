// Differential property test: the same random operation sequences applied to a `Volume` over a
// `MemoryLayer` and to `node:fs/promises` on a fresh temporary directory (volume path `/a/b`
// ↔ host `<tmp>/a/b`) must give the same results and the same errors (code, syscall, path,
// dest), and the Volume must have forgotten every lookup after every call. Run once as root
// (the process) and once as an unprivileged user (the host side switches its effective ids,
// the Volume gets the same uid/gid), so the kernel's permission errors are compared too.
//
// Safety: nothing generated can leave the temp dir on the host. Paths have no `..`, symlink
// targets are either absolute (mapped into the temp dir on the host) or relative without `..`;
// the `..` property uses relative targets only and rewrites a root-level `..` (see hostForm).
// Runs: 200 per property by default; LAYERFS_FC_RUNS raises it (the nightly size is 2000);
// LAYERFS_FC_SEED/LAYERFS_FC_PATH replay a reported counterexample.
import { afterAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import * as fsp from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { OpenFlags, Volume, processContext, typeOfMode, type FileType, type RequestContext } from '@layerfs/core';
import { MemoryLayer } from '../src/index.js';

const RUNS = Number(process.env.LAYERFS_FC_RUNS ?? 200);
/** Replay a reported failure: LAYERFS_FC_SEED and LAYERFS_FC_PATH from fast-check's report. */
const REPLAY = process.env.LAYERFS_FC_SEED === undefined ? {} : {
  seed: Number(process.env.LAYERFS_FC_SEED),
  ...(process.env.LAYERFS_FC_PATH ? { path: process.env.LAYERFS_FC_PATH, endOnFailure: true } : {}),
};
const UMASK = 0o022;

/** The two sides under comparison: a Volume and the host's fs/promises rooted at a temp dir. */
interface Side {
  /** Map a volume path to this side's path. */
  p(path: string): string;
  /** Map a symlink target as written by the test to this side's target. */
  target(t: string): string;
  /** The fs/promises-shaped API of this side. */
  fs: Pick<Volume, 'mkdir' | 'writeFile' | 'appendFile' | 'readFile' | 'readdir' | 'rename' | 'unlink' | 'rmdir'
    | 'rm' | 'symlink' | 'readlink' | 'link' | 'chmod' | 'truncate' | 'stat' | 'lstat' | 'utimes' | 'lutimes'
    | 'chown' | 'lchown' | 'realpath' | 'access' | 'copyFile'>;
  /** Open (only the FileHandle calls the test makes are used). */
  open(path: string, flags: string | number): Promise<{
    write(data: string, position?: number | null): Promise<{ bytesWritten: number }>;
    write(data: Buffer, offset: number, length: number, position: number | null): Promise<{ bytesWritten: number }>;
    writeFile(data: string): Promise<void>;
    sync(): Promise<void>;
    read(buf: Buffer, offset: number, length: number, position: number): Promise<{ bytesRead: number }>;
    stat(): Promise<{ size: number }>;
    truncate(len: number): Promise<void>;
    readFile(encoding: 'utf8'): Promise<string>;
    close(): Promise<void>;
  }>;
}

type Op =
  | { op: 'mkdir'; path: string; recursive: boolean; mode: number | undefined }
  | { op: 'writeFile'; path: string; data: string; flag: 'w' | 'wx' | 'a'; mode: number | undefined }
  | { op: 'appendFile'; path: string; data: string }
  | { op: 'readFile'; path: string }
  | { op: 'readdir'; path: string; withFileTypes: boolean; recursive: boolean }
  | { op: 'rename'; path: string; dest: string }
  | { op: 'unlink'; path: string }
  | { op: 'rmdir'; path: string }
  | { op: 'rm'; path: string; recursive: boolean; force: boolean }
  | { op: 'symlink'; target: string; path: string }
  | { op: 'readlink'; path: string }
  | { op: 'link'; path: string; dest: string }
  | { op: 'chmod'; path: string; mode: number }
  | { op: 'truncate'; path: string; len: number }
  | { op: 'stat'; path: string; follow: boolean }
  | { op: 'utimes'; path: string; atime: number; mtime: number; follow: boolean }
  | { op: 'chown'; path: string; uid: number; gid: number; follow: boolean }
  | { op: 'realpath'; path: string }
  | { op: 'access'; path: string; mode: number }
  | { op: 'copyFile'; path: string; dest: string; excl: boolean }
  | { op: 'handle'; path: string; flags: string | number; data: string; position: number | null; len: number };

const name = fc.constantFrom('a', 'b', 'c');
const pathArb = fc.tuple(
  fc.array(fc.oneof({ weight: 8, arbitrary: name }, { weight: 1, arbitrary: fc.constant('.') }), { minLength: 1, maxLength: 3 }),
  fc.constantFrom('', '', '', '', '', '', '', '/'),
).map(([parts, slash]) => `/${parts.join('/')}${slash}`);
const relativeTargetArb = fc.array(name, { minLength: 1, maxLength: 2 }).map((p) => p.join('/'));
const dataArb = fc.constantFrom('', 'x', 'hello', 'abcdefgh');
const modeArb = fc.constantFrom(undefined, 0o755, 0o600, 0o444);
const { O_RDONLY, O_RDWR, O_CREAT, O_NOFOLLOW, O_DIRECTORY } = OpenFlags;

/** Operations on paths from `pathArb`, making symlinks to targets from `targetArb`. */
function opsOf(pathArb: fc.Arbitrary<string>, targetArb: fc.Arbitrary<string>): fc.Arbitrary<Op> {
  return fc.oneof(
    { weight: 4, arbitrary: fc.record({ op: fc.constant('mkdir' as const), path: pathArb, recursive: fc.boolean(), mode: modeArb }) },
    {
      weight: 4,
      arbitrary: fc.record({
        op: fc.constant('writeFile' as const), path: pathArb, data: dataArb,
        flag: fc.constantFrom('w' as const, 'wx' as const, 'a' as const), mode: modeArb,
      }),
    },
    fc.record({ op: fc.constant('appendFile' as const), path: pathArb, data: dataArb }),
    { weight: 2, arbitrary: fc.record({ op: fc.constant('readFile' as const), path: pathArb }) },
    { weight: 2, arbitrary: fc.record({ op: fc.constant('readdir' as const), path: pathArb, withFileTypes: fc.boolean(), recursive: fc.boolean() }) },
    { weight: 2, arbitrary: fc.record({ op: fc.constant('rename' as const), path: pathArb, dest: pathArb }) },
    fc.record({ op: fc.constant('unlink' as const), path: pathArb }),
    fc.record({ op: fc.constant('rmdir' as const), path: pathArb }),
    fc.record({ op: fc.constant('rm' as const), path: pathArb, recursive: fc.boolean(), force: fc.boolean() }),
    { weight: 2, arbitrary: fc.record({ op: fc.constant('symlink' as const), target: targetArb, path: pathArb }) },
    fc.record({ op: fc.constant('readlink' as const), path: pathArb }),
    fc.record({ op: fc.constant('link' as const), path: pathArb, dest: pathArb }),
    fc.record({ op: fc.constant('chmod' as const), path: pathArb, mode: fc.constantFrom(0o755, 0o644, 0o700, 0o600, 0o000, 0o777) }),
    fc.record({ op: fc.constant('truncate' as const), path: pathArb, len: fc.constantFrom(0, 2, 10) }),
    { weight: 3, arbitrary: fc.record({ op: fc.constant('stat' as const), path: pathArb, follow: fc.boolean() }) },
    fc.record({
      op: fc.constant('utimes' as const), path: pathArb,
      atime: fc.integer({ min: 0, max: 2_000_000_000_000 }).map((n) => n / 1000),
      mtime: fc.integer({ min: 0, max: 2_000_000_000_000 }).map((n) => n / 1000),
      follow: fc.boolean(),
    }),
    fc.record({
      op: fc.constant('chown' as const), path: pathArb, uid: fc.constantFrom(-1, 0, 1000), gid: fc.constantFrom(-1, 0, 1000),
      follow: fc.boolean(),
    }),
    fc.record({ op: fc.constant('realpath' as const), path: pathArb }),
    fc.record({ op: fc.constant('access' as const), path: pathArb, mode: fc.constantFrom(0, 1, 2, 4, 7) }),
    fc.record({ op: fc.constant('copyFile' as const), path: pathArb, dest: pathArb, excl: fc.boolean() }),
    fc.record({
      op: fc.constant('handle' as const), path: pathArb,
      flags: fc.constantFrom<string | number>(
        'r', 'r+', 'w+', 'a', 'a+', 'wx', O_RDONLY | O_NOFOLLOW, O_RDONLY | O_DIRECTORY, O_RDWR | O_CREAT | O_NOFOLLOW,
      ),
      data: dataArb, position: fc.constantFrom(null, 0, 3), len: fc.constantFrom(0, 1, 20),
    }),
  );
}

/** Plain absolute paths (no `..`), and symlink targets absolute or relative. */
const opArb = opsOf(pathArb, fc.oneof(pathArb, relativeTargetArb));

/**
 * The lexical depth reached before each component; a path is usable when `..` is never the
 * last component at depth 0 (there the volume's "stays at the root" and the host's rewrite
 * below would differ: rmdir of `..` vs of `.`).
 */
function dotdotUsable(parts: string[]): boolean {
  let depth = 0;
  for (const [i, c] of parts.entries()) {
    if (c === '..' && depth === 0 && i === parts.length - 1) return false;
    depth = c === '..' ? Math.max(0, depth - 1) : c === '.' ? depth : depth + 1;
  }
  return true;
}

/**
 * The host form of a volume path: `..` at lexical depth 0 becomes `./` (same length, and the
 * same meaning as the volume's root-clamped `..`). With only relative symlink targets free of
 * `..`, every object's physical depth is at least its lexical depth, so this keeps every host
 * call inside the temp dir.
 */
function hostForm(path: string): string {
  let depth = 0;
  return path.split('/').map((c) => {
    if (c === '' || c === '.') return c;
    if (c !== '..') { depth++; return c; }
    if (depth === 0) return './';
    depth--;
    return c;
  }).join('/');
}

/** Paths with `.` and `..` components, and relative symlink targets only (see `hostForm`). */
const dotdotOpArb = opsOf(
  fc.tuple(
    fc.array(fc.oneof({ weight: 6, arbitrary: name }, { weight: 1, arbitrary: fc.constant('.') }, { weight: 3, arbitrary: fc.constant('..') }), { minLength: 1, maxLength: 4 }),
    fc.constantFrom('', '', '', '/'),
  ).filter(([parts]) => dotdotUsable(parts)).map(([parts, slash]) => `/${parts.join('/')}${slash}`),
  relativeTargetArb,
);

function typeOf(mode: number): FileType {
  return typeOfMode(mode);
}

/** Apply one operation; the comparable part of its result. */
async function apply(side: Side, op: Op): Promise<unknown> {
  const { fs } = side;
  const p = side.p(op.path);
  switch (op.op) {
    case 'mkdir': {
      const first = await fs.mkdir(p, { recursive: op.recursive, ...(op.mode === undefined ? {} : { mode: op.mode }) });
      return first === undefined ? undefined : unmap(side, first);
    }
    case 'writeFile': return fs.writeFile(p, op.data, { flag: op.flag, ...(op.mode === undefined ? {} : { mode: op.mode }) });
    case 'appendFile': return fs.appendFile(p, op.data);
    case 'readFile': return fs.readFile(p, 'utf8');
    case 'readdir':
      if (op.withFileTypes) {
        return (await fs.readdir(p, { withFileTypes: true, recursive: op.recursive }))
          .map((d) => [unmap(side, d.parentPath), d.name, d.isFile(), d.isDirectory(), d.isSymbolicLink()]).sort();
      }
      // Recursive names only without types: Node's names mode descends symlinked directories, a Volume does not.
      return (await fs.readdir(p)).sort();
    case 'rename': return fs.rename(p, side.p(op.dest));
    case 'unlink': return fs.unlink(p);
    case 'rmdir': return fs.rmdir(p);
    case 'rm': return fs.rm(p, { recursive: op.recursive, force: op.force });
    case 'symlink': return fs.symlink(side.target(op.target), p);
    case 'readlink': return unmap(side, await fs.readlink(p));
    case 'link': return fs.link(p, side.p(op.dest));
    case 'chmod': return fs.chmod(p, op.mode);
    case 'truncate': return fs.truncate(p, op.len);
    case 'stat': {
      const st = op.follow ? await fs.stat(p) : await fs.lstat(p);
      const type = typeOf(st.mode);
      return { type, mode: st.mode, nlink: st.nlink, size: type === 'file' ? st.size : undefined };
    }
    case 'utimes': {
      await (op.follow ? fs.utimes(p, op.atime, op.mtime) : fs.lutimes(p, op.atime, op.mtime));
      const st = op.follow ? await fs.stat(p) : await fs.lstat(p);
      return { atimeMs: st.atimeMs, mtimeMs: st.mtimeMs };
    }
    case 'chown': {
      await (op.follow ? fs.chown(p, op.uid, op.gid) : fs.lchown(p, op.uid, op.gid));
      const st = op.follow ? await fs.stat(p) : await fs.lstat(p);
      return { uid: st.uid, gid: st.gid, mode: st.mode };
    }
    case 'realpath': return unmap(side, await fs.realpath(p));
    case 'access': return fs.access(p, op.mode);
    case 'copyFile': return fs.copyFile(p, side.p(op.dest), op.excl ? 1 : 0);
    case 'handle': {
      const h = await side.open(p, op.flags);
      const out: unknown[] = [];
      try {
        for (const step of [
          async () => (await h.write(op.data, op.position)).bytesWritten,
          async () => (await h.write(Buffer.from(op.data), 0, op.data.length, op.position)).bytesWritten,
          async () => (await h.read(Buffer.alloc(0), 0, 0, 0)).bytesRead,
          async () => { await h.writeFile(op.data); await h.sync(); return null; },
          async () => {
            const buf = Buffer.alloc(32);
            const { bytesRead } = await h.read(buf, 0, 32, 0);
            return buf.subarray(0, bytesRead).toString('utf8');
          },
          async () => { await h.truncate(op.len); return null; },
          async () => (await h.stat()).size,
          async () => h.readFile('utf8'),
        ]) {
          out.push(await step().catch((e: NodeJS.ErrnoException) => ({ code: e.code, syscall: e.syscall })));
        }
      } finally {
        await h.close();
      }
      return out;
    }
  }
}

let host: Side;
let hostRoot = '';
let hostReal = '';

/** Strip the host temp dir from a path the host returned (readlink, realpath). */
/** (host form, volume path) of every path the current operation gave the host. */
const hostForms: Array<[string, string]> = [];

/** A host path (readlink, realpath, error path, mkdir result) as the volume would say it. */
function unmap(side: Side, path: string): string {
  if (side !== host) return path;
  for (const base of [hostReal, hostRoot]) {
    if (path !== base && !path.startsWith(`${base}/`)) continue;
    const rel = path === base ? '/' : path.slice(base.length);
    // A prefix of a rewritten path maps to the same-length prefix of the original.
    const pair = hostForms.find(([h]) => h === rel) ?? hostForms.find(([h]) => h.startsWith(rel));
    return pair ? pair[1].slice(0, rel.length) : rel;
  }
  return path;
}

function unmapError(side: Side, e: unknown): unknown {
  const err = e as NodeJS.ErrnoException & { dest?: string };
  const code = err.code === 'ERR_FS_EISDIR' ? 'EISDIR' : err.code;
  if (typeof code !== 'string' || !/^E[A-Z]+$/.test(code)) throw e;
  const path = err.path === undefined ? undefined : side === host ? unmap(side, err.path) : err.path;
  const dest = err.dest === undefined ? undefined : side === host ? unmap(side, err.dest) : err.dest;
  return { error: code, syscall: err.syscall, path, dest };
}

async function outcome(side: Side, op: Op): Promise<unknown> {
  hostForms.length = 0;
  try {
    return { ok: await apply(side, op) };
  } catch (e) {
    return unmapError(side, e);
  }
}

const made: string[] = [];
afterAll(async () => {
  for (const dir of made) await fsp.rm(dir, { recursive: true, force: true });
});

/** Who the sequence runs as: the process as it is (root here), or an unprivileged uid/gid. */
interface Identity {
  /** Context of the Volume's calls. */
  ctx: RequestContext;
  /** Switch the process's effective ids to `ctx` for the host side (undefined: stay as is). */
  enter?(): void;
  /** Switch back. */
  leave?(): void;
}

const isRoot = process.getuid?.() === 0;
const USER = 1000;

function unprivileged(): Identity {
  const groups = process.getgroups?.() ?? [];
  return {
    ctx: { uid: USER, gid: USER, groups: [USER], pid: process.pid, umask: UMASK },
    enter() { process.setgroups!([USER]); process.setegid!(USER); process.seteuid!(USER); },
    leave() { process.seteuid!(0); process.setegid!(0); process.setgroups!(groups); },
  };
}

/** Run random sequences on both sides as `who`; every result must agree and no lookup may be left. */
async function agree(who: Identity, runs: number, ops: fc.Arbitrary<Op>): Promise<void> {
  expect(process.umask()).toBe(UMASK); // both sides create with the same umask
  const { ctx } = who;
  await fc.assert(
    fc.asyncProperty(fc.array(ops, { minLength: 1, maxLength: 25 }), async (seq) => {
      // The volume's root is two levels down: a walk that wrongly climbs out shows up as a
      // mismatch inside our own temp dir instead of touching anything else.
      const top = await fsp.mkdtemp(join(tmpdir(), 'layerfs-volume-'));
      made.push(top);
      await fsp.chmod(top, 0o755);
      hostRoot = join(top, 'guard', 'root');
      await fsp.mkdir(hostRoot, { recursive: true, mode: 0o755 });
      await fsp.chown(hostRoot, ctx.uid, ctx.gid);
      hostReal = await fsp.realpath(hostRoot);
      host = {
        p: (path) => {
          const h = hostForm(path);
          hostForms.push([h, path]);
          return hostRoot + h;
        },
        target: (t) => (t.startsWith('/') ? hostRoot + t : t),
        fs: fsp as unknown as Side['fs'],
        open: (path, flags) => fsp.open(path, flags) as never,
      };
      const layer = new MemoryLayer({ rootMode: 0o755, rootUid: ctx.uid, rootGid: ctx.gid });
      const vol = new Volume(layer, { context: ctx });
      const volume: Side = {
        p: (path) => path,
        target: (t) => t,
        fs: vol,
        open: (path, flags) => vol.open(path, flags),
      };
      try {
        for (const [i, op] of seq.entries()) {
          who.enter?.();
          let expected: unknown;
          try {
            expected = await outcome(host, op);
          } finally {
            who.leave?.();
          }
          const actual = await outcome(volume, op);
          expect({ step: i, op, result: actual }).toEqual({ step: i, op, result: expected });
          expect(layer.liveInodes(), `lookups left after ${JSON.stringify(op)}`).toBe(1);
        }
      } finally {
        await fsp.rm(top, { recursive: true, force: true });
        made.pop();
      }
    }),
    { numRuns: runs, ...REPLAY },
  );
}

describe('Volume over MemoryLayer agrees with node:fs/promises', () => {
  it(`gives the same results and errors for random operation sequences (${RUNS} runs)`, async () => {
    await agree({ ctx: processContext(UMASK) }, RUNS, opArb);
  });

  // Needs root: the host side switches its effective uid/gid to an unprivileged user and back.
  it.skipIf(!isRoot)(`agrees as an unprivileged user, permission errors included (${RUNS} runs; root only)`, async () => {
    // access(2) checks the real uid, which stays root on the host side: leave it out here.
    await agree(unprivileged(), RUNS, opArb.filter((op) => op.op !== 'access'));
  });

  it(`agrees on paths with \`.\` and \`..\` through relative symlinks (${RUNS} runs)`, async () => {
    await agree({ ctx: processContext(UMASK) }, RUNS, dotdotOpArb);
  });

  // Needs root, as above: search permission on `.` and `..` is checked as the kernel does.
  it.skipIf(!isRoot)(`agrees on \`.\` and \`..\` as an unprivileged user (${RUNS} runs; root only)`, async () => {
    await agree(unprivileged(), RUNS, dotdotOpArb.filter((op) => op.op !== 'access'));
  });
});
