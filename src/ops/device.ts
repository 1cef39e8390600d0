/** Moving tensors between devices, differentiably: the gradient moves back. */
import { checkDevice } from '../tensor/device.ts';
import type { Device } from '../tensor/storage.ts';
import type { Tensor } from '../tensor/tensor.ts';
import { record } from './autograd_support.ts';
import * as k from './kernels.ts';

/**
 * A contiguous copy of `x` on `device` (x itself when already there is NOT returned: always a
 * new tensor, so disposing it never frees the input). Gradients flow back to x's device.
 * @example
 * const w = randn([4, 4]).to('cuda:0');      // same values as on the CPU
 * const back = w.to('cpu');
 */
export function toDevice(x: Tensor, device: Device): Tensor {
  const dev = checkDevice(device, 'to');
  const out = k.toDevice(x, dev);
  const from = x.device; // read now: x may be freed before backward
  return record('to', [x], out, () => (g) => [k.toDevice(g, from)]);
}
