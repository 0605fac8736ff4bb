/**
 * The reference model checked against the real kernel: the same random command sequences
 * the model runner applies to a Filesystem are applied through `node:fs` to a fresh temp
 * directory (ext4/tmpfs, as root or not), and every result and errno must match the model.
 * This is what keeps the model — and so MemoryLayer, which must agree with it — honest
 * about kernel semantics. Symlinks and held lookups have no path-level analogue here (the
 * kernel follows symlinks in paths; the model's walker does not), and renameat2 flags are
 * not reachable from Node, so those commands are left out.
 */
import { promises as fsp, constants as C } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import {
  FsModel, chmodCmd, closeHandleCmd, fcRuns, openHandleCmd, readHandleCmd, writeHandleCmd, linkCmd, modelToSpec, normalizeSpec as normalize, mkdirCmd, readFileCmd, readdirCmd, renameCmd, rmdirCmd, statCmd,
  truncateCmd, unlinkCmd, writeFileCmd, type FsCommand, type Outcome, type WriteHow,
} from './model.js';
import { pathArb } from './arbitraries.js';
import { dumpHost } from './tree.js';

/** The host side of a command: the temp directory everything happens in. */
export interface HostReal {
  /** Absolute path of the directory standing for the root. */
  readonly root: string;
  /** Open handles, parallel to `FsModel.state.handles`. */
  readonly handles: FileHandle[];
}

async function outcome(fn: () => Promise<unknown>): Promise<Outcome> {
  try {
    return { ok: await fn() };
  } catch (e) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && code.startsWith('E')) return { err: code };
    throw e;
  }
}

const at = (r: HostReal, parts: readonly string[]): string => join(r.root, ...parts);

/** A model command paired with its `node:fs` implementation on a host directory. */
export class HostCommand implements fc.AsyncCommand<FsModel, HostReal> {
  /** Pair `model` (expected outcome) with `host` (what the kernel says). */
  constructor(readonly model: FsCommand, readonly host: (r: HostReal) => Promise<Outcome>) {}
  /** Always applicable. */
  check(): boolean {
    return true;
  }
  /** Compare the model's outcome with the kernel's. */
  async run(m: FsModel, r: HostReal): Promise<void> {
    const expected = this.model.model(m);
    const actual = await this.host(r);
    const e = JSON.stringify(expected);
    const a = JSON.stringify(actual);
    if (e !== a) throw new Error(`${this.model.label}: model says ${e}, the kernel says ${a}`);
  }
  /** The strace-like line. */
  toString(): string {
    return this.model.label;
  }
}

function writeFlags(how: WriteHow): number {
  const base = C.O_WRONLY | C.O_CREAT | C.O_NOFOLLOW;
  if (how === 'trunc') return base | C.O_TRUNC;
  if (how === 'append') return base | C.O_APPEND;
  if (how === 'excl') return base | C.O_EXCL;
  return base;
}

