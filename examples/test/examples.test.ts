/**
 * The examples run and show what they promise: the host-directory composition (merged tree,
 * top layer wins, OCI whiteout hides, copy-up, whiteout in the upper) and the in-memory one.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { composeDirs } from '../src/compose-dirs.js';
import { memoryLayers } from '../src/memory-layers.js';

describe('examples', () => {
  const dirs: string[] = [];
  afterAll(async () => { for (const d of dirs) await rm(d, { recursive: true, force: true }); });

  it('compose-dirs: two lower dirs and an upper through Volume', async () => {
    const parent = await mkdtemp(join(tmpdir(), 'layerfs-example-'));
    dirs.push(parent);
    const r = await composeDirs(parent);
    expect(r.merged).toContain('/srv/www/index.html');       // from app
    expect(r.merged).toContain('/bin/hello');                // from base
    expect(r.merged).not.toContain('/usr/share/doc/README'); // hidden by app's .wh.README
    expect(r.merged.some((p) => p.includes('.wh.'))).toBe(false);
    expect(r.osRelease).toContain('layerfs example app');
    expect(r.hostname).toBe('layerfs-demo\nchanged-through-layerfs\n');
    expect(r.passwdVisible).toBe(false);
    expect(r.upperEtc).toEqual(['.wh.passwd', 'hostname']);
    expect(await readFile(join(parent, 'upper/etc/hostname'), 'utf8')).toBe(r.hostname);
  });

  it('memory-layers: the union and the upper as literals', async () => {
    const r = await memoryLayers();
    expect(r.before).toMatchObject({ etc: { hostname: 'app\n' }, srv: { 'index.html': '<h1>hello</h1>\n' } });
    expect(Object.keys(r.before['etc'] as object)).toEqual(['hostname']);   // motd whited out
    expect(r.after).toMatchObject({ etc: { hostname: 'app\nedited\n' }, srv: { 'home.html': '<h1>hello</h1>\n' }, var: { log: {} } });
    expect(Object.keys(r.after['srv'] as object)).toEqual(['home.html']);
    expect(r.upper).toMatchObject({
      etc: { hostname: 'app\nedited\n' },
      srv: { 'index.html': { kind: 'whiteout' } },
      usr: { lib: { 'libc.so': { kind: 'whiteout' } } },
    });
  });
});
