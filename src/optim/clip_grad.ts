/** Global-norm gradient clipping, as torch.nn.utils.clip_grad_norm_. */
import { noGrad } from '../autograd/grad_mode.ts';
import * as k from '../ops/kernels.ts';
import { kernelsOn } from '../tensor/backend.ts';
import { dtypeCode } from '../tensor/dtype.ts';
import type { Device } from '../tensor/storage.ts';
import { Tensor } from '../tensor/tensor.ts';
import { checkKeys } from './checks.ts';
import { withDeviceSums } from './device_sums.ts';

export interface ClipGradNormOptions {
  /** The norm's order: a positive number or Infinity / 'inf' (max |g|). Default 2. */
  normType?: number | 'inf';
  /** Throw when the total norm is NaN or infinite (default false: return it, grads untouched). */
  errorIfNonfinite?: boolean;
}

/**
 * Computes the norm of all gradients together (as if concatenated) and, when it exceeds
 * `maxNorm`, scales every gradient in place by `maxNorm / (norm + 1e-6)` (PyTorch's rule: the
 * scale applies when that factor is below 1). Returns the total norm before clipping.
 *
 * The norm is reduced natively in double precision for every dtype, accumulated on the
 * gradients' device and read once per device (one host wait on a GPU, not one per tensor).
 * Parameters without a gradient are skipped; with none at all the norm is 0. A NaN or infinite norm is returned
 * and the gradients are left as they are (PyTorch would multiply them by NaN); with
 * `errorIfNonfinite` it throws instead.
 * @example
 * loss.backward();
 * const norm = clipGradNorm(model.parameters(), 1.0);
 * opt.step();
 */
export function clipGradNorm(params: Tensor | Iterable<Tensor>, maxNorm: number, opts: ClipGradNormOptions = {}): number {
  const { p, grads } = clipArgs(params, maxNorm, opts, 'clipGradNorm');
  if (grads.length === 0) return 0;

  const acc = localNormPow(grads, p);
  const total = p === Number.POSITIVE_INFINITY || p === 1 ? acc : p === 2 ? Math.sqrt(acc) : acc ** (1 / p);

  if (!Number.isFinite(total)) {
    if (opts.errorIfNonfinite) {
      throw new Error(`clipGradNorm: the total norm of order ${p} of the gradients is ${total}; the gradients cannot be clipped`);
    }
    return total;
  }
  scaleToMaxNorm(grads, total, maxNorm);
  return total;
}

/** The clippers' checked arguments: the norm's order and the gradients present (params without one skipped). */
export function clipArgs(
  params: Tensor | Iterable<Tensor>,
  maxNorm: number,
  opts: ClipGradNormOptions,
  where: string,
): { p: number; list: Tensor[]; grads: Tensor[] } {
  checkKeys(opts, ['normType', 'errorIfNonfinite'], where);
  if (typeof maxNorm !== 'number' || !Number.isFinite(maxNorm) || maxNorm < 0) {
    throw new Error(`${where}: maxNorm must be a finite number >= 0, got ${String(maxNorm)}`);
  }
  const p = opts.normType === 'inf' ? Number.POSITIVE_INFINITY : (opts.normType ?? 2);
  if (typeof p !== 'number' || Number.isNaN(p) || p <= 0) {
    throw new Error(`${where}: normType must be a positive number or 'inf', got ${String(opts.normType)}`);
  }
  const list = params instanceof Tensor ? [params] : [...params];
  const grads: Tensor[] = [];
  list.forEach((t, i) => {
    if (!(t instanceof Tensor)) throw new Error(`${where}: params[${i}] is not a Tensor`);
    if (t.grad && !t.grad.disposed) grads.push(t.grad);
  });
  return { p, list, grads };
}

/**
 * PyTorch's clipping rule given the total norm: every gradient scaled in place by
 * `maxNorm / (total + 1e-6)` when that is below 1; a NaN or infinite total leaves them as they are.
 * The one place the rule lives, for every clipper (plain, tensor-parallel, pipeline, ZeRO partitions).
 */
export function scaleToMaxNorm(grads: Iterable<Tensor>, total: number, maxNorm: number): void {
  const coef = clipFactor(total, maxNorm);
  if (coef < 1) noGrad(() => {
    for (const g of grads) scaleInPlace(g, coef);
  });
}

/**
 * The factor PyTorch's rule multiplies the gradients by given their total norm: `maxNorm / (total
 * + 1e-6)` when that is below 1, else 1 (also for a NaN or infinite total). Fused optimizer steps
 * take it as part of their `gradScale` instead of the gradients being scaled in place.
 * @example
 * const gradScale = (1 / lossScale) * clipFactor(unscaledNorm, 1.0);
 */
export function clipFactor(total: number, maxNorm: number): number {
  if (!Number.isFinite(total)) return 1;
  return Math.min(1, maxNorm / (total + 1e-6));
}

/**
 * Σ |g|^p over every gradient (p = Infinity: max |g|), in double: accumulated on each device the
 * gradients are on (DeviceSums) and read once per device, in the order given (on the CPU bit for
 * bit the per-tensor sums added in turn). NaN propagates.
 */
export function localNormPow(grads: Tensor[], p: number): number {
  const byDevice = new Map<Device, Tensor[]>();
  for (const g of grads) {
    const list = byDevice.get(g.device);
    if (list) list.push(g);
    else byDevice.set(g.device, [g]);
  }
  const isMax = p === Number.POSITIVE_INFINITY;
  let acc = 0;
  for (const [device, list] of byDevice) {
    const [v] = withDeviceSums(device, 1, (s) => {
      for (const g of list) s.add(g, p);
      return s.read();
    });
    acc = isMax ? (Number.isNaN(v) || v > acc ? v : acc) : acc + v;
  }
  return acc;
}

/**
 * `g *= s` in place (any layout). `s` may be a one-element f64 tensor on g's device, read there by
 * the same kernel (no host read); a device scalar of exactly 1 leaves g as it is, unwritten.
 */
export function scaleInPlace(g: Tensor, s: number | Tensor): void {
  if (!g.isContiguous) {
    // Scaled in a contiguous copy in place, so a device 1 leaves the copy's bits, and g's, as they are.
    const c = k.copy(g);
    scaleInPlace(c, s);
    k.copyInto(c, g);
    c.dispose();
    return;
  }
  const kern = kernelsOn(g.device);
  const d = dtypeCode(g.dtype);
  if (typeof s === 'number') kern.unary(k.Unary.mulScalar, d, g.id, g.offset, g.id, g.offset, g.numel, s);
  else kern.unary(k.Unary.mulScalar, d, g.id, g.offset, g.id, g.offset, g.numel, 0, s.id, k.deviceScalar(s, g, 'scaleInPlace'));
}
