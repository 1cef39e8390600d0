/** Argument checks and small helpers shared by the neural-net op files (nn, embedding, loss, attention). */
import { type DType, isFloat } from '../tensor/dtype.ts';
import { fmt } from '../tensor/shape.ts';
import { Tensor } from '../tensor/tensor.ts';

function describe(x: unknown): string {
  if (x === null) return 'null';
  if (Array.isArray(x)) return 'an array';
  return typeof x;
}

/** `x` as a live Tensor, or an Error naming the op and the argument. */
export function checkTensorArg(x: unknown, op: string, what: string): Tensor {
  if (!(x instanceof Tensor)) throw new Error(`${op}: ${what} must be a Tensor, got ${describe(x)}`);
  if (x.disposed) throw new Error(`${op}: ${what} ${fmt(x.shape)} ${x.dtype} was disposed`);
  return x;
}

export function checkFloatArg(x: unknown, op: string, what: string): Tensor {
  const t = checkTensorArg(x, op, what);
  if (!isFloat(t.dtype)) throw new Error(`${op}: ${what} must be floating point (f32, f64, bf16, f16), got ${t.dtype} ${fmt(t.shape)}`);
  return t;
}

/** Class ids, token ids: i32 or i64. */
export function checkIndexArg(x: unknown, op: string, what: string): Tensor {
  const t = checkTensorArg(x, op, what);
  if (t.dtype !== 'i32' && t.dtype !== 'i64') {
    throw new Error(`${op}: ${what} must be an i32 or i64 tensor of indices, got ${t.dtype} ${fmt(t.shape)}`);
  }
  return t;
}

/** Row statistics (mean, 1/std, log-sum-exp) are f64 for f64 tensors and f32 otherwise. */
export function statDType(d: DType): DType {
  return d === 'f64' ? 'f64' : 'f32';
}

/** The multi-dimensional position of flat (row-major) index `i` in `shape`, as "[a, b]". */
export function position(i: number, shape: readonly number[]): string {
  const out = new Array<number>(shape.length);
  let rem = i;
  for (let k = shape.length - 1; k >= 0; k--) {
    out[k] = rem % shape[k];
    rem = Math.floor(rem / shape[k]);
  }
  return fmt(out);
}

/** A view of `x` with dims `a` and `b` swapped (no autograd: for kernels and backward functions). */
export function swapped(x: Tensor, a: number, b: number): Tensor {
  const shape = [...x.shape];
  const strides = [...x.strides];
  [shape[a], shape[b]] = [shape[b], shape[a]];
  [strides[a], strides[b]] = [strides[b], strides[a]];
  return x.alias(shape, strides, x.offset);
}
