/**
 * Scaled dot-product attention. On the CPU (the reference): two matmuls around the fused
 * scaled/causal softmax, the mask applied inside the softmax kernel, backward composed through
 * the three ops; with MESHTRAIN_ATTENTION_CPU=fused the fused CPU kernels instead (no [T, T],
 * slower). On CUDA: one fused kernel forward and backward (attention_fused.ts) when the head dim
 * is 32, 64 or 128; the composed ops otherwise.
 */
import { deviceOf } from '../tensor/backend.ts';
import { fmt } from '../tensor/shape.ts';
import type { Tensor } from '../tensor/tensor.ts';
import { fusedAttention, fusedAttentionApplies } from './attention_fused.ts';
import { matmul } from './matmul.ts';
import { softmax } from './nn.ts';
import { checkFloatArg } from './nn_util.ts';
import { transpose } from './view.ts';

export interface AttentionOptions {
  /** Query i attends to keys j <= i only (top-left aligned, as PyTorch's is_causal). Default false. */
  causal?: boolean;
  /** Multiplies q·kᵀ; default 1/sqrt(head dim). */
  scale?: number;
}

/**
 * softmax(q kᵀ · scale [+ causal mask]) v over q [..., Tq, Dh], k [..., Tk, Dh], v [..., Tk, Dv]
 * (e.g. [batch, heads, seq, head dim]) → [..., Tq, Dv].
 * @example
 * const y = scaledDotProductAttention(q, k, v, { causal: true });
 */
export function scaledDotProductAttention(q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions = {}): Tensor {
  const op = 'scaledDotProductAttention';
  checkFloatArg(q, op, 'q');
  checkFloatArg(k, op, 'k');
  checkFloatArg(v, op, 'v');
  const shapes = `q ${fmt(q.shape)}, k ${fmt(k.shape)}, v ${fmt(v.shape)}`;
  if (q.dtype !== k.dtype || q.dtype !== v.dtype) throw new Error(`${op}: q, k, v must share one dtype, got ${q.dtype}, ${k.dtype}, ${v.dtype}`);
  if (q.ndim < 2 || k.ndim !== q.ndim || v.ndim !== q.ndim) throw new Error(`${op}: q, k, v must be [..., T, D] of one rank, got ${shapes}`);
  const n = q.ndim;
  const lead = q.shape.slice(0, -2);
  if (!lead.every((s, i) => k.shape[i] === s && v.shape[i] === s)) throw new Error(`${op}: batch dims differ: ${shapes}`);
  if (k.shape[n - 1] !== q.shape[n - 1]) throw new Error(`${op}: q and k head dims differ: ${shapes}`);
  if (v.shape[n - 2] !== k.shape[n - 2]) throw new Error(`${op}: k and v lengths differ: ${shapes}`);
  const causal = opts.causal ?? false;
  if (typeof causal !== 'boolean') throw new Error(`${op}: causal must be a boolean, got ${causal}`);
  const dh = q.shape[n - 1];
  const scale = opts.scale ?? 1 / Math.sqrt(dh);
  if (typeof scale !== 'number' || !Number.isFinite(scale)) throw new Error(`${op}: scale must be a finite number, got ${scale}`);
  deviceOf(op, q, k, v);
  if (fusedAttentionApplies(q, v)) return fusedAttention(q, k, v, causal, scale);
  const scores = matmul(q, transpose(k, -2, -1));
  const probs = softmax(scores, -1, { scale, causal });
  return matmul(probs, v);
}
