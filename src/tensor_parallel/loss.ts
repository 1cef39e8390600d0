/**
 * Cross-entropy over logits split by vocabulary ([..., V/tp] per rank), without gathering
 * them. Each rank runs the fused native cross-entropy kernel on its slice (targets outside the
 * slice point at column 0, a stand-in): that gives every row's local log-sum-exp and, where this
 * rank holds the target, the target's logit (lse - loss). One all-gather of those 2·rows numbers
 * lets every rank combine the full-vocabulary log-sum-exp and the loss. The backward is local:
 * the same kernel with the global log-sum-exp gives softmax - onehot on this rank's slice, and the
 * stand-in's onehot is added back for rows whose target lives elsewhere.
 *
 * Everything stays where the logits are: the slice test (vocab_range.ts), the statistics (in f64),
 * their all-gather, the combination and the count of targets not ignored are device tensors, so on
 * a GPU neither the forward nor the backward waits for the device.
 */
import type { ProcessGroup } from '../dist/process_group.ts';
import { native } from '../native.ts';
import { record } from '../ops/autograd_support.ts';
import { cast } from '../ops/elementwise.ts';
import * as k from '../ops/kernels.ts';
import type { CrossEntropyOptions } from '../ops/loss.ts';
import { statDType } from '../ops/nn_util.ts';
import { kernelsOn } from '../tensor/backend.ts';
import { dtypeCode } from '../tensor/dtype.ts';
import { contiguousStrides, fmt, sameShape } from '../tensor/shape.ts';
import type { Tensor } from '../tensor/tensor.ts';
import { LOCAL_IGNORE, vocabSliceIndex } from './vocab_range.ts';

/**
 * -log softmax(full logits)[target] per row, reduced as crossEntropy ('mean' over the targets
 * not ignored, 'sum', or 'none'). `logits` [..., V/tp] is this rank's vocabulary slice
 * [rank·V/tp, (rank+1)·V/tp); `targets` [...] are full-vocabulary ids, the same on every rank.
 * bf16/f16 logits are computed in f32 (the loss is f32; their gradient comes back in their dtype).
 * With 'mean' and every target ignored the loss is NaN (0 / 0) and the gradient zeros, as crossEntropy.
 * @example
 * const loss = vocabParallelCrossEntropy(lmHead.forward(h), targets, mesh.group('tp'));
 */
