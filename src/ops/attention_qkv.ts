/**
 * Self-attention read straight from a fused q/k/v projection (GPT-2's `c_attn` output) and
 * written straight back in its layouts. qkv [..., T, 3·H·D] holds q, k and v side by side along
 * its last dim, each H heads of D; the result is [..., T, H·D] (heads merged, what `c_proj`
 * reads) and the gradient is one [..., T, 3·H·D] buffer. On CUDA the fused kernels
 * (native/cuda/attention*.cu) read q, k, v as strided views of qkv, write the output in
 * [..., T, H, D] order and write dq, dk, dv into their thirds of the gradient buffer, so the
 * step has no layout copy around attention (split's backward would copy each of the three into
 * one buffer). The CPU has the same kernels (native/cpu/attention.cc, any head dim) but takes
 * them only with MESHTRAIN_ATTENTION_CPU=fused: they save the copies and the [T, T] scores, yet
 * run 2-6x slower than oneDNN's matmuls around the fused softmax (bench/cpu_attention.ts). Otherwise
 * (the CPU by default, other head dims on CUDA): split, heads as views,
 * scaledDotProductAttention, heads merged.
 */
import { kernelsOn } from '../tensor/backend.ts';
import { dtypeCode } from '../tensor/dtype.ts';
import { fmt, numel } from '../tensor/shape.ts';
import type { Tensor } from '../tensor/tensor.ts';
import { type AttentionOptions, scaledDotProductAttention } from './attention.ts';
import { cpuFusedAttention, FUSED_ATTENTION_HEAD_DIMS } from './attention_fused.ts';
import { record } from './autograd_support.ts';
import { intArg } from './int_args.ts';
import * as k from './kernels.ts';
import { checkFloatArg, statDType } from './nn_util.ts';
import { reshape, split, transpose } from './view.ts';

/**
 * The element stride that steps over all lead dims of `x` [...lead, T, W] as one batch dim, or
 * null when they do not merge (a dim of size > 1 must step over the next one's whole extent).
 */
function batchStride(x: Tensor): number | null {
  const L = x.ndim - 2;
  let stride = 0;
  let inner = -1;
  for (let i = L - 1; i >= 0; i--) {
    if (x.shape[i] === 1) continue;
    if (inner < 0) stride = x.strides[i];
    else if (x.strides[i] !== x.strides[inner] * x.shape[inner]) return null;
    inner = i;
  }
  return stride;
}

/** [...lead, T, W] (W > 1) with unit stride along W and mergeable lead dims: `x` itself, else a contiguous copy. */
function rowsView(x: Tensor): { t: Tensor; sb: number } {
  const sb = batchStride(x);
  const ok = sb !== null && sb >= 0 && x.strides[x.ndim - 2] >= 0 && x.strides[x.ndim - 1] === 1;
  if (ok) return { t: x, sb };
  const c = k.copy(x);
  return { t: c, sb: batchStride(c) ?? 0 };
}

/**
 * Attention over the heads of a fused projection: qkv [..., T, 3·H·D] (q, k, v side by side in
 * its last dim, each H heads of D) → [..., T, H·D] = softmax(q kᵀ · scale [+ causal mask]) v per
 * head, heads merged. Equal to splitting qkv in three, viewing each as [..., H, T, D], calling
 * scaledDotProductAttention and merging the heads back; on CUDA (D of 32, 64 or 128) and on the
 * CPU with MESHTRAIN_ATTENTION_CPU=fused (any D) it runs fused kernels without copying q, k, v,
 * the output or the gradients and without the [T, T] scores.
 * @example
 * const y = qkvAttention(c_attn.forward(x), 12, { causal: true }); // x [B, T, 768] → y [B, T, 768]
 */
