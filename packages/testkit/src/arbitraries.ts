/**
 * fast-check arbitraries for filesystem tests: valid names (plain and hostile: unicode,
 * exactly 255 bytes, `.wh.` prefixes, spaces, dots), invalid names with the errno the kernel
 * gives, paths over a small name pool (so operations collide), tree literals for `tree()`,
 * and the operation-sequence arbitrary of the model-based runner (`fsCommands`, in model.ts).
 */
import fc from 'fast-check';
import { NAME_MAX, type ErrnoCode } from '@layerfs/core';
import { dir, file, opaque, symlink, whiteout, type TreeNode, type TreeSpec } from './tree.js';

/** Byte length of a name in UTF-8. */
export function nameBytes(name: string): number {
  return Buffer.byteLength(name, 'utf8');
}

/** True when `name` is one valid path component (what `validateName` accepts). */
export function isValidName(name: string): boolean {
  return name.length > 0 && name !== '.' && name !== '..' && !name.includes('/') && !name.includes('\0') && nameBytes(name) <= NAME_MAX;
}

/** Plain names: 1–8 lowercase letters and digits. */
export function simpleNameArb(): fc.Arbitrary<string> {
  return fc.stringMatching(/^[a-z0-9]{1,8}$/);
}

/** Names exactly 255 bytes long, in one-, two-, three- and four-byte characters. */
export function maxLengthNameArb(): fc.Arbitrary<string> {
  return fc.constantFrom('a', 'é', '名', '😀').chain((ch) => {
    const per = nameBytes(ch);
    const head = ch.repeat(Math.floor(NAME_MAX / per));
    return fc.constant(head + 'x'.repeat(NAME_MAX - nameBytes(head)));
  });
}

/** Options of `nameArb`. */
export interface NameArbOptions {
  /** Include hostile names (unicode, 255 bytes, `.wh.` prefixes, spaces, dots). Default true. */
  hostile?: boolean;
  /** Include names starting `.wh.` (reserved in OCI layers). Default true. */
  whiteoutPrefix?: boolean;
}

/** Valid names: plain, and (by default) hostile ones a layer must still store faithfully. */
export function nameArb(options: NameArbOptions = {}): fc.Arbitrary<string> {
  if (options.hostile === false) return simpleNameArb();
  const parts: fc.Arbitrary<string>[] = [
    simpleNameArb(),
    fc.string({ unit: 'grapheme', minLength: 1, maxLength: 12 }),
    fc.string({ unit: 'binary', minLength: 1, maxLength: 12 }),
    maxLengthNameArb(),
    fc.constantFrom(' ', '  lead', 'trail ', 'a b', '...', '.hidden', '-rf', '*', '\\', 'CON', 'nul\u200bwidth', '\n', 'e\u0301'),
  ];
  if (options.whiteoutPrefix !== false) {
    parts.push(simpleNameArb().map((n) => `.wh.${n}`), fc.constantFrom('.wh.', '.wh..wh..opq', '.wh..wh.x'));
  }
  const arb = fc.oneof(...parts).filter(isValidName);
  return options.whiteoutPrefix === false ? arb.filter((n) => !n.startsWith('.wh.')) : arb;
}

/** A name `validateName` must refuse, with the errno it must give. */
export function invalidNameArb(): fc.Arbitrary<{ name: string; code: ErrnoCode }> {
  return fc.oneof(
    fc.constant({ name: '', code: 'ENOENT' as ErrnoCode }),
    fc.constantFrom('.', '..').map((name) => ({ name, code: 'EINVAL' as ErrnoCode })),
    simpleNameArb().map((n) => ({ name: `${n}/x`, code: 'EINVAL' as ErrnoCode })),
    simpleNameArb().map((n) => ({ name: `${n}\0`, code: 'EINVAL' as ErrnoCode })),
    fc.constantFrom('a', 'é', '名').map((ch) => ({ name: ch.repeat(Math.ceil(256 / nameBytes(ch))), code: 'ENAMETOOLONG' as ErrnoCode })),
  );
}

/** A path (array of components, 1..maxDepth long) over a small pool, so operations collide. */
export function pathArb(names: readonly string[], maxDepth = 3): fc.Arbitrary<string[]> {
  const name = fc.constantFrom(...names);
  // Shallow paths are likelier, so most operations find their parent.
  const depths = Array.from({ length: maxDepth }, (_, i) => ({ weight: maxDepth - i, arbitrary: fc.array(name, { minLength: i + 1, maxLength: i + 1 }) }));
  return fc.oneof(...depths);
}

/** Options of `treeArb`. */
export interface TreeArbOptions {
  /** Names to use. Default: `nameArb({ whiteoutPrefix: false })`. */
  names?: fc.Arbitrary<string>;
  /** Deepest directory nesting. Default 3. */
  maxDepth?: number;
  /** Most children per directory. Default 4. */
  maxChildren?: number;
  /** Include whiteouts and opaque directories (layer trees). Default false. */
  markers?: boolean;
}

/** Tree literals (as `tree()` takes and `dump()` gives back): files, dirs, symlinks, markers. */
export function treeArb(options: TreeArbOptions = {}): fc.Arbitrary<TreeSpec> {
  const names = options.names ?? nameArb({ whiteoutPrefix: false });
  const maxChildren = options.maxChildren ?? 4;
  const leaf: fc.Arbitrary<TreeNode>[] = [
    fc.string({ maxLength: 16 }),
    fc.tuple(fc.string({ maxLength: 8 }), fc.constantFrom(0o600, 0o640, 0o755, 0o444)).map(([c, m]) => file(c, m)),
    // 0xff never occurs in UTF-8, so these stay bytes when dumped.
    fc.uint8Array({ maxLength: 8 }).map((b) => file(new Uint8Array([0xff, ...b]), 0o600)),
    fc.string({ minLength: 1, maxLength: 20 }).filter((t) => !t.includes('\0')).map((t) => symlink(t)),
  ];
  if (options.markers) leaf.push(fc.constant(whiteout()));
  const level = (depth: number): fc.Arbitrary<TreeSpec> => {
    const child: fc.Arbitrary<TreeNode> = depth <= 0
      ? fc.oneof(...leaf)
      : fc.oneof(
        { weight: 3, arbitrary: fc.oneof(...leaf) },
        { weight: 1, arbitrary: level(depth - 1) },
        { weight: 1, arbitrary: level(depth - 1).map((c) => dir(c, 0o700)) },
        ...(options.markers ? [{ weight: 1, arbitrary: level(depth - 1).map((c) => opaque(c)) }] : []),
      );
    return fc.dictionary(names, child, { maxKeys: maxChildren, noNullPrototype: true });
  };
  return level(options.maxDepth ?? 3);
}
