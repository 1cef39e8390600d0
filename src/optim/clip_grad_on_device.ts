/** Global-norm gradient clipping with the norm left on the device: no host read, capturable in a CUDA graph. */
import { noGrad } from '../autograd/grad_mode.ts';
import { zeros } from '../ops/create.ts';
import { kernelsOn } from '../tensor/backend.ts';
import type { Tensor } from '../tensor/tensor.ts';
import { type ClipGradNormOptions, clipArgs, scaleInPlace } from './clip_grad.ts';
import { DeviceSums } from './device_sums.ts';

const WHERE = 'clipGradNormOnDevice';

/**
 * `clipGradNorm` without reading the norm back: the norm of all gradients together is reduced on
 * their device, the coefficient `min(1, maxNorm / (norm + 1e-6))` is computed there by one thread,
 * and every gradient is scaled in place by the `mulScalar` kernel reading it there (PyTorch's
 * `clip_grad_norm_`, which also returns a tensor). Returns the total norm before clipping as a 0-d
 * f64 tensor on the gradients' device: nothing waits for it until you read it. On a GPU that is
 * one host wait less per step, and the call can run inside `captureCudaGraph` (each replay clips
 * by the norm of that replay's gradients; `maxNorm` is fixed at the capture).
 *
 * The same rule and, on the same device, the same bits as `clipGradNorm` (the norm, the
 * coefficient in double, each element's product): a NaN or infinite norm leaves the gradients
 * unwritten. Norm orders 1, 2 and 'inf' only (others would need a power on the device that is not
 * JavaScript's bit for bit). Gradients on several devices are refused: their sums would have to be
 * combined across devices. `errorIfNonfinite` is refused (throwing needs the norm on the host: use
 * `clipGradNorm`, or check the returned norm when you read it). Without gradients the norm is a
 * zero on the first parameter's device (the CPU when there is none).
 * @example
 * loss.backward();
 * const norm = clipGradNormOnDevice(model.parameters(), 1.0);   // queued; nothing read
 * opt.step();
 * if (step % 100 === 0) console.log(norm.item());                 // the one read, when wanted
 * norm.dispose();
 */
export function clipGradNormOnDevice(params: Tensor | Iterable<Tensor>, maxNorm: number, opts: ClipGradNormOptions = {}): Tensor {
  const { p, list, grads } = clipArgs(params, maxNorm, opts, WHERE);
  if (opts.errorIfNonfinite) {
    throw new Error(`${WHERE}: errorIfNonfinite needs the norm on the host (a GPU sync, refused in a CUDA graph capture); use clipGradNorm, or test the returned norm when you read it`);
  }
  if (p !== 1 && p !== 2 && p !== Number.POSITIVE_INFINITY) {
    throw new Error(`${WHERE}: normType ${String(opts.normType)} is not supported (1, 2 or 'inf'); use clipGradNorm for other orders`);
  }
  if (grads.length === 0) return zeros([], { dtype: 'f64', device: list[0]?.device ?? 'cpu', tag: 'other' });
  const device = grads[0].device;
  const other = grads.find((g) => g.device !== device);
  if (other) {
    throw new Error(`${WHERE}: gradients on ${device} and ${other.device} (shape [${other.shape.join(', ')}]); the norm is combined on one device: use clipGradNorm for gradients on several devices`);
  }
  return noGrad(() => {
    // Slot 0 accumulates Σ|g|^p, then holds the norm; slot 1 the coefficient.
    const sums = new DeviceSums(device, 2);
    try {
      for (const g of grads) sums.add(g, p);
      kernelsOn(device).clipCoefficient(sums.values.id, sums.values.offset, p, maxNorm);
      const coef = sums.values.alias([], [], sums.values.offset + 1);
      try {
        for (const g of grads) scaleInPlace(g, coef);
      } finally {
        coef.dispose();
      }
      return sums.values.alias([], [], sums.values.offset);
    } finally {
      sums.dispose();
    }
  });
}
