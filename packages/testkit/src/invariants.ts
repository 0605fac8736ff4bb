/**
 * Invariant checkers for lookup counts, shared by the model runner, the conformance suite
 * and property tests: lookup balance (the filesystem holds exactly the lookups its caller
 * holds), no leak (after every lookup is forgotten only the root is left), and the
 * InodeTable invariants (counts never negative, an identity keeps its ino while referenced,
 * an ino never belongs to two identities at once). Each throws an Error saying what broke.
 */
import type { Filesystem, InodeTable } from '@layerfs/core';

/** A Filesystem that may report lookup counts per ino (as MemoryLayer does). */
interface Countable {
  lookupCount?(ino: number): number;
}

/**
 * The filesystem holds exactly the lookups in `held` (one entry per lookup, inos may repeat):
 * `liveInodes()` is 1 + the distinct held inos, and per-ino counts (when the filesystem
 * reports them) equal the held counts. With `pinsAncestors` (a filesystem whose looked-up
 * inodes keep their parent directories alive, as kernel dentries do and `OverlayFs` does),
 * `liveInodes()` may exceed that by the held inodes' ancestors. Filesystems without
 * `liveInodes` pass trivially.
 */
export async function checkLookupBalance(fs: Filesystem, held: readonly number[], options: { pinsAncestors?: boolean } = {}): Promise<void> {
  const counts = new Map<number, number>();
  for (const ino of held) counts.set(ino, (counts.get(ino) ?? 0) + 1);
  const c = fs as Filesystem & Countable;
  if (typeof c.lookupCount === 'function') {
    for (const [ino, n] of counts) {
      const got = c.lookupCount(ino);
      if (got < 0) throw new Error(`lookup count of ino ${ino} is negative (${got})`);
      if (got !== n) throw new Error(`ino ${ino}: the filesystem holds ${got} lookups, the caller holds ${n}`);
    }
  }
  if (typeof fs.liveInodes === 'function') {
    const live = fs.liveInodes();
    const want = 1 + [...counts.keys()].filter((i) => i !== 1).length;
    const ok = options.pinsAncestors ? live >= want : live === want;
    if (!ok) throw new Error(`liveInodes() is ${live}, expected ${options.pinsAncestors ? 'at least ' : ''}${want} (root + ${want - 1} held inodes)`);
  }
}

/** After every lookup was forgotten: only the root is left (`liveInodes() === 1`). */
export async function checkNoLeak(fs: Filesystem): Promise<void> {
  if (typeof fs.liveInodes !== 'function') return;
  const live = fs.liveInodes();
  if (live !== 1) throw new Error(`inode leak: liveInodes() is ${live} after every lookup was forgotten (expected 1)`);
}

/**
 * InodeTable invariants against the counts the caller believes it holds (`expected`: key →
 * lookups, zero or absent = none) and the inos it saw (`inoOf`: key → ino while held): every
 * count matches and is ≥ 0, each held key still maps to its ino, no ino serves two keys, and
 * the table holds the root plus exactly the held keys.
 */
export function checkInodeTable<T>(table: InodeTable<T>, expected: ReadonlyMap<string, number>, inoOf: ReadonlyMap<string, number>): void {
  const seen = new Map<number, string>();
  let held = 0;
  for (const [key, n] of expected) {
    if (n < 0) throw new Error(`model count for ${key} is negative`);
    if (n === 0) {
      if (table.byIdentity(key) !== undefined) throw new Error(`identity ${key} still has ino ${table.byIdentity(key)} with no lookups held`);
      continue;
    }
    held++;
    const ino = table.byIdentity(key);
    if (ino === undefined) throw new Error(`identity ${key} lost its ino while referenced (${n} lookups)`);
    const was = inoOf.get(key);
    if (was !== undefined && was !== ino) throw new Error(`identity ${key} changed ino ${was} → ${ino} while referenced`);
    const other = seen.get(ino);
    if (other !== undefined) throw new Error(`ino ${ino} serves both ${other} and ${key}`);
    seen.set(ino, key);
    const got = table.lookups(ino);
    if (got < 0) throw new Error(`lookup count of ino ${ino} is negative (${got})`);
    if (got !== n) throw new Error(`ino ${ino} (${key}): table holds ${got} lookups, caller holds ${n}`);
  }
  for (const r of table.records()) if (r.lookups < 0) throw new Error(`lookup count of ino ${r.ino} is negative (${r.lookups})`);
  if (table.size !== 1 + held) throw new Error(`table holds ${table.size} records, expected ${1 + held} (root + held)`);
}
