// A layerfs mount served through the packages' API, for benchmarking before (or besides)
// the `layerfs` command: `overlayFromDirs` + `mount` from the built dist/, unmounted on
// SIGTERM/SIGINT, exiting when the mount goes away. Same arguments as the command:
//   node layerfs-server.mjs mount -f -o lowerdir=…,upperdir=…,workdir=… MNT
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const { overlayFromDirs } = await import(join(repo, 'packages/overlay/dist/index.js'));
const { mount, mountLowLevel } = await import(join(repo, 'packages/fuse/dist/index.js'));

const args = process.argv.slice(2);
const o = args[args.indexOf('-o') + 1] ?? '';
const mnt = args[args.length - 1];
const kv = Object.fromEntries(o.split(',').map((p) => p.split('=')));
const fs = await overlayFromDirs({ lowerdir: kv.lowerdir, upperdir: kv.upperdir, workdir: kv.workdir });
// LAYERFS_TRANSPORT=lowlevel serves the mount with mountLowLevel (the low-level FUSE transport).
const handle = process.env.LAYERFS_TRANSPORT === 'lowlevel'
  ? await mountLowLevel(fs, mnt, { destroyOnUnmount: true })
  : await mount(fs, mnt, { destroyOnUnmount: true });
let stopping = false;
const stop = async () => {
  if (stopping) return;
  stopping = true;
  await handle.unmount();
  process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
await handle.closed;
process.exit(0);
