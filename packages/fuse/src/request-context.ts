/**
 * Per-request credentials for the fuse-native transport. fuse-native passes no uid/gid/pid
 * to JavaScript, and libfuse's `fuse_get_context()` is thread-local: called from the JS
 * thread (through koffi) it returns the JS thread's own, empty context (uid 0, pid 0 —
 * measured). The request's context lives in the TLS of the libfuse worker thread that is
 * blocked waiting for our answer, so this module reads it from there, read-only:
 *
 * 1. the worker thread is found by the futex it waits on: fuse-native's thread-locals buffer
 *    `l` (handed to every JS handler) holds the semaphore at offset 200, and
 *    `/proc/self/task/<tid>/syscall` shows `futex(&l->sem, …)` and the thread's stack pointer;
 * 2. the thread's glibc descriptor (`struct pthread`, its TLS block) sits at a fixed distance
 *    below the end of its stack mapping — the distance is measured once on a libuv pool thread;
 * 3. the offset of `specific_1stblock` (pthread_getspecific's table) in that descriptor is
 *    measured once on the main thread with a key and a marker value;
 * 4. among the thread's keys, libfuse's context is the pointer whose `private_data` (offset
 *    24 of `struct fuse_context`) is fuse-native's `fuse_thread_t` — our `_thread` buffer.
 *
 * Each worker thread keeps its context object for life, so steps 1–4 run once per thread;
 * after that a request costs one 40-byte read (uid +8, gid +12, pid +16, umask +32).
 * Supplementary groups come from `/proc/<pid>/status` (caller-groups.ts). Linux x86-64 with
 * glibc only; anything unexpected disables it, and the mount falls back to the mounter's
 * credentials. /proc is read synchronously, never on libuv's pool: a new worker thread's
 * first request must not wait behind pool threads that the serving process's own calls on its
 * mount hold (seen: a recursive `fs.promises.rm` on the mount, its unlinks on every pool
 * thread, each waiting for a request whose credentials waited for the pool).
 */
import { readdirSync, readFileSync } from 'node:fs';
import koffi from 'koffi';
import type { RequestContext } from '@layerfs/core';
import { CallerGroups } from './caller-groups.js';

type Fn = (...args: any[]) => any;

interface Probe {
  memcpy: Fn;
  addrOf: (b: Buffer) => bigint;
  specBase: number;
  delta: bigint;
}

let probe: Promise<Probe | undefined> | undefined;
let calibrated: Probe | undefined;

function read(p: Probe, addr: bigint, n: number): Buffer {
  const b = Buffer.alloc(n);
  p.memcpy(b, addr, n);
  return b;
}

async function calibrate(): Promise<Probe | undefined> {
  if (process.platform !== 'linux' || process.arch !== 'x64') return undefined;
  try {
    const libc = koffi.load('libc.so.6');
    const memcpy = libc.func('uintptr_t memcpy(void *dst, uintptr_t src, size_t n)');
    const memmove = libc.func('uintptr_t memmove(void *dst, void *src, size_t n)');
    const self = libc.func('uintptr_t pthread_self()');
    const keyCreate = libc.func('int pthread_key_create(_Out_ unsigned int *key, void *destructor)');
    const setspecific = libc.func('int pthread_setspecific(unsigned int key, uintptr_t value)');
    const addrOf = (b: Buffer) => BigInt(memmove(b, b, 0) as number | bigint);
    const p: Probe = { memcpy, addrOf, specBase: -1, delta: 0n };
    const key = [0];
    if (keyCreate(key, null) !== 0) return undefined;
    const marker = 0x5eed5eed12345678n;
    setspecific(key[0], marker);
    const tcb = read(p, BigInt(self() as number | bigint), 4096);
    for (let o = 8; o + 8 <= tcb.length; o += 8) {
      if (tcb.readBigUInt64LE(o) === marker) { p.specBase = o - 8 - 16 * key[0]!; break; }
    }
    setspecific(key[0], 0);
    if (p.specBase < 0) return undefined;
    const poolPd = BigInt(await new Promise<number | bigint>((resolve, reject) => {
      (self as unknown as { async(cb: (e: unknown, v: number | bigint) => void): void }).async((e, v) => (e ? reject(e) : resolve(v)));
    }));
    const m = mappings().find((x) => x.lo <= poolPd && poolPd < x.hi);
    if (!m) return undefined;
    p.delta = m.hi - poolPd;
    if (p.delta <= 0n || p.delta > 65536n) return undefined;
    return p;
  } catch {
    return undefined;
  }
}

