/** x times a scalar that lives on x's device: the loss scale of fp16 training without a host read. */
import { isFloat } from '../tensor/dtype.ts';
import { fmt } from '../tensor/shape.ts';
import type { Tensor } from '../tensor/tensor.ts';
import { record } from './autograd_support.ts';
import * as k from './kernels.ts';

const OP = 'mulByDeviceScalar';

/**
 * `mulScalar(x, v)` where v is the f64 held by `s`, a one-element f64 tensor on x's device, read
 * when the kernel runs: nothing waits for it, and a CUDA graph replay multiplies by the value `s`
 * holds at that replay. The forward and the backward (the gradient times v, read when the backward
 * runs) are mulScalar's bit for bit for that v. Unlike mulScalar, a non-finite v is not refused
 * (the host never sees it): it multiplies as IEEE does. `s` is a constant: no gradient flows to it.
 * @example
 * const scale = tensor(2 ** 16, { dtype: 'f64', device: 'cuda:0' });
 * mulByDeviceScalar(loss, scale).backward();   // the gradients carry the scale
 */
export function mulByDeviceScalar(x: Tensor, s: Tensor): Tensor {
  if (!isFloat(x.dtype)) throw new Error(`${OP}: needs a floating-point tensor, got ${x.dtype} ${fmt(x.shape)}`);
  if (s.requiresGrad) throw new Error(`${OP}: the scalar ${s.dtype} ${fmt(s.shape)} requires grad, but no gradient flows to it; pass s.detach()`);
  const out = k.mulDeviceScalar(x, s, OP);
  return record(OP, [x], out, () => (g) => [k.mulDeviceScalar(g, s, OP)]);
}
