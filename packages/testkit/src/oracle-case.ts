/**
 * The data of the kernel-overlayfs oracle: layer trees (with whiteouts, opaque directories
 * and hard links), the operations a sequence applies, a case (two lowers, an upper and an
 * operation list), the fast-check arbitraries that generate them, and the printers that
 * render a case as a layer listing plus a strace-like call log (and as a literal that can
 * be pasted into a regression test).
 */
import fc from 'fast-check';

/** A node of a layer tree as the oracle lays it out on disk. */
export type OracleNode =
  /** A regular file with `data` (ASCII), permission bits and optional user xattrs. */
  | { readonly t: 'f'; readonly data: string; readonly mode: number; readonly x?: Readonly<Record<string, string>> }
  /** A directory; `opaque` marks it `trusted.overlay.opaque=y`. */
  | { readonly t: 'd'; readonly mode: number; readonly c: OracleDir; readonly opaque?: boolean; readonly x?: Readonly<Record<string, string>> }
  /** A symlink to a relative `target`. */
  | { readonly t: 'l'; readonly target: string }
  /** A hard link to the regular file at layer-relative path `to` (skipped if that is no file). */
  | { readonly t: 'h'; readonly to: string }
  /** A whiteout (a 0/0 character device). */
  | { readonly t: 'w' };

/** The children of a directory, by name. */
export type OracleDir = Readonly<Record<string, OracleNode>>;

/** One operation of a sequence. Paths are relative to the root of the union ('' = root). */
export type OracleOp =
  /** open(path, O_CREAT|O_EXCL|O_WRONLY, mode) then close. */
  | { readonly op: 'create'; readonly path: string; readonly mode: number }
  /** open(path, O_CREAT|O_TRUNC|O_WRONLY, 0666) then write(data). */
  | { readonly op: 'writeFile'; readonly path: string; readonly data: string }
  /** open(path, O_WRONLY) then pwrite(data, offset). */
  | { readonly op: 'write'; readonly path: string; readonly offset: number; readonly data: string }
  /** open(path, O_CREAT|O_APPEND|O_WRONLY, 0666) then write(data). */
  | { readonly op: 'append'; readonly path: string; readonly data: string }
  /** truncate(path, length). */
  | { readonly op: 'truncate'; readonly path: string; readonly length: number }
  /** mkdir(path, mode). */
  | { readonly op: 'mkdir'; readonly path: string; readonly mode: number }
  /** rmdir(path). */
  | { readonly op: 'rmdir'; readonly path: string }
  /** unlink(path). */
  | { readonly op: 'unlink'; readonly path: string }
  /** rename(from, to). */
  | { readonly op: 'rename'; readonly from: string; readonly to: string }
  /** symlink(target, path). */
  | { readonly op: 'symlink'; readonly target: string; readonly path: string }
  /** link(from, to). */
  | { readonly op: 'link'; readonly from: string; readonly to: string }
  /** chmod(path, mode) (follows symlinks). */
  | { readonly op: 'chmod'; readonly path: string; readonly mode: number }
  /** utimes(path, time, time) in whole seconds (follows symlinks). */
  | { readonly op: 'utimes'; readonly path: string; readonly time: number }
  /** setxattr(path, name, value, 0) (follows symlinks). */
  | { readonly op: 'setxattr'; readonly path: string; readonly name: string; readonly value: string }
  /** readFile(path). */
  | { readonly op: 'readFile'; readonly path: string }
  /** readdir(path), compared as a sorted list of names with types. */
  | { readonly op: 'readdir'; readonly path: string }
  /** lstat(path), compared as type, permission bits, size, nlink and mtime class. */
  | { readonly op: 'lstat'; readonly path: string }
  /** stat(path) (follows symlinks). */
  | { readonly op: 'stat'; readonly path: string }
  /** readlink(path). */
  | { readonly op: 'readlink'; readonly path: string }
  /** fd<slot> = open(path, flags) kept open across later operations (an open slot is closed first). */
  | { readonly op: 'hopen'; readonly slot: number; readonly path: string; readonly flags: 'r' | 'r+' }
  /** pread(fd<slot>, length, position). */
  | { readonly op: 'hread'; readonly slot: number; readonly position: number; readonly length: number }
  /** pwrite(fd<slot>, data, position). */
  | { readonly op: 'hwrite'; readonly slot: number; readonly position: number; readonly data: string }
  /** close(fd<slot>). */
  | { readonly op: 'hclose'; readonly slot: number };

