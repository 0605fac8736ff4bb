/**
 * The `layerfs` command: `layerfs mount -o lowerdir=…,upperdir=…,workdir=… MOUNTPOINT`
 * (foreground with `-f`, else a detached daemon that reports readiness on a pipe, so the
 * command exits 0 only once the mount works), `layerfs umount MOUNTPOINT`, `--help`,
 * `--version`. Parsing lives in `cli-args.ts`; this module owns the process side: stale-mount
 * clearing, daemonising, serving until SIGINT/SIGTERM or an outside unmount, exit codes.
 */
import { spawn } from 'node:child_process';
import { closeSync, createWriteStream, openSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { setFlagsFromString } from 'node:v8';
import { LOW_LEVEL_SHARED_OPTIONS, clearStaleMount, mount, mountLowLevel, probeMountpoint, staleMountCommands, unmountPath, type MountHandle } from '@layerfs/fuse';
import { CliError, parseMountArgs, validateLayers, type MountRequest } from './cli-args.js';
import { overlayFromDirs } from './from-dirs.js';

/** Where the command writes. */
export interface CliIo {
  /** Normal output. */
  out(line: string): void;
  /** Error output. */
  err(line: string): void;
}

const defaultIo: CliIo = {
  out: (l) => process.stdout.write(`${l}\n`),
  err: (l) => process.stderr.write(`${l}\n`),
};

/** The help text. */
export const HELP = `usage:
  layerfs mount [-f] -o lowerdir=DIR[:DIR…][,upperdir=DIR,workdir=DIR][,OPTION…] MOUNTPOINT
  layerfs umount MOUNTPOINT
  layerfs --help | --version

Mounts the union of the lower directories (top first; "\\:" is a literal colon) under an
optional writable upper directory, with the semantics of Linux overlayfs, through FUSE.
Without upperdir, or with ro, the union is read-only (EROFS). Without -f the command returns
once the mount is ready and a daemon serves it; SIGINT/SIGTERM to it, or layerfs umount,
unmount it.

options (-o, comma separated):
  lowerdir=A:B   upperdir=U   workdir=W    the layers (workdir on the upper's filesystem)
  whiteout=chardev|oci                     whiteout format of the upper (default chardev)
  lowerwhiteout=chardev|oci                whiteout format of the lowers (default: whiteout's)
  uidmapping=H:C:N[:H:C:N…]  gidmapping=…  id mappings (fuse-overlayfs syntax)
  userxattr                                user.overlay.* xattrs instead of trusted.overlay.*
  ro | rw   noatime   allow_other   default_permissions (always on)   fsname=NAME  subtype=NAME
  entry_timeout=S (86400)  attr_timeout=S (86400)  negative_timeout=S (86400)  kernel_cache  max_write=BYTES
  max_read=BYTES   debug   nosuid nodev noexec suid dev exec sync async dirsync atime
  transport=auto|lowlevel|libfuse   lowlevel: the kernel protocol on /dev/fuse (root only; not
                               with kernel_cache, max_write, max_read, debug or mount flags other
                               than nosuid/nodev); libfuse: fuse-native; auto (default): lowlevel
                               as root when none of those options is given, else libfuse`;

async function version(): Promise<string> {
  const pkg = JSON.parse(await readFile(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

/** Check the mount point; clears a stale FUSE mount left by a crash (or names the commands). */
async function prepareMountpoint(mp: string, io: CliIo): Promise<void> {
  const st = await probeMountpoint(mp);
  switch (st.kind) {
    case 'missing': throw new CliError(`mountpoint ${mp} does not exist`);
    case 'not-directory': throw new CliError(`mountpoint ${mp} is not a directory`);
    case 'mounted': throw new CliError(`mountpoint ${mp} is busy: ${st.mount.fstype} is mounted there (layerfs umount ${mp})`);
    case 'stale':
      try {
        await clearStaleMount(st.mount);
        io.err(`layerfs: cleared a stale mount at ${mp} (${st.reason})`);
      } catch {
        throw new CliError(`mountpoint ${mp} holds a stale mount; clear it with: ${staleMountCommands(st.mount).join(' && ')}`);
      }
      return;
    case 'free': return;
  }
}

/** Mount and serve in this process until unmounted; reports readiness to `req.readyFd`. */
async function serve(req: MountRequest, io: CliIo): Promise<number> {
  const ready = req.readyFd !== undefined ? createWriteStream('', { fd: req.readyFd }) : undefined;
  const report = (msg: string) => new Promise<void>((r) => { if (ready) ready.end(`${msg}\n`, () => r()); else r(); });
  let ov;
  // The daemon holds an inode per name the kernel keeps; V8's default heap growth keeps the
  // old-space pages of forgotten ones (bench memory workload at 100k files: 1,259 B per inode
  // and +12.4 MiB after a second find + forget; with 30 % growth 742 B and +2.4 MiB). Applies
  // to the serving process only (the library leaves its host's flags alone).
  setFlagsFromString('--heap-growing-percent=30');
  try {
    await validateLayers(req);
    await prepareMountpoint(req.mountpoint, io);
    // ro with an upper: the upper is shown read-only on top of the lowers, as the kernel does.
    const roUpper = req.readOnly && req.upperdir !== undefined;
    ov = await overlayFromDirs({
      lowerdir: roUpper ? [req.upperdir!, ...req.lowerdirs] : req.lowerdirs,
      ...(req.upperdir !== undefined && !roUpper ? { upperdir: req.upperdir, workdir: req.workdir! } : {}),
      ...(req.whiteout ? { whiteoutFormat: req.whiteout } : {}),
      ...(req.lowerWhiteout ? { lowerWhiteoutFormat: roUpper ? [req.whiteout ?? 'chardev', ...req.lowerdirs.map(() => req.lowerWhiteout!)] : req.lowerWhiteout } : {}),
      ...(req.uidmapping ? { uidmapping: req.uidmapping } : {}),
      ...(req.gidmapping ? { gidmapping: req.gidmapping } : {}),
      userxattr: req.userxattr,
    });
    const h = req.transport === 'lowlevel' ? await serveLowLevel(ov, req) : await mount(ov, req.mountpoint, { ...req.fuse, handleSignals: true, destroyOnUnmount: true });
    await report('ready');
    await h.closed;
    return 0;
  } catch (e) {
    await ov?.destroy().catch(() => undefined);
    const msg = e instanceof CliError ? e.message : `cannot mount ${req.mountpoint}: ${(e as Error).message ?? String(e)}`;
    if (ready) await report(`error ${msg}`);
    else io.err(`layerfs: ${msg}`);
    return e instanceof CliError ? e.status : 1;
  }
}

/**
 * `transport=lowlevel`: mount with `mountLowLevel` (the `MountOptions` both transports
 * share; SIGINT/SIGTERM unmount, as with `mount()`).
 */
async function serveLowLevel(ov: Parameters<typeof mountLowLevel>[0], req: MountRequest): Promise<MountHandle> {
  const shared = Object.fromEntries(LOW_LEVEL_SHARED_OPTIONS.filter((k) => req.fuse[k] !== undefined).map((k) => [k, req.fuse[k]]));
  return mountLowLevel(ov, req.mountpoint, { ...shared, readOnly: req.readOnly, handleSignals: true, destroyOnUnmount: true });
}

/** Start a detached `layerfs mount -f` child and wait until it reports the mount ready. */
function daemonise(args: readonly string[], io: CliIo): Promise<number> {
  const self = fileURLToPath(new URL('../bin/layerfs.js', import.meta.url));
  // The daemon keeps none of the caller's stdio (a caller waiting for EOF would hang);
  // LAYERFS_DAEMON_LOG=FILE appends its stderr to FILE for debugging.
  const log = process.env.LAYERFS_DAEMON_LOG;
  const errFd = log ? openSync(log, 'a') : 'ignore';
  const child = spawn(process.execPath, [self, 'mount', '-f', '--ready-fd', '3', ...args], {
    detached: true, stdio: ['ignore', 'ignore', errFd, 'pipe'],
  });
  if (typeof errFd === 'number') closeSync(errFd);
  return new Promise((resolve) => {
    let text = '';
    const pipe = child.stdio[3] as NodeJS.ReadableStream;
    pipe.setEncoding('utf8');
    pipe.on('data', (d: string) => { text += d; });
    const finish = (code: number) => {
      child.removeAllListeners();
      pipe.removeAllListeners();
      child.unref();
      (pipe as unknown as { destroy(): void }).destroy();
      resolve(code);
    };
    pipe.on('end', () => {
      const line = text.trim();
      if (line === 'ready') return finish(0);
      if (line.startsWith('error ')) { io.err(`layerfs: ${line.slice(6)}`); return finish(1); }
      io.err('layerfs: the mount daemon exited before the mount was ready');
      finish(1);
    });
    child.on('error', (e) => { io.err(`layerfs: cannot start the mount daemon: ${e.message}`); finish(1); });
  });
}

/** Run the command with `argv` (without `node` and the script); resolves with the exit status. */
export async function main(argv: readonly string[], io: CliIo = defaultIo): Promise<number> {
  try {
    const [cmd, ...rest] = argv;
    if (cmd === undefined || cmd === '--help' || cmd === '-h' || cmd === 'help') {
      io.out(HELP);
      return cmd === undefined ? 2 : 0;
    }
    if (cmd === '--version' || cmd === '-V') {
      io.out(`layerfs ${await version()}`);
      return 0;
    }
    if (cmd === 'mount') {
      if (rest.includes('--help') || rest.includes('-h')) { io.out(HELP); return 0; }
      const req = parseMountArgs(rest);
      if (req.foreground) return await serve(req, io);
      // Check what can be checked before forking, so errors come straight back.
      await validateLayers(req);
      await prepareMountpoint(req.mountpoint, io);
      return await daemonise(rest, io);
    }
    if (cmd === 'umount' || cmd === 'unmount') {
      if (rest.length !== 1) throw new CliError('usage: layerfs umount MOUNTPOINT', 2);
      const mp = rest[0]!;
      try {
        await unmountPath(mp);
      } catch (e) {
        throw new CliError(`cannot unmount ${mp}: ${(e as Error).message.split('\n')[0]}`);
      }
      return 0;
    }
    throw new CliError(`unknown command '${cmd}' (see layerfs --help)`, 2);
  } catch (e) {
    if (e instanceof CliError) {
      io.err(`layerfs: ${e.message}`);
      return e.status;
    }
    io.err(`layerfs: ${(e as Error).message ?? String(e)}`);
    return 1;
  }
}

/** Entry point of `bin/layerfs.js`: run and exit with the status (a serving mount keeps running until unmounted). */
export async function run(): Promise<void> {
  const code = await main(process.argv.slice(2));
  process.exit(code);
}
