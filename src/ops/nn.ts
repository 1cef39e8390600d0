/**
 * Neural-net ops on fused native kernels (native/cpu/softmax.cc, layernorm.cc): softmax and
 * log-softmax (with an optional input scale and causal mask), layer norm (its weight and bias
 * gradients added straight into their .grad where the engine offers it), dropout. Embedding,
 * cross-entropy and attention live in embedding.ts, loss.ts and attention.ts.
 */
import { GRAD_WRITTEN, heldSum, overlapsAny } from '../autograd/grad_into.ts';
import { deviceOf, kernelsOn, kernelsSay } from '../tensor/backend.ts';
import { dtypeCode } from '../tensor/dtype.ts';
import { takeDeviceCounters } from '../tensor/graph_rng.ts';
import { fmt, normDim, numel, sameShape } from '../tensor/shape.ts';
import type { Tensor } from '../tensor/tensor.ts';
import { record } from './autograd_support.ts';
import * as k from './kernels.ts';
import { checkFloatArg, statDType, swapped } from './nn_util.ts';

export interface SoftmaxOptions {
  /** Multiplies the input first: softmax(scale * x). Default 1. */
  scale?: number;
  /**
   * Treats x as attention scores [..., Tq, Tk] and lets query i see keys j <= i only (masked
   * entries get probability 0, log-probability -inf). Only with dim -1.
   */
  causal?: boolean;
}

/** `g` in `dtype`, contiguous: `g` itself when it already is. */
function contiguousAs(g: Tensor, dtype: Tensor['dtype']): Tensor {
  return g.dtype === dtype ? k.asContiguous(g) : k.copy(g, dtype);
}

function softmaxOp(op: 'softmax' | 'logSoftmax', x: Tensor, dim: number, opts: SoftmaxOptions): Tensor {
  checkFloatArg(x, op, 'x');
  if (x.ndim === 0) throw new Error(`${op}: needs a tensor of rank >= 1, got a scalar`);
  const d = normDim(dim, x.ndim, op);
  const scale = opts.scale ?? 1;
  const causal = opts.causal ?? false;
  if (typeof scale !== 'number' || !Number.isFinite(scale)) throw new Error(`${op}: scale must be a finite number, got ${scale}`);
  if (typeof causal !== 'boolean') throw new Error(`${op}: causal must be a boolean, got ${causal}`);
  const last = x.ndim - 1;
  if (causal && (d !== last || x.ndim < 2)) {
    throw new Error(`${op}: a causal mask needs scores [..., Tq, Tk] and dim -1, got dim ${dim} of ${fmt(x.shape)}`);
  }
  const log = op === 'logSoftmax';
  const code = dtypeCode(x.dtype);
  const cols = x.shape[d];
  const rows = cols === 0 ? 0 : x.numel / cols;
  const causalRows = causal ? x.shape[x.ndim - 2] : 0;
  // The kernel works on contiguous rows of the last dim; another dim is swapped there and back.
  const xv = d === last ? x : swapped(x, d, last);
  const src = k.asContiguous(xv);
  const y = k.empty(src.shape, x.dtype, undefined, false, x.device);
  kernelsOn(x.device).softmaxForward(code, src.id, src.offset, y.id, 0, rows, cols, log, causalRows, scale);
  if (src !== xv) src.dispose();
  if (xv !== x) xv.dispose();
  let out = y;
  if (d !== last) {
    const back = swapped(y, d, last);
    out = k.copy(back);
    back.dispose();
  }
  const result = record(op, [x], out, (node) => {
    const sy = node.save(y);
    // Backward must not read x's storage: x is not saved and may be freed by then (a pipeline stage's forward scope).
    const dev = x.device;
    return (g) => {
      const gv = d === last ? g : swapped(g, d, last);
      const gc = contiguousAs(gv, x.dtype);
      const dx = k.empty(gc.shape, x.dtype, undefined, false, dev);
      kernelsOn(dev).softmaxBackward(code, sy.id, sy.offset, gc.id, gc.offset, dx.id, 0, rows, cols, log, causalRows, scale);
      if (gc !== gv) gc.dispose();
      if (gv !== g) gv.dispose();
      if (d === last) return [dx];
      const back = swapped(dx, d, last);
      const r = k.copy(back);
      back.dispose();
      dx.dispose();
      return [r];
    };
  });
  if (y !== out) y.dispose();
  return result;
}

