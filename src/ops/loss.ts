/**
 * Cross-entropy on a fused native log-softmax + negative log-likelihood kernel (native/cpu/loss.cc).
 * On CUDA the targets never go to the host: their range check and the count of targets not
 * ignored ('mean') stay on the device; a bad target is reported at the next synchronization
 * (tensor/device_checks.ts). There the logits' rows may lie at any pitch (a padded matmul
 * output, ops/row_pitch.ts: read in place, and the gradient written at the same padded pitch).
 */

import { deviceOf, kernelsOn, kernelsSay } from '../tensor/backend.ts';
import { deferIndexCheck } from '../tensor/device_checks.ts';
import { dtypeCode } from '../tensor/dtype.ts';
import { contiguousStrides, fmt, sameShape } from '../tensor/shape.ts';
import type { Tensor } from '../tensor/tensor.ts';
import { record } from './autograd_support.ts';
import * as k from './kernels.ts';
import { checkFloatArg, checkIndexArg, position, statDType } from './nn_util.ts';
import { alignedPitch, emptyPitched, rowPitchOf } from './row_pitch.ts';

export interface CrossEntropyOptions {
  /** 'mean' (default) divides by the number of targets that are not ignored; 'none' keeps one loss per target. */
  reduction?: 'mean' | 'sum' | 'none';
  /** Targets equal to this contribute no loss and no gradient. Default -100, as PyTorch. */
  ignoreIndex?: number;
}

const REDUCTIONS = ['mean', 'sum', 'none'];

/**
 * -log softmax(logits)[target] per row, with logits [..., C] and integer targets [...].
 * With 'mean' and every target ignored the result is NaN (0 / 0), as in PyTorch; the
 * gradient is then all zeros.
 * @example
 * const loss = crossEntropy(logits.view([-1, vocab]), targets.view([-1]));
 */
export function crossEntropy(logits: Tensor, targets: Tensor, opts: CrossEntropyOptions = {}): Tensor {
  checkFloatArg(logits, 'crossEntropy', 'logits');
  checkIndexArg(targets, 'crossEntropy', 'targets');
  const dev = deviceOf('crossEntropy', logits, targets);
  const reduction = opts.reduction ?? 'mean';
  const ignoreIndex = opts.ignoreIndex ?? -100;
  if (!REDUCTIONS.includes(reduction)) throw new Error(`crossEntropy: reduction must be 'mean', 'sum' or 'none', got ${JSON.stringify(reduction)}`);
  if (!Number.isSafeInteger(ignoreIndex)) throw new Error(`crossEntropy: ignoreIndex must be an integer, got ${ignoreIndex}`);
  if (logits.ndim < 1) throw new Error('crossEntropy: logits must be [..., C], got a scalar');
  const lead = logits.shape.slice(0, -1);
  if (!sameShape(lead, targets.shape)) {
    throw new Error(`crossEntropy: targets ${fmt(targets.shape)} must have the shape of logits ${fmt(logits.shape)} without its last (class) dim, ${fmt(lead)}`);
  }
  const C = logits.shape[logits.ndim - 1];
  const rows = targets.numel;
  const code = dtypeCode(logits.dtype);
  const idCode = dtypeCode(targets.dtype);
  // CUDA reads rows at their pitch (no copy of GPT-2's 823 MB of logits); the CPU takes dense rows.
  const pitch = dev !== 'cpu' && kernelsSay(dev, 'crossEntropyLd') ? rowPitchOf(logits) : -1;
  const xc = pitch > 0 ? logits : k.asContiguous(logits);
  const tc = k.asContiguous(targets);
  const losses = k.empty([rows], logits.dtype, undefined, false, dev);
  const lse = k.empty([rows], statDType(logits.dtype), undefined, false, dev);
  if (dev !== 'cpu') return crossEntropyOnDevice(logits, targets, xc, tc, losses, lse, reduction, ignoreIndex, pitch > 0 ? pitch : C);
  const count = kernelsOn(dev).crossEntropyForward(code, xc.id, xc.offset, rows, C, idCode, tc.id, tc.offset, ignoreIndex, losses.id, lse.id) as number;
  const cleanup = () => {
    if (xc !== logits) xc.dispose();
    if (tc !== targets) tc.dispose();
    lse.dispose();
  };
  if (count < 0) {
    const at = -count - 1;
    const value = tc.toList()[at];
    cleanup();
    losses.dispose();
    throw new Error(`crossEntropy: target ${value} at position ${position(at, targets.shape)} is out of range for C = ${C} classes (logits ${fmt(logits.shape)}, ignoreIndex ${ignoreIndex})`);
  }
  let out: Tensor;
  if (reduction === 'none') {
    out = losses.alias([...lead], contiguousStrides(lead), 0);
  } else {
    // 1/0 = Infinity makes an all-ignored mean 0 * Infinity = NaN, as in PyTorch.
    out = k.reduce(k.Reduce.sum, losses, [0], reduction === 'mean' ? 1 / count : 1);
  }
  losses.dispose();
  const scale = reduction === 'mean' && count > 0 ? 1 / count : 1;
  const result = record('crossEntropy', [logits], out, (node) => {
    const sx = node.save(xc);
    const st = node.save(tc);
    const sl = node.save(lse);
    return (g) => {
      const gc = g.dtype === logits.dtype ? k.asContiguous(g) : k.copy(g, logits.dtype);
      const dx = k.empty(logits.shape, logits.dtype, undefined, false, dev);
      kernelsOn(dev).crossEntropyBackward(code, sx.id, sx.offset, rows, C, idCode, st.id, st.offset, ignoreIndex, sl.id, gc.id, gc.offset, reduction === 'none' ? 1 : 0, scale, dx.id);
      if (gc !== g) gc.dispose();
      return [dx];
    };
  });
  cleanup();
  return result;
}

