// Arbitraries and helpers of the differential property tests: random layer trees (with
// whiteouts, opaque dirs and modes), random Volume operation sequences, and their outcomes.
import { Volume } from '@layerfs/core';
import { dir, file, opaque, whiteout, type TreeNode, type TreeSpec } from '@layerfs/testkit';
import fc from 'fast-check';

export const NAMES = ['a', 'b', 'c'];
export const USER = { uid: 1000, gid: 1000, pid: 1, umask: 0o022 };
const nameArb = fc.constantFrom(...NAMES);
const contentArb = fc.constantFrom('', 'x', 'hello', 'lower data');

const fileArb: fc.Arbitrary<TreeNode> = fc.oneof(
  contentArb, fc.tuple(contentArb, fc.constantFrom(0o600, 0o666, 0o444)).map(([c, m]) => file(c, m)),
);

export function treeArb(withMarkers: boolean, depth: number): fc.Arbitrary<TreeSpec> {
  const leaf: fc.Arbitrary<TreeNode>[] = [fileArb];
  if (withMarkers) leaf.push(fc.constant(whiteout()));
  const node: fc.Arbitrary<TreeNode> = depth <= 0
    ? fc.oneof(...leaf)
    : fc.oneof(
      ...leaf,
      treeArb(withMarkers, depth - 1),
      fc.tuple(treeArb(withMarkers, depth - 1), fc.constantFrom(0o777, 0o1777, 0o555)).map(([c, m]) => dir(c, m)),
      ...(withMarkers ? [treeArb(withMarkers, depth - 1).map((c) => opaque(c))] : []),
    );
  return fc.dictionary(nameArb, node, { maxKeys: 3 });
}

const pathArb = fc.array(nameArb, { minLength: 1, maxLength: 3 }).map((p) => '/' + p.join('/'));

export type Op =
  | { op: 'writeFile'; p: string; data: string }
  | { op: 'appendFile'; p: string; data: string }
  | { op: 'truncate'; p: string; len: number }
  | { op: 'mkdir'; p: string }
  | { op: 'rmdir'; p: string }
  | { op: 'unlink'; p: string }
  | { op: 'rename'; p: string; q: string }
  | { op: 'symlink'; p: string; target: string }
  | { op: 'link'; p: string; q: string }
  | { op: 'chmod'; p: string; mode: number }
  | { op: 'setxattr'; p: string; name: string }
  | { op: 'readFile'; p: string }
  | { op: 'readdir'; p: string }
  | { op: 'lstat'; p: string };

export const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ op: fc.constant('writeFile' as const), p: pathArb, data: contentArb }),
  fc.record({ op: fc.constant('appendFile' as const), p: pathArb, data: contentArb }),
  fc.record({ op: fc.constant('truncate' as const), p: pathArb, len: fc.nat(6) }),
  fc.record({ op: fc.constant('mkdir' as const), p: pathArb }),
  fc.record({ op: fc.constant('rmdir' as const), p: pathArb }),
  fc.record({ op: fc.constant('unlink' as const), p: pathArb }),
  fc.record({ op: fc.constant('rename' as const), p: pathArb, q: pathArb }),
  fc.record({ op: fc.constant('symlink' as const), p: pathArb, target: fc.constantFrom('a', '../b', '/c') }),
  fc.record({ op: fc.constant('link' as const), p: pathArb, q: pathArb }),
  fc.record({ op: fc.constant('chmod' as const), p: pathArb, mode: fc.constantFrom(0o600, 0o755, 0o640) }),
  fc.record({ op: fc.constant('setxattr' as const), p: pathArb, name: fc.constantFrom('user.a', 'user.b') }),
  fc.record({ op: fc.constant('readFile' as const), p: pathArb }),
  fc.record({ op: fc.constant('readdir' as const), p: pathArb }),
  fc.record({ op: fc.constant('lstat' as const), p: pathArb }),
);

export async function apply(v: Volume, o: Op): Promise<unknown> {
  switch (o.op) {
    case 'writeFile': return v.writeFile(o.p, o.data);
    case 'appendFile': return v.appendFile(o.p, o.data);
    case 'truncate': return v.truncate(o.p, o.len);
    case 'mkdir': return v.mkdir(o.p);
    case 'rmdir': return v.rmdir(o.p);
    case 'unlink': return v.unlink(o.p);
    case 'rename': return v.rename(o.p, o.q);
    case 'symlink': return v.symlink(o.target, o.p);
    case 'link': return v.link(o.p, o.q);
    case 'chmod': return v.chmod(o.p, o.mode);
    case 'setxattr': return v.setxattr(o.p, o.name, 'v');
    case 'readFile': return v.readFile(o.p, 'utf8');
    case 'readdir': return (await v.readdir(o.p)).sort();
    case 'lstat': {
      const s = await v.lstat(o.p);
      return { mode: s.mode, size: s.size, ...(s.isDirectory() ? {} : { nlink: s.nlink }) };
    }
  }
}

export async function outcome(v: Volume, o: Op): Promise<{ ok: unknown } | { err: string }> {
  try {
    return { ok: await apply(v, o) };
  } catch (e) {
    return { err: String((e as { code?: string }).code ?? e) };
  }
}

