/** Shape arithmetic shared by ops: sizes, strides, broadcasting, dim normalization. */

export type Shape = readonly number[];

export function numel(shape: Shape): number {
  let n = 1;
  for (const s of shape) n *= s;
  return n;
}

export function contiguousStrides(shape: Shape): number[] {
  const st = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    st[i] = acc;
    acc *= shape[i];
  }
  return st;
}

/** True when the strides lay the shape out row-major with no gaps (size-1 dims ignored). */
export function isContiguous(shape: Shape, strides: readonly number[]): boolean {
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    if (shape[i] === 1) continue;
    if (strides[i] !== acc) return false;
    acc *= shape[i];
  }
  return true;
}

export function fmt(shape: Shape): string {
  return `[${shape.join(', ')}]`;
}

export function sameShape(a: Shape, b: Shape): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Resolves a possibly negative dim against a rank, with an error naming the op. */
export function normDim(dim: number, rank: number, op: string): number {
  const d = dim < 0 ? dim + rank : dim;
  if (!Number.isInteger(dim) || d < 0 || d >= rank) {
    throw new Error(`${op}: dim ${dim} is out of range for a tensor of rank ${rank}`);
  }
  return d;
}

export function broadcastShapes(a: Shape, b: Shape, op: string): number[] {
  const n = Math.max(a.length, b.length);
  const out = new Array<number>(n);
  for (let i = 0; i < n; i++) {
    const x = a[a.length - n + i] ?? 1;
    const y = b[b.length - n + i] ?? 1;
    if (x !== y && x !== 1 && y !== 1) {
      throw new Error(`${op}: shapes ${fmt(a)} and ${fmt(b)} cannot be broadcast together`);
    }
    out[i] = x === 1 ? y : x;
  }
  return out;
}

/** Strides that read a tensor of `shape`/`strides` as if it had the broadcast shape `to`. */
export function broadcastStrides(shape: Shape, strides: readonly number[], to: Shape): number[] {
  const off = to.length - shape.length;
  return to.map((_, i) => (i < off || shape[i - off] === 1 ? 0 : strides[i - off]));
}

export function checkShape(shape: unknown, op: string): number[] {
  if (!Array.isArray(shape) || !shape.every((s) => Number.isInteger(s) && s >= 0)) {
    throw new Error(`${op}: shape must be an array of non-negative integers, got ${JSON.stringify(shape)}`);
  }
  return [...shape];
}

/** True when the strides are a permutation of a contiguous layout (no gaps, no overlap), e.g. channels-last. */
export function isDense(shape: Shape, strides: readonly number[]): boolean {
  // The common case without sorting (element-wise ops ask for every operand).
  if (isContiguous(shape, strides)) return true;
  if (shape.length <= 8 && !shape.includes(0)) return isDenseChain(shape, strides);
  const order = shape.map((_, i) => i).filter((i) => shape[i] !== 1);
  order.sort((a, b) => strides[b] - strides[a]);
  let acc = 1;
  for (let k = order.length - 1; k >= 0; k--) {
    if (strides[order[k]] !== acc) return false;
    acc *= shape[order[k]];
  }
  return true;
}

/**
 * isDense without sorting or allocating (channels-last tensors ask on every op): the non-1 dims,
 * smallest stride first, must each step over exactly the ones before. With no size-0 dim each link
 * multiplies the step by >= 2, so at most one unused dim can have the stride sought, and a chain
 * through every dim exists exactly when the sorted order is one.
 */
function isDenseChain(shape: Shape, strides: readonly number[]): boolean {
  let used = 0;
  let left = 0;
  for (let i = 0; i < shape.length; i++) if (shape[i] !== 1) left++;
  let acc = 1;
  for (; left > 0; left--) {
    let found = -1;
    for (let i = 0; i < shape.length; i++) {
      if (shape[i] !== 1 && (used & (1 << i)) === 0 && strides[i] === acc) {
        found = i;
        break;
      }
    }
    if (found < 0) return false;
    used |= 1 << found;
    acc *= shape[found];
  }
  return true;
}
