/**
 * InodeTable: the lookup-count bookkeeping every Filesystem shares. It hands out inode
 * numbers for identities (a string key such as `dev:ino` or an overlay origin), counts the
 * lookups the kernel or the Volume holds on each, and drops a record when its count reaches
 * zero — never the root. The invariants the property tests check live here:
 * - counts never go negative (over-forgetting clamps to zero and is reported);
 * - while referenced, an identity keeps its ino and an ino belongs to one identity;
 * - after every lookup is forgotten, only the root remains.
 */
import { FsError } from './errors.js';
import { ROOT_INO } from './filesystem.js';

/** One record of the table. */
export interface InodeRecord<T> {
  /** The inode number. */
  readonly ino: number;
  /** The identity the ino was allocated for (may change with `rekey`). */
  key: string;
  /** Lookups held on the inode. */
  lookups: number;
  /** What the owner of the table keeps for the inode. */
  value: T;
}

/** What `forget` reports. */
export interface ForgetResult<T> {
  /** True when the record was dropped (its count reached zero). */
  readonly dropped: boolean;
  /** The dropped record's value, to release what it holds. */
  readonly value?: T;
  /** How many lookups more than were held the caller tried to forget (0 normally). */
  readonly excess: number;
}

/**
 * `v` as a small integer (an unboxed Smi in V8) when it is an integer that fits in 32 bits;
 * otherwise `v`. Arithmetic such as `hi * 2 ** 32 + lo` yields a boxed number even for a small
 * result, and a boxed number stored in a field costs a heap object per field.
 */
export function compactInt(v: number): number {
  return (v | 0) === v ? v | 0 : v;
}

/** The record class of a table whose values are not their own records. */
class TableRecord<T> implements InodeRecord<T> {
  readonly ino: number;
  key: string;
  lookups: number;
  value: T;
  constructor(ino: number, key: string, lookups: number, value: T) {
    // A non-number first makes the field tagged: small inos stay unboxed even after a large
    // one (2^52 and up) was stored in some record (a number field would box every record's).
    this.ino = undefined as unknown as number;
    this.ino = compactInt(ino);
    this.key = key;
    this.lookups = lookups;
    this.value = value;
  }
}

/** Options of an InodeTable. */
export interface InodeTableOptions {
  /**
   * Called when a forget asks for more lookups than are held (the count is clamped to
   * zero). Default: none; the excess is also returned in the ForgetResult.
   */
  onExcessForget?: (ino: number, held: number, asked: number) => void;
  /** First ino the counter hands out. Default: 2 (1 is the root). */
  firstIno?: number;
  /**
   * The ino identity `key` asks for, when that is a function of the key alone (the default
   * of `acquire`'s `preferredIno`). A record that got it is found by key through `byIno`,
   * without an entry of its own in the key index (one Map entry less per inode).
   */
  inoOfKey?: (key: string) => number | undefined;
  /**
   * The values are their own records: `create` (and the root value) give an object with
   * `ino` (the ino `create` was given), `key`, `lookups` and `value` (itself), whose `key`
   * and `lookups` the table sets and owns (one object less per inode).
   */
  ownRecords?: boolean;
}

/** Lookup-count bookkeeping: ino ↔ identity, counts, values. */
export class InodeTable<T> {
  private readonly byIno = new Map<number, InodeRecord<T>>();
  /** Records found by key that `inoOfKey` does not find (see `keyedByIno`). */
  private readonly byKey = new Map<string, InodeRecord<T>>();
  /**
   * Records found by key through `byIno` (their ino is `inoOfKey(key)`). A record leaves it
   * when it loses its key to another (`rekey`); kept as a set of the few that left.
   */
  private readonly unkeyed = new Set<InodeRecord<T>>();
  private nextIno: number;
  private readonly onExcessForget: ((ino: number, held: number, asked: number) => void) | undefined;
  private readonly inoOfKey: ((key: string) => number | undefined) | undefined;
  private readonly ownRecords: boolean;
  /** Total lookups forgotten beyond what was held, over the table's life. */
  excessForgets = 0;

  /** A table whose root (ino 1) has identity `rootKey` and value `rootValue`. */
  constructor(rootKey: string, rootValue: T, options: InodeTableOptions = {}) {
    this.nextIno = Math.max(options.firstIno ?? ROOT_INO + 1, ROOT_INO + 1);
    this.onExcessForget = options.onExcessForget;
    this.inoOfKey = options.inoOfKey;
    this.ownRecords = options.ownRecords ?? false;
    const root = this.record(ROOT_INO, rootKey, 1, rootValue);
    this.byIno.set(ROOT_INO, root);
    this.index(root);
  }

  private record(ino: number, key: string, lookups: number, value: T): InodeRecord<T> {
    if (!this.ownRecords) return new TableRecord(ino, key, lookups, value);
    const r = value as unknown as InodeRecord<T>;
    if (r.ino !== ino || r.value !== value) throw new FsError('EINVAL', { detail: `the value of inode ${ino} is not its own record` });
    r.key = key;
    r.lookups = lookups;
    return r;
  }

  /** True when `record` is found by its key through `byIno` (no key-index entry needed). */
  private keyedByIno(record: InodeRecord<T>): boolean {
    return this.inoOfKey !== undefined && this.inoOfKey(record.key) === record.ino;
  }

