// The layerfs low-level transport serving an empty MemoryLayer (a root directory, nothing in
// it), for the `layerfs-empty` system: what a request costs in the transport itself (device
// read, dispatch, reply), with a Filesystem whose lookup is one Map miss. Unmounts on
// SIGTERM/SIGINT and exits when the mount goes away. Arguments as the layerfs command's
// (only the mount point, the last one, is used):  node empty-server.mjs mount -f MNT
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const { mountLowLevel } = await import(join(repo, 'packages/fuse/dist/index.js'));
const { MemoryLayer } = await import(join(repo, 'packages/testkit/dist/index.js'));

const mnt = process.argv[process.argv.length - 1];
const handle = await mountLowLevel(new MemoryLayer(), mnt, { destroyOnUnmount: true, handleSignals: false });
let stopping = false;
const stop = async () => {
  if (stopping) return;
  stopping = true;
  await handle.unmount();
  process.exit(0);
};
process.on('SIGTERM', () => void stop());
process.on('SIGINT', () => void stop());
await handle.closed;
process.exit(0);
