/**
 * Reading `/dev/fuse` on the JS thread's own event loop. The device descriptor is opened as a
 * libuv stream (the loop polls it with epoll, as it polls a pipe), so a request wakes the JS
 * thread directly: no reader thread, no hand-off and no second wake-up per request. Each
 * read(2) of the device returns exactly one request. Small requests are copied out of the read
 * buffer; a large one (a write) keeps the whole buffer, which goes back to a spare list once
 * served, so a 1 MiB write costs neither a copy nor an allocation. The stream keeps the event
 * loop alive while the file system is mounted, as a listening server does.
 */
import { Socket } from 'node:net';
import { toFsError } from '@layerfs/core';
import { Request } from './protocol.js';

/** The reader of a session's device descriptor. */
export interface DeviceReader {
  /** Give back a request buffer a large request kept (once it was served). */
  recycle(buffer: ArrayBuffer): void;
  /** Stop reading and close the device descriptor (idempotent). */
  close(): void;
}

/** Requests up to this size are copied out; larger ones keep the read buffer. */
const SMALL = 65536;

/**
 * libuv's pipe handle as Node's `pipe_wrap` binding exposes it (`process.binding`, deprecated in the
 * documentation only, DEP0111): Node has no public API that polls an arbitrary descriptor.
 */
interface PipeHandle { open(fd: number): number }
interface PipeBinding { Pipe: new (type: number) => PipeHandle; constants: { SOCKET: number } }

/**
 * Start reading requests from `fd` (a /dev/fuse descriptor; it becomes non-blocking and owned
 * by the reader). `size` is the largest request (header + max_write). `onRequest` gets each
 * request (with its buffer when it kept one: pass that to `recycle` once served), `onEnd` the
 * reason once reading stopped (ENODEV: the file system was unmounted).
 */
export function readDevice(
  fd: number,
  size: number,
  onRequest: (req: Request, kept?: ArrayBuffer) => void,
  onEnd: (why: string) => void,
): DeviceReader {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- an internal binding, typed above
  const { Pipe, constants } = (process as any).binding('pipe_wrap') as PipeBinding;
  const handle = new Pipe(constants.SOCKET);
  const err = handle.open(fd);
  if (err !== 0) throw toFsError({ errno: -err }, { syscall: 'uv_pipe_open', detail: 'cannot poll the FUSE device' });
  const spare: ArrayBuffer[] = [];
  let current = Buffer.from(new ArrayBuffer(size));
  let kept = false;
  let ended = false;
  const finish = (why: string): void => {
    if (ended) return;
    ended = true;
    onEnd(why);
  };
  const socket = new Socket({
    handle,
    readable: true,
    writable: false,
    onread: {
      // Called after each read: a fresh buffer when the last request kept the current one.
      buffer: () => {
        if (kept) {
          kept = false;
          const ab = spare.pop();
          current = Buffer.from(ab ?? new ArrayBuffer(size));
        }
        return current;
      },
      callback: (n: number, buf: Uint8Array) => {
        if (n <= SMALL) {
          onRequest(new Request(new Uint8Array(buf.subarray(0, n)))); // a copy: the buffer is read into again
        } else {
          kept = true;
          onRequest(new Request(new Uint8Array(buf.buffer, buf.byteOffset, n)), buf.buffer as ArrayBuffer);
        }
        return true;
      },
    },
  } as ConstructorParameters<typeof Socket>[0]);
  socket.on('error', (e: NodeJS.ErrnoException) => finish(e.code ?? String(e)));
  socket.on('end', () => finish('EOF'));
  socket.on('close', () => finish('closed'));
  return {
    recycle(buffer: ArrayBuffer): void {
      if (!ended && spare.length < 4) spare.push(buffer);
    },
    close(): void {
      socket.destroy();
    },
  };
}