  /** Make `record` the one found by its key. */
  private index(record: InodeRecord<T>): void {
    if (this.keyedByIno(record)) {
      this.unkeyed.delete(record);
      this.byKey.delete(record.key);
    } else this.byKey.set(record.key, record);
  }

  /** Make `record` no longer found by its key (when it is the one found). */
  private unindex(record: InodeRecord<T>): void {
    if (this.byKey.get(record.key) === record) this.byKey.delete(record.key);
    else if (this.keyedByIno(record)) this.unkeyed.add(record);
  }

  /** The record found by identity `key`. */
  private find(key: string): InodeRecord<T> | undefined {
    const r = this.byKey.get(key);
    if (r !== undefined || this.inoOfKey === undefined) return r;
    const ino = this.inoOfKey(key);
    const own = ino === undefined ? undefined : this.byIno.get(ino);
    return own !== undefined && own.key === key && !this.unkeyed.has(own) ? own : undefined;
  }

  /**
   * The record for identity `key`, created if absent, with `n` lookups added (default 1).
   * A new record gets `preferredIno` (default: `inoOfKey(key)`) when given and free, else the
   * next counter value; `create` builds its value. Returns the record and whether it was created.
   */
  acquire(key: string, create: (ino: number) => T, n = 1, preferredIno?: number): { record: InodeRecord<T>; created: boolean } {
    const existing = this.find(key);
    if (existing) {
      existing.lookups += n;
      return { record: existing, created: false };
    }
    const ino = this.allocateIno(preferredIno ?? this.inoOfKey?.(key));
    const record = this.record(ino, key, n, create(ino));
    this.byIno.set(ino, record);
    this.index(record);
    return { record, created: true };
  }

  /** True when `ino` is free to be handed out now (`preferredIno` semantics of `acquire`). */
  isFree(ino: number): boolean {
    return ino > ROOT_INO && Number.isSafeInteger(ino) && !this.byIno.has(ino);
  }

  private allocateIno(preferred?: number): number {
    if (preferred !== undefined && this.isFree(preferred)) return preferred;
    while (this.byIno.has(this.nextIno)) this.nextIno++;
    return this.nextIno++;
  }

  /** Add `n` lookups to `ino`. ESTALE if the ino is not in the table. */
  ref(ino: number, n = 1): InodeRecord<T> {
    const record = this.byIno.get(ino);
    if (!record) throw new FsError('ESTALE', { detail: `inode ${ino} is not known` });
    record.lookups += n;
    return record;
  }

  /**
   * Take `n` lookups from `ino`. At zero the record is dropped (the root never is) and its
   * value returned so the caller can release it. Forgetting more than is held clamps to
   * zero and is reported (`excess`, `onExcessForget`), never thrown. Unknown inos report
   * the whole `n` as excess.
   */
  forget(ino: number, n: number): ForgetResult<T> {
    const record = this.byIno.get(ino);
    if (!record) {
      this.reportExcess(ino, 0, n);
      return { dropped: false, excess: n };
    }
    let excess = 0;
    if (n > record.lookups) {
      excess = n - record.lookups;
      this.reportExcess(ino, record.lookups, n);
      record.lookups = 0;
    } else {
      record.lookups -= n;
    }
    if (record.lookups > 0 || ino === ROOT_INO) return { dropped: false, excess };
    this.byIno.delete(ino);
    if (this.byKey.get(record.key) === record) this.byKey.delete(record.key);
    this.unkeyed.delete(record);
    return { dropped: true, value: record.value, excess };
  }

  private reportExcess(ino: number, held: number, asked: number): void {
    if (asked <= held) return;
    this.excessForgets += asked - held;
    this.onExcessForget?.(ino, held, asked);
  }

  /** The record of `ino`, if present. */
  get(ino: number): InodeRecord<T> | undefined {
    return this.byIno.get(ino);
  }

  /** The record of `ino`; ESTALE if absent (the error a kernel gets for a dead nodeid). */
  require(ino: number): InodeRecord<T> {
    const record = this.byIno.get(ino);
    if (!record) throw new FsError('ESTALE', { detail: `inode ${ino} is not known` });
    return record;
  }

  /** The ino currently allocated for identity `key`, if any. */
  byIdentity(key: string): number | undefined {
    return this.find(key)?.ino;
  }

  /**
   * Change the identity of `ino` to `newKey` (for example after a copy-up or a rename that
   * changed what identifies it). If another record holds `newKey`, it loses the key index
   * (it stays reachable by ino).
   */
  rekey(ino: number, newKey: string): void {
    const record = this.require(ino);
    if (this.find(record.key) === record) this.unindex(record);
    this.unkeyed.delete(record);
    const holder = this.find(newKey);
    if (holder !== undefined && holder !== record) this.unindex(holder);
    record.key = newKey;
    this.index(record);
  }

  /** Number of live records (the root included). */
  get size(): number {
    return this.byIno.size;
  }

  /** Lookups held on `ino` (0 when absent). */
  lookups(ino: number): number {
    return this.byIno.get(ino)?.lookups ?? 0;
  }

  /** Every live record (for invariant checks and shutdown). */
  records(): IterableIterator<InodeRecord<T>> {
    return this.byIno.values();
  }
}
