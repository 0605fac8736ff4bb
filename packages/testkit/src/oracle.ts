/**
 * The kernel-overlayfs oracle: a differential test harness. A case (two lower trees, an
 * upper tree with whiteouts and opaque dirs, up to 30 operations) is laid out twice on
 * disk; a kernel `mount -t overlay` on one copy is the reference, a system under test
 * (SUT) built by a callback on the other copy is compared with it: every call's result or
 * errno after every step, then the whole visible tree, then (after both are closed) the
 * two upper directories including whiteouts and opaque markers.
 *
 * `runOracle` drives fast-check (seeded; prints seed, path and the shrunk counterexample
 * as a layer listing plus a strace-like log, and as a literal for a regression test);
 * `runOracleCase` checks one explicit case (regression tests); `runMountOracle` is the
 * same for any mount point made by a callback (the FUSE mount). SUT factories provided
 * here: `kernelOverlaySut` (kernel vs kernel, to validate the harness) and `mountSut`.
 */
import fc from 'fast-check';
import * as fsp from 'node:fs/promises';
import type { OracleCase, OracleGenOptions, OracleOp } from './oracle-case.js';
import { caseLiteral, formatLayers, formatOp, oracleCaseArb } from './oracle-case.js';
import type { OracleLayout } from './oracle-host.js';
import { layOutCase, makeOracleTempDir, mountKernelOverlay, unmountPath, untrackMount } from './oracle-host.js';
import type { OracleHandles, OracleTarget, ProjectionOptions, TreeDump } from './oracle-target.js';
import { applyOp, closeHandles, diffDumps, dumpHostLayer, dumpTarget, hostTarget } from './oracle-target.js';
import { createOverlayModel, modelTarget } from './oracle-model.js';

export * from './oracle-case.js';
export * from './oracle-target.js';
export * from './oracle-host.js';
export * from './oracle-model.js';
export * from './oracle-memory.js';

/** A running system under test: where to apply operations, and how to shut it down. */
export interface SutHandle {
  /** The target the operations go to. */
  readonly target: OracleTarget;
  /**
   * Close the SUT (unmount, destroy) so its upper directory is final. Called exactly once,
   * also when the case failed.
   */
  close(): Promise<void>;
  /** The host upper directory to compare after `close` (undefined: skip the upper comparison). */
  readonly upperdir?: string;
  /** Dump the upper layer after `close` (instead of `upperdir`), in the `lite` projection. */
  readonly dumpUpper?: () => Promise<TreeDump>;
}

/**
 * Builds a SUT over a laid-out copy of the case's layers (`layout`, on disk) — or, for
 * in-memory SUTs, from the case itself.
 */
export type SutFactory = (layout: OracleLayout, c: OracleCase) => Promise<SutHandle>;

/** Builds an in-memory SUT from a case (no host directories). */
export type MemorySutFactory = (c: OracleCase) => Promise<SutHandle>;

/** Options of an oracle run. */
export interface OracleRunOptions extends OracleGenOptions, ProjectionOptions {
  /** Number of generated cases. Default 100 (env `LAYERFS_ORACLE_RUNS` overrides). */
  readonly numRuns?: number;
  /** fast-check seed. Default random (env `LAYERFS_ORACLE_SEED` overrides). */
  readonly seed?: number;
  /** fast-check replay path (env `LAYERFS_ORACLE_PATH` overrides). */
  readonly path?: string;
  /** Compare upper directories at the end. Default true. */
  readonly compareUpper?: boolean;
  /** Where progress and counterexamples are printed. Default `console.log`. */
  readonly log?: (line: string) => void;
  /** A name for the SUT in reports. Default "sut". */
  readonly sutName?: string;
  /** Stop after this many milliseconds of generating cases (fast-check `interruptAfterTimeLimit`). */
  readonly timeLimitMs?: number;
}

/** One step of a traced case: the call and what each side answered. */
export interface OracleStep {
  /** 1-based index of the operation. */
  readonly index: number;
  /** The operation. */
  readonly op: OracleOp;
  /** What the reference (kernel overlay or model) answered. */
  readonly expected: string;
  /** What the SUT answered. */
  readonly actual: string;
}

/** How a case went: undefined mismatch means the SUT agreed with the kernel. */
export interface OracleOutcome {
  /** Every step applied (up to and including the first disagreement). */
  readonly steps: readonly OracleStep[];
  /** A description of the first disagreement, if any. */
  readonly mismatch?: string;
}

