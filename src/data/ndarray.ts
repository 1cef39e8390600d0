/**
 * Plain n-dimensional arrays: a typed array and a shape. Samples are built from these (not from
 * Tensors) because the addon's tensors must not cross threads, while typed arrays can be
 * transferred between workers and the main thread without copies.
 *
 * Image convention (as torchvision's): uint8 images are HWC, as decoded; float images are CHW,
 * as `ToTensor()` makes them.
 */

export type TypedArray = Float32Array | Float64Array | Int32Array | BigInt64Array | Uint8Array;

export interface NDArray<A extends TypedArray = TypedArray> {
  data: A;
  shape: number[];
}

function size(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/**
 * Wraps a typed array with a shape, checking that they agree.
 * @example
 * const img = ndarray(new Uint8Array(32 * 32 * 3), [32, 32, 3]);   // HWC
 */
export function ndarray<A extends TypedArray>(data: A, shape: readonly number[]): NDArray<A> {
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 0) throw new Error(`ndarray: shape [${shape.join(', ')}] must hold non-negative integers`);
  }
  if (size(shape) !== data.length) throw new Error(`ndarray: ${data.length} values do not fill shape [${shape.join(', ')}]`);
  return { data, shape: [...shape] };
}

export function isTypedArray(x: unknown): x is TypedArray {
  return (
    x instanceof Float32Array || x instanceof Float64Array || x instanceof Int32Array || x instanceof BigInt64Array || x instanceof Uint8Array
  );
}

export function isNDArray(x: unknown): x is NDArray {
  return typeof x === 'object' && x !== null && isTypedArray((x as NDArray).data) && Array.isArray((x as NDArray).shape);
}

/** An image's height, width, channels and element strides, from its layout convention. */
export interface ImageGeometry {
  h: number;
  w: number;
  c: number;
  /** Element strides of a row, a column and a channel. */
  sh: number;
  sw: number;
  sc: number;
}

/** Reads the geometry of a 3-D image: uint8 is HWC, float is CHW. */
export function imageGeometry(img: NDArray, where: string): ImageGeometry {
  if (!isNDArray(img) || img.shape.length !== 3) {
    const got = isNDArray(img) ? `shape [${img.shape.join(', ')}]` : typeof img;
    throw new Error(`${where}: expected a 3-D image (uint8 HWC or float CHW), got ${got}`);
  }
  if (img.data instanceof Uint8Array) {
    const [h, w, c] = img.shape;
    return { h, w, c, sh: w * c, sw: c, sc: 1 };
  }
  if (img.data instanceof Float32Array || img.data instanceof Float64Array) {
    const [c, h, w] = img.shape;
    return { h, w, c, sh: w, sw: 1, sc: h * w };
  }
  throw new Error(`${where}: images must be Uint8Array (HWC) or Float32Array/Float64Array (CHW), got ${img.data.constructor.name}`);
}
