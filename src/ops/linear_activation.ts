/**
 * Activations fused into `linear` (`linear(x, w, b, { activation: 'gelu' })`, `nn.Linear({ activation })`).
 * GELU is the tanh form (GPT-2's, PyTorch's approximate='tanh'), the same formula as `gelu()`
 * and cuBLASLt's GELU epilogues. On CUDA, bf16/f16 run product, bias and GELU in one cuBLASLt call
 * (GELU_AUX_BIAS: it also writes the pre-activation that GELU's backward reads); backward is one
 * GELU-backward kernel from that pre-activation, then linear's usual backward. f32 keeps the
 * separate GELU pass (cuBLASLt does not document its GELU's accuracy, and f32 must match the CPU
 * within f32 rounding); so does the CPU (oneDNN's matmul post-op cannot also write the
 * pre-activation), f64, and any shape cuBLASLt refuses.
 */
import { native } from '../native.ts';
import { isCuda } from '../tensor/backend.ts';
import { type DType, dtypeCode } from '../tensor/dtype.ts';
import type { Device } from '../tensor/storage.ts';
import type { Tensor } from '../tensor/tensor.ts';
import { gelu, recordGelu } from './elementwise.ts';
import * as k from './kernels.ts';

/** The activations `linear` can fuse. */
export type LinearActivation = 'gelu';

/** A matrix operand inside a tensor: element (i, j) at off + i*s[1] + j*s[2]. */
interface MatOperand {
  t: Tensor;
  off: number;
  s: [number, number, number];
  rows: number;
  cols: number;
}

/** Validates an `activation` option: the name, or null for none. */
export function linearActivation(a: unknown, op: string): LinearActivation | null {
  if (a === undefined || a === null || a === 'none') return null;
  if (a === 'gelu') return a;
  throw new Error(`${op}: activation ${JSON.stringify(a)} is not supported (use 'gelu', GELU's tanh form, or leave it out)`);
}

type LinearGeluKernel = (...args: unknown[]) => boolean;

/** The addon's fused product + bias + GELU on CUDA, where it has one (older addons do not). */
function linearGeluKernel(dev: Device): LinearGeluKernel | null {
  if (!isCuda(dev)) return null;
  return (native.cuda as { linearGelu?: LinearGeluKernel } | undefined)?.linearGelu ?? null;
}

/**
 * out = gelu(a @ b + bias) in one library call, and `pre` = a @ b + bias (kept for backward) when
 * `keepPre`; null where it cannot be fused (then nothing ran). `bias` is in `dtype` or absent.
 */
export function fusedLinearGelu(
  a: MatOperand, b: MatOperand, bias: Tensor | null, shape: number[], dtype: DType, dev: Device, keepPre: boolean,
): { out: Tensor; pre: Tensor | null } | null {
  const kernel = linearGeluKernel(dev);
  const N = b.cols;
  if (!kernel || (dtype !== 'bf16' && dtype !== 'f16') || (bias && bias.dtype !== dtype) || N % 8 !== 0 || a.rows === 0 || a.cols === 0) {
    return null;
  }
  const out = k.empty(shape, dtype, undefined, false, dev);
  const pre = keepPre ? k.empty(shape, dtype, undefined, false, dev) : null;
  const done = kernel(
    dtypeCode(dtype), a.t.id, a.off, a.s, b.t.id, b.off, b.s, bias ? bias.id : 0, bias ? bias.offset : 0,
    out.id, 0, pre ? pre.id : 0, 0, a.rows, N, a.cols,
  );
  if (done) return { out, pre };
  out.dispose();
  pre?.dispose();
  return null;
}

/**
 * The activation applied to linear's output `pre`: recorded from the fused result `out` when there
 * is one, else computed here. Without a graph, `pre` is freed at once.
 */
export function applyLinearActivation(pre: Tensor, out: Tensor | null): Tensor {
  if (out) return recordGelu(pre, out);
  const y = gelu(pre);
  if (!pre.requiresGrad) pre.dispose();
  return y;
}
