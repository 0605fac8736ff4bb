/**
 * Permission checks as the kernel's `generic_permission` makes them for a caller: owner,
 * group (primary or supplementary), other; root passes read/write always and execute when
 * any execute bit is set (or on directories). Shared by every layer that checks permissions
 * itself (the in-memory layer, and layers serving requests for other users).
 */
import { FsError } from './errors.js';
import { S_IFDIR, S_IFMT, S_ISGID, S_ISUID, S_ISVTX, type RequestContext } from './types.js';

/** The parts of an inode's attributes a permission check reads. */
export interface Ownership {
  /** Type and permission bits. */
  readonly mode: number;
  /** Owner. */
  readonly uid: number;
  /** Group. */
  readonly gid: number;
}

/** True when the caller belongs to group `gid` (primary or supplementary). */
export function inGroup(ctx: RequestContext, gid: number): boolean {
  return ctx.gid === gid || (ctx.groups?.includes(gid) ?? false);
}

/**
 * True when the caller may access an object with the given `mask` (`AccessMode` bits,
 * R_OK=4, W_OK=2, X_OK=1; F_OK=0 always passes).
 */
export function mayAccess(obj: Ownership, ctx: RequestContext, mask: number): boolean {
  if (passesWithoutOwnership(ctx, mask)) return true;
  mask &= 7;
  if (ctx.uid === 0) return (obj.mode & S_IFMT) === S_IFDIR || (obj.mode & 0o111) !== 0;
  let bits: number;
  if (ctx.uid === obj.uid) bits = (obj.mode >> 6) & 7;
  else if (inGroup(ctx, obj.gid)) bits = (obj.mode >> 3) & 7;
  else bits = obj.mode & 7;
  return (bits & mask) === mask;
}

/**
 * True when `mayAccess` says yes whatever the object's ownership: nothing asked (F_OK), or
 * root asking for read and write only. A caller can skip fetching the attributes then.
 */
export function passesWithoutOwnership(ctx: RequestContext, mask: number): boolean {
  return (mask & 7) === 0 || (ctx.uid === 0 && (mask & 1) === 0);
}

/**
 * `mode` with set-user-ID cleared, and set-group-ID when group-execute is set: what the
 * kernel's "kill priv" (file_remove_privs, setattr_should_drop_suidgid) leaves after a write,
 * a truncate or a chown by a caller without CAP_FSETID. Equal to `mode` when nothing drops.
 */
export function killPriv(mode: number): number {
  let m = mode & ~S_ISUID;
  if ((m & (S_ISGID | 0o010)) === (S_ISGID | 0o010)) m &= ~S_ISGID;
  return m;
}

/** Throw EACCES unless `mayAccess(obj, ctx, mask)`. */
export function checkAccess(obj: Ownership, ctx: RequestContext, mask: number): void {
  if (!mayAccess(obj, ctx, mask)) throw new FsError('EACCES');
}

/**
 * The sticky-bit rule for removing or renaming `victim` out of directory `dir`: with S_ISVTX
 * set on `dir`, only root, the owner of `dir` or the owner of `victim` may. Throws EPERM.
 */
export function checkSticky(dir: Ownership, victim: Ownership, ctx: RequestContext): void {
  if ((dir.mode & S_ISVTX) === 0 || ctx.uid === 0) return;
  if (ctx.uid === dir.uid || ctx.uid === victim.uid) return;
  throw new FsError('EPERM');
}

/** True when the caller owns the object or is root (the rule for chmod and utimes to a set time). */
export function isOwnerOrRoot(obj: Ownership, ctx: RequestContext): boolean {
  return ctx.uid === 0 || ctx.uid === obj.uid;
}
