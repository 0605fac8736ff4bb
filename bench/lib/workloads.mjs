// The mounted workloads. Each one runs against a root directory (a mount point, or for the
// native reference a plain directory), is driven from child processes only (shell tools
// or walker.mjs with synchronous calls), and returns one or more timings in ms. Paths a
// workload uses, relative to the root: `tree/…` (the lower tree), `big.bin` (the big file),
// `new/…` (things it creates).
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { run, timeShell } from './util.mjs';

const WALKER = join(dirname(fileURLToPath(import.meta.url)), 'walker.mjs');

async function walker(...args) {
  const { out } = await run(process.execPath, [WALKER, ...args.map(String)]);
  return JSON.parse(out.trim().split('\n').pop());
}

/**
 * Mounted workloads by name. `emptyOk`: the workload also runs on the `layerfs-empty`
 * system (it needs nothing of the tree). `minRounds`: rounds the workload runs at least when --rounds is
 * not given. `native` says how the native reference gets its directory:
 * 'ro' = the lower itself; 'empty' = a fresh empty dir; 'copy:<list>' = a fresh copy of the
 * listed lower files; 'copy:big' = a fresh copy of the big file. `fs` = the filesystem the
 * layers live on (ext4 = the prepared dirs, xfs = the reflink loop image).
 */
export const WORKLOADS = {
  create: {
    desc: (o) => `create ${o.createDirs * o.createPerDir} empty files in ${o.createDirs} new dirs`,
    native: 'empty', fs: 'ext4',
    async run(root, c) { return { create: (await walker('create', root, c.opts.createDirs, c.opts.createPerDir)).ms }; },
  },
  stat: {
    desc: (_o, c) => `lstat every lower entry (${c.counts.entries}): cold right after mount, then warm`,
    native: 'ro', fs: 'ext4',
    async run(root, c) {
      const cold = (await walker('lstat', root, c.files.entries)).ms;
      const warm = (await walker('lstat', root, c.files.entries)).ms;
      return { 'stat-cold': cold, 'stat-warm': warm };
    },
  },
  'stat-missing': {
    desc: (o) => `lstat ${o.files} names that do not exist (one negative lookup each): cold right after mount, then warm`,
    native: 'ro', fs: 'ext4', emptyOk: true,
    async run(root, c) {
      const cold = (await walker('lstat-missing', root, c.opts.files)).ms;
      const warm = (await walker('lstat-missing', root, c.opts.files)).ms;
      return { 'stat-missing-cold': cold, 'stat-missing-warm': warm };
    },
  },
  find: {
    desc: () => 'find over the tree, cold then warm',
    native: 'ro', fs: 'ext4',
    async run(root) {
      const cold = await timeShell('find tree > /dev/null', root);
      const warm = await timeShell('find tree > /dev/null', root);
      return { 'find-cold': cold, 'find-warm': warm };
    },
  },
  'tar-meta': {
    desc: () => 'tar c of the tree to /dev/null (GNU tar reads no data then), cold',
    native: 'ro', fs: 'ext4',
    async run(root) { return { 'tar-meta': await timeShell('tar -cf /dev/null tree', root) }; },
  },
  'tar-data': {
    desc: () => 'tar c of the tree with data, piped to /dev/null, cold',
    native: 'ro', fs: 'ext4',
    async run(root) { return { 'tar-data': await timeShell('tar -cf - tree | cat > /dev/null', root) }; },
  },
  read: {
    desc: (o) => `read the ${o.bigMiB} MiB file in 1 MiB blocks (dd)`,
    native: 'ro', fs: 'ext4', minRounds: 5,
    async run(root) { return { read: await timeShell('dd if=big.bin of=/dev/null bs=1M status=none', root) }; },
  },
  write: {
    desc: (o) => `write a new ${o.bigMiB} MiB file in 1 MiB blocks, fsync (dd conv=fsync)`,
    native: 'empty', fs: 'ext4', minRounds: 5,
    async run(root, c) {
      return { write: await timeShell(`dd if=/dev/zero of=new.bin bs=1M count=${c.opts.bigMiB} conv=fsync status=none`, root) };
    },
  },
  'append-small': {
    desc: (_o, c) => `append 1 byte to ${c.counts.append} small lower files (copy-up)`,
    native: 'copy:append', fs: 'ext4',
    async run(root, c) { return { 'append-small': (await walker('append', root, c.files.append)).ms }; },
  },
  'append-big-ext4': {
    desc: (o) => `append 1 byte to the ${o.bigMiB} MiB lower file on ext4 (copy-up)`,
    native: 'copy:big', fs: 'ext4',
    async run(root) { return { 'append-big-ext4': await timeShell('printf x >> big.bin', root) }; },
  },
  'append-big-xfs': {
    desc: (o) => `append 1 byte to the ${o.bigMiB} MiB lower file on a reflink XFS image (clone copy-up)`,
    native: 'copy:big', fs: 'xfs',
    async run(root) { return { 'append-big-xfs': await timeShell('printf x >> big.bin', root) }; },
  },
  unlink: {
    desc: (_o, c) => `unlink ${c.counts.unlink} lower files (whiteouts)`,
    native: 'copy:unlink', fs: 'ext4',
    async run(root, c) { return { unlink: (await walker('unlink', root, c.files.unlink)).ms }; },
  },
  untar: {
    desc: (_o, c) => `untar ${c.counts.untar} files into the mount`,
    native: 'empty', fs: 'ext4',
    async run(root, c) { return { untar: await timeShell(`mkdir new && tar -xf ${c.untarBall} -C new`, root) }; },
  },
};

/** Metric names in display order. */
export const METRIC_ORDER = [
  'create', 'stat-cold', 'stat-warm', 'stat-missing-cold', 'stat-missing-warm', 'find-cold', 'find-warm', 'tar-meta', 'tar-data', 'read', 'write',
  'append-small', 'append-big-ext4', 'append-big-xfs', 'unlink', 'untar',
];
