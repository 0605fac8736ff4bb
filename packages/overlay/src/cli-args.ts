/**
 * Argument parsing and validation of the `layerfs` command: the `-o` option string of
 * `mount -t overlay` / fuse-overlayfs (comma separated, `\,` escapes a comma, `\:` a colon in
 * `lowerdir`), uid/gid mappings (`host:container:count[:host:container:count…]`), and the
 * checks made before anything touches the disk (missing or non-directory layers, upper and
 * work on different filesystems, work inside upper, unknown options). Every failure is a
 * `CliError` whose message is the one line the command prints.
 */
import { stat } from 'node:fs/promises';
import { relative, resolve as resolvePath, isAbsolute } from 'node:path';
import type { MountOptions } from '@layerfs/fuse';
import type { WhiteoutFormat } from '@layerfs/core';
import { splitLowerdir } from './from-dirs.js';

/** A usage or validation error: its message is printed as one line, exit status 2 (usage) or 1. */
export class CliError extends Error {
  /** Process exit status. */
  readonly status: number;
  /** An error with a one-line message. */
  constructor(message: string, status = 1) {
    super(message);
    this.name = 'CliError';
    this.status = status;
  }
}

/** What `layerfs mount` was asked to do. */
export interface MountRequest {
  /** Lower directories, top first (absolute). */
  lowerdirs: string[];
  /** Upper directory (absolute), if any. */
  upperdir?: string;
  /** Work directory (absolute), if any. */
  workdir?: string;
  /** Whiteout format of the upper (default: chardev as root). */
  whiteout?: WhiteoutFormat;
  /** Whiteout format of the lowers (default: the upper's). */
  lowerWhiteout?: WhiteoutFormat;
  /** Uid mapping (fuse-overlayfs syntax), validated. */
  uidmapping?: string;
  /** Gid mapping, validated. */
  gidmapping?: string;
  /** `user.overlay.*` xattrs. */
  userxattr: boolean;
  /** Read-only union (`ro`, or no upper). */
  readOnly: boolean;
  /** FUSE options. */
  fuse: MountOptions;
  /** The mount point (absolute). */
  mountpoint: string;
  /** Stay in the foreground (`-f`). */
  foreground: boolean;
  /** Internal: the file descriptor a daemonised child reports readiness on. */
  readyFd?: number;
  /**
   * The transport that serves the mount: `lowlevel` (`mountLowLevel()`: the kernel protocol on
   * /dev/fuse; root only) or `libfuse` (`mount()`, fuse-native). `transport=auto` (the
   * default) picks `lowlevel` as root when no libfuse-only option is given, else `libfuse`.
   */
  transport: 'libfuse' | 'lowlevel';
}

/** Options only the libfuse transport takes (refused with `transport=lowlevel`). */
const LIBFUSE_ONLY = new Set(['kernel_cache', 'max_write', 'max_read', 'debug']);

/** Kernel mount flags libfuse 2 passes through unchanged. */
const KERNEL_FLAGS = new Set(['suid', 'nosuid', 'dev', 'nodev', 'exec', 'noexec', 'sync', 'async', 'dirsync', 'atime']);

/** Split an option string on unescaped commas (`\,` is a literal comma; other escapes are kept). */
export function splitOptions(s: string): string[] {
  const out: string[] = [];
  let cur = '';
  for (let i = 0; i < s.length; i++) {
    const ch = s[i]!;
    if (ch === '\\' && s[i + 1] === ',') { cur += ','; i++; continue; }
    if (ch === '\\' && i + 1 < s.length) { cur += ch + s[i + 1]!; i++; continue; }
    if (ch === ',') { out.push(cur); cur = ''; continue; }
    cur += ch;
  }
  out.push(cur);
  return out.filter((o) => o.length > 0);
}

/** Check a uid/gid mapping `host:container:count[:host:container:count…]`; returns it unchanged. */
export function checkMapping(name: string, v: string): string {
  const parts = v.split(':');
  const bad = parts.length === 0 || parts.length % 3 !== 0
    || parts.some((p) => !/^\d+$/.test(p) || Number(p) > 0xffffffff)
    || parts.some((p, i) => i % 3 === 2 && Number(p) === 0);
  if (bad) throw new CliError(`malformed ${name} '${v}': expected host:container:count[:host:container:count…] with count > 0`);
  return v;
}