/** The name of an operation. */
export type OracleOpName = OracleOp['op'];

/** One generated (or hand-written) oracle case: layers top-first and the operations. */
export interface OracleCase {
  /** The read-only lower layers, top first (the kernel's `lowerdir=L1:L2`). */
  readonly lowers: readonly OracleDir[];
  /** The initial contents of the upper layer. */
  readonly upper: OracleDir;
  /** The operations, applied in order. */
  readonly ops: readonly OracleOp[];
}

/** Tuning of the generators. */
export interface OracleGenOptions {
  /** Most operations in one sequence. Default 30. */
  readonly maxOps?: number;
  /** Generate hard links inside layers. Default true. */
  readonly hardLinks?: boolean;
  /** Number of lower layers. Default 2. */
  readonly lowerCount?: number;
  /** Operations to leave out of generated sequences (for targets that lack them). */
  readonly excludeOps?: readonly OracleOpName[];
}

/** The names used everywhere: few, so that layers and operations collide often. */
export const ORACLE_NAMES = ['a', 'b', 'c'] as const;
/** Times (whole seconds) of laid-out objects and of `utimes`: all far before "now". */
export const ORACLE_OLD_TIME = 1_000_000_000;

const nameArb = fc.constantFrom(...ORACLE_NAMES);
const dataArb = fc.constantFrom('', 'x', 'hello', 'lower data\n', '0123456789'.repeat(7));
const fileModeArb = fc.constantFrom(0o644, 0o600, 0o755, 0o444, 0o4755);
const dirModeArb = fc.constantFrom(0o755, 0o700, 0o555, 0o1777);
const xattrArb = fc.option(fc.dictionary(fc.constantFrom('user.k', 'user.m'), fc.constantFrom('v', 'w2'), { maxKeys: 2 }), { nil: undefined, freq: 3 });
const linkTargetArb = fc.constantFrom('a', 'b', 'c/a', 'a/b', 'zz');
const pathArb = fc.oneof(
  { weight: 5, arbitrary: nameArb },
  { weight: 4, arbitrary: fc.tuple(nameArb, nameArb).map(([x, y]) => `${x}/${y}`) },
  { weight: 1, arbitrary: fc.tuple(nameArb, nameArb, nameArb).map(([x, y, z]) => `${x}/${y}/${z}`) },
);

function stripUndefined<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}

/** Arbitrary layer tree; `layered` allows whiteouts and opaque dirs (upper and non-bottom lowers). */
export function oracleTreeArb(layered: boolean, hardLinks = true, depth = 2): fc.Arbitrary<OracleDir> {
  const file = fc.record({ t: fc.constant('f' as const), data: dataArb, mode: fileModeArb, x: xattrArb }).map(stripUndefined);
  const symlink = fc.record({ t: fc.constant('l' as const), target: linkTargetArb });
  const hard = fc.record({ t: fc.constant('h' as const), to: pathArb });
  const white = fc.constant({ t: 'w' as const });
  const leaf: fc.Arbitrary<OracleNode> = fc.oneof(
    { weight: 6, arbitrary: file },
    { weight: 2, arbitrary: symlink },
    ...(hardLinks ? [{ weight: 1, arbitrary: hard }] : []),
    ...(layered ? [{ weight: 2, arbitrary: white }] : []),
  );
  const dirOf = (d: number): fc.Arbitrary<OracleDir> => fc.dictionary(
    nameArb,
    d <= 0 ? leaf : fc.oneof({ weight: 1, arbitrary: leaf }, { weight: 1, arbitrary: nodeDir(d - 1) }),
    { maxKeys: 3, noNullPrototype: true, size: 'max' },
  );
  const nodeDir = (d: number): fc.Arbitrary<OracleNode> => fc.record({
    t: fc.constant('d' as const), mode: dirModeArb, c: dirOf(d),
    opaque: layered ? fc.option(fc.constant(true), { nil: undefined, freq: 3 }) : fc.constant(undefined),
    x: xattrArb,
  }).map(stripUndefined);
  return dirOf(depth);
}

