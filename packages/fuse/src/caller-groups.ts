/**
 * The supplementary groups of the processes that make requests, read from
 * `/proc/<pid>/status` and cached per pid for 2 s (the kernel passes only uid, gid and pid
 * with a FUSE request). Both transports put them in the `RequestContext`, so a Filesystem's
 * own group checks (chown to a group, setgid handling) see what the kernel would. The file
 * is read synchronously: /proc never waits on a disk, and a read on libuv's pool could wait
 * behind pool threads the serving process's own calls on its mount hold (deadlock: those calls
 * wait for answers this request holds up).
 */
import { readFileSync } from 'node:fs';

const TTL_MS = 2000;
const MAX_PIDS = 4096;

/** A per-pid cache of supplementary groups. */
export class CallerGroups {
  private readonly byPid = new Map<number, { at: number; groups: number[] | undefined }>();

  /** The groups of `pid` (undefined when the process is gone or has no status). */
  async of(pid: number): Promise<number[] | undefined> {
    if (pid <= 0) return undefined;
    const hit = this.byPid.get(pid);
    const now = Date.now();
    if (hit && now - hit.at < TTL_MS) return hit.groups;
    let text = '';
    try { text = readFileSync(`/proc/${pid}/status`, 'utf8'); } catch { /* the process is gone */ }
    const line = /^Groups:\s*(.*)$/m.exec(text);
    const groups = line ? line[1]!.trim().split(/\s+/).filter(Boolean).map(Number) : undefined;
    if (this.byPid.size > MAX_PIDS) this.byPid.clear();
    this.byPid.set(pid, { at: now, groups });
    return groups;
  }

  /** What `of(pid)` last found, if still fresh (no read). */
  cached(pid: number): number[] | undefined {
    const hit = this.byPid.get(pid);
    return hit && Date.now() - hit.at < TTL_MS ? hit.groups : undefined;
  }
}