/** A SUT that is a second kernel overlay mount (validates the harness: must agree 100%). */
export function kernelOverlaySut(): SutFactory {
  return async (l) => {
    await mountKernelOverlay(l);
    return { target: hostTarget(l.mountpoint, 'kernel overlay (second mount)'), upperdir: l.upperdir, close: () => unmountPath(l.mountpoint) };
  };
}

/** A SUT that is the in-memory reference model (checks the model against the kernel). */
export function modelSut(): SutFactory {
  return async (_l, c) => {
    const m = createOverlayModel(c);
    return { target: modelTarget(m), close: async () => undefined, dumpUpper: async () => m.dumpUpper() };
  };
}

/**
 * A SUT that is any mount point made by `mount` (e.g. a layerfs FUSE mount of the layout's
 * lowerdirs/upperdir/workdir at `layout.mountpoint`), driven through `node:fs/promises`.
 * `mount` returns the function that unmounts it.
 */
export function mountSut(mount: (layout: OracleLayout) => Promise<() => Promise<void>>, name = 'mount'): SutFactory {
  return async (l) => {
    const unmount = await mount(l);
    return { target: hostTarget(l.mountpoint, name), upperdir: l.upperdir, close: unmount };
  };
}

/** The strace-like log of a traced case, marking the step that disagreed. */
export function formatSteps(steps: readonly OracleStep[], sutName = 'sut', refName = 'kernel'): string {
  return steps.map((s) => {
    const call = `${String(s.index).padStart(3)}  ${formatOp(s.op)}`;
    const same = s.expected === s.actual;
    return same ? `${call} = ${s.expected}` : `${call}\n       ${refName}: = ${s.expected}\n       ${sutName}: = ${s.actual}   <-- differs`;
  }).join('\n');
}

/**
 * Apply a case's operations to a reference and a SUT, comparing every step, then the
 * visible trees, then (after closing both) the upper layers. `closeRef` closes the
 * reference; upper dumps come from `dumpUpper` or the host `upperdir`.
 */
async function compareSides(c: OracleCase, ref: SutHandle, refName: string, sut: SutHandle, opts: OracleRunOptions): Promise<OracleOutcome> {
  const sutName = opts.sutName ?? 'sut';
  const steps: OracleStep[] = [];
  let mismatch: string | undefined;
  let closedRef = false;
  let closedSut = false;
  try {
    const refHandles: OracleHandles = new Map();
    const sutHandles: OracleHandles = new Map();
    try {
      for (let i = 0; i < c.ops.length && mismatch === undefined; i++) {
        const op = c.ops[i]!;
        const expected = await applyOp(ref.target, op, opts, refHandles);
        const actual = await applyOp(sut.target, op, opts, sutHandles);
        steps.push({ index: i + 1, op, expected, actual });
        if (expected !== actual) mismatch = `step ${i + 1} ${formatOp(op)}: ${refName} = ${expected}, ${sutName} = ${actual}`;
      }
    } finally {
      await closeHandles(refHandles);
      await closeHandles(sutHandles);
    }
    if (mismatch === undefined) {
      const dk = await dumpTarget(ref.target, opts).catch((e: unknown) => `${refName} tree dump failed: ${String(e)}`);
      const ds = await dumpTarget(sut.target, opts).catch((e: unknown) => `${sutName} tree dump failed: ${String(e)}`);
      if (typeof dk === 'string' || typeof ds === 'string') mismatch = [dk, ds].filter((x) => typeof x === 'string').join('; ');
      else {
        const diff = diffDumps(dk, ds, refName, sutName);
        if (diff.length) mismatch = `visible trees differ after the last step:\n  ${diff.join('\n  ')}`;
      }
    }
  } finally {
    const results = await Promise.allSettled([
      ref.close().then(() => { closedRef = true; }),
      sut.close().then(() => { closedSut = true; }),
    ]);
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed && mismatch === undefined) mismatch = `closing failed: ${String(failed.reason)}`;
  }
  if (mismatch === undefined && closedRef && closedSut && (opts.compareUpper ?? true)) {
    const lite = ref.dumpUpper !== undefined || sut.dumpUpper !== undefined;
    const upperOf = (h: SutHandle): Promise<TreeDump> | undefined =>
      h.dumpUpper ? h.dumpUpper() : h.upperdir ? dumpHostLayer(h.upperdir, { ...opts, lite }) : undefined;
    const du = upperOf(ref);
    const ds = upperOf(sut);
    if (du && ds) {
      const diff = diffDumps(await du, await ds, `${refName} upper`, `${sutName} upper`);
      if (diff.length) mismatch = `upper layers differ:\n  ${diff.join('\n  ')}`;
    }
  }
  return mismatch === undefined ? { steps } : { steps, mismatch };
}

