/**
 * Asynchronous reads and writes between a file and a tensor's memory (native/io/file_io.cc:
 * pread/pwrite on worker threads). A training step is synchronous, so a transfer is submitted,
 * other work runs, and `wait` blocks until it is done; the tensor and the file descriptor must
 * stay alive until then, which the `Transfer` guarantees by holding them.
 */
import { native } from '../../native.ts';
import { itemSize } from '../../tensor/dtype.ts';
import type { Tensor } from '../../tensor/tensor.ts';

/** One transfer in flight. */
export interface Transfer {
  ticket: number;
  /** The memory it reads into or writes from (kept alive until waited). */
  tensor: Tensor;
  /** For errors: the file and the byte range. */
  what: string;
}

function submit(write: boolean, fd: number, fileOffset: number, t: Tensor, path: string): Transfer {
  if (!t.isContiguous) throw new Error(`async ${write ? 'write' : 'read'}: ${path} needs a contiguous tensor`);
  const bytes = t.numel * itemSize(t.dtype);
  const ticket = native.ioSubmit(write, fd, fileOffset, t.id, t.offset * itemSize(t.dtype), bytes) as number;
  return { ticket, tensor: t, what: `${write ? 'writing' : 'reading'} ${path} bytes [${fileOffset}, ${fileOffset + bytes})` };
}

/** Starts reading `t.numel` elements from byte `fileOffset` of `fd` into `t`. */
export function readAsync(fd: number, fileOffset: number, t: Tensor, path: string): Transfer {
  return submit(false, fd, fileOffset, t, path);
}

/** Starts writing `t` to byte `fileOffset` of `fd`. */
export function writeAsync(fd: number, fileOffset: number, t: Tensor, path: string): Transfer {
  return submit(true, fd, fileOffset, t, path);
}

/** Blocks until the transfer is done; a failure (a short read of a truncated file, an IO error) throws naming the file. */
export function wait(x: Transfer): void {
  try {
    native.ioWait(x.ticket);
  } catch (e) {
    throw new Error(`${x.what}: ${(e as Error).message}`);
  }
}

/** Waits for every transfer (all of them, even after a failure), then throws the first failure. */
export function waitAll(xs: Transfer[]): void {
  let first: unknown = null;
  for (const x of xs) {
    try {
      wait(x);
    } catch (e) {
      first ??= e;
    }
  }
  if (first) throw first;
}