/** Arbitrary operation. */
export function oracleOpArb(exclude: readonly OracleOpName[] = []): fc.Arbitrary<OracleOp> {
  const table: Array<[OracleOpName, number, fc.Arbitrary<OracleOp>]> = [
    ['create', 3, fc.record({ op: fc.constant('create' as const), path: pathArb, mode: fc.constantFrom(0o644, 0o600, 0o755) })],
    ['writeFile', 3, fc.record({ op: fc.constant('writeFile' as const), path: pathArb, data: fc.constantFrom('new', 'w', 'written data') })],
    ['write', 4, fc.record({ op: fc.constant('write' as const), path: pathArb, offset: fc.constantFrom(0, 1, 3, 20, 100), data: fc.constantFrom('W', 'ZZZ', 'offset-write') })],
    ['append', 3, fc.record({ op: fc.constant('append' as const), path: pathArb, data: fc.constantFrom('+', 'appended') })],
    ['truncate', 3, fc.record({ op: fc.constant('truncate' as const), path: pathArb, length: fc.constantFrom(0, 2, 50) })],
    ['mkdir', 4, fc.record({ op: fc.constant('mkdir' as const), path: pathArb, mode: fc.constantFrom(0o755, 0o700, 0o777) })],
    ['rmdir', 3, fc.record({ op: fc.constant('rmdir' as const), path: pathArb })],
    ['unlink', 4, fc.record({ op: fc.constant('unlink' as const), path: pathArb })],
    ['rename', 6, fc.record({ op: fc.constant('rename' as const), from: pathArb, to: pathArb })],
    ['symlink', 2, fc.record({ op: fc.constant('symlink' as const), target: linkTargetArb, path: pathArb })],
    ['link', 2, fc.record({ op: fc.constant('link' as const), from: pathArb, to: pathArb })],
    ['chmod', 2, fc.record({ op: fc.constant('chmod' as const), path: pathArb, mode: fc.constantFrom(0o600, 0o755, 0o444, 0o2755) })],
    ['utimes', 2, fc.record({ op: fc.constant('utimes' as const), path: pathArb, time: fc.constantFrom(ORACLE_OLD_TIME + 500, ORACLE_OLD_TIME + 86_400) })],
    ['setxattr', 2, fc.record({ op: fc.constant('setxattr' as const), path: pathArb, name: fc.constantFrom('user.k', 'user.n'), value: fc.constantFrom('1', 'val') })],
    ['readFile', 2, fc.record({ op: fc.constant('readFile' as const), path: pathArb })],
    ['readdir', 2, fc.record({ op: fc.constant('readdir' as const), path: fc.oneof(fc.constant(''), pathArb) })],
    ['lstat', 2, fc.record({ op: fc.constant('lstat' as const), path: pathArb })],
    ['stat', 1, fc.record({ op: fc.constant('stat' as const), path: pathArb })],
    ['readlink', 1, fc.record({ op: fc.constant('readlink' as const), path: pathArb })],
    ['hopen', 3, fc.record({ op: fc.constant('hopen' as const), slot: fc.constantFrom(0, 1), path: pathArb, flags: fc.constantFrom('r' as const, 'r+' as const) })],
    ['hread', 3, fc.record({ op: fc.constant('hread' as const), slot: fc.constantFrom(0, 1), position: fc.constantFrom(0, 2), length: fc.constantFrom(4, 100) })],
    ['hwrite', 2, fc.record({ op: fc.constant('hwrite' as const), slot: fc.constantFrom(0, 1), position: fc.constantFrom(0, 1, 30), data: fc.constantFrom('H', 'handle') })],
    ['hclose', 1, fc.record({ op: fc.constant('hclose' as const), slot: fc.constantFrom(0, 1) })],
  ];
  const kept = table.filter(([name]) => !exclude.includes(name)).map(([, weight, arbitrary]) => ({ weight, arbitrary }));
  return fc.oneof(...kept);
}

