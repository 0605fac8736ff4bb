/**
 * The `layerfs` command without mounting: help, version, and every startup error — one
 * line naming the problem, a non-zero status, nothing changed on disk.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as fsp from 'node:fs/promises';
import { join } from 'node:path';
import { main } from '../src/cli.js';
import { checkMapping, parseMountArgs, splitOptions } from '../src/cli-args.js';
import { tempDir } from './cli-helpers.js';

async function cli(...argv: string[]): Promise<{ code: number; out: string[]; err: string[] }> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main(argv, { out: (l) => out.push(l), err: (l) => err.push(l) });
  return { code, out, err };
}

/** Every path below `dir` with its type, to prove nothing changed. */
async function snapshot(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await fsp.readdir(dir, { recursive: true, withFileTypes: true })) {
    out.push(`${join(e.parentPath, e.name)}:${e.isDirectory() ? 'd' : 'f'}`);
  }
  return out.sort();
}

describe('layerfs command: help, version, parsing', () => {
  it('prints help and the version', async () => {
    const h = await cli('--help');
    expect(h.code).toBe(0);
    expect(h.out.join('\n')).toMatch(/layerfs mount \[-f\] -o lowerdir=/);
    const v = await cli('--version');
    expect(v.code).toBe(0);
    expect(v.out).toEqual([expect.stringMatching(/^layerfs \d+\.\d+\.\d+$/)]);
  });

  it('splits options on unescaped commas and keeps escaped colons for lowerdir', () => {
    expect(splitOptions('lowerdir=a\\:b:c,upperdir=x\\,y,ro')).toEqual(['lowerdir=a\\:b:c', 'upperdir=x,y', 'ro']);
    const r = parseMountArgs(['-o', 'lowerdir=/l/a\\:b:/l/c,upperdir=/u,workdir=/w,allow_other,noatime,fsname=box,entry_timeout=2', '/m']);
    expect(r.lowerdirs).toEqual(['/l/a:b', '/l/c']);
    expect(r).toMatchObject({ upperdir: '/u', workdir: '/w', mountpoint: '/m', readOnly: false, foreground: false });
    expect(r.fuse).toMatchObject({ allowOther: true, noatime: true, fsname: 'box', entryTimeout: 2 });
    expect(parseMountArgs(['-f', '-o', 'lowerdir=/a', '/m']).readOnly).toBe(true);
    expect(parseMountArgs(['-o', 'lowerdir=/a,lowerwhiteout=oci', '/m']).lowerWhiteout).toBe('oci');
    expect(parseMountArgs(['-o', 'lowerdir=/a,upperdir=/u,workdir=/w,ro', '/m']).readOnly).toBe(true);
  });

  it('chooses the transport (auto: lowlevel as root unless a libfuse-only option is given) and refuses libfuse-only options with transport=lowlevel', () => {
    expect(parseMountArgs(['-o', 'lowerdir=/a', '/m'], '/', true).transport).toBe('lowlevel');
    expect(parseMountArgs(['-o', 'lowerdir=/a', '/m'], '/', false).transport).toBe('libfuse');
    expect(parseMountArgs(['-o', 'lowerdir=/a,transport=auto,kernel_cache', '/m'], '/', true).transport).toBe('libfuse');
    expect(parseMountArgs(['-o', 'lowerdir=/a,transport=libfuse', '/m'], '/', true).transport).toBe('libfuse');
    expect(parseMountArgs(['-o', 'lowerdir=/a,transport=lowlevel,nosuid,allow_other', '/m'])).toMatchObject({ transport: 'lowlevel', fuse: { allowOther: true } });
    expect(() => parseMountArgs(['-o', 'lowerdir=/a,transport=lowlevel,max_write=65536', '/m'])).toThrow(/option max_write is not supported with transport=lowlevel/);
    expect(() => parseMountArgs(['-o', 'noexec,transport=lowlevel,lowerdir=/a', '/m'])).toThrow(/option noexec is not supported/);
    expect(() => parseMountArgs(['-o', 'lowerdir=/a,transport=fast', '/m'])).toThrow(/transport must be auto, libfuse or lowlevel, not 'fast'/);
    expect(parseMountArgs(['-o', 'lowerdir=/a,max_write=65536,noexec', '/m'], '/', true).transport).toBe('libfuse');
  });

  it('accepts fuse-overlayfs id mappings and rejects malformed ones', () => {
    expect(checkMapping('uidmapping', '0:1000:1:1:100000:65536')).toBe('0:1000:1:1:100000:65536');
    expect(() => checkMapping('uidmapping', '0:1000')).toThrow(/malformed uidmapping '0:1000'/);
    expect(() => checkMapping('gidmapping', '0:x:1')).toThrow(/malformed gidmapping/);
    expect(() => checkMapping('uidmapping', '0:0:0')).toThrow(/count > 0/);
  });
});

