/**
 * The oracle over in-memory layers: an oracle case's layer trees laid out in `MemoryLayer`s
 * (through the testkit's tree literals, with the same times the on-disk layout gives), and
 * a memory upper layer dumped in the oracle's `lite` upper projection, so a union over
 * MemoryLayers can be compared with the reference model anywhere (no root, no mounts).
 */
import { ROOT_CONTEXT, Volume } from '@layerfs/core';
import type { OracleCase, OracleDir } from './oracle-case.js';
import { oracleNodeTime } from './oracle-host.js';
import type { TreeDump } from './oracle-target.js';
import { showBytes } from './oracle-target.js';
import { MemoryLayer } from './memory-layer.js';
import {
  DirSpec, FileSpec, LinkSpec, SpecialSpec, SymlinkSpec, WhiteoutSpec, dir, dump, file, link, symlink, tree, whiteout,
  type TreeNode, type TreeSpec,
} from './tree.js';

/** An oracle layer tree as a testkit tree literal. */
export function oracleToTreeSpec(d: OracleDir): TreeSpec {
  const out: Record<string, TreeNode> = {};
  for (const [name, n] of Object.entries(d)) {
    switch (n.t) {
      case 'f': out[name] = file(n.data, n.mode, n.x ? { xattrs: n.x } : {}); break;
      case 'd': out[name] = dir(oracleToTreeSpec(n.c), n.mode, { ...(n.opaque ? { opaque: true } : {}), ...(n.x ? { xattrs: n.x } : {}) }); break;
      case 'l': out[name] = symlink(n.target); break;
      case 'h': out[name] = link(n.to); break;
      case 'w': out[name] = whiteout(); break;
    }
  }
  return out;
}

/** Set the layout times (`oracleNodeTime`) on every object of a laid-out memory layer. */
async function setTimes(layer: MemoryLayer, idx: number, d: OracleDir): Promise<void> {
  const vol = new Volume(layer, { context: ROOT_CONTEXT });
  const paths: string[] = [];
  const walk = (dd: OracleDir, rel: string): void => {
    for (const [name, n] of Object.entries(dd)) {
      const p = rel === '' ? name : `${rel}/${name}`;
      if (n.t === 'w' || n.t === 'h') continue;
      paths.push(p);
      if (n.t === 'd') walk(n.c, p);
    }
  };
  walk(d, '');
  for (const p of paths.sort((a, b) => b.split('/').length - a.split('/').length)) {
    const t = oracleNodeTime(idx, p);
    await vol.lutimes(`/${p}`, t, t);
  }
}

/** The layers of a case as MemoryLayers (chardev whiteouts): a writable upper and read-only lowers. */
export async function memoryLayersFor(c: Pick<OracleCase, 'upper' | 'lowers'>): Promise<{ upper: MemoryLayer; lowers: MemoryLayer[] }> {
  const upper = await tree(oracleToTreeSpec(c.upper), { whiteoutFormat: 'chardev' });
  await setTimes(upper, 0, c.upper);
  const lowers: MemoryLayer[] = [];
  for (let i = 0; i < c.lowers.length; i++) {
    // Laid out writable (times are set afterwards), then frozen by a read-only snapshot.
    const w = await tree(oracleToTreeSpec(c.lowers[i]!), { whiteoutFormat: 'chardev' });
    await setTimes(w, i + 1, c.lowers[i]!);
    lowers.push(MemoryLayer.fromSnapshot(w.snapshot(), { whiteoutFormat: 'chardev', writable: false }));
  }
  return { upper, lowers };
}

/** A tree literal (as `dump` gives it) in the oracle's `lite` upper projection. */
export function treeSpecToDump(spec: TreeSpec): TreeDump {
  const out: TreeDump = new Map();
  const xs = (x: Readonly<Record<string, string>> | undefined): string => {
    const e = Object.entries(x ?? {}).filter(([k]) => k.startsWith('user.')).sort(([a], [b]) => (a < b ? -1 : 1));
    return e.length ? ` xattrs=${JSON.stringify(Object.fromEntries(e.map(([k, v]) => [k, Buffer.from(v).toString('hex')])))}` : '';
  };
  const walk = (d: TreeSpec, rel: string): void => {
    for (const name of Object.keys(d).sort()) {
      const n = d[name]!;
      const p = rel === '' ? name : `${rel}/${name}`;
      if (typeof n === 'string' || n instanceof Uint8Array) {
        const b = Buffer.from(n);
        out.set(p, `file 0o644 size=${b.length} data=${showBytes(b)}`);
      } else if (n instanceof FileSpec) {
        const b = Buffer.from(n.content);
        out.set(p, `file 0o${n.mode.toString(8)} size=${b.length} data=${showBytes(b)}${xs(n.xattrs)}`);
      } else if (n instanceof DirSpec) {
        out.set(p, `dir 0o${n.mode.toString(8)}${n.opaque ? ' opaque=y' : ''}${xs(n.xattrs)}`);
        walk(n.children, p);
      } else if (n instanceof SymlinkSpec) {
        out.set(p, `symlink -> ${JSON.stringify(n.target)}`);
      } else if (n instanceof WhiteoutSpec) {
        out.set(p, 'whiteout');
      } else if (n instanceof SpecialSpec) {
        out.set(p, `${n.type} 0o${n.mode.toString(8)} rdev=${n.rdev}`);
      } else if (n instanceof LinkSpec) {
        out.set(p, `link ${n.path}`);
      } else {
        out.set(p, 'dir 0o755');
        walk(n as TreeSpec, p);
      }
    }
  };
  walk(spec, '');
  return out;
}

/** Dump a memory upper layer in the oracle's `lite` upper projection. */
export async function dumpMemoryUpper(layer: MemoryLayer): Promise<TreeDump> {
  return treeSpecToDump(await dump(layer));
}
