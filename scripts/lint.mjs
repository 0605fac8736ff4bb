// The project's lint: the conventions of shared/research/style.md that a type-checker does
// not see. Every TypeScript source starts with a module comment; every exported declaration
// of a package's src/ has a doc comment; no focused tests (.only); no synchronous fs calls in
// mount tests (they deadlock the serving process). Prints each problem as file:line and
// exits 1 if there is any.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const problems = [];

function walk(dir, out = []) {
  for (const name of readdirSync(dir)) {
    if (name === 'node_modules' || name === 'dist' || name.startsWith('.')) continue;
    const p = join(dir, name);
    if (statSync(p).isDirectory()) walk(p, out);
    else if (/\.(ts|mts)$/.test(name) && !name.endsWith('.d.ts')) out.push(p);
  }
  return out;
}

const files = [...walk(join(root, 'packages')), ...walk(join(root, 'examples'))];
for (const file of files) {
  const rel = relative(root, file);
  const text = readFileSync(file, 'utf8');
  const lines = text.split('\n');
  const first = lines.find((l) => l.trim() !== '' && !l.startsWith('#!'));
  if (!first || !(first.startsWith('/**') || first.startsWith('//') || first.startsWith('/*'))) {
    problems.push(`${rel}:1: missing module comment at the top of the file`);
  }
  const isTest = /\.test\.ts$/.test(file) || rel.includes('/test/');
  lines.forEach((line, i) => {
    if (/\b(it|test|describe)\.only\(/.test(line)) problems.push(`${rel}:${i + 1}: focused test (.only)`);
    if (isTest && /\.mount\.test\.ts$/.test(file) && /\b(readFileSync|writeFileSync|statSync|lstatSync|readdirSync|existsSync|mkdirSync|rmSync|unlinkSync|renameSync|openSync|accessSync)\(/.test(line) && !line.includes('lint-allow-sync')) {
      problems.push(`${rel}:${i + 1}: synchronous fs call in a mount test (deadlocks the FUSE server; use fs.promises or a child process, or mark lint-allow-sync for paths outside the mount)`);
    }
  });
  if (!isTest && rel.includes('/src/')) {
    lines.forEach((line, i) => {
      if (!/^export\s+(async\s+)?(function|class|interface|type|const|let|abstract\s+class|enum)\s/.test(line)) return;
      let j = i - 1;
      while (j >= 0 && lines[j].trim() === '') j--;
      const prev = lines[j]?.trim() ?? '';
      if (!(prev.endsWith('*/') || prev.startsWith('//'))) problems.push(`${rel}:${i + 1}: exported declaration without a doc comment`);
    });
  }
}

if (problems.length) {
  console.error(problems.join('\n'));
  console.error(`lint: ${problems.length} problem(s)`);
  process.exit(1);
}
console.log(`lint: ${files.length} files clean`);
