// Unit tests of InodeTable: allocation, counts, dropping, the root, excess forgets.
import { describe, expect, it } from 'vitest';
import { InodeTable, compactInt, type InodeRecord } from './inode-table.js';

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

  it('finds a record at the ino its key asks for without a key-index entry, and others by the index', () => {
    const t = new InodeTable<string>('root', 'r', { inoOfKey: (k) => Number(k.replace(/^x/, '')) });
    const a = t.acquire('7', () => 'A').record;
    expect(a.ino).toBe(7);
    // 'x7' asks for 7 too: taken, so it gets another ino and is found through the key index.
    const b = t.acquire('x7', () => 'B').record;
    expect(b.ino).not.toBe(7);
    expect(t.byIdentity('7')).toBe(7);
    expect(t.byIdentity('x7')).toBe(b.ino);
    expect(t.acquire('7', () => 'X').record).toBe(a);
    expect(t.acquire('x7', () => 'X').record).toBe(b);
    expect(t.byIdentity('9')).toBeUndefined();
    expect(t.forget(7, 2).dropped).toBe(true);
    expect(t.byIdentity('7')).toBeUndefined();
    expect(t.byIdentity('x7')).toBe(b.ino);
  });

  it('rekey takes the key from a record found by its ino, which stays unfound by it until dropped', () => {
    const t = new InodeTable<string>('root', 'r', { inoOfKey: (k) => Number(k) });
    const a = t.acquire('5', () => 'A').record;
    const b = t.acquire('6', () => 'B').record;
    t.rekey(b.ino, '5');
    expect(t.byIdentity('5')).toBe(b.ino);
    expect(t.byIdentity('6')).toBeUndefined();
    expect(t.get(a.ino)).toBe(a);
    // Once b is dropped, a does not get the key back (it lost the index, as without inoOfKey).
    t.forget(b.ino, 1);
    expect(t.byIdentity('5')).toBeUndefined();
    // A new acquire of '5' makes a new record (ino 5 is a's).
    const c = t.acquire('5', () => 'C').record;
    expect(c).not.toBe(a);
    expect(t.byIdentity('5')).toBe(c.ino);
    // Rekeying back to the key its ino asks for: found through byIno again.
    t.rekey(c.ino, String(c.ino));
    expect(t.byIdentity(String(c.ino))).toBe(c.ino);
    expect(t.byIdentity('5')).toBeUndefined();
    t.forget(a.ino, 1);
    t.forget(c.ino, 1);
    expect(t.size).toBe(1);
  });

  it('keeps values that are their own records, and refuses one that is not', () => {
    class Node implements InodeRecord<Node> {
      key = '';
      lookups = 0;
      constructor(readonly ino: number) {}
      get value(): Node { return this; }
    }
    const t = new InodeTable<Node>('root', new Node(1), { ownRecords: true });
    const { record } = t.acquire('a', (ino) => new Node(ino));
    expect(record).toBe(record.value);
    expect(record.key).toBe('a');
    expect(record.lookups).toBe(1);
    t.ref(record.ino, 2);
    expect(record.lookups).toBe(3);
    expect(t.forget(record.ino, 3)).toEqual({ dropped: true, value: record, excess: 0 });
    expect(() => t.acquire('b', (ino) => new Node(ino + 1))).toThrow(/not its own record/);
  });

  it('compactInt gives small integers as such and leaves the rest', () => {
    expect(compactInt(2 ** 31 - 1)).toBe(2 ** 31 - 1);
    expect(compactInt(2 ** 32 * 0 + 5)).toBe(5);
    expect(compactInt(2 ** 52 + 3)).toBe(2 ** 52 + 3);
    expect(compactInt(1.5)).toBe(1.5);
    expect(compactInt(-0)).toBe(0);
  });
});
