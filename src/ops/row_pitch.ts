/**
 * A padded row pitch for products whose rows are not a multiple of 16 bytes (GPT-2's 50257-wide
 * logits: 100514 bytes a row in bf16). cuBLASLt's fast kernels want 16-byte aligned leading
 * dimensions; padding the vocabulary (nanoGPT's and Megatron's 50304) changes the model, this
 * does not: on CUDA such a product writes its rows `pitch` elements apart (N rounded up to 16
 * bytes) and returns a strided view [..., N]. Cross-entropy reads and writes rows at that pitch
 * and linear's backward passes it to cuBLASLt as the leading dimension, so the GPT step never
 * copies its logits. The padding columns are never written nor read as data (they hold whatever
 * the allocator left); `.contiguous()`, `toArray()` and any op that needs a dense input see the N
 * columns only. `MESHTRAIN_PAD_LD=0` turns it off, `all` pads every odd width (tests).
 */
import { isCuda, kernelsSay } from '../tensor/backend.ts';
import { type DType, itemSize } from '../tensor/dtype.ts';
import { numel } from '../tensor/shape.ts';
import type { Device } from '../tensor/storage.ts';
import type { Tensor } from '../tensor/tensor.ts';
import * as k from './kernels.ts';

/** 'auto': large products only (see paddedPitch); 'all': every odd width on CUDA; 'off': never. */
export type RowPitchMode = 'off' | 'auto' | 'all';

/** Rows shorter than this are not padded: at most 15 bytes of padding per row stays under 1.5%. */
export const MIN_ROW_BYTES = 1024;
/** Products smaller than this are not padded: they are launch-bound, and a consumer needing a dense input would add a copy. */
export const MIN_OUT_BYTES = 1 << 20;

function parseMode(v: string | undefined): RowPitchMode {
  if (v === undefined || v === '' || v === '1' || v === 'auto') return 'auto';
  if (v === '0' || v === 'off') return 'off';
  if (v === 'all') return 'all';
  throw new Error(`MESHTRAIN_PAD_LD must be 0, 1 (auto) or all, got ${JSON.stringify(v)}`);
}

let mode: RowPitchMode = parseMode(process.env.MESHTRAIN_PAD_LD);

/** The current mode (MESHTRAIN_PAD_LD at startup, or the last setRowPitchMode). */
export function rowPitchMode(): RowPitchMode {
  return mode;
}

/**
 * Switches the padded row pitch for products made from now on (tests, benchmarks); returns the
 * previous mode.
 * @example
 * const before = setRowPitchMode('off');  // dense logits, as with MESHTRAIN_PAD_LD=0
 * try { step(); } finally { setRowPitchMode(before); }
 */
export function setRowPitchMode(m: RowPitchMode): RowPitchMode {
  const before = mode;
  mode = parseMode(m);
  return before;
}

/**
 * Runs `fn` with the pitch mode set to `m`, then restores the previous mode (also when `fn` throws).
 * @example
 * const logits = withRowPitchMode('off', () => model.forward(ids));  // dense logits for this call
 */
export function withRowPitchMode<T>(m: RowPitchMode, fn: () => T): T {
  const before = setRowPitchMode(m);
  try {
    return fn();
  } finally {
    setRowPitchMode(before);
  }
}

/**
 * The row pitch (in elements) a [rows, n] product of `dtype` on `dev` is written with: n itself
 * unless the rows are not a multiple of 16 bytes, the device's addon takes a pitch (matmul and
 * cross-entropy) and, in 'auto', the rows and the whole output are large enough to matter.
 */
export function paddedPitch(rows: number, n: number, dtype: DType, dev: Device): number {
  if (mode === 'off' || !isCuda(dev)) return n;
  const item = itemSize(dtype);
  const rowBytes = n * item;
  if (rowBytes % 16 === 0 || rows < 2) return n;
  if (mode === 'auto' && (rowBytes < MIN_ROW_BYTES || rows * rowBytes < MIN_OUT_BYTES)) return n;
  if (!kernelsSay(dev, 'matmulOutLd') || !kernelsSay(dev, 'crossEntropyLd')) return n;
  return alignedPitch(n, dtype);
}

/** n rounded up to a whole number of 16-byte units of `dtype`. */
export function alignedPitch(n: number, dtype: DType): number {
  const per = 16 / itemSize(dtype);
  return Math.ceil(n / per) * per;
}

/**
 * A new [...lead, n] tensor whose rows are `pitch` elements apart (the padding counted in its
 * memory tag, never written): strides [..., pitch, 1] over rows laid out back to back.
 */
export function emptyPitched(lead: readonly number[], n: number, pitch: number, dtype: DType, dev: Device): Tensor {
  const shape = [...lead, n];
  const strides = new Array<number>(shape.length);
  strides[shape.length - 1] = 1;
  let step = pitch;
  for (let i = shape.length - 2; i >= 0; i--) {
    strides[i] = step;
    step *= shape[i];
  }
  const base = k.empty([numel(lead) * pitch], dtype, undefined, false, dev);
  const out = base.alias(shape, strides, 0);
  base.dispose();
  return out;
}

/**
 * The distance in elements between consecutive rows of `t` seen as [rows, C] (C its last dim),
 * or -1 when its rows are not evenly spaced or a row is not dense. C itself for a contiguous tensor.
 */
export function rowPitchOf(t: Tensor): number {
  const nd = t.ndim;
  if (nd === 0) return 1;
  const C = t.shape[nd - 1];
  if (C > 1 && t.strides[nd - 1] !== 1) return -1;
  let pitch = -1;
  let expect = -1;
  for (let i = nd - 2; i >= 0; i--) {
    if (t.shape[i] === 1) continue;
    if (pitch === -1) {
      pitch = t.strides[i];
      expect = pitch * t.shape[i];
    } else if (t.strides[i] !== expect) {
      return -1;
    } else {
      expect *= t.shape[i];
    }
  }
  if (pitch === -1) return C;
  return pitch >= C ? pitch : -1;
}
