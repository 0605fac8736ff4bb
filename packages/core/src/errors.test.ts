// FsError has node:fs's shape and message, and errno tables map both ways.
import { describe, expect, it } from 'vitest';
import { promises as fsp } from 'node:fs';
import { FsError, codeOf, errnoOf, toFsError } from './errors.js';
import { validateName } from './names.js';

describe('FsError', () => {
  it('matches the shape and message of a node:fs error', async () => {
    const err = (await fsp.stat("/nonexistent-layerfs-path").catch((e: unknown) => e)) as NodeJS.ErrnoException;
    const ours = new FsError('ENOENT', { syscall: 'stat', path: '/nonexistent-layerfs-path' });
    expect(ours.message).toBe(err.message);
    expect(ours.errno).toBe(err.errno);
    expect(ours.code).toBe(err.code);
    expect(toFsError(err).code).toBe('ENOENT');
  });

  it('maps errno names and numbers both ways on Linux and macOS', () => {
    expect(errnoOf('ENOTEMPTY', 'linux')).toBe(39);
    expect(errnoOf('ENOTEMPTY', 'darwin')).toBe(66);
    expect(codeOf(-39, 'linux')).toBe('ENOTEMPTY');
    expect(codeOf(66, 'darwin')).toBe('ENOTEMPTY');
    expect(codeOf(95, 'linux')).toBe('EOPNOTSUPP');
  });
});

describe('FsError cost and stacks', () => {
  it('bare errors (of, bare) carry no frames but the same shape; new FsError captures a stack', () => {
    const bare = FsError.of('ENOENT');
    expect(bare).toBeInstanceOf(Error);
    expect([bare.code, bare.errno, bare.message]).toEqual(['ENOENT', -2, 'ENOENT: no such file or directory']);
    expect(bare.stack).toBe('Error: ENOENT: no such file or directory');
    const ctx = FsError.bare('EACCES', { syscall: 'open', path: '/p' });
    expect([ctx.code, ctx.syscall, ctx.path, ctx.message]).toEqual(['EACCES', 'open', '/p', "EACCES: permission denied, open '/p'"]);
    expect(new FsError('ENOENT').stack).toMatch(/\n {4}at /);
  });

  it('a bare error gets the stack of the place that adds context', () => {
    function boundary(): FsError { return toFsError(FsError.of('ENOTDIR'), { syscall: 'lstat', path: '/a/b' }); }
    const e = boundary();
    expect(e.message).toBe("ENOTDIR: not a directory, lstat '/a/b'");
    expect(e.stack!.split('\n')[0]).toBe("Error: ENOTDIR: not a directory, lstat '/a/b'");
    expect(e.stack).toMatch(/at boundary /);
    // An error with frames keeps them (where it was made) when context is added.
    function origin(): FsError { return new FsError('EIO'); }
    expect(origin().withContext({ syscall: 'read' }).stack).toMatch(/at origin /);
  });

  it('captureStacks gives bare errors frames', () => {
    const prev = FsError.captureStacks;
    FsError.captureStacks = true;
    try {
      expect(FsError.of('ENOENT').stack).toMatch(/\n {4}at /);
    } finally {
      FsError.captureStacks = prev;
    }
  });

  it('codeOf agrees with errnoOf for every code of both tables', () => {
    for (const platform of ['linux', 'darwin'] as const) {
      for (const code of ['ENOENT', 'EACCES', 'ENOTEMPTY', 'ELOOP', 'ENODATA', 'EOPNOTSUPP', 'EAGAIN'] as const) {
        expect(codeOf(errnoOf(code, platform)!, platform)).toBe(code);
      }
    }
    expect(codeOf(45, 'darwin')).toBe('ENOTSUP');
    expect(codeOf(9999)).toBeUndefined();
  });
});

describe('validateName', () => {
  it.each([
    ['', 'ENOENT'], ['.', 'EINVAL'], ['..', 'EINVAL'], ['a/b', 'EINVAL'], ['a\0b', 'EINVAL'],
    ['x'.repeat(256), 'ENAMETOOLONG'], ['é'.repeat(128), 'ENAMETOOLONG'],
  ])('rejects %j with %s', (name, code) => {
    expect(() => validateName(name)).toThrowError(expect.objectContaining({ code }));
  });
  it('accepts 255 bytes and odd but legal names', () => {
    for (const n of ['x'.repeat(255), '.wh.x', '...', ' ', 'é'.repeat(127)]) expect(() => validateName(n)).not.toThrow();
  });
});
