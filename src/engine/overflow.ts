/**
 * Gradient overflow check for mixed precision (fp16 and bf16): one native reduction per tensor,
 * sum |x| in double, which is non-finite exactly when some element is inf or NaN (a sum of finite
 * 16/32-bit values cannot overflow a double).
 */
import * as k from '../ops/kernels.ts';
import { normPow } from '../optim/fused.ts';
import { Tensor } from '../tensor/tensor.ts';

const FLOAT_DTYPES = new Set(['f32', 'f64', 'bf16', 'f16']);

/**
 * True when any element of any tensor is inf or NaN; null, undefined and disposed entries are
 * skipped (parameters without gradients), as are integer tensors.
 * @example
 * const overflow = hasOverflow(model.parameters().map((p) => p.grad));
 */
export function hasOverflow(tensors: Iterable<Tensor | null | undefined>): boolean {
  let i = 0;
  for (const t of tensors) {
    if (t !== null && t !== undefined && !(t instanceof Tensor)) throw new Error(`hasOverflow: tensors[${i}] is not a Tensor`);
    i++;
    if (!t || t.disposed || t.numel === 0 || !FLOAT_DTYPES.has(t.dtype)) continue;
    const src = t.isContiguous ? t : k.copy(t);
    const sum = normPow({ dtype: src.dtype, id: src.id, off: src.offset }, src.numel, 1);
    if (src !== t) src.dispose();
    if (!Number.isFinite(sum)) return true;
  }
  return false;
}
