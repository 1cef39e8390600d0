/**
 * Batch normalization over the channels of [N, C, H, W] activations (PyTorch's batch_norm):
 * training normalizes with the batch statistics and updates the running ones in place;
 * evaluation normalizes with the running statistics. Channels-last inputs stay channels-last.
 * batchNorm2dRelu adds ResNet's ReLU (and residual) after it, fused into the kernels on CUDA.
 */

import { deviceOf, kernelsOn, kernelsSay } from '../tensor/backend.ts';
import { type DType, dtypeCode } from '../tensor/dtype.ts';
import { fmt } from '../tensor/shape.ts';
import type { Tensor } from '../tensor/tensor.ts';
import { record } from './autograd_support.ts';
import { add, relu } from './elementwise.ts';
import * as k from './kernels.ts';
import { asLayoutOf, checkImage, isChannelsLast, sameLayout } from './nchw.ts';
import { statDType } from './nn_util.ts';

export interface BatchNormOptions {
  /** Batch statistics (and running-statistics updates) when true; running statistics when false. */
  training: boolean;
  /** Weight of the new batch statistic in the running average (default 0.1). */
  momentum?: number;
  /** Added to the variance before the square root (default 1e-5). */
  eps?: number;
  /**
   * An i64 scalar that training adds 1 to (PyTorch's num_batches_tracked); on CUDA inside the
   * statistics launch, with no launch of its own. Ignored when evaluating.
   */
  numBatchesTracked?: Tensor | null;
}

function checkChannelVector(t: Tensor | null, name: string, x: Tensor, S: DType): void {
  if (!t) return;
  const C = x.shape[1];
  if (t.ndim !== 1 || t.shape[0] !== C) throw new Error(`batchNorm2d: ${name} ${fmt(t.shape)} should be [${C}] for x ${fmt(x.shape)}`);
  if (t.dtype !== x.dtype && t.dtype !== S) throw new Error(`batchNorm2d: ${name} is ${t.dtype}, x is ${x.dtype}`);
}

/** `t` as a contiguous `dtype` vector (itself when it already is one); `owned` collects copies. */
function asStat(t: Tensor | null, dtype: DType, owned: Tensor[]): Tensor | null {
  if (!t || (t.dtype === dtype && t.isContiguous)) return t;
  const c = k.copy(t, dtype);
  owned.push(c);
  return c;
}

/**
 * The dtype the kernels read weight and bias in: their own 16-bit one where the kernel table reads
 * it directly (CUDA: no cast copies each step, gradients written in it), else the statistics'.
 */
function affineDType(direct: boolean, weight: Tensor | null, bias: Tensor | null, S: DType): DType {
  const d = (weight ?? bias)?.dtype ?? S;
  if (d === S || (weight && bias && weight.dtype !== bias.dtype)) return S;
  return direct ? d : S;
}

function checkCounter(n: Tensor | null | undefined): void {
  if (n && (n.dtype !== 'i64' || n.numel !== 1)) throw new Error(`batchNorm2d: numBatchesTracked must be one i64 value, got ${n.dtype} ${fmt(n.shape)}`);
}

/** n += 1 on n's device, through f64 (exact below 2^53; n.item() would wait for the device). */
function countBatch(n: Tensor): void {
  const f = k.copy(n, 'f64');
  const g = k.unary(k.Unary.addScalar, f, 1);
  k.copyInto(g, n);
  f.dispose();
  g.dispose();
}

/**
 * y = (x − mean) / sqrt(var + eps) · weight + bias per channel of x [N, C, H, W].
 * Training updates runningMean and runningVar in place (the variance with the unbiased batch
 * estimate, as PyTorch); evaluation needs them. weight, bias and the running statistics are
 * [C] of x's dtype or f32 (f64 for f64 inputs); any of them may be null. The math is f32 (f64)
 * either way; 16-bit weight and bias are read as they are on CUDA and their gradients rounded
 * once to f32, then to their dtype, as a cast before and after would.
 * @example
 * const y = batchNorm2d(x, runMean, runVar, gamma, beta, { training: true });
 */
export function batchNorm2d(
  x: Tensor,
  runningMean: Tensor | null,
  runningVar: Tensor | null,
  weight: Tensor | null,
  bias: Tensor | null,
  opts: BatchNormOptions,
): Tensor {
  return normalize(x, runningMean, runningVar, weight, bias, opts, null);
}