/** Host commands over a small name pool (the path-level subset of `fsCommands`). */
export function hostCommands(
  names: readonly string[] = ['a', 'b', 'c'], maxDepth = 3, maxCommands = 40,
  chmodModes: readonly number[] = [0o755, 0o700, 0o644, 0o600, 0o4755, 0o2755, 0o6755],
): fc.Arbitrary<Iterable<fc.AsyncCommand<FsModel, HostReal>>> {
  const path = pathArb(names, maxDepth);
  const content = fc.string({ unit: fc.constantFrom('x', 'y', 'z', '\n'), maxLength: 6 });
  const how: fc.Arbitrary<WriteHow> = fc.oneof(fc.constantFrom<WriteHow>('trunc', 'append', 'excl'), fc.nat(12).map((n) => ({ at: n })));
  const mkdir = fc.tuple(path, fc.constantFrom(0o755, 0o700)).map(([p, mode]) => new HostCommand(mkdirCmd(p, mode), (r) => outcome(async () => {
    await fsp.mkdir(at(r, p), mode);
    return null;
  })));
  const write = fc.tuple(path, content, how).map(([p, c, h]) => new HostCommand(writeFileCmd(p, c, h), (r) => outcome(async () => {
    const fh = await fsp.open(at(r, p), writeFlags(h), 0o666);
    try {
      const buf = Buffer.from(c);
      const { bytesWritten } = await fh.write(buf, 0, buf.length, typeof h === 'object' ? h.at : 0);
      return bytesWritten;
    } finally {
      await fh.close();
    }
  })));
  const rename = fc.tuple(path, path).map(([a, b]) => new HostCommand(renameCmd(a, b, 0), (r) => outcome(async () => {
    await fsp.rename(at(r, a), at(r, b));
    return null;
  })));
  const cmds: fc.Arbitrary<fc.AsyncCommand<FsModel, HostReal>>[] = [
    mkdir, mkdir, mkdir, write, write, write, rename, rename,
    path.map((p) => new HostCommand(unlinkCmd(p), (r) => outcome(async () => { await fsp.unlink(at(r, p)); return null; }))),
    path.map((p) => new HostCommand(rmdirCmd(p), (r) => outcome(async () => { await fsp.rmdir(at(r, p)); return null; }))),
    fc.tuple(path, path).map(([a, b]) => new HostCommand(linkCmd(a, b), (r) => outcome(async () => { await fsp.link(at(r, a), at(r, b)); return null; }))),
    path.map((p) => new HostCommand(readFileCmd(p), (r) => outcome(async () => (await fsp.readFile(at(r, p))).toString('utf8')))),
    path.map((p) => new HostCommand(statCmd(p), (r) => outcome(async () => {
      const st = await fsp.lstat(at(r, p));
      const type = st.isDirectory() ? 'directory' : st.isFile() ? 'file' : 'symlink';
      const base = { type, mode: st.mode & 0o7777, nlink: st.nlink };
      return type === 'directory' ? base : { ...base, size: st.size };
    }))),
    fc.array(fc.constantFrom(...names), { maxLength: 2 }).map((p) => new HostCommand(readdirCmd(p), (r) => outcome(async () => {
      const list = await fsp.readdir(at(r, p), { withFileTypes: true });
      return list.map((d) => [d.name, d.isDirectory() ? 'directory' : d.isFile() ? 'file' : 'symlink']).sort((x, y) => (x[0]! < y[0]! ? -1 : 1));
    }))),
    fc.tuple(path, fc.constantFrom(...chmodModes)).map(([p, mode]) => new HostCommand(chmodCmd(p, mode), (r) => outcome(async () => {
      await fsp.chmod(at(r, p), mode);
      return null;
    }))),
    fc.tuple(path, fc.nat(10)).map(([p, size]) => new HostCommand(truncateCmd(p, size), (r) => outcome(async () => {
      await fsp.truncate(at(r, p), size);
      return null;
    }))),
  ];
  cmds.push(
    fc.tuple(path, fc.boolean()).map(([p, append]) => new HostCommand(openHandleCmd(p, append), (r) => outcome(async () => {
      r.handles.push(await fsp.open(at(r, p), C.O_RDWR | C.O_NOFOLLOW | (append ? C.O_APPEND : 0)));
      return null;
    }))),
    fc.tuple(fc.nat(8), content, fc.nat(10)).map(([i, c, pos]) => new HostCommand(writeHandleCmd(i, c, pos), (r) => outcome(async () => {
      if (r.handles.length === 0) return null;
      const buf = Buffer.from(c);
      return (await r.handles[i % r.handles.length]!.write(buf, 0, buf.length, pos)).bytesWritten;
    }))),
    fc.nat(8).map((i) => new HostCommand(readHandleCmd(i), (r) => outcome(async () => {
      if (r.handles.length === 0) return null;
      const buf = Buffer.alloc(64);
      const { bytesRead } = await r.handles[i % r.handles.length]!.read(buf, 0, 64, 0);
      return buf.subarray(0, bytesRead).toString('utf8');
    }))),
    fc.nat(8).map((i) => new HostCommand(closeHandleCmd(i), (r) => outcome(async () => {
      if (r.handles.length === 0) return null;
      const [h] = r.handles.splice(i % r.handles.length, 1);
      await h!.close();
      return null;
    }))),
  );
  return fc.commands(cmds, { maxCommands, size: 'max' });
}

/** Options of `runModelOnHost`. */
export interface RunModelOnHostOptions {
  /** Runs. Default `fcRuns(200)`. */
  numRuns?: number;
  /** Name pool. Default ['a', 'b', 'c']. */
  names?: readonly string[];
  /** fast-check seed. */
  seed?: number;
  /**
   * Run as this non-root user (effective ids switched with seteuid/setegid for the run, which
   * needs root; chmod then keeps owner rwx). Default: the current user.
   */
  as?: { readonly uid: number; readonly gid: number };
}

/**
 * Property: the reference model agrees with the kernel (through `node:fs` on fresh temp
 * directories `layerfs-model-*`, umask 0o022) on random command sequences. Run as root the
 * kernel's root bypasses apply, as in the model.
 */
export async function runModelOnHost(options: RunModelOnHostOptions = {}): Promise<void> {
  const oldUmask = process.umask(0o022);
  const as = options.as;
  const modes = as ? [0o755, 0o700, 0o4755, 0o2755, 0o6755] : undefined;
  const groups = as ? process.getgroups!() : [];
  const uid = as ? as.uid : (process.geteuid?.() ?? 0);
  if (as) {
    process.setgroups!([as.gid]);
    process.setegid!(as.gid);
    process.seteuid!(as.uid);
  }
  try {
    await fc.assert(
      fc.asyncProperty(hostCommands(options.names, 3, 40, modes), async (cmds) => {
        const root = await fsp.mkdtemp(join(tmpdir(), 'layerfs-model-'));
        await fsp.chmod(root, 0o755);
        try {
          const model = new FsModel(uid);
          const real: HostReal = { root, handles: [] };
          try {
            await fc.asyncModelRun(() => ({ model, real }), cmds);
          } finally {
            for (const h of real.handles.splice(0)) await h.close();
          }
          const got = JSON.stringify(normalize(await dumpHost(root, { xattrs: false, oci: false })));
          const want = JSON.stringify(normalize(modelToSpec(model.state)));
          if (got !== want) throw new Error(`final tree differs:\n  kernel: ${got}\n  model:  ${want}`);
        } finally {
          await fsp.rm(root, { recursive: true, force: true });
        }
      }),
      { numRuns: options.numRuns ?? fcRuns(200), ...(options.seed !== undefined ? { seed: options.seed } : {}) },
    );
  } finally {
    if (as) {
      process.seteuid!(0);
      process.setegid!(0);
      process.setgroups!(groups);
    }
    process.umask(oldUmask);
  }
}
