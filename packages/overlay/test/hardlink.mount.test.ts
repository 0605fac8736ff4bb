/**
 * A lower hard link broken by copy-up, through a real FUSE mount (issue 5): after `echo x >> a`
 * over a lower `a`/`b` (one inode, nlink 2), the other name `b` must still show the lower
 * object (its ino, nlink 2, content `hi`) and `a` the upper copy (another ino, nlink 1), as
 * kernel overlayfs (index=off) shows on the same layers — in the session and after a remount.
 * The libfuse mount's path map had kept `b` mapped to the inode that became `a`'s upper copy.
 * Also: a descriptor opened on `b` before the copy-up keeps the lower object (skipped on the
 * low-level transport, a known gap: both names are one kernel inode there).
 * Run over both transports (`TRANSPORTS`: libfuse and the low-level one); the mount is served
 * in this process and touched only from child processes.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as fsp from 'node:fs/promises';
import { join } from 'node:path';
import type { MountHandle } from '@layerfs/fuse';
import { OverlayFs, overlayFromDirs } from '../src/index.js';
import { TRANSPORTS, mountSkip, sh, shResult, tempDir } from './cli-helpers.js';

interface Dirs { lower: string; upper: string; work: string; mnt: string }

async function layout(root: string, tag: string): Promise<Dirs> {
  const d: Dirs = { lower: join(root, `${tag}-lower`), upper: join(root, `${tag}-upper`), work: join(root, `${tag}-work`), mnt: join(root, `${tag}-mnt`) };
  for (const p of Object.values(d)) await fsp.mkdir(p);
  await fsp.writeFile(join(d.lower, 'a'), 'hi\n');
  await fsp.link(join(d.lower, 'a'), join(d.lower, 'b'));
  for (const op of [...Object.keys(OTHER_CHANGES), 'fd']) {
    await fsp.writeFile(join(d.lower, `${op}-a`), 'hi\n');
    await fsp.link(join(d.lower, `${op}-a`), join(d.lower, `${op}-b`));
  }
  return d;
}

/** Stat both names (so the mount knows both), append through `a`, stat both again, read both. */
const SESSION = "stat -c '%i %h' a b && echo x >> a && stat -c '%i %h' a b && echo '--' && cat a && echo '--' && cat b";
/** What a later mount shows. */
const AFTER = "stat -c '%i %h' a b && echo '--' && cat a && echo '--' && cat b";

/** Other changes through one name that copy a lower hard link up (`$A` the changed name). */
const OTHER_CHANGES: Record<string, string> = {
  truncate: 'truncate -s 1 "$A"',
  chmod: 'chmod 600 "$A"',
  xattr: 'setfattr -n user.k -v v "$A"',
  link: 'ln "$A" "$A-c"',
  rename: 'mv "$A" "$A-moved"',
};

/** For each other change: both names stated, the change, then what both names (and the new one) show. */
function otherScript(): string {
  const st = "stat -c '%i %h %a %s'";
  return Object.entries(OTHER_CHANGES).map(([op, cmd]) => {
    const after = op === 'rename' ? `"$A-moved"` : op === 'link' ? `"$A" "$A-c"` : '"$A"';
    return `A=${op}-a; echo "== ${op}"; ${st} "$A" ${op}-b && ${cmd} && ${st} ${after} ${op}-b && cat ${op}-b`;
  }).join(' && ');
}

/** A descriptor opened on `fd-b` before `fd-a` is appended to: what it reads and fstats, then `fd-b` itself. */
const HELD_FD = "exec 3< fd-b; stat -c '%i %h %s' fd-a fd-b && echo x >> fd-a && echo '-- fd' && cat <&3 && stat -L -c '%i %h %s' /dev/fd/3 && echo '-- b' && stat -c '%i %h %s' fd-b && cat fd-b";

/** Inode numbers differ between implementations: name them by first appearance (I0, I1 …). */
function shape(out: string): string[] {
  const names = new Map<string, string>();
  return out.trimEnd().split('\n').map((line) => {
    const m = /^(\d+)( \d+)+$/.exec(line);
    if (!m) return line;
    if (!names.has(m[1]!)) names.set(m[1]!, `I${names.size}`);
    return `${names.get(m[1]!)}${line.slice(m[1]!.length)}`;
  });
}

