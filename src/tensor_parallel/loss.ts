/**
 * Cross-entropy over logits split by vocabulary ([..., V/tp] per rank), without gathering
 * them. Each rank runs the fused native cross-entropy kernel on its slice (targets outside the
 * slice point at column 0, a stand-in): that gives every row's local log-sum-exp and, where this
 * rank holds the target, the target's logit (lse - loss). One all-gather of those 2·rows numbers
 * lets every rank combine the full-vocabulary log-sum-exp and the loss. The backward is local:
 * the same kernel with the global log-sum-exp gives softmax - onehot on this rank's slice, and the
 * stand-in's onehot is added back for rows whose target lives elsewhere.
 */
import type { ProcessGroup } from '../dist/process_group.ts';
import { native } from '../native.ts';
import { record } from '../ops/autograd_support.ts';
import { tensor } from '../ops/create.ts';
import { cast } from '../ops/elementwise.ts';
import * as k from '../ops/kernels.ts';
import type { CrossEntropyOptions } from '../ops/loss.ts';
import { statDType } from '../ops/nn_util.ts';
import { kernelsOn } from '../tensor/backend.ts';
import { dtypeCode } from '../tensor/dtype.ts';
import { contiguousStrides, fmt, sameShape } from '../tensor/shape.ts';
import type { Tensor } from '../tensor/tensor.ts';

/**
 * -log softmax(full logits)[target] per row, reduced as crossEntropy ('mean' over the targets
 * not ignored, 'sum', or 'none'). `logits` [..., V/tp] is this rank's vocabulary slice
 * [rank·V/tp, (rank+1)·V/tp); `targets` [...] are full-vocabulary ids, the same on every rank.
 * bf16/f16 logits are computed in f32 (the loss is f32; their gradient comes back in their dtype).
 * @example
 * const loss = vocabParallelCrossEntropy(lmHead.forward(h), targets, mesh.group('tp'));
 */
