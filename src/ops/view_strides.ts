/**
 * When a strided tensor can be reshaped without a copy: the strides of the new shape over the
 * same memory, or null when the new dims would cut across a gap in the layout (then reshape
 * copies). Used by reshape() so that, e.g., the heads split from one qkv projection (a narrow
 * view) stay views of it.
 */
import { contiguousStrides, numel, type Shape } from '../tensor/shape.ts';

/**
 * Walks the old dims from the innermost, grouping them into runs laid out back to back in
 * memory; each run must be covered exactly by consecutive new dims, which take strides within
 * the run. Size-1 dims fit anywhere.
 * @example
 * viewStrides([2, 64, 128], [24576, 384, 1], [2, 64, 2, 64]);   // [24576, 384, 64, 1]
 * viewStrides([4, 6], [1, 4], [24]);                             // null: a transpose needs a copy
 */
export function viewStrides(shape: Shape, strides: readonly number[], to: Shape): number[] | null {
  if (numel(shape) !== numel(to)) return null;
  if (shape.length === 0 || numel(shape) === 0) return contiguousStrides(to);
  const out = new Array<number>(to.length).fill(0);
  let v = to.length - 1;
  let base = strides[shape.length - 1];
  let runNumel = 1;
  let viewNumel = 1;
  for (let d = shape.length - 1; d >= 0; d--) {
    runNumel *= shape[d];
    const runEnds = d === 0 || (shape[d - 1] !== 1 && strides[d - 1] !== runNumel * base);
    if (!runEnds) continue;
    while (v >= 0 && (viewNumel < runNumel || to[v] === 1)) {
      out[v] = viewNumel * base;
      viewNumel *= to[v];
      v--;
    }
    if (viewNumel !== runNumel) return null;
    if (d > 0) {
      base = strides[d - 1];
      runNumel = 1;
      viewNumel = 1;
    }
  }
  return v === -1 ? out : null;
}
