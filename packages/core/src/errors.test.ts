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
