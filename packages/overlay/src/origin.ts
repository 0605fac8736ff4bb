/**
 * Origins and inode numbers of the overlay. An object's origin is the layer and layer inode
 * number (`attr.ino`, the host `st_ino` for a host directory) where it first appeared. The
 * overlay packs it into one inode number below 2^52 (`packIno`), and records it on the upper
 * copy of an object at copy-up in the `<prefix>overlay.origin` xattr, the attribute kernel
 * overlayfs uses for the same purpose. The value is framed like the kernel's `struct ovl_fb`
 * (magic 0xfb) with a version the kernel treats as "origin unknown", so a kernel mounting an
 * upper written by layerfs ignores it instead of failing the lookup.
 */

/** Bytes of the marker that identifies a layerfs origin inside the kernel-shaped frame. */
const MARKER = Buffer.from('layerfs-origin\0\0', 'latin1');
/** Kernel `OVL_FH_MAGIC`. */
const FH_MAGIC = 0xfb;
/** A version above the kernel's `OVL_FH_VERSION` (0): the kernel reads it as "origin unknown". */
const FH_VERSION_LAYERFS = 0x4c;
/** Length of the whole value. */
const ORIGIN_LEN = 5 + 16 + 2 + 1 + 8;

/** What an origin xattr records. */
export interface Origin {
  /** Index of the layer in the overlay's stack (0 = upper, 1… = lowers top first). */
  readonly layer: number;
  /** The object's `attr.ino` in that layer. */
  readonly ino: number;
  /** True when the origin had more than one name (copy-up broke a hard link). */
  readonly hardlink: boolean;
}

/** Encode an origin as the bytes of the origin xattr. */
export function encodeOrigin(o: Origin): Uint8Array {
  const b = Buffer.alloc(ORIGIN_LEN);
  b[0] = FH_VERSION_LAYERFS;
  b[1] = FH_MAGIC;
  b[2] = ORIGIN_LEN;
  b[3] = 0;
  b[4] = 0;
  MARKER.copy(b, 5);
  b.writeUInt16LE(o.layer, 21);
  b[23] = o.hardlink ? 1 : 0;
  b.writeBigUInt64LE(BigInt(o.ino), 24);
  return b;
}

/** Decode an origin xattr value; undefined when it is not a layerfs origin (e.g. the kernel's). */
export function decodeOrigin(v: Uint8Array): Origin | undefined {
  if (v.length !== ORIGIN_LEN || v[0] !== FH_VERSION_LAYERFS || v[1] !== FH_MAGIC) return undefined;
  const b = Buffer.from(v.buffer, v.byteOffset, v.byteLength);
  if (!b.subarray(5, 21).equals(MARKER)) return undefined;
  const ino = b.readBigUInt64LE(24);
  if (ino > BigInt(Number.MAX_SAFE_INTEGER)) return undefined;
  return { layer: b.readUInt16LE(21), ino: Number(ino), hardlink: b[23] === 1 };
}

/** Inode numbers at or above this come from the fallback counter, never from packing. */
export const FALLBACK_INO_BASE = 2 ** 52;

/**
 * The overlay inode number of an object whose origin is (`layer`, `ino`) in an overlay of
 * `layerCount` layers: `2 + layer + layerCount × ino`, so 1 stays the root. Undefined when
 * that does not fit below `FALLBACK_INO_BASE`.
 */
export function packIno(layer: number, ino: number, layerCount: number): number | undefined {
  const v = 2 + layer + layerCount * ino;
  return Number.isSafeInteger(v) && v < FALLBACK_INO_BASE ? v : undefined;
}

/** The identity key of an origin, as the overlay's inode table indexes it. */
export function originKey(layer: number, ino: number): string {
  return `${layer}:${ino}`;
}

/** Parse an origin key back (undefined for other keys). */
export function parseOriginKey(key: string): { layer: number; ino: number } | undefined {
  const i = key.indexOf(':');
  if (i <= 0) return undefined;
  const a = key.slice(0, i);
  const b = key.slice(i + 1);
  const layer = Number(a);
  const ino = Number(b);
  // Canonical decimal integers only (what originKey writes).
  if (!Number.isSafeInteger(layer) || !Number.isSafeInteger(ino) || layer < 0 || ino < 0) return undefined;
  return String(layer) === a && String(ino) === b ? { layer, ino } : undefined;
}