export function qkvAttention(qkv: Tensor, heads: number, opts: AttentionOptions = {}): Tensor {
  const op = 'qkvAttention';
  checkFloatArg(qkv, op, 'qkv');
  if (!Number.isInteger(heads) || heads < 1) throw new Error(`${op}: heads must be a positive integer, got ${heads}`);
  if (qkv.ndim < 2) throw new Error(`${op}: qkv must be [..., T, 3 * heads * D], got ${fmt(qkv.shape)}`);
  const n = qkv.ndim;
  const W = qkv.shape[n - 1];
  if (W % (3 * heads) !== 0 || W === 0) {
    throw new Error(`${op}: qkv's last dim ${W} (of ${fmt(qkv.shape)}) is not 3 * heads (${heads}) * a head dim`);
  }
  const C = W / 3;
  const D = C / heads;
  const causal = opts.causal ?? false;
  if (typeof causal !== 'boolean') throw new Error(`${op}: causal must be a boolean, got ${causal}`);
  const scale = opts.scale ?? 1 / Math.sqrt(D);
  if (typeof scale !== 'number' || !Number.isFinite(scale)) throw new Error(`${op}: scale must be a finite number, got ${scale}`);
  if (fusedQkvApplies(qkv, D)) return fusedQkv(qkv, heads, D, causal, scale);
  const lead = qkv.shape.slice(0, -2);
  const T = qkv.shape[n - 2];
  const split3 = (t: Tensor) => transpose(reshape(t, [...lead, T, heads, D]), -3, -2); // [..., H, T, D]
  const [q, kk, v] = split(qkv, C, -1).map(split3);
  const y = scaledDotProductAttention(q, kk, v, { causal, scale });
  return reshape(transpose(y, -3, -2), [...lead, T, C]);
}

/** CUDA: head dims 32, 64, 128. CPU: any, when asked for (MESHTRAIN_ATTENTION_CPU=fused) and built. */
function fusedQkvApplies(qkv: Tensor, D: number): boolean {
  return qkv.device === 'cpu' ? cpuFusedAttention() : FUSED_ATTENTION_HEAD_DIMS.includes(D);
}

/** One forward kernel, one backward, operands and results in the callers' layouts. */
function fusedQkv(qkv: Tensor, H: number, D: number, causal: boolean, scale: number): Tensor {
  const n = qkv.ndim;
  const lead = qkv.shape.slice(0, -2);
  const B = numel(lead);
  const T = qkv.shape[n - 2];
  const C = H * D;
  const dev = qkv.device;
  const code = dtypeCode(qkv.dtype);
  const src = rowsView(qkv);
  const x = src.t;
  // q, k, v: thirds of each row; heads D apart; positions one qkv row apart.
  const inS = [src.sb, D, x.strides[n - 2]];
  // rowsView gave x unit stride along its last dim: q, k, v start a third of a row apart.
  const q0 = x.offset;
  const k0 = x.offset + C;
  const v0 = x.offset + 2 * C;
  const out = k.empty([...lead, T, C], qkv.dtype, undefined, false, dev);
  const outS = [T * C, D, C];
  const lse = k.empty([B * H * T], statDType(qkv.dtype), undefined, false, dev);
  if (B * T > 0) {
    // The geometry (B, H, Tq, Tk, D, scale, causal) written out: a spread call costs an iterator per call.
    const ins = intArg(0, inS);
    kernelsOn(dev).attentionForward(code, B, H, T, T, D, scale, causal, x.id, q0, ins, x.id, k0, ins, x.id, v0, ins, out.id, out.offset, intArg(1, outS), lse.id);
  }
  const result = record('qkvAttention', [qkv], out, (node) => {
    const sx = node.save(x);
    const so = node.save(out);
    const sl = node.save(lse);
    return (g) => {
      const gv = rowsView(g);
      const gS = [gv.sb, D, gv.t.strides[n - 2]];
      // One gradient buffer [..., T, 3C]: dq, dk, dv are its thirds, written by the kernels.
      const dx = k.empty(qkv.shape, qkv.dtype, undefined, false, dev);
      const dS = [T * 3 * C, D, 3 * C];
      if (B * T > 0) {
        // The CPU kernels keep each query row's dot(dO, o) in a scratch tensor (CUDA: a call scratch of its own).
        const dots = dev === 'cpu' ? k.empty([B * H * T], statDType(qkv.dtype), undefined, false, dev) : null;
        const ins = intArg(0, inS);
        const ds = intArg(3, dS);
        kernelsOn(dev).attentionBackward(code, B, H, T, T, D, scale, causal, sx.id, q0, ins, sx.id, k0, ins, sx.id, v0, ins,
          so.id, so.offset, intArg(1, outS), gv.t.id, gv.t.offset, intArg(2, gS), sl.id, dx.id, 0, ds, dx.id, C, ds, dx.id, 2 * C, ds, dots?.id);
        dots?.dispose();
      }
      if (gv.t !== g) gv.t.dispose();
      return [dx];
    };
  });
  // The node's saved aliases keep a copied qkv and lse alive for backward.
  if (x !== qkv) x.dispose();
  lse.dispose();
  return result;
}
