/**
 * Ordinary tools on a `layerfs` mount behave as on kernel overlayfs over the same layers:
 * the same shell script (cp -a, tar c/x, find, rm -rf, mv of a file and of a lower
 * directory (EXDEV → copy fallback), ln, ln -s, chmod -R, touch -d, git init/add/commit,
 * sqlite3 writing a database) runs on a kernel overlay and on a layerfs FUSE mount of two
 * identical copies of the layers; the merged trees, the tools' outputs and the upper
 * directories must be the same. Run over both transports (`TRANSPORTS`: libfuse and the
 * low-level one).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as fsp from 'node:fs/promises';
import { join } from 'node:path';
import type { MountHandle } from '@layerfs/fuse';
import { overlayFromDirs } from '../src/index.js';
import { TRANSPORTS, mountSkip, sh, shResult, tempDir } from './cli-helpers.js';

const LAYERS = `
set -e
mkdir -p lower/etc lower/usr/lib/pkg lower/srv/www lower/tree/a/b
printf 'root:x:0:0\\n' > lower/etc/passwd
printf 'box\\n' > lower/etc/hostname
for i in 1 2 3 4 5; do head -c $((i * 3000)) /dev/urandom > lower/usr/lib/pkg/lib$i.so; done
printf '<h1>hi</h1>\\n' > lower/srv/www/index.html
printf 'deep\\n' > lower/tree/a/b/leaf
ln -s ../etc/hostname lower/srv/host-link
chmod 0750 lower/tree/a
touch -d '2001-01-01 00:00:00' lower/etc/passwd
mkdir -p upper work mnt
`;

const SCRIPT = `
set -e
export GIT_AUTHOR_NAME=t GIT_AUTHOR_EMAIL=t@t GIT_COMMITTER_NAME=t GIT_COMMITTER_EMAIL=t@t
export GIT_AUTHOR_DATE='2020-01-01T00:00:00Z' GIT_COMMITTER_DATE='2020-01-01T00:00:00Z'
cp -a usr/lib/pkg usr/lib/pkg-copy
cp -a etc etc.bak
tar cf /tmp/$$.tar srv tree && mkdir restored && tar xf /tmp/$$.tar -C restored && rm /tmp/$$.tar
echo "find: $(find . -path ./proj -prune -o -print | sort | md5sum)"
rm -rf usr/lib/pkg
mv etc/hostname etc/hostname.old
mv tree tree-moved
ln etc/passwd etc/passwd.hard
ln -s /etc/passwd etc/abs-link
chmod -R go-rwx srv
touch -d '2010-05-06 07:08:09' srv/www/index.html
echo appended >> etc/passwd
mkdir proj && cd proj && git init -q && echo 'hello' > README && git add README && git commit -qm init && git log --format=%H && cd ..
sqlite3 data.db 'create table t(a, b); insert into t values (1, "x"), (2, "y"); update t set b = "z" where a = 2;'
sqlite3 data.db 'select * from t;'
echo "links: $(stat -c '%h' etc/passwd etc/passwd.hard | tr '\\n' ' ')"
`;

/** A listing of the merged tree: type, mode, link count (files), size, target, mtime (touched), content hash. */
const LIST = `
find . -path ./proj/.git -prune -o -printf '%y %m %s %l %p\\n' | sort
find . -path ./proj/.git -prune -o -type f -links +1 -printf '%n %p\\n' | sort
find . -path ./proj/.git -prune -o -type f -print0 | sort -z | xargs -0 md5sum
stat -c '%Y %n' srv/www/index.html etc.bak/passwd
ls proj/.git
sqlite3 data.db .dump
`;

/** The upper directory: type and path of everything, whiteouts included. */
const UPPER = `find . -printf '%y %m %p\\n' | sort`;

describe.skipIf(mountSkip).each(TRANSPORTS)('ordinary tools: layerfs %s mount vs kernel overlayfs (needs root, /dev/fuse, git, sqlite3)', (transport, mountWith) => {
  let dir: string;
  let h: MountHandle | undefined;
  let kernelMounted = false;

  beforeAll(async () => {
    dir = await tempDir(`tools-${transport}`);
    await fsp.mkdir(join(dir, 'k'));
    await sh(LAYERS, join(dir, 'k'));
    await sh(`cp -a k f`, dir);
  }, 60_000);

  afterAll(async () => {
    await h?.unmount();
    if (kernelMounted) await shResult(`umount -l ${JSON.stringify(join(dir, 'k/mnt'))}`);
    await fsp.rm(dir, { recursive: true, force: true });
  });

  it('gives the same outputs, merged tree and upper directory as the kernel', async () => {
    const k = join(dir, 'k');
    const f = join(dir, 'f');
    await sh(`mount -t overlay overlay -o lowerdir=lower,upperdir=upper,workdir=work mnt`, k);
    kernelMounted = true;
    const ov = await overlayFromDirs({ lowerdir: [join(f, 'lower')], upperdir: join(f, 'upper'), workdir: join(f, 'work'), whiteoutFormat: 'chardev' });
    h = await mountWith(ov, join(f, 'mnt'), { destroyOnUnmount: true });

    // Never give a child a cwd inside the mount: libuv's spawn blocks the serving thread
    // until the child has exec'd, and the child's chdir waits for that thread (deadlock).
    const inDir = (d: string, script: string) => sh(`cd ${JSON.stringify(d)}\n${script}`);
    const outK = await inDir(join(k, 'mnt'), SCRIPT);
    const outF = await inDir(join(f, 'mnt'), SCRIPT);
    expect(outF).toBe(outK);
    expect(outK).toMatch(/links: 2 2/);
    expect(outK).toMatch(/^1\|x\n2\|z$/m);

    const listK = await inDir(join(k, 'mnt'), LIST);
    const listF = await inDir(join(f, 'mnt'), LIST);
    expect(listF).toBe(listK);
    expect(listK.split('\n').length).toBeGreaterThan(60);
    expect(listK).toMatch(/^f 600 \d+ +\.\/srv\/www\/index\.html$/m);

    await sh(`umount mnt`, k);
    kernelMounted = false;
    await h.unmount();
    h = undefined;
    const upK = await sh(UPPER, join(k, 'upper'));
    const upF = await sh(UPPER, join(f, 'upper'));
    expect(upF).toBe(upK);
    expect(upK).toMatch(/^c 0 \.\/usr\/lib\/pkg$/m);
    expect(upK).toMatch(/^c 0 \.\/tree$/m);
  }, 120_000);
});