export interface BatchNormReluOptions extends BatchNormOptions {
  /** Added to the normalized values before the ReLU (ResNet's shortcut): x's shape, dtype and device. */
  residual?: Tensor | null;
}

/**
 * relu(batchNorm2d(x, ...) + residual), the residual optional: ResNet's BN → ReLU and, at a
 * block's end, BN → add → ReLU. On CUDA (native flag batchNormRelu) one op: batch norm's own
 * launches write the ReLU's output, rounded where the separate ops round (bit for bit theirs),
 * and its backward masks the incoming gradient by output > 0 inside batch norm's passes, from the
 * saved output as ReLU's own backward would. Elsewhere, or with a residual in another layout than
 * x's, the separate ops run.
 * @example
 * const h = batchNorm2dRelu(x, runMean, runVar, gamma, beta, { training: true });
 * const out = batchNorm2dRelu(y, rm, rv, g2, b2, { training: true, residual: h });
 */
export function batchNorm2dRelu(
  x: Tensor,
  runningMean: Tensor | null,
  runningVar: Tensor | null,
  weight: Tensor | null,
  bias: Tensor | null,
  opts: BatchNormReluOptions,
): Tensor {
  const residual = opts?.residual ?? null;
  if (fusable(x, residual)) return normalize(x, runningMean, runningVar, weight, bias, opts, { residual });
  const y = batchNorm2d(x, runningMean, runningVar, weight, bias, opts);
  return relu(residual ? add(y, residual) : y);
}

/** The fused kernels take x dense (NCHW or channels-last) and the residual in x's very layout. */
function fusable(x: Tensor, r: Tensor | null): boolean {
  if (x.device === 'cpu' || !kernelsSay(x.device, 'batchNormRelu')) return false;
  if (!denseImage(x)) return false;
  if (!r) return true;
  return r.device === x.device && r.dtype === x.dtype && denseImage(r) && sameLayout(r, x);
}

/** NCHW-contiguous or channels-last. */
function denseImage(t: Tensor): boolean {
  return t.isContiguous || isChannelsLast(t.shape, t.strides);
}

