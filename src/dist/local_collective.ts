/**
 * Collectives of a group of one on device tensors over a host backend (shm): each is the identity
 * on its operands (a sum, average or max of one rank's values; a gather or scatter of one piece),
 * so an output that is not its own input receives the input's bytes by a device copy and nothing
 * is staged through the host. Staging would cost two host waits per collective: on a single GPU
 * every ZeRO reduce-scatter and all-gather and every DataParallel bucket would pay them.
 */
import { native } from '../native.ts';
import { itemSize } from '../tensor/dtype.ts';
import type { Tensor } from '../tensor/tensor.ts';

/** True when a group of `size` ranks can run the collective on `tensors` here (all on CUDA devices). */
export function isLocalCollective(size: number, tensors: readonly Tensor[]): boolean {
  return size === 1 && tensors.length > 0 && tensors.every((t) => t.device !== 'cpu');
}

/**
 * Runs a one-rank collective: every output that is not also an input gets the (single) input's
 * bytes. Operands are dense (the group checked them), so a tensor's elements are the bytes from
 * its offset on, in storage order, as the backend would see them.
 */
export function runLocalCollective(tensors: readonly Tensor[], inputs: readonly number[], outputs: readonly number[]): null {
  for (const o of outputs) {
    if (inputs.includes(o) || inputs.length === 0) continue;
    const src = tensors[inputs[0]];
    const dst = tensors[o];
    const item = itemSize(dst.dtype);
    if (src.storage === dst.storage && src.offset === dst.offset) continue;   // in place already (an all-gather of its own slice)
    native.copyBytes(src.id, src.offset * item, dst.id, dst.offset * item, dst.numel * item);
  }
  return null;
}
