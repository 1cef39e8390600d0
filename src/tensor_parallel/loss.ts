/**
 * Cross-entropy over logits split by vocabulary ([..., V/tp] per rank), without gathering
 * them: the row maxima are all-reduced (max), then Σexp(x - max) and the target's logit
 * (held by one rank) are all-reduced (sum) together. The result is the full-vocabulary loss on
 * every rank, and the backward is local: softmax - onehot on this rank's slice.
 */
import type { ProcessGroup } from '../dist/process_group.ts';
import { record } from '../ops/autograd_support.ts';
import { tensor } from '../ops/create.ts';
import type { CrossEntropyOptions } from '../ops/loss.ts';
import { fmt, sameShape } from '../tensor/shape.ts';
import type { Tensor } from '../tensor/tensor.ts';

/**
 * -log softmax(full logits)[target] per row, reduced as crossEntropy ('mean' over the targets
 * not ignored, 'sum', or 'none'). `logits` [..., V/tp] is this rank's vocabulary slice
 * [rank·V/tp, (rank+1)·V/tp); `targets` [...] are full-vocabulary ids, the same on every rank.
 * @example
 * const loss = vocabParallelCrossEntropy(lmHead.forward(h), targets, mesh.group('tp'));
 */
export function vocabParallelCrossEntropy(logits: Tensor, targets: Tensor, group: ProcessGroup, opts: CrossEntropyOptions = {}): Tensor {
  const what = 'vocabParallelCrossEntropy';
  const reduction = opts.reduction ?? 'mean';
  const ignoreIndex = opts.ignoreIndex ?? -100;
  if (!['mean', 'sum', 'none'].includes(reduction)) throw new Error(`${what}: reduction must be 'mean', 'sum' or 'none', got ${JSON.stringify(reduction)}`);
  if (logits.dtype !== 'f32' && logits.dtype !== 'f64') throw new Error(`${what}: logits must be f32 or f64, got ${logits.dtype}`);
  if (targets.dtype !== 'i32' && targets.dtype !== 'i64') throw new Error(`${what}: targets must be i32 or i64, got ${targets.dtype}`);
  if (logits.ndim < 1) throw new Error(`${what}: logits must be [..., V/tp], got a scalar`);
  const lead = logits.shape.slice(0, -1);
  if (!sameShape(lead, targets.shape)) throw new Error(`${what}: targets ${fmt(targets.shape)} must be logits ${fmt(logits.shape)} without the last dim, ${fmt(lead)}`);
  const Vl = logits.shape[logits.ndim - 1];
  const V = Vl * group.size;
  const start = group.rank * Vl;
  const rows = targets.numel;
  const x = logits.toArray() as Float32Array | Float64Array;
  const t = Array.from(targets.toArray(), Number);
  // Row maxima over the whole vocabulary (only for stability: the loss does not depend on them).
  const max = tensor(Array.from({ length: rows }, (_, i) => {
    let m = -Infinity;
    for (let j = 0; j < Vl; j++) m = Math.max(m, x[i * Vl + j]);
    return m;
  }), { dtype: 'f64' });
  group.allReduce(max, 'max');
  const mx = max.toArray() as Float64Array;
  // [Σexp(x - max) over the slice ..., target logit - max where this rank holds it ...], summed.
  const stats = new Float64Array(2 * rows);
  let count = 0;
  for (let i = 0; i < rows; i++) {
    if (t[i] === ignoreIndex) continue;
    if (!(t[i] >= 0 && t[i] < V)) throw new Error(`${what}: target ${t[i]} at flat position ${i} is out of range for V = ${V} (${group.size} ranks x ${Vl}), ignoreIndex ${ignoreIndex}`);
    count++;
    for (let j = 0; j < Vl; j++) stats[i] += Math.exp(x[i * Vl + j] - mx[i]);
    if (t[i] >= start && t[i] < start + Vl) stats[rows + i] = x[i * Vl + t[i] - start] - mx[i];
  }
  const summed = tensor(stats, { dtype: 'f64' });
  group.allReduce(summed, 'sum');
  const s = summed.toArray() as Float64Array;
  const losses = Array.from({ length: rows }, (_, i) => (t[i] === ignoreIndex ? 0 : Math.log(s[i]) - s[rows + i]));
  const total = losses.reduce((a, b) => a + b, 0);
  const out =
    reduction === 'none'
      ? tensor(losses, { dtype: logits.dtype, shape: [...lead] })
      : tensor(reduction === 'mean' ? total / count : total, { dtype: logits.dtype });
  const scale = reduction === 'mean' ? (count > 0 ? 1 / count : 0) : 1;
  return record(what, [logits], out, () => (g) => {
    const gs = g.toArray() as Float32Array | Float64Array;
    const dx = new Float64Array(rows * Vl);
    for (let i = 0; i < rows; i++) {
      if (t[i] === ignoreIndex) continue;
      const gi = (reduction === 'none' ? gs[i] : gs[0]) * scale;
      for (let j = 0; j < Vl; j++) dx[i * Vl + j] = (Math.exp(x[i * Vl + j] - mx[i]) / s[i]) * gi;
      if (t[i] >= start && t[i] < start + Vl) dx[i * Vl + t[i] - start] -= gi;
    }
    return [tensor(dx, { dtype: logits.dtype, shape: [...logits.shape] })];
  });
}
