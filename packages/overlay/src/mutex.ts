/**
 * A tiny async mutex: the overlay serialises every change of the upper layer's namespace
 * (create, remove, rename, copy-up) through one, as the kernel serialises them with the
 * directory inode locks, so two operations never interleave between their layer calls.
 */

/** A FIFO async mutex. */
export class Mutex {
  private tail: Promise<void> = Promise.resolve();

  /** Run `fn` when every earlier `run` has finished; resolves with its result. */
  run<T>(fn: () => Promise<T>): Promise<T> {
    const result = this.tail.then(fn);
    this.tail = result.then(() => undefined, () => undefined);
    return result;
  }
}
