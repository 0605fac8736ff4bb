/**
 * Name and path-component validation shared by every layer: a name is one path component,
 * checked exactly as the kernel checks it, so no layer can be walked out of its root.
 */
import { FsError } from './errors.js';

/** The longest name in bytes (UTF-8), as `NAME_MAX` on Linux. */
export const NAME_MAX = 255;
/** The longest path in bytes, as `PATH_MAX` on Linux (including the final NUL). */
export const PATH_MAX = 4096;

/**
 * Check that `name` is one path component: not empty, not `.` or `..`, no `/`, no NUL, at
 * most 255 bytes of UTF-8. Throws `FsError` EINVAL (or ENOENT for the empty name, as the
 * kernel answers a lookup of "") or ENAMETOOLONG.
 */
export function validateName(name: string): void {
  if (name.length === 0) throw new FsError('ENOENT', { detail: 'empty name' });
  if (name === '.' || name === '..') throw new FsError('EINVAL', { detail: `'${name}' is not a name` });
  if (name.includes('/')) throw new FsError('EINVAL', { detail: 'a name may not contain /' });
  if (name.includes('\0')) throw new FsError('EINVAL', { detail: 'a name may not contain NUL' });
  if (name.length > NAME_MAX / 4 && Buffer.byteLength(name, 'utf8') > NAME_MAX) {
    throw new FsError('ENAMETOOLONG', { detail: `name longer than ${NAME_MAX} bytes` });
  }
}
