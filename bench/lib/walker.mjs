// Child process that drives a mounted tree with plain synchronous syscalls (one at a time,
// as a shell tool would) and prints its own elapsed time as JSON. It is never the process
// that serves a FUSE mount, so synchronous calls are safe here.
//   node walker.mjs lstat  <root> <listfile>        lstat every listed path
//   node walker.mjs lstat-missing <root> <n>        lstat n names that do not exist (ENOENT)
//   node walker.mjs create <root> <dirs> <perDir>   mkdir root/new/dNNN, create empty files
//   node walker.mjs append <root> <listfile>        append one byte to every listed file
//   node walker.mjs unlink <root> <listfile>        unlink every listed file
import { appendFileSync, closeSync, lstatSync, mkdirSync, openSync, readFileSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';

const [op, root, a, b] = process.argv.slice(2);
const list = () => readFileSync(a, 'utf8').split('\n').filter(Boolean).map((p) => join(root, p));

let n = 0;
let t0;
switch (op) {
  case 'lstat': {
    const paths = list();
    t0 = process.hrtime.bigint();
    for (const p of paths) { lstatSync(p); n++; }
    break;
  }
  case 'lstat-missing': {
    // One negative lookup each: the names are new. In `tree/` where it exists; at the root
    // of layerfs-empty, which has no `tree/` (a miss of `tree` the kernel cached would answer
    // every name below it). No exception per name (throwIfNoEntry): building one costs Node
    // more than the lookup on a native directory.
    const count = Number(a);
    const dir = lstatSync(join(root, 'tree'), { throwIfNoEntry: false }) ? join(root, 'tree') : root;
    t0 = process.hrtime.bigint();
    for (let i = 0; i < count; i++) {
      const p = join(dir, `.missing-${i}`);
      if (lstatSync(p, { throwIfNoEntry: false }) !== undefined) throw new Error(`walker: ${p} exists`);
      n++;
    }
    break;
  }
  case 'create': {
    const dirs = Number(a);
    const per = Number(b);
    t0 = process.hrtime.bigint();
    mkdirSync(join(root, 'new'));
    for (let d = 0; d < dirs; d++) {
      const dp = join(root, 'new', `d${String(d).padStart(3, '0')}`);
      mkdirSync(dp);
      for (let f = 0; f < per; f++) { closeSync(openSync(join(dp, `f${f}`), 'wx')); n++; }
    }
    break;
  }
  case 'append': {
    const paths = list();
    t0 = process.hrtime.bigint();
    for (const p of paths) { appendFileSync(p, 'x'); n++; }
    break;
  }
  case 'unlink': {
    const paths = list();
    t0 = process.hrtime.bigint();
    for (const p of paths) { unlinkSync(p); n++; }
    break;
  }
  default:
    console.error(`walker: unknown op ${op}`);
    process.exit(2);
}
const ms = Number(process.hrtime.bigint() - t0) / 1e6;
process.stdout.write(JSON.stringify({ op, n, ms }) + '\n');