describe('layerfs mount: startup errors', () => {
  let dir: string;
  let lower: string;
  let upper: string;
  let work: string;
  let mnt: string;

  beforeAll(async () => {
    dir = await tempDir('cli');
    [lower, upper, work, mnt] = ['lower', 'upper', 'work', 'mnt'].map((n) => join(dir, n)) as [string, string, string, string];
    for (const d of [lower, upper, work, mnt]) await fsp.mkdir(d);
    await fsp.writeFile(join(lower, 'f'), 'x');
    await fsp.writeFile(join(dir, 'file'), 'x');
  });

  afterAll(async () => {
    await fsp.rm(dir, { recursive: true, force: true });
  });

  const cases: Array<[string, () => string[], RegExp]> = [
    ['missing lowerdir', () => ['-o', `lowerdir=${join(dir, 'nope')},upperdir=${upper},workdir=${work}`, mnt], /^layerfs: lowerdir .*nope does not exist$/],
    ['non-directory lowerdir', () => ['-o', `lowerdir=${join(dir, 'file')}`, mnt], /^layerfs: lowerdir .*file is not a directory$/],
    ['no lowerdir option', () => ['-o', `upperdir=${upper},workdir=${work}`, mnt], /^layerfs: missing option lowerdir=DIR\[:DIR…\]$/],
    ['upperdir without workdir', () => ['-o', `lowerdir=${lower},upperdir=${upper}`, mnt], /^layerfs: option upperdir needs workdir$/],
    ['missing workdir', () => ['-o', `lowerdir=${lower},upperdir=${upper},workdir=${join(dir, 'nowork')}`, mnt], /^layerfs: workdir .*nowork does not exist$/],
    ['unknown option', () => ['-o', `lowerdir=${lower},frobnicate=1`, mnt], /^layerfs: unknown option 'frobnicate=1' \(see layerfs --help\)$/],
    ['malformed mapping', () => ['-o', `lowerdir=${lower},uidmapping=0:1000`, mnt], /^layerfs: malformed uidmapping '0:1000'/],
    ['bad whiteout format', () => ['-o', `lowerdir=${lower},whiteout=aufs`, mnt], /^layerfs: bad value for whiteout: 'aufs'/],
    ['missing mount point', () => ['-o', `lowerdir=${lower}`, join(dir, 'nomnt')], /^layerfs: mountpoint .*nomnt does not exist$/],
    ['mount point not a directory', () => ['-o', `lowerdir=${lower}`, join(dir, 'file')], /^layerfs: mountpoint .*file is not a directory$/],
    ['no mount point', () => ['-o', `lowerdir=${lower}`], /^layerfs: missing mount point/],
    ['unknown flag', () => ['--frob', '-o', `lowerdir=${lower}`, mnt], /^layerfs: unknown argument '--frob'/],
  ];

  for (const [name, args, message] of cases) {
    it(`rejects ${name} with one line and changes nothing`, async () => {
      const before = await snapshot(dir);
      const r = await cli('mount', ...args());
      expect(r.code).not.toBe(0);
      expect(r.err).toHaveLength(1);
      expect(r.err[0]).toMatch(message);
      expect(await snapshot(dir)).toEqual(before);
    });
  }

  it('rejects workdir inside upperdir (existing) with its message', async () => {
    await fsp.mkdir(join(upper, 'w'));
    const r = await cli('mount', '-o', `lowerdir=${lower},upperdir=${upper},workdir=${join(upper, 'w')}`, mnt);
    expect([r.code, r.err]).toEqual([1, [`layerfs: workdir ${join(upper, 'w')} is inside upperdir ${upper}`]]);
    await fsp.rmdir(join(upper, 'w'));
  });

  it.skipIf(!(process.platform === 'linux'))('rejects upperdir and workdir on different filesystems (/dev/shm is a tmpfs)', async () => {
    const shm = await fsp.mkdtemp('/dev/shm/layerfs-cli-');
    try {
      const devs = await Promise.all([fsp.stat(shm), fsp.stat(upper)]);
      expect(devs[0].dev).not.toBe(devs[1].dev);
      const r = await cli('mount', '-o', `lowerdir=${lower},upperdir=${upper},workdir=${shm}`, mnt);
      expect([r.code, r.err]).toEqual([1, [`layerfs: upperdir ${upper} and workdir ${shm} are on different filesystems`]]);
      expect(await fsp.readdir(shm)).toEqual([]);
    } finally {
      await fsp.rm(shm, { recursive: true, force: true });
    }
  });

  it('rejects an unknown command and umount of a non-mount', async () => {
    expect((await cli('frob')).err).toEqual(["layerfs: unknown command 'frob' (see layerfs --help)"]);
    const r = await cli('umount', mnt);
    expect(r.code).toBe(1);
    expect(r.err).toEqual([`layerfs: cannot unmount ${mnt}: ${mnt} is not a mount point`]);
  });
});
