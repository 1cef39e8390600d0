/**
 * In-place initializers (PyTorch's torch.nn.init), drawing from the global seeded generator:
 * the same seed and construction order give the same weights. A `shard` fills exactly its
 * slice of the full tensor's values, so a sharded layer starts where the unsharded one does.
 */

import * as k from '../ops/kernels.ts';
import type { DType } from '../tensor/dtype.ts';
import { takeCounters } from '../tensor/random.ts';
import { fmt } from '../tensor/shape.ts';
import { Tensor } from '../tensor/tensor.ts';

export interface InitOptions {
  /** `t` holds elements [start, start + t.numel) (row-major) of a full tensor of `total` elements. */
  shard?: { start: number; total: number };
}

let skipping = false;

/**
 * Builds modules inside `fn` without initializing their parameters: the initializers below
 * do nothing (and draw no random numbers), so parameters hold arbitrary values until loaded.
 * For construction right before `loadStateDict`, or to count parameters of a large model fast.
 * @example
 * const model = withoutInit(() => new GPT(gptConfig('124M')));
 * model.loadStateDict(weights);
 */
export function withoutInit<T>(fn: () => T): T {
  const prev = skipping;
  skipping = true;
  try {
    return fn();
  } finally {
    skipping = prev;
  }
}

function fillRandom(t: Tensor, kind: number, a: number, b: number, opts: InitOptions, what: string): Tensor {
  if (skipping) return t;
  if (!t.isContiguous) throw new Error(`${what}: needs a contiguous tensor, got ${t} with strides ${fmt(t.strides)}`);
  if (!Number.isFinite(a) || !Number.isFinite(b)) throw new Error(`${what}: parameters must be finite, got ${a}, ${b}`);
  const start = opts.shard?.start ?? 0;
  const total = opts.shard?.total ?? t.numel;
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(total) || start < 0 || start + t.numel > total) {
    throw new Error(`${what}: shard {start: ${start}, total: ${total}} does not hold ${t} (${t.numel} elements)`);
  }
  const { seed, offset } = takeCounters(total);
  return k.random(kind, t, seed, offset, start, a, b);
}

/** Fills `t` with uniform samples in [low, high). */
export function uniform_(t: Tensor, low = 0, high = 1, opts: InitOptions = {}): Tensor {
  return fillRandom(t, k.Random.uniform, low, high, opts, 'uniform_');
}

/** Fills `t` with normal(mean, std) samples. */
export function normal_(t: Tensor, mean = 0, std = 1, opts: InitOptions = {}): Tensor {
  if (!(std >= 0)) throw new Error(`normal_: std must be >= 0, got ${std}`);
  return fillRandom(t, k.Random.normal, mean, std, opts, 'normal_');
}

export function constant_(t: Tensor, value: number): Tensor {
  if (!t.isContiguous) throw new Error(`constant_: needs a contiguous tensor, got ${t}`);
  return skipping ? t : k.fill(t, value);
}

export function zeros_(t: Tensor): Tensor {
  return constant_(t, 0);
}

export function ones_(t: Tensor): Tensor {
  return constant_(t, 1);
}

/** [fanIn, fanOut] of a weight: [out, in] for linear, [out, in, ...kernel] for conv. */
export function fans(shape: readonly number[]): [number, number] {
  if (shape.length < 2) throw new Error(`fans: a weight needs at least 2 dims, got ${fmt(shape)}`);
  let receptive = 1;
  for (const s of shape.slice(2)) receptive *= s;
  return [shape[1] * receptive, shape[0] * receptive];
}

export type Nonlinearity = 'linear' | 'relu' | 'leaky_relu' | 'tanh';

/** PyTorch's calculate_gain. */
export function gain(nonlinearity: Nonlinearity, a = 0.01): number {
  switch (nonlinearity) {
    case 'linear':
      return 1;
    case 'relu':
      return Math.SQRT2;
    case 'leaky_relu':
      return Math.sqrt(2 / (1 + a * a));
    case 'tanh':
      return 5 / 3;
    default:
      throw new Error(`gain: unknown nonlinearity ${JSON.stringify(nonlinearity)}`);
  }
}

export interface KaimingOptions extends InitOptions {
  /** Negative slope of the leaky ReLU (default 0). */
  a?: number;
  mode?: 'fanIn' | 'fanOut';
  nonlinearity?: Nonlinearity;
  /** The full tensor's shape when `t` is a shard (fans come from it). */
  fullShape?: readonly number[];
}

function kaimingStd(t: Tensor, opts: KaimingOptions): number {
  const [fanIn, fanOut] = fans(opts.fullShape ?? t.shape);
  const fan = (opts.mode ?? 'fanIn') === 'fanIn' ? fanIn : fanOut;
  return gain(opts.nonlinearity ?? 'leaky_relu', opts.a ?? 0) / Math.sqrt(fan);
}

/**
 * He uniform: U(-b, b) with b = gain · sqrt(3 / fan). PyTorch's Linear and Conv default is
 * `{ a: Math.sqrt(5) }`, i.e. b = 1/sqrt(fanIn).
 */
export function kaimingUniform_(t: Tensor, opts: KaimingOptions = {}): Tensor {
  const bound = Math.sqrt(3) * kaimingStd(t, opts);
  return uniform_(t, -bound, bound, opts);
}

/** He normal: N(0, gain / sqrt(fan)); torchvision's ResNet uses `{ mode: 'fanOut', nonlinearity: 'relu' }`. */
export function kaimingNormal_(t: Tensor, opts: KaimingOptions = {}): Tensor {
  return normal_(t, 0, kaimingStd(t, opts), opts);
}

/** A new uninitialized parameter tensor (tag 'param'), to be filled by an initializer. */
export function emptyParameter(shape: readonly number[], dtype: DType = 'f32'): Tensor {
  return Tensor.empty(shape, { dtype, tag: 'param' });
}

/** Checks a layer size argument: a positive integer. */
export function checkCount(n: number, layer: string, what: string): void {
  if (!Number.isSafeInteger(n) || n <= 0) throw new Error(`${layer}: ${what} must be a positive integer, got ${n}`);
}
