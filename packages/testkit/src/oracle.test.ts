// Tests of the oracle harness itself: two kernel overlay mounts of identical layers must
// agree on every generated case, and a SUT that mishandles one operation must be caught,
// shrunk, and reported as a readable, pasteable counterexample. Needs root and kernel
// overlayfs (skipped with the reason otherwise).
import { afterAll, describe, expect, it } from 'vitest';
import * as fsp from 'node:fs/promises';
import { join } from 'node:path';
import {
  applyOp, checkOracle, hostTarget, modelSut, dumpHostLayer, formatOp, kernelOverlaySut, kernelOverlayUnavailable, layOutCase,
  makeOracleTempDir, mountKernelOverlay, runOracle, runOracleCase, unmountAllOracleMounts, unmountPath,
  type FsPromisesLike, type OracleCase, type SutFactory,
} from './oracle.js';

const unavailable = await kernelOverlayUnavailable();

afterAll(async () => { await unmountAllOracleMounts(); });

/** A kernel-overlay SUT whose truncate silently ignores growing a file (a planted bug). */
function truncateBugSut(): SutFactory {
  const inner = kernelOverlaySut();
  return async (l, c) => {
    const h = await inner(l, c);
    const fs: FsPromisesLike = {
      ...(h.target.fs),
      async truncate(path, len) {
        const st = await fsp.stat(path);
        if (len > st.size) return;
        await fsp.truncate(path, len);
      },
    } as FsPromisesLike;
    // Bind the remaining node:fs/promises functions (spreading a module namespace copies them).
    return { ...h, target: { ...h.target, fs } };
  };
}

describe.skipIf(unavailable !== undefined)(`oracle harness (${unavailable ?? 'kernel overlay available'})`, () => {
  it('lays a case out twice identically, with whiteouts, opaque dirs, hard links and xattrs', async () => {
    const c: OracleCase = {
      lowers: [
        { a: { t: 'f', data: 'L1', mode: 0o644, x: { 'user.k': 'v' } }, d: { t: 'd', mode: 0o755, c: { e: { t: 'f', data: 'e', mode: 0o600 } } } },
        { b: { t: 'f', data: 'L2', mode: 0o644 }, h: { t: 'h', to: 'b' }, d: { t: 'd', mode: 0o755, c: { f: { t: 'f', data: 'f', mode: 0o600 } } } },
      ],
      upper: { b: { t: 'w' }, d: { t: 'd', mode: 0o700, opaque: true, c: {} }, s: { t: 'l', target: 'a' } },
      ops: [],
    };
    const dir = await makeOracleTempDir();
    try {
      const [a, b] = await layOutCase(dir, c);
      const ua = await dumpHostLayer(a.upperdir);
      expect(ua.get('b')).toBe('whiteout');
      expect(ua.get('d')).toMatch(/^dir 0o700 opaque=y$/);
      expect(await dumpHostLayer(b.upperdir)).toEqual(ua);
      for (let i = 0; i < 2; i++) expect(await dumpHostLayer(b.lowerdirs[i]!)).toEqual(await dumpHostLayer(a.lowerdirs[i]!));
      expect((await dumpHostLayer(a.lowerdirs[1]!)).get('h')).toMatch(/nlink=2/);
      // The kernel sees the union of it: b whited out, d opaque, a from lower 1 with its xattr.
      await mountKernelOverlay(a);
      try {
        const t = hostTarget(a.mountpoint, 'kernel');
        expect(await applyOp(t, { op: 'readdir', path: '' })).toBe('ok [a:file, d:dir, h:file, s:symlink]');
        expect(await applyOp(t, { op: 'readdir', path: 'd' })).toBe('ok []');
        expect(await applyOp(t, { op: 'readFile', path: 's' })).toBe('ok "L1"');
        expect(await applyOp(t, { op: 'rename', from: 'd', to: 'x' })).toBe('ok');
      } finally {
        await unmountPath(a.mountpoint);
      }
    } finally {
      await fsp.rm(dir, { recursive: true, force: true });
    }
  });

  it('two kernel overlay mounts agree on 40 generated cases', async () => {
    const res = await runOracle(kernelOverlaySut(), { numRuns: 40, sutName: 'kernel#2' });
    expect(res.failed).toBe(false);
  });

  it('the reference model agrees with the kernel on 150 generated cases (directory nlink and mtimes included)', async () => {
    const res = await runOracle(modelSut(), { numRuns: 150, sutName: 'model', dirNlink: true, dirTimes: true });
    expect(res.failed).toBe(false);
  }, 120_000);

  it('catches a SUT that mishandles one operation, and shrinks it to a small strace', async () => {
    const lines: string[] = [];
    const res = await checkOracle(truncateBugSut(), { numRuns: 300, seed: 4242, sutName: 'buggy', log: (l) => lines.push(l) });
    expect(res.failed).toBe(true);
    const ce = res.counterexample!;
    // Shrunk: a grow-truncate is the culprit, with hardly anything else around it.
    expect(ce.ops.some((o) => o.op === 'truncate')).toBe(true);
    expect(ce.ops.length).toBeLessThanOrEqual(3);
    expect(res.report).toContain('seed=4242');
    expect(res.report).toMatch(/<-- differs|visible trees differ/);
    expect(res.report).toContain(formatOp(ce.ops.find((o) => o.op === 'truncate')!));
    expect(res.report).toContain('As a regression case');
    // The report's case, re-run against an honest SUT, agrees with the kernel.
    expect((await runOracleCase(ce, kernelOverlaySut())).mismatch).toBeUndefined();
  });

  it('catches a wrong final tree even when every call answered the same', async () => {
    // A SUT whose writes go to a different file than asked: calls succeed on both sides.
    const inner = kernelOverlaySut();
    const swapped: SutFactory = async (l, c) => {
      const h = await inner(l, c);
      const fs = { ...h.target.fs, writeFile: (p: string, d: Uint8Array, o: { flag: string }) => fsp.writeFile(join(p, '..', 'zz'), d, o) } as FsPromisesLike;
      return { ...h, target: { ...h.target, fs } };
    };
    const out = await runOracleCase({ lowers: [{}, {}], upper: {}, ops: [{ op: 'writeFile', path: 'a', data: 'x' }] }, swapped);
    expect(out.mismatch).toMatch(/visible trees differ/);
  });
});
