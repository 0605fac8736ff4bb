/**
 * Example: compose two host lower directories (the example image layers in
 * `examples/layers/`, top `app` in OCI whiteout format over `base`) under a writable upper
 * directory, in process with no mount and no root, and use the union through `Volume`.
 *
 * Run: `node examples/dist/compose-dirs.js [UPPER_PARENT]` (after `pnpm exec tsc -b`).
 */
import { mkdir, mkdtemp, readdir as hostReaddir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Volume } from '@layerfs/core';
import { overlayFromDirs } from '@layerfs/overlay';

/** The example layers shipped in `examples/layers/`, top first. */
export const exampleLowerdirs = (): string[] => {
  const layers = join(dirname(fileURLToPath(import.meta.url)), '..', 'layers');
  return [join(layers, 'app'), join(layers, 'base')];
};

/** What the example saw, for printing and for its test. */
export interface ComposeDirsResult {
  /** Every path of the merged tree before any change, sorted. */
  merged: string[];
  /** `/etc/os-release` of the union (the top layer's). */
  osRelease: string;
  /** `/etc/hostname` after appending a line (copied up into the upper first). */
  hostname: string;
  /** Names in the upper directory's `etc/` after the changes (on the host). */
  upperEtc: string[];
  /** Whether `/etc/passwd` is still visible after it was removed. */
  passwdVisible: boolean;
}

/** List every path below `dir` of the volume, depth first, sorted. */
async function walk(vol: Volume, dir = '/'): Promise<string[]> {
  const out: string[] = [];
  for (const e of await vol.readdir(dir, { withFileTypes: true })) {
    const p = dir === '/' ? `/${e.name}` : `${dir}/${e.name}`;
    out.push(e.isDirectory() ? `${p}/` : p);
    if (e.isDirectory()) out.push(...(await walk(vol, p)));
  }
  return out.sort();
}

/** Build the union in `parent` (upper and work dirs), read it, change it, and report. */
export async function composeDirs(parent: string): Promise<ComposeDirsResult> {
  const upperdir = join(parent, 'upper');
  const workdir = join(parent, 'work');
  await mkdir(upperdir, { recursive: true });   // like the kernel, the upper must exist
  await mkdir(workdir, { recursive: true });
  const ov = await overlayFromDirs({
    lowerdir: exampleLowerdirs(), upperdir, workdir,
    whiteoutFormat: 'oci',          // the upper records deletions as `.wh.<name>` files
    lowerWhiteoutFormat: 'oci',     // the app layer hides base's README with `.wh.README`
  });
  const vol = new Volume(ov);
  try {
    const merged = await walk(vol);
    const osRelease = await vol.readFile('/etc/os-release', 'utf8');
    await vol.appendFile('/etc/hostname', 'changed-through-layerfs\n');   // copy-up
    const hostname = await vol.readFile('/etc/hostname', 'utf8');
    await vol.unlink('/etc/passwd');                                       // whiteout
    const passwdVisible = await vol.access('/etc/passwd').then(() => true, () => false);
    const upperEtc = (await hostReaddir(join(upperdir, 'etc'))).sort();
    return { merged, osRelease, hostname, upperEtc, passwdVisible };
  } finally {
    await ov.destroy();
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const parent = process.argv[2] ?? (await mkdtemp(join(tmpdir(), 'layerfs-example-')));
  const r = await composeDirs(parent);
  console.log(`merged tree of ${exampleLowerdirs().join(' over ')}:`);
  for (const p of r.merged) console.log(`  ${p}`);
  console.log(`/etc/os-release (from the top layer): ${r.osRelease.split('\n')[0]}`);
  console.log(`/etc/hostname after append (copied up):\n${r.hostname.replace(/^/gm, '  ').trimEnd()}`);
  console.log(`/etc/passwd after unlink: ${r.passwdVisible ? 'still visible (bug)' : 'gone (whiteout in upper)'}`);
  console.log(`upper ${join(parent, 'upper', 'etc')}: ${r.upperEtc.join(' ')}`);
}