/** What batchNorm2d does, with the ReLU (and the residual) fused in when `fuse` is given. */
function normalize(
  x: Tensor,
  runningMean: Tensor | null,
  runningVar: Tensor | null,
  weight: Tensor | null,
  bias: Tensor | null,
  opts: BatchNormOptions,
  fuse: { residual: Tensor | null } | null,
): Tensor {
  checkImage(x, 'batchNorm2d');
  const dev = deviceOf('batchNorm2d', x, runningMean, runningVar, weight, bias, opts?.numBatchesTracked);
  const kern = kernelsOn(dev);
  if (!opts || typeof opts.training !== 'boolean') throw new Error('batchNorm2d: options need `training: true | false`');
  const momentum = opts.momentum ?? 0.1;
  const eps = opts.eps ?? 1e-5;
  if (!(momentum >= 0 && momentum <= 1)) throw new Error(`batchNorm2d: momentum must be in [0, 1], got ${momentum}`);
  if (!(eps >= 0) || !Number.isFinite(eps)) throw new Error(`batchNorm2d: eps must be a non-negative number, got ${eps}`);
  const S = statDType(x.dtype);
  checkChannelVector(runningMean, 'runningMean', x, S);
  checkChannelVector(runningVar, 'runningVar', x, S);
  checkChannelVector(weight, 'weight', x, S);
  checkChannelVector(bias, 'bias', x, S);
  if (!runningMean !== !runningVar) throw new Error('batchNorm2d: give both runningMean and runningVar, or neither');
  if (!opts.training && !runningMean) throw new Error(`batchNorm2d: evaluation (training: false) needs runningMean and runningVar, x ${fmt(x.shape)}`);
  const [N, C, H, W] = x.shape;
  if (opts.training && N * H * W <= 1) {
    throw new Error(`batchNorm2d: training needs more than one value per channel, got x ${fmt(x.shape)}`);
  }
  checkCounter(opts.numBatchesTracked);
  if (runningMean?.requiresGrad) throw new Error('batchNorm2d: runningMean must not require grad');
  if (runningVar?.requiresGrad) throw new Error('batchNorm2d: runningVar must not require grad');

  const owned: Tensor[] = [];
  // The kernels take NCHW-contiguous or channels-last; any other layout is copied to NCHW.
  const contiguous = x.isContiguous;
  const last = !contiguous && isChannelsLast(x.shape, x.strides);
  const xs = contiguous || last ? x : k.copy(x);
  if (xs !== x) owned.push(xs);
  // The [outer, C, inner] view the native kernels take (x's own layout when it is dense).
  const outer = last ? N * H * W : N;
  const inner = last ? 1 : H * W;
  const direct = kernelsSay(dev, 'batchNormAffine16');
  const A = affineDType(direct, weight, bias, S);
  const w = asStat(weight, A, owned);
  const b = asStat(bias, A, owned);
  const rm = asStat(runningMean, S, owned);
  const rv = asStat(runningVar, S, owned);
  const mean = k.empty([C], S, undefined, false, dev);
  const invstd = k.empty([C], S, undefined, false, dev);
  owned.push(mean, invstd);
  const out = k.emptyLike(xs);
  const counter = opts.training ? (opts.numBatchesTracked ?? null) : null;
  const res = fuse?.residual ?? null;
  const code = dtypeCode(x.dtype);
  // The whole argument list every time: the CPU binding reads the first 23 and the CUDA one takes
  // id 0 for an absent counter or residual and the statistics' dtype as A when batchNormAffine16 is
  // masked (f32 weights and no counter: bench/gpu_resnet_copies.ts). Written out, not spread (a
  // spread call costs an iterator per array).
  const cId = direct ? id(counter) : 0;
  const cOff = direct ? off(counter) : 0;
  kern.batchNormForward(
    code, xs.id, xs.offset, out.id, out.offset, outer, C, inner, id(w), off(w), id(b), off(b), mean.id, mean.offset, invstd.id, invstd.offset,
    id(rm), off(rm), id(rv), off(rv), opts.training, momentum, eps, dtypeCode(A), cId, cOff, fuse !== null, id(res), off(res),
  );
  if (counter && !direct) countBatch(counter);
  // Running statistics kept in another dtype or layout get the updated values back.
  if (opts.training) {
    if (rm && runningMean && rm !== runningMean) k.copyInto(rm, runningMean);
    if (rv && runningVar && rv !== runningVar) k.copyInto(rv, runningVar);
  }
  const training = opts.training;
  const inputs = res ? [x, weight, bias, res] : [x, weight, bias];
  const result = record(fuse ? 'batchNorm2dRelu' : 'batchNorm2d', inputs, out, (node) => {
    const sx = node.save(xs);
    const sMean = node.save(mean);
    const sInvstd = node.save(invstd);
    const sw = w ? node.save(w) : null;
    // The ReLU's mask comes from the output, as relu's backward takes it: nothing else is kept.
    const sy = fuse ? node.save(out) : null;
    return (g) => {
      const gs = asLayoutOf(g, sx);
      const gx = x.requiresGrad ? k.emptyLike(sx) : null;
      const gw = weight?.requiresGrad ? k.empty([C], A, undefined, false, dev) : null;
      const gb = bias?.requiresGrad ? k.empty([C], A, undefined, false, dev) : null;
      const gr = res?.requiresGrad ? k.emptyLike(sx) : null;
      kern.batchNormBackward(
        code, gs.id, gs.offset, sx.id, sx.offset, sMean.id, sMean.offset, sInvstd.id, sInvstd.offset, id(sw), off(sw), id(gx), off(gx), id(gw), off(gw),
        id(gb), off(gb), outer, C, inner, training, dtypeCode(A), id(sy), off(sy), id(gr), off(gr),
      );
      if (gs !== g) gs.dispose();
      const grads = [gx, castTo(gw, weight), castTo(gb, bias)];
      return res ? [...grads, gr] : grads;
    };
  });
  for (const t of owned) t.dispose();
  return result;
}

/** A tensor argument's storage id, 0 for none. */
function id(t: Tensor | null): number {
  return t ? t.id : 0;
}

/** A tensor argument's element offset, 0 for none. */
function off(t: Tensor | null): number {
  return t ? t.offset : 0;
}

/** g in p's dtype (g itself when it already is). */
function castTo(g: Tensor | null, p: Tensor | null): Tensor | null {
  if (!g || !p || g.dtype === p.dtype) return g;
  const c = k.copy(g, p.dtype);
  g.dispose();
  return c;
}