/**
 * exp(x) / sum(exp(x)) along `dim`, computed stably (the row max is subtracted first).
 * @example
 * const p = softmax(logits);                                   // over the last dim
 * const attn = softmax(scores, -1, { scale: 0.125, causal: true });
 */
export function softmax(x: Tensor, dim = -1, opts: SoftmaxOptions = {}): Tensor {
  return softmaxOp('softmax', x, dim, opts);
}

/** log(softmax(x)) along `dim`, computed as x - logsumexp(x) (no log of 0 for tiny probabilities). */
export function logSoftmax(x: Tensor, dim = -1, opts: SoftmaxOptions = {}): Tensor {
  return softmaxOp('logSoftmax', x, dim, opts);
}

function checkAffine(t: Tensor | null | undefined, what: string, x: Tensor, ns: readonly number[]): Tensor | null {
  if (t === null || t === undefined) return null;
  checkFloatArg(t, 'layerNorm', what);
  if (!sameShape(t.shape, ns)) throw new Error(`layerNorm: ${what} ${fmt(t.shape)} must have the normalized shape ${fmt(ns)}`);
  if (t.dtype !== x.dtype) throw new Error(`layerNorm: ${what} is ${t.dtype}, x is ${x.dtype}; cast one with .to()`);
  return t;
}

/**
 * Normalizes over the trailing dims `normalizedShape` to mean 0 and variance 1 (biased
 * variance, as PyTorch), then applies the optional elementwise weight and bias.
 * @example
 * const h = layerNorm(x, [768], ln.weight, ln.bias);   // x [batch, seq, 768]
 */
export function layerNorm(
  x: Tensor,
  normalizedShape: number | readonly number[],
  weight: Tensor | null = null,
  bias: Tensor | null = null,
  eps = 1e-5,
): Tensor {
  checkFloatArg(x, 'layerNorm', 'x');
  const ns = typeof normalizedShape === 'number' ? [normalizedShape] : normalizedShape;
  if (!Array.isArray(ns) || ns.length === 0 || !ns.every((s) => Number.isInteger(s) && s > 0)) {
    throw new Error(`layerNorm: normalizedShape must be a positive integer or a non-empty array of them, got ${JSON.stringify(normalizedShape)}`);
  }
  if (ns.length > x.ndim || !ns.every((s, i) => x.shape[x.ndim - ns.length + i] === s)) {
    throw new Error(`layerNorm: normalizedShape ${fmt(ns)} does not match the last dims of x ${fmt(x.shape)}`);
  }
  checkAffine(weight, 'weight', x, ns);
  checkAffine(bias, 'bias', x, ns);
  if (typeof eps !== 'number' || !Number.isFinite(eps) || eps <= 0) throw new Error(`layerNorm: eps must be a finite number > 0, got ${eps}`);

  const dev = deviceOf('layerNorm', x, weight, bias);
  const kern = kernelsOn(dev);
  const code = dtypeCode(x.dtype);
  const cols = numel(ns);
  const rows = x.numel / cols;
  const xc = k.asContiguous(x);
  const wc = weight ? k.asContiguous(weight) : null;
  const bc = bias ? k.asContiguous(bias) : null;
  const y = k.empty(x.shape, x.dtype, undefined, false, dev);
  const mean = k.empty([rows], statDType(x.dtype), undefined, false, dev);
  const rstd = k.empty([rows], statDType(x.dtype), undefined, false, dev);
  kern.layerNormForward(code, xc.id, xc.offset, wc?.id ?? 0, wc?.offset ?? 0, bc?.id ?? 0, bc?.offset ?? 0, y.id, 0, mean.id, rstd.id, rows, cols, eps);
  const out = record('layerNorm', [x, weight, bias], y, (node) => {
    const sx = node.save(xc);
    const sw = wc ? node.save(wc) : null;
    const sm = node.save(mean);
    const sr = node.save(rstd);
    const needX = x.requiresGrad;
    const needW = weight?.requiresGrad ?? false;
    const needB = bias?.requiresGrad ?? false;
    // Addons that take the parameter gradients' offsets can add them into the leaves' .grad, and
    // (layerNormDxInto) x's gradient into the one the engine holds for it (a residual's sum).
    node.writesGradInto = kernelsSay(dev, 'layerNormGradInto');
    const dxAdds = kernelsSay(dev, 'layerNormDxInto');
    return (g, into) => {
      const gc = contiguousAs(g, x.dtype);
      const reads = [gc, sx, sw];
      // x's held gradient: added into where it is ours alone; where another handle reads it
      // (shared), a copy of it is added into and returned as the whole sum (heldSum).
      const held = needX && dxAdds && into[0] && into[0].grad.dtype === x.dtype ? into[0] : null;
      const xInto = held && !held.shared && !overlapsAny(held.grad, reads) ? held.grad : null;
      const sumCopy = held?.shared ? k.copy(held.grad) : null;
      const wInto = needW && into[1] && !into[1].shared && !overlapsAny(into[1].grad, reads) ? into[1].grad : null;
      const bInto = needB && into[2] && !into[2].shared && !overlapsAny(into[2].grad, reads) ? into[2].grad : null;
      const dx = needX ? (xInto ?? sumCopy ?? k.empty(x.shape, x.dtype, undefined, false, dev)) : null;
      const dw = needW ? (wInto ?? k.empty(ns, x.dtype, undefined, false, dev)) : null;
      const db = needB ? (bInto ?? k.empty(ns, x.dtype, undefined, false, dev)) : null;
      // Written out, not spread (an array and an iterator per call); dx, dw and db are added into
      // (.grad or the held gradient written into) only where flagged, at their offsets (0 for fresh ones).
      kern.layerNormBackward(
        code, sx.id, sx.offset, sw?.id ?? 0, sw?.offset ?? 0, sm.id, sr.id, gc.id, gc.offset, dx?.id ?? 0, dw?.id ?? 0, db?.id ?? 0, rows, cols,
        dw?.offset ?? 0, db?.offset ?? 0, wInto !== null, bInto !== null, dx?.offset ?? 0, xInto !== null || sumCopy !== null,
      );
      if (gc !== g) gc.dispose();
      const gx = xInto ? GRAD_WRITTEN : sumCopy ? heldSum(sumCopy) : dx;
      return [gx, wInto ? GRAD_WRITTEN : dw, bInto ? GRAD_WRITTEN : db];
    };
  });
  for (const t of [xc, wc, bc]) if (t && t !== x && t !== weight && t !== bias) t.dispose();
  mean.dispose();
  rstd.dispose();
  return out;
}