export function vocabParallelCrossEntropy(logits: Tensor, targets: Tensor, group: ProcessGroup, opts: CrossEntropyOptions = {}): Tensor {
  const what = 'vocabParallelCrossEntropy';
  const reduction = opts.reduction ?? 'mean';
  const ignoreIndex = opts.ignoreIndex ?? -100;
  if (!['mean', 'sum', 'none'].includes(reduction)) throw new Error(`${what}: reduction must be 'mean', 'sum' or 'none', got ${JSON.stringify(reduction)}`);
  // 16-bit logits are upcast first (as Megatron does): the loss and its statistics need f32.
  if (logits.dtype === 'bf16' || logits.dtype === 'f16') return vocabParallelCrossEntropy(cast(logits, 'f32'), targets, group, opts);
  if (logits.dtype !== 'f32' && logits.dtype !== 'f64') throw new Error(`${what}: logits must be a floating-point type, got ${logits.dtype}`);
  if (targets.dtype !== 'i32' && targets.dtype !== 'i64') throw new Error(`${what}: targets must be i32 or i64, got ${targets.dtype}`);
  if (logits.ndim < 1) throw new Error(`${what}: logits must be [..., V/tp], got a scalar`);
  const lead = logits.shape.slice(0, -1);
  if (!sameShape(lead, targets.shape)) throw new Error(`${what}: targets ${fmt(targets.shape)} must be logits ${fmt(logits.shape)} without the last dim, ${fmt(lead)}`);
  const Vl = logits.shape[logits.ndim - 1];
  const V = Vl * group.size;
  const start = group.rank * Vl;
  const rows = targets.numel;
  const t = Array.from(targets.toArray(), Number);
  // Local targets: the column in this slice, 0 (a stand-in) when another rank holds it.
  const local = new Int32Array(rows);
  const here = new Uint8Array(rows);
  let count = 0;
  for (let i = 0; i < rows; i++) {
    if (t[i] === ignoreIndex) {
      local[i] = ignoreIndex;
      continue;
    }
    if (!(Number.isInteger(t[i]) && t[i] >= 0 && t[i] < V)) {
      throw new Error(`${what}: target ${t[i]} at flat position ${i} is out of range for V = ${V} (${group.size} ranks x ${Vl}), ignoreIndex ${ignoreIndex}`);
    }
    count++;
    here[i] = t[i] >= start && t[i] < start + Vl ? 1 : 0;
    local[i] = here[i] ? t[i] - start : 0;
  }
  const xc = k.asContiguous(logits);
  // Everything the kernels touch lives where the logits are; the statistics travel through the host.
  const dev = logits.device;
  const kern = kernelsOn(dev);
  const tl = tensor(local, { dtype: 'i32', shape: [rows], device: dev });
  const code = dtypeCode(logits.dtype);
  const idCode = dtypeCode('i32');
  const losses = k.empty([rows], logits.dtype, undefined, false, dev);
  const lse = k.empty([rows], statDType(logits.dtype), undefined, false, dev);
  // Targets were range-checked above, so the device kernel (no count returned) does the same work.
  if (rows > 0) (dev === 'cpu' ? native.crossEntropyForward : kern.crossEntropyForwardDevice)(code, xc.id, xc.offset, rows, Vl, idCode, tl.id, tl.offset, ignoreIndex, losses.id, lse.id);
  const lossLocal = losses.toArray() as Float32Array | Float64Array;
  const lseLocal = lse.toArray() as Float32Array | Float64Array;
  losses.dispose();
  lse.dispose();
  // [local log-sum-exp ..., target logit where held here ...] from every rank.
  const mine = new Float64Array(2 * rows);
  for (let i = 0; i < rows; i++) {
    mine[i] = lseLocal[i];
    if (here[i]) mine[rows + i] = lseLocal[i] - lossLocal[i];
  }
  const all = gatherStats(mine, group);
  const lseGlobal = new Float64Array(rows);
  const lossRows = new Float64Array(rows);
  let total = 0;
  for (let i = 0; i < rows; i++) {
    if (t[i] === ignoreIndex) continue;
    let m = -Infinity;
    for (let r = 0; r < group.size; r++) m = Math.max(m, all[r * 2 * rows + i]);
    let s = 0;
    let target = 0;
    for (let r = 0; r < group.size; r++) {
      s += Math.exp(all[r * 2 * rows + i] - m);
      target += all[r * 2 * rows + rows + i];
    }
    lseGlobal[i] = m + Math.log(s);
    lossRows[i] = lseGlobal[i] - target;
    total += lossRows[i];
  }
  const out =
    reduction === 'none'
      ? tensor(lossRows, { dtype: logits.dtype, shape: [...lead], device: dev })
      : tensor(reduction === 'mean' ? total / count : total, { dtype: logits.dtype, device: dev });
  const scale = reduction === 'mean' ? (count > 0 ? 1 / count : 0) : 1;
  const result = record(what, [logits], out, (node) => {
    const sx = node.save(xc);
    const st = node.save(tl);
    return (g) => {
      const gc = g.dtype === logits.dtype ? k.asContiguous(g) : k.copy(g, logits.dtype);
      const lseG = tensor(lseGlobal, { dtype: statDType(logits.dtype), shape: [rows], device: dev });
      const dx = k.empty(logits.shape, logits.dtype, undefined, false, dev);
      if (rows > 0) {
        const gStride = reduction === 'none' ? 1 : 0;
        kern.crossEntropyBackward(code, sx.id, sx.offset, rows, Vl, idCode, st.id, st.offset, ignoreIndex, lseG.id, gc.id, gc.offset, gStride, scale, dx.id);
        // The kernel subtracted g at the stand-in column 0 of rows whose target is elsewhere: add it back.
        const gs = gc.toArray() as Float32Array | Float64Array;
        const fix = new Float64Array(rows);
        let any = false;
        for (let i = 0; i < rows; i++) {
          if (t[i] !== ignoreIndex && !here[i]) {
            fix[i] = gs[gStride * i] * scale;
            any = true;
          }
        }
        if (any) {
          const col0 = dx.alias([rows, 1], [Vl, 1], dx.offset);
          const add = tensor(fix, { dtype: logits.dtype, shape: [rows, 1], device: dev });
          const sum = k.binary(k.Binary.add, col0, add, what);
          k.copyInto(sum, col0);
          for (const x of [add, sum, col0]) x.dispose();
        }
      }
      lseG.dispose();
      if (gc !== g) gc.dispose();
      return [dx.alias([...logits.shape], contiguousStrides(logits.shape), dx.offset)];
    };
  });
  if (xc !== logits) xc.dispose();
  tl.dispose();
  return result;
}

/** Every rank's `mine` concatenated in rank order. */
function gatherStats(mine: Float64Array, group: ProcessGroup): Float64Array {
  if (group.size === 1) return mine;
  const part = tensor(mine, { dtype: 'f64' });
  const all = k.empty([group.size * mine.length], 'f64');
  group.allGather(all, part);
  const out = all.toArray() as Float64Array;
  part.dispose();
  all.dispose();
  return out;
}
