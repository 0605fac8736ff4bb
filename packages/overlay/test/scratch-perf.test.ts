import { promises as fsp } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT_CONTEXT, Volume } from '@layerfs/core';
import { it } from 'vitest';
import { overlayFromDirs } from '../src/index.js';

it('perf', async () => {
  const base = await fsp.mkdtemp(join(tmpdir(), 'layerfs-perf-'));
  const [l0, l1, u, w] = ['l0', 'l1', 'u', 'w'].map((x) => join(base, x)) as [string, string, string, string];
  for (const d of [l0, l1, u, w]) await fsp.mkdir(join(d, 'd'), { recursive: true });
  for (let i = 0; i < 5000; i++) { await fsp.writeFile(join(l0, 'd', `a${i}`), 'x'); await fsp.writeFile(join(l1, 'd', `b${i}`), 'y'); }
  for (let i = 0; i < 1000; i++) await fsp.writeFile(join(u, 'd', `c${i}`), 'z');
  const ov = await overlayFromDirs({ lowerdir: [l0, l1], upperdir: u, workdir: w });
  const v = new Volume(ov, { context: ROOT_CONTEXT });
  let t = performance.now();
  const names = await v.readdir('/d');
  console.log('readdir', names.length, (performance.now() - t).toFixed(0), 'ms');
  t = performance.now();
  await v.readdir('/d', { withFileTypes: true });
  console.log('readdir again', (performance.now() - t).toFixed(0), 'ms');
  t = performance.now();
  for (let i = 0; i < 2000; i++) await v.stat(`/d/a${i}`);
  console.log('2000 stat', (performance.now() - t).toFixed(0), 'ms');
  t = performance.now();
  for (let i = 0; i < 500; i++) await v.readFile(`/d/b${i}`);
  console.log('500 readFile', (performance.now() - t).toFixed(0), 'ms');
  t = performance.now();
  for (let i = 0; i < 500; i++) await v.appendFile(`/d/b${i}`, '!');
  console.log('500 copy-up append', (performance.now() - t).toFixed(0), 'ms');
  await ov.destroy();
  await fsp.rm(base, { recursive: true, force: true });
}, 300_000);
