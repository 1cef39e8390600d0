/** Raw little-endian bytes in and out of tensors, bit for bit (bf16/f16 are not widened). */
import { noGrad } from '../../autograd/grad_mode.ts';
import { native } from '../../native.ts';
import { contiguous } from '../../ops/index.ts';
import { type DType, itemSize } from '../../tensor/dtype.ts';
import type { MemoryTag } from '../../tensor/storage.ts';
import { Tensor } from '../../tensor/tensor.ts';

/** A copy of the tensor's elements in row-major order as bytes. */
export function tensorBytes(t: Tensor): Uint8Array {
  const c = t.isContiguous ? t : noGrad(() => contiguous(t));
  try {
    const size = itemSize(c.dtype);
    return new Uint8Array(native.read(c.id, c.offset * size, c.numel * size));
  } finally {
    if (c !== t) c.dispose();
  }
}

/** A new contiguous tensor holding `bytes` (row-major, `dtype`). */
export function tensorFromBytes(bytes: Uint8Array, shape: number[], dtype: DType, tag: MemoryTag = 'other'): Tensor {
  const t = Tensor.empty(shape, { dtype, tag });
  if (bytes.byteLength !== t.numel * itemSize(dtype)) {
    t.dispose();
    throw new Error(`tensorFromBytes: ${bytes.byteLength} bytes do not fill ${t.numel} ${dtype} elements`);
  }
  if (bytes.byteLength) native.write(t.id, 0, bytes);
  return t;
}

/** Writes `bytes` over the elements [start, start + n) of contiguous `t` (row-major). */
export function writeTensorBytes(t: Tensor, start: number, bytes: Uint8Array): void {
  if (!t.isContiguous) throw new Error('writeTensorBytes: the destination must be contiguous');
  const size = itemSize(t.dtype);
  if (start < 0 || start * size + bytes.byteLength > t.numel * size) throw new Error('writeTensorBytes: the bytes run past the tensor');
  if (bytes.byteLength) native.write(t.id, (t.offset + start) * size, bytes);
}