export function vocabParallelCrossEntropy(logits: Tensor, targets: Tensor, group: ProcessGroup, opts: CrossEntropyOptions = {}): Tensor {
  const what = 'vocabParallelCrossEntropy';
  const reduction = opts.reduction ?? 'mean';
  const ignoreIndex = opts.ignoreIndex ?? -100;
  if (!['mean', 'sum', 'none'].includes(reduction)) throw new Error(`${what}: reduction must be 'mean', 'sum' or 'none', got ${JSON.stringify(reduction)}`);
  if (!Number.isSafeInteger(ignoreIndex)) throw new Error(`${what}: ignoreIndex must be an integer, got ${ignoreIndex}`);
  // 16-bit logits are upcast first (as Megatron does): the loss and its statistics need f32.
  if (logits.dtype === 'bf16' || logits.dtype === 'f16') return vocabParallelCrossEntropy(cast(logits, 'f32'), targets, group, opts);
  if (logits.dtype !== 'f32' && logits.dtype !== 'f64') throw new Error(`${what}: logits must be a floating-point type, got ${logits.dtype}`);
  if (targets.dtype !== 'i32' && targets.dtype !== 'i64') throw new Error(`${what}: targets must be i32 or i64, got ${targets.dtype}`);
  if (logits.ndim < 1) throw new Error(`${what}: logits must be [..., V/tp], got a scalar`);
  const lead = logits.shape.slice(0, -1);
  if (!sameShape(lead, targets.shape)) throw new Error(`${what}: targets ${fmt(targets.shape)} must be logits ${fmt(logits.shape)} without the last dim, ${fmt(lead)}`);
  const Vl = logits.shape[logits.ndim - 1];
  const V = Vl * group.size;
  const rows = targets.numel;
  const dev = logits.device;
  const kern = kernelsOn(dev);
  // Local targets (the column in this slice, 0 as a stand-in when another rank holds it, -1 when
  // ignored) and f64 masks: held here, not ignored.
  const idx = vocabSliceIndex(targets, {
    start: group.rank * Vl,
    size: Vl,
    vocab: V,
    ignoreIndex,
    maskDType: 'f64',
    valid: true,
    device: dev,
    describe: (pos, t) => `${what}: target ${t} at flat position ${pos} is out of range for V = ${V} (${group.size} ranks x ${Vl}), ignoreIndex ${ignoreIndex}`,
  });
  // The outputs are contiguous in the targets' shape: flat [rows] views.
  const [local, here, valid] = [idx.local, idx.here, idx.valid as Tensor].map((t) => {
    const flat = t.alias([rows], [1], t.offset);
    t.dispose();
    return flat;
  });
  const xc = k.asContiguous(logits);
  const code = dtypeCode(logits.dtype);
  const idCode = dtypeCode('i32');
  const losses = k.empty([rows], logits.dtype, undefined, false, dev);
  const lse = k.empty([rows], statDType(logits.dtype), undefined, false, dev);
  // Targets were range-checked by vocabSliceIndex, so the device kernel (no count returned) does the same work.
  if (rows > 0) (dev === 'cpu' ? native.crossEntropyForward : kern.crossEntropyForwardDevice)(code, xc.id, xc.offset, rows, Vl, idCode, local.id, local.offset, LOCAL_IGNORE, losses.id, lse.id);
  const { lseGlobal, lossRows } = combineStats(lse, losses, here, valid, group);
  losses.dispose();
  lse.dispose();
  // mean = sum / count of targets not ignored, both device scalars (0 / 0 = NaN, as crossEntropy).
  const count = k.reduce(k.Reduce.sum, valid, [0]);
  let out64: Tensor;
  if (reduction === 'none') {
    out64 = lossRows.alias([...lead], contiguousStrides(lead), lossRows.offset);
  } else {
    const total = k.reduce(k.Reduce.sum, lossRows, [0]);
    out64 = reduction === 'mean' ? k.binary(k.Binary.div, total, count, what) : total;
    if (out64 !== total) total.dispose();
  }
  const out = k.copy(out64, logits.dtype);
  out64.dispose();
  lossRows.dispose();
  const result = record(what, [logits], out, (node) => {
    const sx = node.save(xc);
    const st = node.save(local);
    const sl = node.save(lseGlobal);
    // Rows whose target another rank holds: their stand-in column 0 gets g back in the backward.
    const awayT = k.binary(k.Binary.sub, valid, here, what);
    const away = k.copy(awayT, logits.dtype);
    awayT.dispose();
    const sa = node.save(away);
    away.dispose();
    // The backward divides by max(count, 1): an all-ignored batch reads no g, and 0 · g stays 0.
    const one = k.fill(k.empty([], 'f64', undefined, false, dev), 1);
    const denom64 = k.binary(k.Binary.max, count, one, what);
    const denomT = k.copy(denom64, logits.dtype);
    const sd = node.save(denomT);
    for (const t of [one, denom64, denomT]) t.dispose();
    return (g) => {
      const gc = g.dtype === logits.dtype ? k.asContiguous(g) : k.copy(g, logits.dtype);
      const gs = reduction === 'mean' ? k.binary(k.Binary.div, gc, sd, `${what} backward`) : gc;
      const dx = k.empty(logits.shape, logits.dtype, undefined, false, dev);
      if (rows > 0) {
        const gStride = reduction === 'none' ? 1 : 0;
        kern.crossEntropyBackward(code, sx.id, sx.offset, rows, Vl, idCode, st.id, st.offset, LOCAL_IGNORE, sl.id, gs.id, gs.offset, gStride, 1, dx.id);
        // The kernel subtracted g at the stand-in column 0 of rows whose target is elsewhere: add it back.
        const col0 = dx.alias([rows, 1], [Vl, 1], dx.offset);
        const gRows = gs.alias([gStride ? rows : 1, 1], [gStride, 1], gs.offset);
        const awayRows = sa.alias([rows, 1], [1, 1], sa.offset);
        const fix = k.binary(k.Binary.mul, awayRows, gRows, `${what} backward`);
        const sum = k.binary(k.Binary.add, col0, fix, `${what} backward`);
        k.copyInto(sum, col0);
        for (const x of [col0, gRows, awayRows, fix, sum]) x.dispose();
      }
      if (gs !== gc) gs.dispose();
      if (gc !== g) gc.dispose();
      return [dx.alias([...logits.shape], contiguousStrides(logits.shape), dx.offset)];
    };
  });
  for (const t of [here, valid, local, lseGlobal, count]) t.dispose();
  if (xc !== logits) xc.dispose();
  return result;
}