/**
 * The CUDA path: the range check writes a device flag, the count of targets not ignored stays a
 * device scalar that 'mean' divides by (forward and backward), so nothing synchronizes.
 */
function crossEntropyOnDevice(
  logits: Tensor, targets: Tensor, xc: Tensor, tc: Tensor, losses: Tensor, lse: Tensor,
  reduction: string, ignoreIndex: number, xLd: number,
): Tensor {
  const dev = logits.device;
  const kern = kernelsOn(dev);
  const lead = logits.shape.slice(0, -1);
  const C = logits.shape[logits.ndim - 1];
  const rows = targets.numel;
  const code = dtypeCode(logits.dtype);
  const idCode = dtypeCode(targets.dtype);
  const flag = k.empty([1], 'i64', 'other', false, dev);
  const count = k.empty([1], 'i64', 'other', false, dev);
  kern.indexCheck(idCode, tc.id, tc.offset, rows, C, ignoreIndex, flag.id, count.id);
  const tShape = [...targets.shape];
  const xShape = [...logits.shape];
  deferIndexCheck(flag, tc.alias(), (pos, value) =>
    `crossEntropy: target ${value} at position ${position(pos, tShape)} is out of range for C = ${C} classes (logits ${fmt(xShape)}, ignoreIndex ${ignoreIndex}; checked on ${dev}, reported at the next synchronization)`);
  // The gradient keeps a padded pitch (linear's backward passes it to cuBLASLt), or any pitch of
  // 16-byte rows up to 2C (a padded vocabulary's narrow hands it on whole, narrow_grad.ts); else dense.
  const aligned = xLd === alignedPitch(C, logits.dtype) || (xLd === alignedPitch(xLd, logits.dtype) && xLd <= 2 * C);
  const dxLd = xLd !== C && aligned ? xLd : C;
  const pitched = xLd !== C ? [xLd] : [];
  kern.crossEntropyForwardDevice(code, xc.id, xc.offset, rows, C, idCode, tc.id, tc.offset, ignoreIndex, losses.id, lse.id, ...pitched);
  // 'mean' divides by the count as a device scalar ([] view); 0 targets give 0 / 0 = NaN, as PyTorch.
  const counted = k.copy(count, logits.dtype);
  count.dispose();
  const denom = counted.alias([], [], counted.offset);
  counted.dispose();
  let out: Tensor;
  if (reduction === 'none') {
    out = losses.alias([...lead], contiguousStrides(lead), 0);
  } else {
    const total = k.reduce(k.Reduce.sum, losses, [0], 1);
    out = reduction === 'mean' ? k.binary(k.Binary.div, total, denom, 'crossEntropy') : total;
    if (out !== total) total.dispose();
  }
  losses.dispose();
  const result = record('crossEntropy', [logits], out, (node) => {
    const sx = node.save(xc);
    const st = node.save(tc);
    const sl = node.save(lse);
    const sd = node.save(denom);
    return (g) => {
      const gc = g.dtype === logits.dtype ? k.asContiguous(g) : k.copy(g, logits.dtype);
      // Ignored rows never read g, so an all-ignored mean (g / 0) still gives zeros.
      const gs = reduction === 'mean' ? k.binary(k.Binary.div, gc, sd, 'crossEntropy backward') : gc;
      const dx = dxLd === C ? k.empty(logits.shape, logits.dtype, undefined, false, dev) : emptyPitched(lead, C, dxLd, logits.dtype, dev);
      const pitches = xLd !== C ? [xLd, 0, dxLd] : [];
      kern.crossEntropyBackward(code, sx.id, sx.offset, rows, C, idCode, st.id, st.offset, ignoreIndex, sl.id, gs.id, gs.offset, reduction === 'none' ? 1 : 0, 1, dx.id, ...pitches);
      if (gs !== gc) gs.dispose();
      if (gc !== g) gc.dispose();
      return [dx];
    };
  });
  denom.dispose();
  if (xc !== logits) xc.dispose();
  if (tc !== targets) tc.dispose();
  lse.dispose();
  return result;
}
