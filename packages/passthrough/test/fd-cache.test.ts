/**
 * DirFdCache: dropping a subtree closes exactly the descriptors of the path and of every
 * path below it (also below an ancestor that is not cached itself), through evictions and
 * replacements that keep its count of cached paths per ancestor right.
 */
import { describe, expect, it } from 'vitest';
import { fstatSync, openSync } from 'node:fs';
import { DirFdCache } from '../src/fd-cache.js';

const isOpen = (fd: number): boolean => { try { fstatSync(fd); return true; } catch { return false; } };

function fill(cache: DirFdCache, paths: string[]): Map<string, number> {
  const fds = new Map<string, number>();
  for (const p of paths) { const fd = openSync('/', 'r'); fds.set(p, fd); cache.set(p, fd, '0:0'); }
  return fds;
}

describe('DirFdCache.deleteTree', () => {
  it('drops the path and everything below it, nothing else', () => {
    const cache = new DirFdCache(100);
    const fds = fill(cache, ['a', 'a/b/c', 'a/b/c/d', 'ab', 'ab/x', 'z/a/b', '\u0000work/t']);
    cache.deleteTree('a');
    for (const p of ['a', 'a/b/c', 'a/b/c/d']) { expect(cache.get(p)).toBeUndefined(); expect(isOpen(fds.get(p)!)).toBe(false); }
    for (const p of ['ab', 'ab/x', 'z/a/b', '\u0000work/t']) expect(cache.get(p)?.fd).toBe(fds.get(p));
    cache.deleteTree('z');   // not cached itself: what is below goes
    expect(cache.get('z/a/b')).toBeUndefined();
    cache.deleteTree('\u0000work/t');
    expect(cache.size).toBe(2);
    cache.clear();
  });

  it('keeps its counts through replacement and eviction', () => {
    const cache = new DirFdCache(2);
    const first = fill(cache, ['p/q']);
    const again = fill(cache, ['p/q']);   // replaces (closes) the first descriptor
    expect(isOpen(first.get('p/q')!)).toBe(false);
    fill(cache, ['r', 's']);               // evicts p/q: nothing below p is cached any more
    expect(cache.get('p/q')).toBeUndefined();
    expect(isOpen(again.get('p/q')!)).toBe(false);
    const later = fill(cache, ['p/q/r']);
    cache.deleteTree('p/q');
    expect(cache.get('p/q/r')).toBeUndefined();
    expect(isOpen(later.get('p/q/r')!)).toBe(false);
    cache.clear();
  });
});
