/**
 * Activations fused into `linear` (`linear(x, w, b, { activation: 'gelu' })`, `nn.Linear({ activation })`).
 * GELU is the tanh form (GPT-2's, PyTorch's approximate='tanh'), the same formula as `gelu()`
 * and cuBLASLt's GELU epilogues. bf16/f16 compute like cuBLASLt's GELU_AUX_BIAS epilogue on every
 * device: the pre-activation stays in f32 until GELU is applied, the output is rounded once, and the
 * pre-activation is rounded separately for GELU's backward (one GELU-backward kernel from it, then
 * linear's usual backward; on CUDA, where the product consuming the output computes its input
 * gradient, it applies GELU's derivative there instead: `linearGeluGrad`, cuBLASLt's DGELU epilogue,
 * the f32 product times gelu'(pre) rounded once, offered by the engine, grad_through.ts). On CUDA
 * the forward is one cuBLASLt call; on the CPU the product goes to an
 * f32 result (oneDNN's bf16 matmul writes f32; f16 is widened, as linear's f16 product always is),
 * then two casts and GELU in place between them (oneDNN's matmul post-op cannot also write the
 * pre-activation), so the CPU and CUDA engines differ by summation order only. f32 and f64 keep the
 * separate GELU pass (cuBLASLt does not document its GELU's accuracy, and f32 must match the CPU
 * within f32 rounding); so does a shape cuBLASLt refuses on CUDA.
 */
import { native } from '../native.ts';
import { isCuda, kernelsOn } from '../tensor/backend.ts';
import { type DType, dtypeCode } from '../tensor/dtype.ts';
import type { Device } from '../tensor/storage.ts';
import type { Tensor } from '../tensor/tensor.ts';
import { gelu, recordGelu } from './elementwise.ts';
import { intArg } from './int_args.ts';
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

/** The addon's fused product + bias + GELU (or GELU's backward) on CUDA, where it has one (older addons do not). */
function linearGeluKernel(dev: Device, name: 'linearGelu' | 'linearGeluGrad' = 'linearGelu'): LinearGeluKernel | null {
  if (!isCuda(dev)) return null;
  return (native.cuda as Record<string, LinearGeluKernel | undefined> | undefined)?.[name] ?? null;
}

/**
 * a @ b times GELU's derivative at `pre` (contiguous, a's rows by b's columns, `dtype`), one
 * rounding: GELU's backward inside the product that computes its output's gradient (cuBLASLt's
 * DGELU epilogue on CUDA; on the CPU the f32 product from `wide`, times the derivative in f32, rounded
 * once, so both engines differ by summation order only). bf16/f16; null where it does not apply or
 * cuBLASLt refuses (nothing ran).
 */
export function linearGeluGrad(a: MatOperand, b: MatOperand, pre: Tensor, shape: number[], dev: Device, wide: WideProduct): Tensor | null {
  const dtype = pre.dtype;
  if ((dtype !== 'bf16' && dtype !== 'f16') || a.t.dtype !== dtype || b.t.dtype !== dtype || pre.device !== dev) return null;
  if (!isCuda(dev)) {
    const prod = wide(a, b, null, shape);
    const pre32 = k.copy(pre, 'f32');
    const d32 = k.binary(k.Binary.geluBackward, prod, pre32, 'gelu');
    const out = k.copy(d32, dtype);
    for (const t of [prod, pre32, d32]) t.dispose();
    return out;
  }
  const kernel = linearGeluKernel(dev, 'linearGeluGrad');
  const N = b.cols;
  if (!kernel || !pre.isContiguous || pre.numel !== a.rows * N || N % 8 !== 0 || a.rows === 0 || a.cols === 0) return null;
  const out = k.empty(shape, dtype, undefined, false, dev);
  const done = kernel(dtypeCode(dtype), a.t.id, a.off, intArg(0, a.s), b.t.id, b.off, intArg(1, b.s), pre.id, pre.offset, out.id, 0, a.rows, N, a.cols);
  if (done) return out;
  out.dispose();
  return null;
}

/** a @ b + bias in f32 from 16-bit operands on the CPU, not rounded to their dtype (matmul.ts's product). */
export type WideProduct = (a: MatOperand, b: MatOperand, bias: Tensor | null, shape: number[]) => Tensor;

/**
 * out = gelu(a @ b + bias) with the sum rounded once (at the end), and `pre` = a @ b + bias rounded
 * (kept for backward) when `keepPre`; null where it is not fused (then nothing ran): f32, f64, and
 * on CUDA what the addon's cuBLASLt call refuses. `bias` is in `dtype` on CUDA, in f32 (linear's
 * bias for 16-bit products) on the CPU, or absent; `wide` gives the CPU's f32 product.
 */
export function fusedLinearGelu(
  a: MatOperand, b: MatOperand, bias: Tensor | null, shape: number[], dtype: DType, dev: Device, keepPre: boolean, wide: WideProduct,
): { out: Tensor; pre: Tensor | null } | null {
  if (dtype !== 'bf16' && dtype !== 'f16') return null;
  if (!isCuda(dev)) return cpuLinearGelu(wide(a, b, bias, shape), dtype, keepPre);
  const kernel = linearGeluKernel(dev);
  const N = b.cols;
  if (!kernel || (bias && bias.dtype !== dtype) || N % 8 !== 0 || a.rows === 0 || a.cols === 0) return null;
  const out = k.empty(shape, dtype, undefined, false, dev);
  const pre = keepPre ? k.empty(shape, dtype, undefined, false, dev) : null;
  const done = kernel(
    dtypeCode(dtype), a.t.id, a.off, intArg(0, a.s), b.t.id, b.off, intArg(1, b.s), bias ? bias.id : 0, bias ? bias.offset : 0,
    out.id, 0, pre ? pre.id : 0, 0, a.rows, N, a.cols,
  );
  if (done) return { out, pre };
  out.dispose();
  pre?.dispose();
  return null;
}

/**
 * The CPU's epilogue on the f32 pre-activation `pre32` (contiguous, consumed): `pre` = its rounding
 * to `dtype`, then GELU in f32 in place and `out` = its one rounding, as GELU_AUX_BIAS stores them.
 */
function cpuLinearGelu(pre32: Tensor, dtype: DType, keepPre: boolean): { out: Tensor; pre: Tensor | null } {
  const pre = keepPre ? k.copy(pre32, dtype) : null;
  // In place: each element is read once before it is written.
  kernelsOn(pre32.device).unary(k.Unary.gelu, dtypeCode('f32'), pre32.id, pre32.offset, pre32.id, pre32.offset, pre32.numel, 0);
  const out = k.copy(pre32, dtype);
  pre32.dispose();
  return { out, pre };
}

/**
 * The activation applied to linear's output `pre`: recorded from the fused result `out` when there
 * is one, else computed here. Without a graph, `pre` is freed at once.
 */
export function applyLinearActivation(pre: Tensor, out: Tensor | null): Tensor {
  if (out) return recordGelu(pre, out, { consumerMayApply: true });
  const y = gelu(pre);
  if (!pre.requiresGrad) pre.dispose();
  return y;
}
