// scratch (not committed): OverlayFs over MemoryLayers vs the testkit's kernel-checked model.
import { ROOT_CONTEXT, Volume } from '@layerfs/core';
import { dir, file, link, symlink, tree, whiteout, runModelOracle, oracleNodeTime, ORACLE_OLD_TIME, MemoryLayer, volumeTarget, type OracleDir, type TreeSpec, type TreeNode, type VolumeLike } from '@layerfs/testkit';
import { it } from 'vitest';
import { OverlayFs } from '../src/index.js';

function spec(d: OracleDir, prefix = ''): TreeSpec {
  const out: Record<string, TreeNode> = {};
  for (const [n, v] of Object.entries(d)) {
    switch (v.t) {
      case 'f': out[n] = file(v.data, v.mode, v.x ? { xattrs: v.x } : {}); break;
      case 'd': out[n] = dir(spec(v.c, `${prefix}${n}/`), v.mode, { ...(v.opaque ? { opaque: true } : {}), ...(v.x ? { xattrs: v.x } : {}) }); break;
      case 'l': out[n] = symlink(v.target); break;
      case 'h': out[n] = link(v.to); break;
      case 'w': out[n] = whiteout(); break;
    }
  }
  return out;
}

async function times(l: MemoryLayer, layer: number, d: OracleDir): Promise<void> {
  const v = new Volume(l, { context: ROOT_CONTEXT });
  const list: Array<[string, number]> = [];
  const walk = (rel: string, dd: OracleDir): void => {
    for (const [n, node] of Object.entries(dd)) {
      const r = rel === '' ? n : `${rel}/${n}`;
      if (node.t === 'h' || node.t === 'w') continue;
      if (node.t === 'd') walk(r, node.c);
      list.push([r, oracleNodeTime(layer, r)]);
    }
  };
  walk('', d);
  for (const [p, t] of list.sort(([x], [y]) => y.split('/').length - x.split('/').length)) await v.lutimes('/' + p, t, t);
  await v.utimes('/', ORACLE_OLD_TIME, ORACLE_OLD_TIME);
}

it('model oracle', async () => {
  await runModelOracle(async (c) => {
    const lowers = [];
    for (const [i, l] of c.lowers.entries()) { const m = await tree(spec(l), { writable: true }); await times(m, i + 1, l); lowers.push(m); }
    const upper = await tree(spec(c.upper));
    await times(upper, 0, c.upper);
    const ov = await OverlayFs.create({ upper, lowers });
    const vol = new Volume(ov, { context: ROOT_CONTEXT });
    return { target: volumeTarget(vol as unknown as VolumeLike), close: async () => undefined };
  }, { numRuns: Number(process.env.N ?? 200), seed: Number(process.env.S ?? 1) });
}, 600_000);
