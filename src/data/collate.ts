/**
 * Collation: a list of samples → one stacked typed array per field, ready to become tensors on
 * the main thread. Pure TypeScript over typed arrays, so workers run exactly the same code.
 * Floats keep their precision (f32, f64); integers (labels, token ids) become i64, which is what
 * `embedding` and `crossEntropy` take.
 */
import type { DType } from '../tensor/dtype.ts';
import type { Dataset, Field, Sample, SampleContext } from './dataset.ts';
import { isNDArray, isTypedArray } from './ndarray.ts';
import { portable } from './portable.ts';

/** One stacked field: [batch, ...sample shape]. */
export interface BatchArray {
  data: Float32Array | Float64Array | BigInt64Array;
  shape: number[];
  dtype: DType;
}

/** A collated batch, shaped like the samples: one array, a tuple or a record of arrays. */
export type BatchArrays = BatchArray | BatchArray[] | { [key: string]: BatchArray };

/** Turns samples into a batch; must be `portable` to run in workers. */
export type Collate = (samples: Sample[]) => BatchArrays;

const littleEndian = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** The flat values and per-sample shape of a field, or an error naming the field. */
function fieldParts(f: Field, where: string): { values: ArrayLike<number | bigint>; shape: number[]; dtype: DType } {
  if (typeof f === 'number') {
    if (!Number.isSafeInteger(f)) throw new Error(`${where}: number fields are integer labels (collated to i64), got ${f}`);
    return { values: [f], shape: [], dtype: 'i64' };
  }
  const data = isNDArray(f) ? f.data : isTypedArray(f) ? f : null;
  if (data === null) throw new Error(`${where}: expected a number, a typed array or { data, shape }, got ${typeof f}`);
  const shape = isNDArray(f) ? f.shape : [data.length];
  if (data instanceof Uint8Array) throw new Error(`${where}: uint8 fields are ambiguous (an image? bytes?); apply ToTensor() or use Int32Array`);
  const dtype: DType = data instanceof Float32Array ? 'f32' : data instanceof Float64Array ? 'f64' : 'i64';
  return { values: data, shape, dtype };
}

/** Stacks one field of every sample; `pick` extracts it from a sample. */
function stack(samples: readonly Sample[], pick: (s: Sample) => Field, name: string): BatchArray {
  const first = fieldParts(pick(samples[0]), `collate: sample 0 ${name}`);
  const per = first.values.length;
  const n = samples.length * per;
  const shape = [samples.length, ...first.shape];
  const data = first.dtype === 'f32' ? new Float32Array(n) : first.dtype === 'f64' ? new Float64Array(n) : new BigInt64Array(n);
  // i64 from 32-bit values: write both halves through an Int32Array view, no BigInt per element.
  const words = data instanceof BigInt64Array && littleEndian ? new Int32Array(data.buffer) : null;
  for (let b = 0; b < samples.length; b++) {
    const part = b === 0 ? first : fieldParts(pick(samples[b]), `collate: sample ${b} ${name}`);
    if (part.dtype !== first.dtype || part.values.length !== per || part.shape.join() !== first.shape.join()) {
      throw new Error(
        `collate: sample ${b} ${name} is ${part.dtype} [${part.shape.join(', ')}], sample 0's is ${first.dtype} [${first.shape.join(', ')}]`,
      );
    }
    const v = part.values;
    const at = b * per;
    if (!(data instanceof BigInt64Array)) {
      (data as Float32Array).set(v as ArrayLike<number>, at);
    } else if (v instanceof BigInt64Array) {
      data.set(v, at);
    } else {
      for (let j = 0; j < per; j++) {
        const x = v[j] as number;
        if (words && x === (x | 0)) {
          words[2 * (at + j)] = x;
          words[2 * (at + j) + 1] = x < 0 ? -1 : 0;
        } else {
          data[at + j] = BigInt(x);
        }
      }
    }
  }
  return { data, shape, dtype: first.dtype };
}

/**
 * The default collation: fields stacked along a new first dim; tuples stay tuples, records stay
 * records. Numbers → i64 [B]; Float32Array → f32 [B, ...]; Int32Array/BigInt64Array → i64 [B, ...].
 * @example
 * defaultCollate([[img0, 3], [img1, 7]]);   // [{ f32 [2, 3, 32, 32] }, { i64 [2] }]
 */
export const defaultCollate: Collate = portable(collateSamples, import.meta.url, 'defaultCollate');

function collateSamples(samples: Sample[]): BatchArrays {
  if (samples.length === 0) throw new Error('collate: no samples');
  const s0 = samples[0];
  if (Array.isArray(s0)) {
    return s0.map((_, k) => stack(samples, (s) => (s as readonly Field[])[k], `field ${k}`));
  }
  if (typeof s0 === 'object' && !isNDArray(s0) && !isTypedArray(s0)) {
    const out: { [key: string]: BatchArray } = {};
    for (const key of Object.keys(s0)) out[key] = stack(samples, (s) => (s as { [k: string]: Field })[key], `field '${key}'`);
    return out;
  }
  return stack(samples, (s) => s as Field, 'value');
}

/**
 * Reads and collates the samples at `indices`; an error names the failing sample's index.
 * Both the in-process loader and the workers call this.
 */
export function fetchBatch(dataset: Dataset, indices: readonly number[], ctx: SampleContext, collate: Collate): BatchArrays {
  const samples: Sample[] = new Array(indices.length);
  for (let k = 0; k < indices.length; k++) {
    try {
      samples[k] = dataset.get(indices[k], ctx);
    } catch (e) {
      throw new Error(`sample ${indices[k]}: ${(e as Error).message}`, { cause: e });
    }
  }
  return collate(samples);
}

export function isBatchArray(x: unknown): x is BatchArray {
  const b = x as BatchArray;
  return typeof x === 'object' && x !== null && isTypedArray(b.data) && Array.isArray(b.shape) && typeof b.dtype === 'string';
}

/** The arrays of a batch in order: a tuple's, a record's (by key order) or the single one. */
export function batchList(batch: BatchArrays): BatchArray[] {
  return Array.isArray(batch) ? batch : isBatchArray(batch) ? [batch] : Object.values(batch);
}

/** The buffers of a batch, for transferring it between threads. */
export function batchBuffers(batch: BatchArrays): ArrayBuffer[] {
  const list = batchList(batch);
  const bufs = list.map((a) => a.data.buffer as ArrayBuffer);
  return [...new Set(bufs)].filter((b) => !(b instanceof SharedArrayBuffer));
}