/**
 * Drop the whiteouts no overlay would ever write: those in a directory that is not merged
 * (only one layer contributes it). The kernel lists such whiteouts in `readdir` (it
 * iterates an unmerged directory as is) while `lookup` says ENOENT — a state of garbage
 * layers, not of overlay semantics.
 */
export function normalizeCase(c: OracleCase): OracleCase {
  const layers: OracleDir[] = [c.upper, ...c.lowers].map(dropDeadLinks);
  // `dirs[i]` = the directory of layer i at the current path, or undefined.
  const fix = (dirs: Array<OracleDir | undefined>): Array<OracleDir | undefined> => {
    const merged = dirs.filter((d) => d !== undefined).length > 1;
    const names = new Set(dirs.flatMap((d) => (d ? Object.keys(d) : [])));
    const out: Array<Record<string, OracleNode> | undefined> = dirs.map((d) => (d ? {} : undefined));
    for (const name of [...names].sort()) {
      // Which layers contribute a directory at this name (top-down, stopping where hidden).
      const sub: Array<OracleDir | undefined> = dirs.map(() => undefined);
      let hidden = false;
      dirs.forEach((d, i) => {
        const n = d?.[name];
        if (!n || hidden) return;
        if (n.t === 'd') { sub[i] = n.c; if (n.opaque) hidden = true; } else hidden = true;
      });
      const fixedSub = fix(sub);
      dirs.forEach((d, i) => {
        const n = d?.[name];
        if (!n) return;
        if (n.t === 'w' && !merged) return;
        out[i]![name] = n.t === 'd' && sub[i] !== undefined ? { ...n, c: fixedSub[i]! } : n;
      });
    }
    return out;
  };
  const fixed = fix(layers);
  return { ...c, upper: fixed[0]!, lowers: fixed.slice(1).map((d) => d!) };
}

/** A layer without the hard links whose target is not a regular file of the layer. */
function dropDeadLinks(root: OracleDir): OracleDir {
  const isFile = (to: string): boolean => {
    let cur: OracleNode | undefined = { t: 'd', mode: 0o755, c: root };
    for (const part of to.split('/')) cur = cur?.t === 'd' ? cur.c[part] : undefined;
    return cur?.t === 'f';
  };
  const walk = (d: OracleDir): OracleDir => Object.fromEntries(Object.entries(d)
    .filter(([, n]) => n.t !== 'h' || isFile(n.to))
    .map(([k, n]) => [k, n.t === 'd' ? { ...n, c: walk(n.c) } : n]));
  return walk(root);
}

/** Arbitrary oracle case: `lowerCount` lowers, an upper, up to `maxOps` operations. */
export function oracleCaseArb(opts: OracleGenOptions = {}): fc.Arbitrary<OracleCase> {
  const hard = opts.hardLinks ?? true;
  const n = opts.lowerCount ?? 2;
  const lowers = fc.tuple(...Array.from({ length: n }, (_, i) => oracleTreeArb(i < n - 1, hard)));
  return fc.record({
    lowers,
    upper: oracleTreeArb(true, hard),
    ops: fc.array(oracleOpArb(opts.excludeOps), { maxLength: opts.maxOps ?? 30, size: 'max' }),
  }).map(normalizeCase);
}

/** A JS string literal for `s`. */
function q(s: string): string {
  return JSON.stringify(s);
}

/** An octal literal for a mode. */
export function octal(mode: number): string {
  return `0o${mode.toString(8)}`;
}

