/**
 * split() as views whose gradients are gathered into one buffer. Separate narrow() views would
 * each return a zero-filled gradient of the whole input, summed by the autograd engine (for
 * GPT's qkv split: three fills of [B, T, 3C] and two additions per layer); here each piece's
 * backward copies its gradient into its region of one buffer, and only regions no gradient
 * reached are zeroed, once all pieces have run.
 */
import type { Tensor } from '../tensor/tensor.ts';
import { record } from './autograd_support.ts';
import * as k from './kernels.ts';

/** The buffer of one backward pass: made by the first piece to run, completed by the join. */
interface Gather {
  buffer: Tensor | null;
  written: boolean[];
}

/**
 * Pieces of `x` along dim `d` of the given sizes (summing to x.shape[d]), as views. Their
 * gradients meet at a join node over `x`: the engine runs it only after every piece reached in
 * this pass has run, and a piece after the first adds its region in place and returns nothing,
 * so the engine sums nothing.
 */
export function splitViews(x: Tensor, d: number, sizes: readonly number[]): Tensor[] {
  const starts: number[] = [];
  let at = 0;
  for (const s of sizes) {
    starts.push(at);
    at += s;
  }
  const gather: Gather = { buffer: null, written: sizes.map(() => false) };
  const region = (buf: Tensor, i: number) => {
    const shape = [...buf.shape];
    shape[d] = sizes[i];
    return buf.alias(shape, buf.strides, buf.offset + starts[i] * buf.strides[d]);
  };
  const joint = record('split', [x], x.alias(), () => (g) => {
    // Regions of pieces that got no gradient in this pass.
    gather.written.forEach((w, i) => {
      if (w) return;
      const r = region(g, i);
      const zeros = k.fill(k.empty(r.shape, g.dtype, undefined, false, g.device), 0); // fill takes contiguous tensors only
      k.copyInto(zeros, r);
      zeros.dispose();
      r.dispose();
    });
    gather.buffer = null;
    gather.written = sizes.map(() => false);
    return [g];
  });
  const pieces = sizes.map((size, i) => {
    const shape = [...x.shape];
    shape[d] = size;
    const piece = joint.alias(shape, joint.strides, joint.offset + starts[i] * joint.strides[d]);
    return record('splitPiece', [joint], piece, () => (g) => {
      const first = gather.buffer === null || gather.buffer.disposed;
      if (first) {
        gather.buffer = k.empty(x.shape, g.dtype, undefined, false, g.device);
        gather.written = sizes.map(() => false);
      }
      const buf = gather.buffer as Tensor;
      const r = region(buf, i);
      k.copyInto(g, r);
      r.dispose();
      gather.written[i] = true;
      return [first ? buf : null];
    });
  });
  joint.dispose(); // the pieces hold its storage and their nodes its join node
  return pieces;
}
