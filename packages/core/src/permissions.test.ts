// The shared permission rules: root's pass without ownership, and what "kill priv" leaves.
import { describe, expect, it } from 'vitest';
import { AccessMode } from './types.js';
import { killPriv, mayAccess, passesWithoutOwnership } from './permissions.js';

const root = { uid: 0, gid: 0, pid: 1, umask: 0 };
const user = { uid: 1000, gid: 1000, pid: 1, umask: 0 };
const { R_OK, W_OK, X_OK } = AccessMode;

describe('passesWithoutOwnership', () => {
  it('is true exactly where mayAccess answers yes for every mode and owner', () => {
    const objects = [0o100000, 0o100644, 0o100755, 0o040000, 0o040700].flatMap((mode) => [{ mode, uid: 0, gid: 0 }, { mode, uid: 1000, gid: 1000 }]);
    for (const ctx of [root, user]) {
      for (let mask = 0; mask <= 7; mask++) {
        const always = objects.every((o) => mayAccess(o, ctx, mask));
        expect([ctx.uid, mask, passesWithoutOwnership(ctx, mask)]).toEqual([ctx.uid, mask, always]);
      }
    }
    expect(passesWithoutOwnership(root, R_OK | W_OK)).toBe(true);
    expect(passesWithoutOwnership(root, X_OK)).toBe(false);
    expect(passesWithoutOwnership(user, R_OK)).toBe(false);
  });
});

describe('killPriv', () => {
  it('drops set-user-ID always and set-group-ID only with group-execute, nothing else', () => {
    expect(killPriv(0o106755)).toBe(0o100755);
    expect(killPriv(0o104755)).toBe(0o100755);
    expect(killPriv(0o102745)).toBe(0o102745);
    expect(killPriv(0o102755)).toBe(0o100755);
    expect(killPriv(0o101755)).toBe(0o101755);
    expect(killPriv(0o100644)).toBe(0o100644);
  });
});
