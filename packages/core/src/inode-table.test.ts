// Unit tests of InodeTable: allocation, counts, dropping, the root, excess forgets.
import { describe, expect, it } from 'vitest';
import { InodeTable } from './inode-table.js';

describe('InodeTable', () => {
  it('gives the same identity the same ino while referenced, and drops it at zero', () => {
    const t = new InodeTable<string>('root', 'r');
    const a = t.acquire('a', () => 'A');
    expect(a.created).toBe(true);
    const again = t.acquire('a', () => 'X');
    expect(again.created).toBe(false);
    expect(again.record.ino).toBe(a.record.ino);
    expect(t.lookups(a.record.ino)).toBe(2);
    expect(t.forget(a.record.ino, 1).dropped).toBe(false);
    const res = t.forget(a.record.ino, 1);
    expect(res).toEqual({ dropped: true, value: 'A', excess: 0 });
    expect(t.get(a.record.ino)).toBeUndefined();
    expect(t.byIdentity('a')).toBeUndefined();
    expect(t.size).toBe(1);
  });

  it('never drops the root and clamps excess forgets, reporting them', () => {
    const reports: number[][] = [];
    const t = new InodeTable<null>('root', null, { onExcessForget: (i, h, a) => reports.push([i, h, a]) });
    expect(t.forget(1, 5).dropped).toBe(false);
    expect(t.get(1)).toBeDefined();
    const b = t.acquire('b', () => null).record;
    const res = t.forget(b.ino, 3);
    expect(res.dropped).toBe(true);
    expect(res.excess).toBe(2);
    expect(reports).toContainEqual([b.ino, 1, 3]);
    expect(t.excessForgets).toBeGreaterThanOrEqual(2);
  });

  it('honours a preferred ino only when it is free', () => {
    const t = new InodeTable<number>('root', 0);
    const a = t.acquire('a', (i) => i, 1, 1000).record;
    expect(a.ino).toBe(1000);
    const b = t.acquire('b', (i) => i, 1, 1000).record;
    expect(b.ino).not.toBe(1000);
    const c = t.acquire('c', (i) => i, 1, 1).record;
    expect(c.ino).not.toBe(1);
  });
});
