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

/** Options of an InodeTable. */
export interface InodeTableOptions {
  /**
   * Called when a forget asks for more lookups than are held (the count is clamped to
   * zero). Default: none; the excess is also returned in the ForgetResult.
   */
  onExcessForget?: (ino: number, held: number, asked: number) => void;
  /** First ino the counter hands out. Default: 2 (1 is the root). */
  firstIno?: number;
}

/** Lookup-count bookkeeping: ino ↔ identity, counts, values. */
export class InodeTable<T> {
  private readonly byIno = new Map<number, InodeRecord<T>>();
  private readonly byKey = new Map<string, InodeRecord<T>>();
  private nextIno: number;
  private readonly onExcessForget: ((ino: number, held: number, asked: number) => void) | undefined;
  /** Total lookups forgotten beyond what was held, over the table's life. */
  excessForgets = 0;

  /** A table whose root (ino 1) has identity `rootKey` and value `rootValue`. */
  constructor(rootKey: string, rootValue: T, options: InodeTableOptions = {}) {
    this.nextIno = Math.max(options.firstIno ?? ROOT_INO + 1, ROOT_INO + 1);
    this.onExcessForget = options.onExcessForget;
    const root: InodeRecord<T> = { ino: ROOT_INO, key: rootKey, lookups: 1, value: rootValue };
    this.byIno.set(ROOT_INO, root);
    this.byKey.set(rootKey, root);
  }

  /**
   * The record for identity `key`, created if absent, with `n` lookups added (default 1).
   * A new record gets `preferredIno` when given and free, else the next counter value;
   * `create` builds its value. Returns the record and whether it was created.
   */
  acquire(key: string, create: (ino: number) => T, n = 1, preferredIno?: number): { record: InodeRecord<T>; created: boolean } {
    const existing = this.byKey.get(key);
    if (existing) {
      existing.lookups += n;
      return { record: existing, created: false };
    }
    const ino = this.allocateIno(preferredIno);
    const record: InodeRecord<T> = { ino, key, lookups: n, value: create(ino) };
    this.byIno.set(ino, record);
    this.byKey.set(key, record);
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
    return this.byKey.get(key)?.ino;
  }

  /**
   * Change the identity of `ino` to `newKey` (for example after a copy-up or a rename that
   * changed what identifies it). If another record holds `newKey`, it loses the key index
   * (it stays reachable by ino).
   */
  rekey(ino: number, newKey: string): void {
    const record = this.require(ino);
    if (this.byKey.get(record.key) === record) this.byKey.delete(record.key);
    record.key = newKey;
    this.byKey.set(newKey, record);
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