describe.skipIf(mountSkip).each(TRANSPORTS)('a lower hard link broken by copy-up through the %s mount, against kernel overlayfs (needs root)', (transport, mountWith) => {
  let root: string;
  let ours: Dirs;
  let kern: Dirs;
  let h: MountHandle | undefined;
  let ov: OverlayFs | undefined;
  let kernelMounted = false;

  async function serve(): Promise<void> {
    ov = await overlayFromDirs({ lowerdir: ours.lower, upperdir: ours.upper, workdir: ours.work });
    h = await mountWith(ov, ours.mnt);
  }

  /** Unmount; `checkLookups`: every lookup the mount took (re-resolved names too) was given back. */
  async function stop(checkLookups = false): Promise<void> {
    const m = h;
    h = undefined;
    await m?.unmount();
    if (checkLookups) expect(ov?.liveInodes()).toBe(1);
    const o = ov;
    ov = undefined;
    await o?.destroy();
  }

  beforeAll(async () => {
    root = await tempDir(`hardlink-${transport}`);
    ours = await layout(root, 'ours');
    kern = await layout(root, 'kern');
    const opts = `lowerdir=${kern.lower},upperdir=${kern.upper},workdir=${kern.work},redirect_dir=off,index=off,metacopy=off,xino=off`;
    await sh(`mount -t overlay overlay -o ${opts} ${JSON.stringify(kern.mnt)}`);
    kernelMounted = true;
  });

  afterAll(async () => {
    await stop().catch(() => undefined);
    if (kernelMounted) {
      const r = await shResult(`umount ${JSON.stringify(kern.mnt)}`);
      if (r.code !== 0) await shResult(`umount -l ${JSON.stringify(kern.mnt)}`);
    }
    await fsp.rm(root, { recursive: true, force: true });
  });

  it('append to a: b keeps the lower ino, nlink 2 and content; a is the upper copy; the same after a remount', async () => {
    const kernel = await sh(SESSION, kern.mnt);
    // The oracle itself: one object before, two after; b untouched.
    expect(shape(kernel)).toEqual(['I0 2', 'I0 2', 'I1 1', 'I0 2', '--', 'hi', 'x', '--', 'hi']);

    await serve();
    // A child whose cwd is the mount: spawned by bash from a directory outside it.
    const q = JSON.stringify(ours.mnt);
    const session = await sh(`cd ${q} && ${SESSION}`);
    expect(shape(session)).toEqual(shape(kernel));
    // libfuse re-mapped `b` in its path map; the low-level transport has no path map (node id =
    // inode number: the overlay's fresh lookup of `b` answers) and re-maps nothing.
    if (transport === 'libfuse') expect(h!.stats().relinked).toBeGreaterThanOrEqual(1);
    else expect(h!.stats().relinked).toBe(0);

    await stop(true);
    await serve();
    const again = await sh(`cd ${q} && ${AFTER}`);
    // The same inode numbers as in the session (last stat), and the kernel's shape.
    const lastStat = session.trimEnd().split('\n').slice(2);
    expect(again.trimEnd().split('\n')).toEqual(lastStat);
    expect(shape(await sh(AFTER, kern.mnt))).toEqual(shape(again));
  }, 60_000);

  it('truncate, chmod, setxattr, link and rename through one name: the other name stays the lower object, as in the kernel', async () => {
    if (!h) await serve();
    const script = otherScript();
    const kernel = await sh(script, kern.mnt);
    const session = await sh(`cd ${JSON.stringify(ours.mnt)} && ${script}`);
    expect(shape(session)).toEqual(shape(kernel));
    await stop(true);
    await serve();
    const list = Object.keys(OTHER_CHANGES).map((op) => `${op}-b`).join(' ');
    const st = `stat -c '%i %h %a %s' ${list} && cat ${list}`;
    expect(shape(await sh(`cd ${JSON.stringify(ours.mnt)} && ${st}`))).toEqual(shape(await sh(st, kern.mnt)));
  }, 60_000);

  // Skipped on the low-level transport (a known gap): both names of a lower hard link are one
  // kernel inode there (node id = the overlay's inode, which becomes `fd-a`'s copy), so the
  // descriptor opened on `fd-b` reads `fd-a`'s appended data and fstats its copy (ino, nlink 1,
  // size 5); kernel overlayfs gives each name its own inode.
  it.skipIf(transport === 'lowlevel')('a descriptor opened on b before the copy-up of a keeps the lower object (content, ino, nlink, size), as in the kernel', async () => {
    if (!h) await serve();
    const kernel = await sh(HELD_FD, kern.mnt);
    expect(shape(kernel)).toEqual(['I0 2 3', 'I0 2 3', '-- fd', 'hi', 'I0 2 3', '-- b', 'I0 2 3', 'hi']);
    expect(shape(await sh(`cd ${JSON.stringify(ours.mnt)} && ${HELD_FD}`))).toEqual(shape(kernel));
  }, 60_000);
});