function mappings(): Array<{ lo: bigint; hi: bigint }> {
  const text = readFileSync('/proc/self/maps', 'utf8');
  return text.split('\n').filter(Boolean).map((l) => {
    const [lo, hi] = l.slice(0, l.indexOf(' ')).split('-');
    return { lo: BigInt(`0x${lo}`), hi: BigInt(`0x${hi}`) };
  });
}

/** The entries of a /proc directory ([] when it cannot be read). */
function procList(dir: string): string[] {
  try { return readdirSync(dir); } catch { return []; }
}

/** The text of a /proc file ('' when it cannot be read: the thread or process is gone). */
function procText(file: string): string {
  try { return readFileSync(file, 'utf8'); } catch { return ''; }
}

/** Offset of the semaphore in fuse-native 2.2.6's `fuse_thread_locals_t` (x86-64). */
const LOCALS_SEM = 200n;
/** Offset of the `fuse_thread_t *` in the same struct. */
const LOCALS_FUSE = 192;
const FUTEX_SYSCALL = '202';

/** Reads the credentials of the request a libfuse worker thread is serving. */
export class RequestContextReader {
  private readonly byLocals = new Map<bigint, bigint | null>();
  private readonly pending = new Map<bigint, Promise<bigint | null>>();
  private readonly groups = new CallerGroups();
  private disabled = false;

  private constructor(private readonly p: Probe, private readonly ft: bigint) {}

  /** Measure the thread layout once per process (before mounting); false where unsupported. */
  static async prepare(): Promise<boolean> {
    probe ??= calibrate();
    calibrated = await probe;
    return calibrated !== undefined;
  }

  /** A reader for the mount whose fuse-native `_thread` buffer is `thread` (after `prepare`); undefined where unsupported. */
  static create(thread: Buffer): RequestContextReader | undefined {
    return calibrated ? new RequestContextReader(calibrated, calibrated.addrOf(thread)) : undefined;
  }

  /** The context of the request served with thread-locals buffer `locals` (undefined if unknown). */
  async read(locals: Buffer): Promise<RequestContext | undefined> {
    if (this.disabled || locals.length < Number(LOCALS_SEM) + 32) return undefined;
    const la = this.p.addrOf(locals);
    let ctxPtr = this.byLocals.get(la);
    if (ctxPtr === undefined) {
      let job = this.pending.get(la);
      if (!job) {
        job = this.discover(locals, la);
        this.pending.set(la, job);
      }
      ctxPtr = await job;
      this.pending.delete(la);
      this.byLocals.set(la, ctxPtr);
    }
    if (ctxPtr === null) return undefined;
    const c = read(this.p, ctxPtr, 40);
    if (c.readBigUInt64LE(24) !== this.ft) { this.disabled = true; return undefined; }
    const uid = c.readUInt32LE(8);
    const gid = c.readUInt32LE(12);
    const pid = c.readInt32LE(16);
    const umask = c.readUInt32LE(32);
    const groups = await this.groups.of(pid);
    return groups ? { uid, gid, pid, umask, groups } : { uid, gid, pid, umask };
  }

  private async discover(locals: Buffer, la: bigint): Promise<bigint | null> {
    if (locals.readBigUInt64LE(LOCALS_FUSE) !== this.ft) return null;
    const sem = la + LOCALS_SEM;
    for (let attempt = 0; attempt < 20; attempt++) {
      for (const tid of procList('/proc/self/task')) {
        const f = procText(`/proc/self/task/${tid}/syscall`).trim().split(' ');
        if (f[0] !== FUTEX_SYSCALL || f.length < 9 || BigInt(f[1]!) !== sem) continue;
        const sp = BigInt(f[7]!);
        const m = mappings().find((x) => x.lo <= sp && sp < x.hi);
        if (!m) return null;
        const tcb = read(this.p, m.hi - this.p.delta, this.p.specBase + 16 * 32 + 16);
        for (let key = 0; key < 32; key++) {
          const ptr = tcb.readBigUInt64LE(this.p.specBase + 16 * key + 8);
          if (ptr === 0n) continue;
          if (read(this.p, ptr, 40).readBigUInt64LE(24) === this.ft) return ptr;
        }
        return null;
      }
      // The worker may not have reached its futex wait yet.
      await new Promise((r) => setTimeout(r, 1));
    }
    return null;
  }
}