/** The operation as a syscall-like call, e.g. `rename("a", "b/c")`. */
export function formatOp(op: OracleOp): string {
  switch (op.op) {
    case 'create': return `open(${q(op.path)}, O_CREAT|O_EXCL|O_WRONLY, ${octal(op.mode)})`;
    case 'writeFile': return `writeFile(${q(op.path)}, ${q(op.data)})`;
    case 'write': return `pwrite(open(${q(op.path)}, O_WRONLY), ${q(op.data)}, ${op.offset})`;
    case 'append': return `write(open(${q(op.path)}, O_CREAT|O_APPEND|O_WRONLY), ${q(op.data)})`;
    case 'truncate': return `truncate(${q(op.path)}, ${op.length})`;
    case 'mkdir': return `mkdir(${q(op.path)}, ${octal(op.mode)})`;
    case 'rmdir': return `rmdir(${q(op.path)})`;
    case 'unlink': return `unlink(${q(op.path)})`;
    case 'rename': return `rename(${q(op.from)}, ${q(op.to)})`;
    case 'symlink': return `symlink(${q(op.target)}, ${q(op.path)})`;
    case 'link': return `link(${q(op.from)}, ${q(op.to)})`;
    case 'chmod': return `chmod(${q(op.path)}, ${octal(op.mode)})`;
    case 'utimes': return `utimes(${q(op.path)}, ${op.time}, ${op.time})`;
    case 'setxattr': return `setxattr(${q(op.path)}, ${q(op.name)}, ${q(op.value)})`;
    case 'readFile': return `readFile(${q(op.path)})`;
    case 'readdir': return `readdir(${q(op.path)})`;
    case 'lstat': return `lstat(${q(op.path)})`;
    case 'stat': return `stat(${q(op.path)})`;
    case 'readlink': return `readlink(${q(op.path)})`;
    case 'hopen': return `fd${op.slot} = open(${q(op.path)}, ${op.flags === 'r' ? 'O_RDONLY' : 'O_RDWR'})`;
    case 'hread': return `pread(fd${op.slot}, ${op.length}, ${op.position})`;
    case 'hwrite': return `pwrite(fd${op.slot}, ${q(op.data)}, ${op.position})`;
    case 'hclose': return `close(fd${op.slot})`;
  }
}

/** A layer tree as indented lines (`d a 0755 opaque`, `f a/b 0644 "data"`, `w c`, …). */
export function formatTree(dir: OracleDir, prefix = ''): string[] {
  const out: string[] = [];
  for (const name of Object.keys(dir).sort()) {
    const node = dir[name]!;
    const p = prefix + name;
    const xs = 'x' in node && node.x && Object.keys(node.x).length ? ` xattrs=${JSON.stringify(node.x)}` : '';
    switch (node.t) {
      case 'f': out.push(`f ${p} ${octal(node.mode)} ${q(node.data)}${xs}`); break;
      case 'd':
        out.push(`d ${p} ${octal(node.mode)}${node.opaque ? ' opaque' : ''}${xs}`);
        out.push(...formatTree(node.c, `${p}/`));
        break;
      case 'l': out.push(`l ${p} -> ${q(node.target)}`); break;
      case 'h': out.push(`h ${p} == ${q(node.to)}`); break;
      case 'w': out.push(`w ${p} (whiteout)`); break;
    }
  }
  return out;
}

/** The layers of a case as a readable listing. */
export function formatLayers(c: OracleCase): string {
  const parts: string[] = [];
  const block = (title: string, d: OracleDir): void => {
    const lines = formatTree(d);
    parts.push(`# ${title}${lines.length ? '' : ' (empty)'}`, ...lines.map((l) => `#   ${l}`));
  };
  block('upper', c.upper);
  c.lowers.forEach((l, i) => block(`lower ${i + 1}${i === 0 ? ' (top)' : ''}`, l));
  return parts.join('\n');
}

/** A case as a TypeScript literal, ready to paste into `oracle-regressions.test.ts`. */
export function caseLiteral(c: OracleCase): string {
  const ops = c.ops.map((o) => `    ${JSON.stringify(o)},`).join('\n');
  return `{\n  lowers: ${JSON.stringify(c.lowers)},\n  upper: ${JSON.stringify(c.upper)},\n  ops: [\n${ops}\n  ],\n}`;
}
