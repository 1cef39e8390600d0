/**
 * Gradient destinations: the engine may hand a node the `.grad` of a leaf input, and the node
 * then adds that input's gradient into it itself (a GEMM with beta = 1, a kernel that
 * accumulates) and returns GRAD_WRITTEN in its place. That saves, per parameter and backward, the
 * temporary gradient, the accumulating kernel and one read and write of the gradient. Nodes that
 * cannot write there return a tensor as before and the engine adds it. Likewise for an input
 * another node produced and that is used more than once: the gradient the engine already holds
 * for it (no other handle on its memory) is offered, and the node adds the next one there, which
 * saves the element-wise add of the two (a residual's gradient sum).
 */
import { itemSize } from '../tensor/dtype.ts';
import type { Tensor } from '../tensor/tensor.ts';

/** Where a node may write input i's gradient. */
export interface GradInto {
  /**
   * The leaf's `.grad` (the leaf's shape, dtype and device), or the gradient summed so far for a
   * produced input (its shape): contiguous. Add into it (check the dtype where it matters).
   */
  readonly grad: Tensor;
  /** `grad` holds zeros (grad_zero.ts): an overwriting write is an add. */
  readonly zero: boolean;
  /**
   * A produced input's held gradient that something else still reads (the caller's gradient at the
   * root, a deferred weight-gradient job's): do not write into it; a node may instead return the
   * sum, grad plus its own gradient, as a new tensor passed through `heldSum()` (one rounding).
   */
  readonly shared?: boolean;
}

const heldSums = new WeakSet<Tensor>();
let heldSumCount = 0;

/** Marks `t`, returned for an input offered `shared`, as that input's whole gradient (the held one included). */
export function heldSum(t: Tensor): Tensor {
  heldSums.add(t);
  heldSumCount++;
  return t;
}

/** Sums returned through heldSum so far in this process (tests: layer norm's each cost a copy of the held gradient). */
export function heldSumsReturned(): number {
  return heldSumCount;
}

/** True (once) when `t` was marked by heldSum. */
export function takeHeldSum(t: Tensor): boolean {
  return heldSums.delete(t);
}

/** Returned in place of a gradient that the node has already added into its GradInto. */
export const GRAD_WRITTEN: unique symbol = Symbol('gradWritten');

let enabled = true;
let written = 0;

/**
 * Turns gradient destinations on (the default) or off; off, every gradient is returned and added
 * by the engine (the reference path of the tests and benchmarks). Returns the previous setting.
 * @example
 * const prev = setGradInto(false);
 * try { loss.backward(); } finally { setGradInto(prev); }
 */
export function setGradInto(on: boolean): boolean {
  if (typeof on !== 'boolean') throw new Error(`setGradInto: expected a boolean, got ${typeof on}`);
  const prev = enabled;
  enabled = on;
  return prev;
}

export function gradIntoEnabled(): boolean {
  return enabled;
}

/** Gradients written into a `.grad` by their node so far in this process (tests, benchmarks). */
export function gradsWrittenInto(): number {
  return written;
}

/** The engine counts each GRAD_WRITTEN it receives for a leaf. */
export function countGradWritten(): void {
  written++;
}

let sums = 0;

/** Gradients a node added into the one held for a produced input (instead of the engine's add) so far in this process. */
export function sumsWrittenInto(): number {
  return sums;
}

/** The engine counts each GRAD_WRITTEN it receives for a produced input. */
export function countSumWritten(): void {
  sums++;
}

/**
 * True when the memory of `dest` and of any of `reads` overlap: a node must not write a
 * gradient into a tensor it is reading (a `.grad` fed back into the graph).
 */
export function overlapsAny(dest: Tensor, reads: readonly (Tensor | null | undefined)[]): boolean {
  const [lo, hi] = byteRange(dest);
  for (const t of reads) {
    if (!t || t.disposed || t.storage !== dest.storage) continue;
    const [a, b] = byteRange(t);
    if (a < hi && lo < b) return true;
  }
  return false;
}

/** The bytes a tensor can address: [first, last + 1) (strides are never negative). */
function byteRange(t: Tensor): [number, number] {
  if (t.numel === 0) return [0, 0];
  let last = t.offset;
  for (let i = 0; i < t.ndim; i++) last += (t.shape[i] - 1) * t.strides[i];
  return [t.offset * itemSize(t.dtype), (last + 1) * itemSize(t.dtype)];
}
