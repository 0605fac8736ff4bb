/**
 * FUSE_HANDLE_KILLPRIV_V2 on the low-level transport: the kernel no longer sends a GETXATTR of
 * `security.capability` before every write, and the session drops set-id bits when the kernel
 * asks (write or truncate by a caller without CAP_FSETID, O_TRUNC open, chown). The same script
 * runs in a plain host directory and through the mount (an OverlayFs over PassthroughLayers
 * served in this process, touched only from child processes; uid 1234 through `setpriv`), and
 * the modes must agree.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as fsp from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { mountLowLevel, type LowLevelStats, type MountHandle } from '../src/index.js';
import { mountHostOverlay, mountSkip, sh, type HostOverlay } from './helpers.js';

const q = (p: string) => JSON.stringify(p);
const as1234 = (cmd: string) => `setpriv --reuid 1234 --regid 1234 --clear-groups sh -c ${q(cmd)}`;

/** Set-id cases: each file's mode after a change by root or by uid 1234. */
function script(dir: string): string {
  return [
    `cd ${q(dir)}`,
    'for f in w t o g r c; do : > $f; done',
    'chown 1234:1234 w t o g lw; chmod 6755 w t o lw; chmod 2745 g; chmod 4755 r; chmod 6755 c',
    as1234('printf x >> w'),        // write without CAP_FSETID: both bits go (group-execute set)
    as1234('truncate -s 1 t'),       // truncate without CAP_FSETID
    as1234(': > o'),                 // O_TRUNC open without CAP_FSETID
    as1234('printf x >> g'),        // set-group-ID without group-execute stays
    as1234('printf x >> lw'),       // a lower file: copied up, then the bits go
    'printf x >> r',                 // root (CAP_FSETID) keeps set-user-ID
    'chown 1234 c',                  // chown drops both, whoever does it
    'stat -c "%n %a %s %u" w t o g lw r c',
  ].join(' && ');
}

describe.skipIf(mountSkip)('mountLowLevel(): HANDLE_KILLPRIV_V2 (needs root and /dev/fuse)', () => {
  let m: HostOverlay | undefined;
  let dir: string;
  let mnt: string;
  let h: MountHandle | undefined;
  const stats = () => h!.stats() as LowLevelStats;

  beforeAll(async () => {
    m = await mountHostOverlay('fuse-lowlevel-killpriv', (fs, mp) => mountLowLevel(fs, mp, { allowOther: true }), async (d) => {
      // uid 1234 must reach the directories.
      for (let a = d; a !== '/' && a.includes('layerfs-'); a = dirname(a)) await fsp.chmod(a, 0o755);
      await fsp.mkdir(join(d, 'native'));
      for (const x of ['upper', 'native']) await fsp.chmod(join(d, x), 0o777);
      for (const x of ['lower', 'native']) await fsp.writeFile(join(d, x, 'lw'), 'low');
    });
    ({ dir, mnt, handle: h } = m);
  });

  afterAll(async () => {
    await m?.close();
  });

  it('drops set-id bits as a host filesystem does (write, truncate, O_TRUNC open, chown; root keeps them)', async () => {
    const native = await sh(script(join(dir, 'native')));
    expect(native).toBe('w 755 1 1234\nt 755 1 1234\no 755 0 1234\ng 2745 1 1234\nlw 755 4 1234\nr 4755 1 0\nc 755 0 1234\n');
    expect(await sh(script(mnt))).toBe(native);
  });

  it('asks for no security.capability before each write (one GETXATTR at most per inode until its attributes change)', async () => {
    const f = q(join(mnt, 'many'));
    await sh(`: > ${f}`);
    const before = stats().ops.getxattr ?? 0;
    await sh(`for i in 1 2 3 4 5 6 7 8 9 10; do printf x >> ${f}; done`);
    expect((stats().ops.getxattr ?? 0) - before).toBeLessThanOrEqual(1);
    expect(await sh(`cat ${f}`)).toBe('xxxxxxxxxx');
  });
});