/**
 * Run one case: lay it out twice, mount the kernel overlay on copy A, build the SUT on copy
 * B, apply every operation to both, compare step by step, then the visible trees, then the
 * upper directories. Always unmounts and removes its temp directory.
 */
export async function runOracleCase(c: OracleCase, makeSut: SutFactory, opts: OracleRunOptions = {}): Promise<OracleOutcome> {
  // Another test run's global teardown may unmount our kernel overlay mid-case (it unmounts
  // every `layerfs-` mount it finds): that is no disagreement, so the case is run again.
  for (let attempt = 1; ; attempt++) {
    const dir = await makeOracleTempDir();
    let vanished = false;
    try {
      const [a, b] = await layOutCase(dir, c);
      await mountKernelOverlay(a);
      const kernel: SutHandle = {
        target: hostTarget(a.mountpoint, 'kernel overlay'),
        upperdir: a.upperdir,
        close: async () => {
          if (!(await isMounted(a.mountpoint))) { vanished = true; untrackMount(a.mountpoint); return; }
          await unmountPath(a.mountpoint);
        },
      };
      let sut: SutHandle;
      try {
        sut = await makeSut(b, c);
      } catch (e) {
        await kernel.close();
        throw e;
      }
      const out = await compareSides(c, kernel, 'kernel', sut, opts);
      if (!vanished) return out;
      if (attempt >= 3) throw new Error(`the kernel overlay mount vanished during the case ${attempt} times (unmounted by another process)`);
    } finally {
      await fsp.rm(dir, { recursive: true, force: true }).catch(() => undefined);
    }
  }
}

/** True when `path` is a mount point (per /proc/self/mounts). */
export async function isMounted(path: string): Promise<boolean> {
  const text = await fsp.readFile('/proc/self/mounts', 'utf8').catch(() => '');
  return text.split('\n').some((l) => l.split(' ')[1]?.replace(/\\040/g, ' ') === path);
}

/**
 * Run one case against the in-memory reference model instead of the kernel (no host, no
 * root): the SUT is built from the case by `makeSut`.
 */
export async function runModelCase(c: OracleCase, makeSut: MemorySutFactory, opts: OracleRunOptions = {}): Promise<OracleOutcome> {
  const m = createOverlayModel(c);
  const ref: SutHandle = { target: modelTarget(m), close: async () => undefined, dumpUpper: async () => m.dumpUpper() };
  const sut = await makeSut(c);
  return compareSides(c, ref, 'model', sut, opts);
}

/** A full report of a failing case: layers, strace-like log, mismatch, regression literal. */
export function formatOutcome(c: OracleCase, out: OracleOutcome, sutName = 'sut', refName = 'kernel'): string {
  return [
    formatLayers(c),
    formatSteps(out.steps, sutName, refName),
    `MISMATCH: ${out.mismatch ?? '(none)'}`,
    'As a regression case (oracle-regressions.test.ts):',
    caseLiteral(c),
  ].join('\n');
}

function envNumber(name: string): number | undefined {
  const v = process.env[name];
  return v !== undefined && v !== '' && Number.isFinite(Number(v)) ? Number(v) : undefined;
}

/** Result of a generated run, for harness tests that expect a failure. */
export interface OracleRunResult {
  /** True when fast-check found a disagreement. */
  readonly failed: boolean;
  /** The seed used. */
  readonly seed: number;
  /** The replay path of the shrunk counterexample. */
  readonly path?: string;
  /** Cases run. */
  readonly numRuns: number;
  /** The shrunk counterexample. */
  readonly counterexample?: OracleCase;
  /** The counterexample's outcome (re-run after shrinking). */
  readonly outcome?: OracleOutcome;
  /** The printed report. */
  readonly report?: string;
}