function seconds(name: string, v: string): number {
  const n = Number(v);
  if (v === '' || !Number.isFinite(n) || n < 0) throw new CliError(`bad value for ${name}: '${v}' (expected seconds ≥ 0)`);
  return n;
}

function bytes(name: string, v: string): number {
  const n = Number(v);
  if (!/^\d+$/.test(v) || n < 4096) throw new CliError(`bad value for ${name}: '${v}' (expected bytes ≥ 4096)`);
  return n;
}

/** Parse the arguments after `layerfs mount` (no disk access); `asRoot` decides `transport=auto`. */
export function parseMountArgs(args: readonly string[], cwd = process.cwd(), asRoot = process.getuid?.() === 0): MountRequest {
  const optStrings: string[] = [];
  const positional: string[] = [];
  let foreground = false;
  let readyFd: number | undefined;
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '-o') {
      const v = args[++i];
      if (v === undefined) throw new CliError('option -o needs a value', 2);
      optStrings.push(v);
    } else if (a.startsWith('-o') && a.length > 2) optStrings.push(a.slice(2));
    else if (a === '-f' || a === '--foreground') foreground = true;
    else if (a === '--ready-fd') {
      readyFd = Number(args[++i]);
      if (!Number.isInteger(readyFd)) throw new CliError('--ready-fd needs a descriptor number', 2);
    } else if (a === '-t') {
      i++; // `-t overlay` / `-t fuse.layerfs` as mount(8) passes it: accepted and ignored.
    } else if (a.startsWith('-') && a !== '-') throw new CliError(`unknown argument '${a}' (see layerfs --help)`, 2);
    else positional.push(a);
  }
  // mount(8) helpers get "source mountpoint": accept one or two positionals, the last is the mount point.
  if (positional.length === 0) throw new CliError('missing mount point (usage: layerfs mount -o lowerdir=…[,upperdir=…,workdir=…] MOUNTPOINT)', 2);
  if (positional.length > 2) throw new CliError(`too many arguments: ${positional.join(' ')}`, 2);
  const mountpoint = resolvePath(cwd, positional[positional.length - 1]!);

  let lowerdir: string | undefined;
  let upperdir: string | undefined;
  let workdir: string | undefined;
  let whiteout: WhiteoutFormat | undefined;
  let lowerWhiteout: WhiteoutFormat | undefined;
  let uidmapping: string | undefined;
  let gidmapping: string | undefined;
  let userxattr = false;
  let readOnly = false;
  let transport: MountRequest['transport'] | 'auto' = 'auto';
  const libfuseOnly: string[] = [];
  const fuse: MountOptions = { fsname: 'layerfs' };
  const extra: string[] = [];
  for (const o of optStrings.flatMap(splitOptions)) {
    const eq = o.indexOf('=');
    const key = eq < 0 ? o : o.slice(0, eq);
    const val = eq < 0 ? undefined : o.slice(eq + 1);
    const need = (): string => {
      if (val === undefined || val === '') throw new CliError(`option ${key} needs a value (${key}=…)`);
      return val;
    };
    const flag = (): void => {
      if (val !== undefined) throw new CliError(`option ${key} takes no value`);
    };
    if (LIBFUSE_ONLY.has(key) || (KERNEL_FLAGS.has(key) && key !== 'nosuid' && key !== 'nodev')) libfuseOnly.push(key);
    switch (key) {
      case 'transport': {
        const t = need();
        if (t !== 'auto' && t !== 'libfuse' && t !== 'lowlevel') throw new CliError(`option transport must be auto, libfuse or lowlevel, not '${t}'`);
        transport = t;
        break;
      }
      case 'lowerdir': lowerdir = need(); break;
      case 'upperdir': upperdir = need(); break;
      case 'workdir': workdir = need(); break;
      case 'whiteout':
      case 'lowerwhiteout': {
        const v = need();
        if (v !== 'chardev' && v !== 'oci') throw new CliError(`bad value for ${key}: '${v}' (expected chardev or oci)`);
        if (key === 'whiteout') whiteout = v; else lowerWhiteout = v;
        break;
      }
      case 'uidmapping': uidmapping = checkMapping('uidmapping', need()); break;
      case 'gidmapping': gidmapping = checkMapping('gidmapping', need()); break;
      case 'userxattr': flag(); userxattr = true; break;
      case 'ro': flag(); readOnly = true; break;
      case 'rw': flag(); readOnly = false; break;
      case 'allow_other': flag(); fuse.allowOther = true; break;
      case 'default_permissions': flag(); fuse.defaultPermissions = true; break;
      case 'noatime': flag(); fuse.noatime = true; break;
      case 'fsname': fuse.fsname = need(); break;
      case 'subtype': fuse.subtype = need(); break;
      case 'entry_timeout': fuse.entryTimeout = seconds(key, need()); break;
      case 'attr_timeout': fuse.attrTimeout = seconds(key, need()); break;
      case 'negative_timeout': fuse.negativeTimeout = seconds(key, need()); break;
      case 'kernel_cache': flag(); fuse.kernelCache = true; break;
      case 'max_write': fuse.maxWrite = Math.min(bytes(key, need()), 131072); break;
      case 'max_read': fuse.maxRead = bytes(key, need()); break;
      case 'debug': flag(); fuse.debug = true; break;
      default:
        if (KERNEL_FLAGS.has(key) && val === undefined) { extra.push(key); break; }
        throw new CliError(`unknown option '${o}' (see layerfs --help)`);
    }
  }
  if (extra.length) fuse.extra = extra;
  if (lowerdir === undefined) throw new CliError('missing option lowerdir=DIR[:DIR…]');
  const lowerdirs = splitLowerdir(lowerdir).map((d) => resolvePath(cwd, d));
  if (lowerdirs.length === 0) throw new CliError('option lowerdir names no directory');
  if ((upperdir === undefined) !== (workdir === undefined)) {
    throw new CliError(upperdir === undefined ? 'option workdir needs upperdir' : 'option upperdir needs workdir');
  }
  if (transport === 'lowlevel' && libfuseOnly.length > 0) {
    throw new CliError(`option ${libfuseOnly[0]} is not supported with transport=lowlevel (it mounts nosuid,nodev and sizes its requests itself)`);
  }
  if (transport === 'auto') transport = asRoot && libfuseOnly.length === 0 ? 'lowlevel' : 'libfuse';
  const req: MountRequest = { lowerdirs, userxattr, readOnly: readOnly || upperdir === undefined, fuse, mountpoint, foreground, transport };
  if (upperdir !== undefined) req.upperdir = resolvePath(cwd, upperdir);
  if (workdir !== undefined) req.workdir = resolvePath(cwd, workdir);
  if (whiteout !== undefined) req.whiteout = whiteout;
  if (lowerWhiteout !== undefined) req.lowerWhiteout = lowerWhiteout;
  if (uidmapping !== undefined) req.uidmapping = uidmapping;
  if (gidmapping !== undefined) req.gidmapping = gidmapping;
  if (readyFd !== undefined) req.readyFd = readyFd;
  req.fuse.readOnly = req.readOnly;
  return req;
}

