// A SIGKILL in the middle of a copy-up (a child process copying a 48 MiB lower file into the
// upper through PassthroughLayers) never leaves a partial file in the upper: the copy is
// staged in the work dir and renamed into place only when complete. The next overlay created
// on the same directories removes the stale staging file and still shows the lower data.
import { spawn } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ROOT_CONTEXT, Volume } from '@layerfs/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { overlayFromDirs } from '../src/index.js';

const here = fileURLToPath(new URL('.', import.meta.url));
const SIZE = 48 << 20;
let base: string;

beforeAll(async () => { base = await fsp.mkdtemp(join(tmpdir(), 'layerfs-overlay-crash-')); });
afterAll(async () => { await fsp.rm(base, { recursive: true, force: true }); });

describe('crash during copy-up', () => {
  it('SIGKILL mid copy-up leaves no partial file in the upper; the next start cleans the work dir', async () => {
    const lower = join(base, 'lower');
    const upper = join(base, 'upper');
    const workdir = join(base, 'work');
    const work = join(workdir, 'work');
    await fsp.mkdir(lower);
    await fsp.mkdir(upper);
    await fsp.mkdir(work, { recursive: true });
    const data = Buffer.alloc(SIZE, 'L');
    data.write('HEAD', 0);
    data.write('TAIL', SIZE - 4);
    await fsp.writeFile(join(lower, 'big'), data);

    const child = spawn(process.execPath, [
      '--conditions=source', '--import', join(here, 'fixtures/ts-register.mjs'),
      join(here, 'fixtures/copyup-child.ts'), lower, upper, work,
    ], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stderr.on('data', (b: Buffer) => { err += b.toString(); });
    const exited = new Promise<NodeJS.Signals | null>((res) => child.on('exit', (_c, sig) => res(sig)));
    await new Promise<void>((res, rej) => {
      child.stdout.on('data', (b: Buffer) => {
        out += b.toString();
        if (out.includes('copying')) res();
      });
      child.on('exit', () => rej(new Error(`child exited before copying: ${out} ${err}`)));
    });
    // Let the copy get well under way (each 1 MiB chunk takes ≥ 20 ms), then kill it.
    let staged = 0;
    for (let i = 0; i < 100 && staged < (4 << 20); i++) {
      await new Promise((r) => setTimeout(r, 20));
      const names = await fsp.readdir(work);
      staged = names.length > 0 ? (await fsp.stat(join(work, names[0]!))).size : 0;
    }
    child.kill('SIGKILL');
    expect(await exited).toBe('SIGKILL');
    expect(out).not.toContain('done');

    expect(await fsp.readdir(upper)).toEqual([]);
    const leftovers = await fsp.readdir(work);
    expect(leftovers.length).toBe(1);
    expect((await fsp.stat(join(work, leftovers[0]!))).size).toBeLessThan(SIZE);

    const ov = await overlayFromDirs({ lowerdir: [lower], upperdir: upper, workdir });
    expect(await fsp.readdir(work)).toEqual([]);
    const vol = new Volume(ov, { context: ROOT_CONTEXT });
    const seen = await vol.readFile('/big');
    expect(seen.length).toBe(SIZE);
    expect(seen.subarray(0, 4).toString()).toBe('HEAD');
    expect(seen.subarray(SIZE - 4).toString()).toBe('TAIL');
    await vol.appendFile('/big', '!');
    expect((await fsp.stat(join(upper, 'big'))).size).toBe(SIZE + 1);
    await ov.destroy();
  }, 60_000);
});