/**
 * Generate cases with fast-check and compare `makeSut` with the kernel on each; shrink the
 * first disagreement and return it (with a printed report) instead of throwing.
 */
export function checkOracle(makeSut: SutFactory, opts: OracleRunOptions = {}): Promise<OracleRunResult> {
  return checkWith((c) => runOracleCase(c, makeSut, opts), 'kernel overlay', opts);
}

/** Like `checkOracle` with the in-memory reference model as the reference (runs anywhere). */
export function checkModelOracle(makeSut: MemorySutFactory, opts: OracleRunOptions = {}): Promise<OracleRunResult> {
  return checkWith((c) => runModelCase(c, makeSut, opts), 'model', opts);
}

/** Like `checkModelOracle`, but throws the report on a disagreement. */
export async function runModelOracle(makeSut: MemorySutFactory, opts: OracleRunOptions = {}): Promise<OracleRunResult> {
  const res = await checkModelOracle(makeSut, opts);
  if (res.failed) throw new Error(res.report);
  return res;
}

async function checkWith(runCase: (c: OracleCase) => Promise<OracleOutcome>, refName: string, opts: OracleRunOptions): Promise<OracleRunResult> {
  const log = opts.log ?? ((l: string) => console.log(l));
  const sutName = opts.sutName ?? 'sut';
  const seed = envNumber('LAYERFS_ORACLE_SEED') ?? opts.seed ?? (Date.now() ^ (Math.random() * 0x100000000)) | 0;
  const numRuns = envNumber('LAYERFS_ORACLE_RUNS') ?? opts.numRuns ?? 100;
  const path = process.env.LAYERFS_ORACLE_PATH || opts.path;
  log(`oracle: ${refName} vs ${sutName}: seed=${seed} numRuns=${numRuns}${path ? ` path=${path}` : ''} (replay with LAYERFS_ORACLE_SEED=${seed})`);
  const prop = fc.asyncProperty(oracleCaseArb(opts), async (c) => {
    const out = await runCase(c);
    if (out.mismatch !== undefined) throw new Error(out.mismatch);
  });
  const res = await fc.check(prop, {
    seed, numRuns, ...(path ? { path } : {}),
    ...(opts.timeLimitMs ? { interruptAfterTimeLimit: opts.timeLimitMs } : {}),
  });
  if (!res.failed) return { failed: false, seed, numRuns: res.numRuns };
  const ce = res.counterexample?.[0];
  if (!ce) {
    const report = `oracle: failed without a counterexample (seed=${seed}): ${String(res.errorInstance)}`;
    log(report);
    return { failed: true, seed, numRuns: res.numRuns, report };
  }
  const outcome = await runCase(ce);
  const report = [
    `oracle: ${refName} vs ${sutName} DISAGREE — seed=${seed} path=${res.counterexamplePath ?? ''} after ${res.numRuns} case(s), ${res.numShrinks} shrink(s)`,
    `replay: LAYERFS_ORACLE_SEED=${seed} LAYERFS_ORACLE_PATH=${res.counterexamplePath ?? ''}`,
    formatOutcome(ce, outcome.mismatch !== undefined ? outcome : { ...outcome, mismatch: `(did not reproduce on re-run) ${String(res.errorInstance)}` }, sutName, refName),
  ].join('\n');
  log(report);
  return { failed: true, seed, ...(res.counterexamplePath ? { path: res.counterexamplePath } : {}), numRuns: res.numRuns, counterexample: ce, outcome, report };
}

/** Like `checkOracle`, but throws the report when the SUT disagrees with the kernel. */
export async function runOracle(makeSut: SutFactory, opts: OracleRunOptions = {}): Promise<OracleRunResult> {
  const res = await checkOracle(makeSut, opts);
  if (res.failed) throw new Error(res.report);
  return res;
}

/**
 * For the FUSE mount tests: the same generated sequences applied with `node:fs/promises` to
 * a kernel overlay mount and to the mount point `mount` makes over the other copy of the
 * layers (it receives lowerdirs, upperdir, workdir and the mount point, and returns the
 * unmount function). Throws the report on a disagreement.
 */
export function runMountOracle(
  mount: (layout: OracleLayout) => Promise<() => Promise<void>>,
  opts: OracleRunOptions = {},
): Promise<OracleRunResult> {
  return runOracle(mountSut(mount, opts.sutName ?? 'mount'), { sutName: 'mount', ...opts });
}