/**
 * Every rank's (local log-sum-exp, target logit where held) combined on the device, in f64: the
 * full-vocabulary log-sum-exp (in the kernels' statistics dtype, for the backward) and each row's
 * loss (f64, 0 for ignored rows).
 */
function combineStats(lse: Tensor, losses: Tensor, here: Tensor, valid: Tensor, group: ProcessGroup): { lseGlobal: Tensor; lossRows: Tensor } {
  const what = 'vocabParallelCrossEntropy';
  const rows = lse.numel;
  const dev = lse.device;
  // [local log-sum-exp ..., target logit here or 0 ...]: the kernels wrote lse = loss = 0 for ignored rows.
  const mine = k.empty([2 * rows], 'f64', 'comm', false, dev);
  const lseRow = mine.alias([rows], [1], mine.offset);
  const targetRow = mine.alias([rows], [1], mine.offset + rows);
  k.copyInto(lse, lseRow);
  const loss64 = k.copy(losses, 'f64');
  const diff = k.binary(k.Binary.sub, lseRow, loss64, what);
  // Keep diff where held, else 0: clamped to [lo, hi] = [-inf, inf] or [0, 0] (lo = log(1 - here)),
  // not multiplied by the mask, so a stand-in logit of -inf elsewhere cannot give 0 · inf = NaN.
  const one = k.fill(k.empty([], 'f64', undefined, false, dev), 1);
  const away = k.binary(k.Binary.sub, one, here, what);
  const lo = k.unary(k.Unary.log, away);
  const hi = k.unary(k.Unary.neg, lo);
  const floor = k.binary(k.Binary.max, diff, lo, what);
  const target = k.binary(k.Binary.min, floor, hi, what);
  k.copyInto(target, targetRow);
  for (const t of [lseRow, targetRow, loss64, diff, one, away, lo, hi, floor, target]) t.dispose();
  let all = mine;
  if (group.size > 1) {
    all = k.empty([group.size * 2 * rows], 'f64', 'comm', false, dev);
    group.allGather(all, mine);
    mine.dispose();
  }
  // [ranks, rows] views of the two halves.
  const lses = all.alias([group.size, rows], [2 * rows, 1], all.offset);
  const targets = all.alias([group.size, rows], [2 * rows, 1], all.offset + rows);
  const m = k.reduce(k.Reduce.max, lses, [0]);
  const shifted = k.binary(k.Binary.sub, lses, m, what);
  const e = k.unary(k.Unary.exp, shifted);
  const s = k.reduce(k.Reduce.sum, e, [0]);
  const logS = k.unary(k.Unary.log, s);
  const lse64 = k.binary(k.Binary.add, m, logS, what);
  const targetLogit = k.reduce(k.Reduce.sum, targets, [0]);
  const rowLoss = k.binary(k.Binary.sub, lse64, targetLogit, what);
  // Ignored rows: lse 0 on every rank gives log(ranks) - 0, finite, zeroed by the mask.
  const lossRows = k.binary(k.Binary.mul, rowLoss, valid, what);
  const lseGlobal = k.copy(lse64, lse.dtype);
  for (const t of [all, lses, targets, m, shifted, e, s, logS, lse64, targetLogit, rowLoss]) t.dispose();
  return { lseGlobal, lossRows };
}
