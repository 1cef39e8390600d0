/**
 * The CUDA path of scaledDotProductAttention: one fused kernel forward and one backward
 * (native/cuda/attention.cu), never materializing the [Tq, Tk] scores. The forward saves q, k, v,
 * the output and each query row's log-sum-exp; the backward recomputes the probabilities from
 * them. Head dims 32, 64 and 128 (v of q's head dim); other shapes take the composed ops. The
 * CPU has the same kernels (native/cpu/attention.cc, any head dim), taken only with
 * MESHTRAIN_ATTENTION_CPU=fused: slower than the composed ops' oneDNN matmuls, but no [T, T].
 */
import { native } from '../native.ts';
import { kernelsOn } from '../tensor/backend.ts';
import { type DType, dtypeCode } from '../tensor/dtype.ts';
import { contiguousStrides, numel } from '../tensor/shape.ts';
import type { Device } from '../tensor/storage.ts';
import { Tensor } from '../tensor/tensor.ts';
import { record } from './autograd_support.ts';
import * as k from './kernels.ts';
import { statDType } from './nn_util.ts';

/** Head dims the fused kernel is compiled for. */
export const FUSED_ATTENTION_HEAD_DIMS: readonly number[] = [32, 64, 128];

/**
 * True when the CPU is to run the fused kernels: MESHTRAIN_ATTENTION_CPU=fused (read per call) and an
 * addon that has them (older builds do not).
 */
export function cpuFusedAttention(): boolean {
  return process.env.MESHTRAIN_ATTENTION_CPU === 'fused' && typeof native.attentionBackward === 'function';
}

/** True when a fused kernel covers these (already validated) operands. */
export function fusedAttentionApplies(q: Tensor, v: Tensor): boolean {
  const dh = q.shape[q.ndim - 1];
  if (v.shape[v.ndim - 1] !== dh) return false;
  return q.device === 'cpu' ? cpuFusedAttention() : FUSED_ATTENTION_HEAD_DIMS.includes(dh);
}

/** [batch, heads, T, D] as the kernel sees it: the tensor and its batch, head, position strides. */
interface Heads {
  t: Tensor;
  s: number[];
}

/**
 * `x` [...lead, T, D] as batch × heads rows with unit stride along D, where heads is the last
 * lead dim and batch all earlier ones merged: x itself when its strides allow, else a copy.
 */
function asHeads(x: Tensor): Heads {
  const n = x.ndim;
  const L = n - 2;
  const st = x.strides;
  const sh = L >= 1 ? st[L - 1] : 0;
  // The batch dims merge when each (of size > 1) steps over the next one's whole extent.
  let sb = 0;
  let ok = x.shape[n - 1] === 1 || st[n - 1] === 1;
  let inner = -1;
  for (let i = L - 2; i >= 0; i--) {
    if (x.shape[i] === 1) continue;
    if (inner < 0) sb = st[i];
    else if (st[i] !== st[inner] * x.shape[inner]) ok = false;
    inner = i;
  }
  if (st.some((s) => s < 0)) ok = false;
  if (ok) return { t: x, s: [sb, sh, st[n - 2]] };
  const c = k.copy(x);
  return asHeads(c);
}

/**
 * A fresh [...lead, T, D] tensor stored as [batch, T, heads, D]: the layout the heads are merged
 * back into ([B, H, T, D] → transpose → [B, T, H·D] needs no copy).
 */
function headsOut(lead: readonly number[], T: number, D: number, dtype: DType, device: Device): Heads {
  const L = lead.length;
  if (L === 0) return { t: k.empty([T, D], dtype, undefined, false, device), s: [0, 0, D] };
  const H = lead[L - 1];
  const batchStrides = contiguousStrides(lead.slice(0, L - 1)).map((s) => s * T * H * D);
  const t = Tensor.emptyStrided([...lead, T, D], [...batchStrides, D, H * D, 1], { dtype, device });
  return { t, s: [L >= 2 ? batchStrides[L - 2] : 0, D, H * D] };
}

function freeCopy(h: Heads, x: Tensor): void {
  if (h.t !== x) h.t.dispose();
}

/**
 * softmax(q kᵀ · scale [+ causal mask]) v on a CUDA device in one kernel, with autograd.
 * Callers check the operands (scaledDotProductAttention in attention.ts).
 */
export function fusedAttention(q: Tensor, kx: Tensor, v: Tensor, causal: boolean, scale: number): Tensor {
  const n = q.ndim;
  const lead = q.shape.slice(0, -2);
  const H = lead.length >= 1 ? lead[lead.length - 1] : 1;
  const B = numel(lead) / Math.max(H, 1);
  const Tq = q.shape[n - 2];
  const Tk = kx.shape[n - 2];
  const D = q.shape[n - 1];
  const dev = q.device;
  const code = dtypeCode(q.dtype);
  const geom = [B, Math.max(H, 1), Tq, Tk, D, scale, causal] as const;
  const qh = asHeads(q);
  const kh = asHeads(kx);
  const vh = asHeads(v);
  const out = headsOut(lead, Tq, D, q.dtype, dev);
  const lse = k.empty([numel(lead) * Tq], statDType(q.dtype), undefined, false, dev);
  if (numel(lead) > 0) {
    kernelsOn(dev).attentionForward(code, ...geom, qh.t.id, qh.t.offset, qh.s, kh.t.id, kh.t.offset, kh.s, vh.t.id, vh.t.offset, vh.s,
      out.t.id, out.t.offset, out.s, lse.id);
  }
  const result = record('scaledDotProductAttention', [q, kx, v], out.t, (node) => {
    const sq = node.save(qh.t);
    const sk = node.save(kh.t);
    const sv = node.save(vh.t);
    const so = node.save(out.t);
    const sl = node.save(lse);
    const [qs, ks, vs, os] = [qh.s, kh.s, vh.s, out.s];
    return (g) => {
      const gh = asHeads(g);
      const dq = headsOut(lead, Tq, D, q.dtype, dev);
      const dk = headsOut(lead, Tk, D, q.dtype, dev);
      const dv = headsOut(lead, Tk, D, q.dtype, dev);
      if (numel(lead) > 0) {
        // The CPU kernels keep each query row's dot(dO, o) in a scratch tensor (CUDA: a call scratch of its own).
        const dots = dev === 'cpu' ? k.empty([numel(lead) * Tq], statDType(q.dtype), undefined, false, dev) : null;
        kernelsOn(dev).attentionBackward(code, ...geom, sq.id, sq.offset, qs, sk.id, sk.offset, ks, sv.id, sv.offset, vs,
          so.id, so.offset, os, gh.t.id, gh.t.offset, gh.s, sl.id, dq.t.id, dq.t.offset, dq.s, dk.t.id, dk.t.offset, dk.s,
          dv.t.id, dv.t.offset, dv.s, dots?.id);
        dots?.dispose();
      } else {
        for (const d of [dq, dk, dv]) if (d.t.numel > 0) k.fill(d.t, 0);
      }
      freeCopy(gh, g);
      return [dq.t, dk.t, dv.t];
    };
  });
  // Saved aliases keep the copies and lse alive for backward; these handles are not needed.
  freeCopy(qh, q);
  freeCopy(kh, kx);
  freeCopy(vh, v);
  lse.dispose();
  return result;
}
