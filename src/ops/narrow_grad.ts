/**
 * narrow's backward: the gradient of the whole input, `g` in [start, start + g.shape[d]) of dim
 * `d` and zeros elsewhere. A padded vocabulary (models/gpt.ts makeVocabSizeDivisibleBy) narrows
 * the [.., Vp] head product to [.., V], and on CUDA cross-entropy writes its gradient at the
 * product's pitch Vp: that storage is then already laid out as the whole gradient, so only its
 * padding columns are zeroed (a strided fill) and it is handed on, with no allocation nor copy of
 * GPT-2's 823 MB. Any other layout (CPU's dense gradient, a shared storage) takes zeros + copy.
 */
import { itemSize } from '../tensor/dtype.ts';
import { contiguousStrides, numel } from '../tensor/shape.ts';
import type { Tensor } from '../tensor/tensor.ts';
import * as k from './kernels.ts';

let inPlace = 0;

/** Narrow gradients completed in their own storage so far in this process (tests, benchmarks). */
export function narrowGradsInPlace(): number {
  return inPlace;
}

/** The gradient of narrow(x, d, start, g.shape[d]) for x of `shape`. */
export function narrowGrad(g: Tensor, shape: readonly number[], d: number, start: number): Tensor {
  const full = contiguousStrides(shape);
  if (ownsWholeLayout(g, shape, full, start * full[d])) {
    zeroOutside(g, shape, full, d, start);
    inPlace++;
    return g.alias([...shape], full, 0);
  }
  const out = k.fill(k.empty(shape, g.dtype, undefined, false, g.device), 0);
  const region = out.alias(g.shape, out.strides, start * out.strides[d]);
  k.copyInto(g, region);
  region.dispose();
  return out;
}

/**
 * True when `g` is the only handle on a storage of exactly a contiguous `shape` and sits in it
 * at `offset` with that layout's strides: nothing else can read the elements around it.
 */
function ownsWholeLayout(g: Tensor, shape: readonly number[], full: readonly number[], offset: number): boolean {
  if (g.kept || g.gradFn !== null || g.storage.holders !== 1 || g.offset !== offset) return false;
  if (g.storage.nbytes !== numel(shape) * itemSize(g.dtype)) return false;
  for (let i = 0; i < g.ndim; i++) if (g.shape[i] !== 1 && g.strides[i] !== full[i]) return false;
  return true;
}

/** Writes zeros to the parts of dim `d` before `start` and after g's span, in g's storage. */
function zeroOutside(g: Tensor, shape: readonly number[], full: readonly number[], d: number, start: number): void {
  const end = start + g.shape[d];
  const parts: [number, number][] = [
    [0, start],
    [end, shape[d] - end],
  ];
  let zero: Tensor | null = null;
  for (const [at, n] of parts) {
    if (n === 0) continue;
    const partShape = [...shape];
    partShape[d] = n;
    if (numel(partShape) === 0) continue;
    zero ??= k.fill(k.empty([1], g.dtype, undefined, false, g.device), 0);
    const src = zero.alias(partShape, partShape.map(() => 0), 0);
    const dst = g.alias(partShape, full, at * full[d]);
    k.copyInto(src, dst);
    src.dispose();
    dst.dispose();
  }
  zero?.dispose();
}