export interface DropoutOptions {
  /**
   * x is elements [start, start + x.numel) (row-major) of a full tensor of `total` elements:
   * the mask is exactly that slice of the full tensor's mask, so a shard drops what the
   * unsharded tensor would. The generator advances by `total`.
   */
  shard?: { start: number; total: number };
}

/**
 * Zeroes each element with probability p and scales the rest by 1/(1-p) (identity when not
 * training or p = 0). The mask comes from the seeded counter-based generator, so the same
 * seed gives the same mask, and checkpoint's recomputation replays it.
 * @example
 * const h = dropout(x, 0.1, model.training);
 */
export function dropout(x: Tensor, p: number, training = true, opts: DropoutOptions = {}): Tensor {
  checkFloatArg(x, 'dropout', 'x');
  if (typeof p !== 'number' || !Number.isFinite(p) || p < 0 || p >= 1) throw new Error(`dropout: p must be a number in [0, 1), got ${p}`);
  if (typeof training !== 'boolean') throw new Error(`dropout: training must be a boolean, got ${training}`);
  const shard = opts.shard;
  if (shard !== undefined) {
    const { start, total } = shard;
    if (!Number.isSafeInteger(start) || !Number.isSafeInteger(total) || start < 0 || start + x.numel > total) {
      throw new Error(`dropout: shard {start: ${start}, total: ${total}} does not hold x ${fmt(x.shape)} (${x.numel} elements)`);
    }
  }
  if (!training || p === 0) return x;
  // Inside a CUDA graph on x's device, offset is relative to the device's generator base (graph_rng.ts).
  const { seed, offset, base } = takeDeviceCounters(shard?.total ?? x.numel, x.device);
  const mask = k.random(k.Random.dropoutMask, k.empty(x.shape, x.dtype, undefined, false, x.device), seed, offset, shard?.start ?? 0, p, 0, base);
  const out = k.binary(k.Binary.mul, x, mask, 'dropout');
  const result = record('dropout', [x], out, (node) => {
    const sm = node.save(mask);
    return (g) => [k.binary(k.Binary.mul, g.dtype === x.dtype ? g : k.copy(g, x.dtype), sm, 'dropout')];
  });
  mask.dispose();
  return result;
}
