/**
 * `overlayFromDirs`: an OverlayFs over host directories, configured like
 * `mount -t overlay -o lowerdir=…,upperdir=…,workdir=…` (and fuse-overlayfs): each directory
 * becomes a `PassthroughLayer`; the upper's work area is `<workdir>/work`, as the kernel's.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { FsError, type WhiteoutFormat } from '@layerfs/core';
import { PassthroughLayer } from '@layerfs/passthrough';
import { OverlayFs, type OverlayOptions } from './overlay.js';

/** What `overlayFromDirs` takes (the overlay mount options, as an object). */
export interface OverlayDirsConfig {
  /** Lower directories, top first: an array, or one string with `:` separators (`\:` escapes). */
  lowerdir: string | readonly string[];
  /** The writable upper directory. Default: none (a read-only overlay, EROFS on change). */
  upperdir?: string;
  /**
   * A directory on the upper's filesystem, outside it, where copy-ups and whiteouts are
   * staged (in its `work/` subdirectory, as the kernel does). Required with `upperdir`.
   */
  workdir?: string;
  /** Whiteout format of the upper (and, unless `lowerWhiteoutFormat`, of the lowers). Default: chardev when root, else oci. */
  whiteoutFormat?: WhiteoutFormat;
  /** Whiteout format of the lowers: one for all, or one per lower (top first). Default: `whiteoutFormat`. */
  lowerWhiteoutFormat?: WhiteoutFormat | readonly WhiteoutFormat[];
  /** Use `user.overlay.*` xattrs (kernel `-o userxattr`). Default false. */
  userxattr?: boolean;
  /** Uid mapping `H:C:N[:…]` for every layer (fuse-overlayfs syntax). Default: identity. */
  uidmapping?: string;
  /** Gid mapping, same syntax. Default: identity. */
  gidmapping?: string;
  /** Overlay options (`userxattr` above wins). */
  options?: OverlayOptions;
}

/** Split a kernel-style `lowerdir` string (`a:b:c`, with `\:` for a literal colon). */
export function splitLowerdir(spec: string): string[] {
  const out: string[] = [];
  let cur = '';
  for (let i = 0; i < spec.length; i++) {
    const ch = spec[i]!;
    if (ch === '\\' && spec[i + 1] === ':') { cur += ':'; i++; continue; }
    if (ch === ':') { out.push(cur); cur = ''; continue; }
    cur += ch;
  }
  out.push(cur);
  return out.filter((s) => s.length > 0);
}

/** Build an OverlayFs from host directories (it destroys its layers when destroyed). */
export async function overlayFromDirs(cfg: OverlayDirsConfig): Promise<OverlayFs> {
  const lowerdirs = typeof cfg.lowerdir === 'string' ? splitLowerdir(cfg.lowerdir) : [...cfg.lowerdir];
  if (lowerdirs.length === 0) throw new FsError('EINVAL', { detail: 'lowerdir is empty' });
  if (cfg.upperdir !== undefined && cfg.workdir === undefined) throw new FsError('EINVAL', { detail: 'upperdir needs a workdir' });
  const userxattr = cfg.userxattr ?? cfg.options?.userxattr ?? false;
  const common = {
    userxattr,
    ...(cfg.uidmapping !== undefined ? { uidmapping: cfg.uidmapping } : {}),
    ...(cfg.gidmapping !== undefined ? { gidmapping: cfg.gidmapping } : {}),
  };
  const lowerFormat = (i: number): WhiteoutFormat | undefined => {
    const f = cfg.lowerWhiteoutFormat;
    if (f === undefined) return cfg.whiteoutFormat;
    return typeof f === 'string' ? f : f[i];
  };
  const lowers: PassthroughLayer[] = [];
  let upper: PassthroughLayer | undefined;
  try {
    for (const [i, d] of lowerdirs.entries()) {
      const wf = lowerFormat(i);
      lowers.push(await PassthroughLayer.open(d, { ...common, writable: false, ...(wf ? { whiteoutFormat: wf } : {}) }));
    }
    if (cfg.upperdir !== undefined) {
      const work = join(cfg.workdir!, 'work');
      await mkdir(work, { recursive: true, mode: 0o700 });
      upper = await PassthroughLayer.open(cfg.upperdir, {
        ...common, workdir: work, ...(cfg.whiteoutFormat ? { whiteoutFormat: cfg.whiteoutFormat } : {}),
      });
    }
    return await OverlayFs.create({
      ...(upper ? { upper } : {}), lowers, options: { ...cfg.options, userxattr, destroyLayers: true },
    });
  } catch (e) {
    for (const l of [...lowers, ...(upper ? [upper] : [])]) await l.destroy().catch(() => undefined);
    throw e;
  }
}
