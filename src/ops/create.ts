/** Tensor factories: from data, constants, ranges and the seeded random distributions. */
import { native } from '../native.ts';
import { refuseInCapture } from '../tensor/capture_state.ts';
import { checkDType, type DType, dtypeCode } from '../tensor/dtype.ts';
import { takeDeviceCounters } from '../tensor/graph_rng.ts';
import { takeCounters } from '../tensor/random.ts';
import { checkShape, fmt, numel } from '../tensor/shape.ts';
import { Tensor, type TensorOptions } from '../tensor/tensor.ts';
import * as k from './kernels.ts';

type Data = number | readonly Data[] | ArrayLike<number> | BigInt64Array;

function flattenData(data: Data, shape: number[], out: number[], depth = 0): void {
  if (typeof data === 'number') {
    out.push(data);
    return;
  }
  const arr = data as ArrayLike<Data>;
  if (depth === shape.length) shape.push(arr.length);
  else if (shape[depth] !== arr.length) throw new Error(`tensor: ragged nested array at depth ${depth}`);
  for (let i = 0; i < arr.length; i++) flattenData(arr[i], shape, out, depth + 1);
}

type Values = ArrayLike<number> | BigInt64Array;

/** The values as the typed array `dtype` is stored in; an array already of that type is used as is (no copy). */
function typedFor(dtype: DType, values: Values): ArrayBufferView {
  if (values instanceof BigInt64Array) {
    return dtype === 'i64' ? values : typedFor(dtype, Array.from(values, Number));
  }
  switch (dtype) {
    case 'f64':
      return values instanceof Float64Array ? values : Float64Array.from(values);
    case 'i32':
      return values instanceof Int32Array ? values : Int32Array.from(values);
    case 'i64':
      return BigInt64Array.from(Array.from(values, (v) => BigInt(Math.trunc(v))));
    default:
      return values instanceof Float32Array ? values : Float32Array.from(values);
  }
}

/**
 * A tensor from nested arrays or a flat typed array (then give `shape`).
 * @example
 * const x = tensor([[1, 2], [3, 4]]);                       // f32 [2, 2]
 * const y = tensor(new Float64Array(6), { shape: [2, 3], dtype: 'f64' });
 */
export function tensor(data: Data, opts: TensorOptions & { shape?: number[] } = {}): Tensor {
  const dtype = checkDType(opts.dtype ?? 'f32', 'tensor');
  let values: Values;
  let shape: number[];
  if (typeof data !== 'number' && !Array.isArray(data)) {
    values = data as Values;
    shape = opts.shape ? checkShape(opts.shape, 'tensor') : [values.length];
  } else {
    const flat: number[] = [];
    const inferred: number[] = [];
    flattenData(data, inferred, flat);
    values = flat;
    shape = opts.shape ? checkShape(opts.shape, 'tensor') : inferred;
  }
  if (numel(shape) !== values.length) throw new Error(`tensor: ${values.length} values do not fill shape ${fmt(shape)}`);
  const staging = dtype === 'bf16' || dtype === 'f16' ? 'f32' : dtype;
  const t = Tensor.empty(shape, { ...opts, dtype: staging });
  if (values.length) native.write(t.id, 0, typedFor(staging, values));
  if (staging !== dtype) {
    const c = k.copy(t, dtype);
    t.dispose();
    return finish(c, opts);
  }
  return finish(t, opts);
}

function finish(t: Tensor, opts: TensorOptions): Tensor {
  if (opts.requiresGrad) t.requiresGrad_(true);
  return t;
}

export function full(shape: number[], value: number, opts: TensorOptions = {}): Tensor {
  const t = Tensor.empty(checkShape(shape, 'full'), opts);
  k.fill(t, value);
  return finish(t, opts);
}

export function zeros(shape: number[], opts: TensorOptions = {}): Tensor {
  return finish(Tensor.empty(checkShape(shape, 'zeros'), { ...opts, zero: true }), opts);
}

export function ones(shape: number[], opts: TensorOptions = {}): Tensor {
  return full(shape, 1, opts);
}

/** Zeros of x's shape, dtype and device (a contiguous tensor), unless `opts` says otherwise. */
export function zerosLike(x: Tensor, opts: TensorOptions = {}): Tensor {
  return zeros([...x.shape], { dtype: x.dtype, device: x.device, ...opts });
}

/** 0, 1, ..., n-1 (on a CUDA device written by a kernel: no host copy, which would wait for the device). */
export function arange(n: number, opts: TensorOptions = {}): Tensor {
  if (!Number.isInteger(n) || n < 0) throw new Error(`arange: n must be a non-negative integer, got ${n}`);
  if (opts.device && opts.device !== 'cpu' && typeof native.cuda?.arange === 'function') {
    const t = Tensor.empty([n], opts);
    native.cuda.arange(dtypeCode(t.dtype), t.id, t.offset, n, 0, 1);
    return finish(t, opts);
  }
  return tensor(Array.from({ length: n }, (_, i) => i), opts);
}

/** Fills `t` from the global generator (uniform in [a, b) or normal(mean a, std b)). */
function randomInto(t: Tensor, kind: number, a: number, b: number): Tensor {
  if (!Number.isFinite(a) || !Number.isFinite(b)) throw new Error(`random: parameters must be finite, got ${a}, ${b}`);
  if (kind === k.Random.normal && t.device !== 'cpu') {
    refuseInCapture('randn on a CUDA device', 'normal samples are drawn on the CPU and copied to the device (a host copy); draw them before the capture, or use rand');
  }
  // rand on a CUDA device inside a graph: offset relative to the device's generator base (graph_rng.ts).
  const { seed, offset, base } = kind === k.Random.normal ? { ...takeCounters(t.numel), base: null } : takeDeviceCounters(t.numel, t.device);
  return k.random(kind, t, seed, offset, 0, a, b, base);
}

/** Normal(mean, std) samples. */
export function randn(shape: number[], opts: TensorOptions & { mean?: number; std?: number } = {}): Tensor {
  const t = Tensor.empty(checkShape(shape, 'randn'), opts);
  return finish(randomInto(t, k.Random.normal, opts.mean ?? 0, opts.std ?? 1), opts);
}

/** Uniform samples in [low, high). */
export function rand(shape: number[], opts: TensorOptions & { low?: number; high?: number } = {}): Tensor {
  const t = Tensor.empty(checkShape(shape, 'rand'), opts);
  return finish(randomInto(t, k.Random.uniform, opts.low ?? 0, opts.high ?? 1), opts);
}

