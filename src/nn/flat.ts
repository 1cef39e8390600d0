/**
 * Flat parameter buffers: many parameters moved into one contiguous native buffer, each
 * parameter re-pointed (same Tensor object) at its slice. Afterwards an optimizer or a
 * collective works on the whole buffer at once and the module sees the result with no copy.
 */

import * as k from '../ops/kernels.ts';
import { keep } from '../tensor/scope.ts';
import { contiguousStrides, fmt } from '../tensor/shape.ts';
import type { MemoryTag } from '../tensor/storage.ts';
import { Tensor } from '../tensor/tensor.ts';

export interface FlattenOptions {
  /** The buffer's memory tag (default 'param'). */
  tag?: MemoryTag;
  /**
   * Each parameter starts at a multiple of this many elements and the total is padded to one
   * (default 1: packed). Padding is zero.
   */
  alignment?: number;
  /** The total is also padded up to a multiple of this many elements (ZeRO: the dp size). Default 1. */
  padTo?: number;
  /** Allocates the buffer (e.g. in a process group's shared arena); it is zeroed here. Default: a fresh native buffer. */
  allocate?: (numel: number, dtype: Tensor['dtype']) => Tensor;
}

/** The result of `flattenParameters`. */
export interface FlatParameters {
  /** 1-D [numel] over the whole buffer, padding included; kept out of scopes. */
  readonly buffer: Tensor;
  /** The parameters, in buffer order (duplicates of the input removed). */
  readonly params: readonly Tensor[];
  /** Element offset of each parameter in the buffer. */
  readonly offsets: readonly number[];
  /** Elements in the buffer, padding included. */
  readonly numel: number;
}

/**
 * Copies `params` (one dtype, one device) into one new contiguous buffer and re-points each
 * parameter at its slice: the parameter tensors stay the same objects (module references,
 * optimizer lists and hooks stay valid) and from then on read and write the buffer. Each
 * parameter's old memory is released. The buffer and the parameters share one storage, which
 * lives until the buffer and every parameter are disposed.
 * @example
 * const flat = flattenParameters(model.parameters());
 * noGrad(() => addInPlace(flat.buffer, flatUpdate, -lr));   // every weight updated at once
 */
export function flattenParameters(params: Iterable<Tensor>, opts: FlattenOptions = {}): FlatParameters {
  const list = [...new Set(params)];
  if (list.length === 0) throw new Error('flattenParameters: no parameters given');
  const align = opts.alignment ?? 1;
  if (!Number.isSafeInteger(align) || align < 1) throw new Error(`flattenParameters: alignment must be a positive integer, got ${align}`);
  const { dtype, device } = list[0];
  list.forEach((p, i) => {
    if (!(p instanceof Tensor)) throw new Error(`flattenParameters: item ${i} is not a Tensor`);
    if (p.disposed) throw new Error(`flattenParameters: parameter ${i} ${fmt(p.shape)} was disposed`);
    if (p.dtype !== dtype || p.device !== device) {
      throw new Error(`flattenParameters: parameter ${i} ${p} on ${p.device} differs from parameter 0 (${dtype} on ${device}); flatten each dtype and device separately`);
    }
    if (!p.isLeaf) throw new Error(`flattenParameters: parameter ${i} ${p} is not a leaf`);
  });
  const up = (n: number) => Math.ceil(n / align) * align;
  const offsets: number[] = [];
  let total = 0;
  for (const p of list) {
    total = up(total);
    offsets.push(total);
    total += p.numel;
  }
  total = up(total);
  const padTo = opts.padTo ?? 1;
  if (!Number.isSafeInteger(padTo) || padTo < 1) throw new Error(`flattenParameters: padTo must be a positive integer, got ${padTo}`);
  total = Math.ceil(total / padTo) * padTo;
  const buffer = keep(opts.allocate
    ? k.fill(opts.allocate(total, dtype), 0)
    : Tensor.empty([total], { dtype, device, tag: opts.tag ?? 'param', zero: align > 1 || padTo > 1 }));
  list.forEach((p, i) => {
    const slot = buffer.alias(p.shape, contiguousStrides(p.shape), offsets[i]);
    k.copyInto(p, slot);
    slot.dispose();
    buffer.storage.retain();
    p.rebind(buffer.storage, offsets[i]);
  });
  return { buffer, params: list, offsets, numel: total };
}