async function dirStat(what: string, p: string): Promise<{ dev: number }> {
  let st;
  try {
    st = await stat(p);
  } catch (e) {
    const code = (e as { code?: string }).code;
    if (code === 'ENOENT') throw new CliError(`${what} ${p} does not exist`);
    throw new CliError(`${what} ${p}: ${code ?? String(e)}`);
  }
  if (!st.isDirectory()) throw new CliError(`${what} ${p} is not a directory`);
  return st;
}

function inside(child: string, parent: string): boolean {
  const r = relative(parent, child);
  return r === '' || (!r.startsWith('..') && !isAbsolute(r));
}

/** Check the layer directories of a request (reads only; changes nothing). */
export async function validateLayers(req: MountRequest): Promise<void> {
  for (const d of req.lowerdirs) await dirStat('lowerdir', d);
  if (req.upperdir !== undefined && req.workdir !== undefined) {
    const up = await dirStat('upperdir', req.upperdir);
    const wk = await dirStat('workdir', req.workdir);
    if (up.dev !== wk.dev) throw new CliError(`upperdir ${req.upperdir} and workdir ${req.workdir} are on different filesystems`);
    if (inside(req.workdir, req.upperdir)) throw new CliError(`workdir ${req.workdir} is inside upperdir ${req.upperdir}`);
    if (inside(req.upperdir, req.workdir)) throw new CliError(`upperdir ${req.upperdir} is inside workdir ${req.workdir}`);
  }
}
