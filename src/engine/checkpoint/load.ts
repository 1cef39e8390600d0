/** Loading any layout's slices from a sharded checkpoint: verify everything first, then copy. */
import path from 'node:path';
import type { Module } from '../../nn/module.ts';
import { closestKey } from '../../nn/state_dict.ts';
import type { DType } from '../../tensor/dtype.ts';
import { fmt, numel } from '../../tensor/shape.ts';
import type { Tensor } from '../../tensor/tensor.ts';
import { checkRank, indexFileName } from './format.ts';
import { decodePlain } from './plain_state.ts';
import { openCheckpoint, readRange, type SavedSlice } from './reader.ts';
import { checkShard } from './save.ts';
import { tensorFromBytes, writeTensorBytes } from './tensor_bytes.ts';

/** A slice this rank wants: the same description as a saved shard, in the loading layout. */
export interface TensorRequest {
  name: string;
  fullShape: number[];
  dtype: DType;
  /** Flat element range [start, end) of the full tensor (default: all of it). */
  shardRange?: [number, number];
  /** Copy into this contiguous tensor of `end - start` elements instead of creating one. */
  into?: Tensor;
}

export interface LoadCheckpointOptions {
  /** Default: the tag in `dir/latest`. */
  tag?: string;
  rank?: number;
  worldSize?: number;
  want: TensorRequest[];
  /** Explains a tensor saved with another shape (Module.stateDictShapeHint via moduleShapeHint), or null. */
  shapeHint?: (name: string, savedShape: readonly number[]) => string | null;
}

export interface LoadedCheckpoint {
  tag: string;
  /** The world size the checkpoint was saved with. */
  savedWorldSize: number;
  /**
   * Each requested slice by name: `into` when given, else a new tensor (tag 'other') of the full
   * shape for a full range, or 1-D of `end - start` elements for a partial one.
   */
  tensors: Map<string, Tensor>;
  /**
   * Plain state: this rank's when the world size is unchanged, else rank 0's (client, optimizer
   * and scheduler state that is the same on every rank).
   */
  clientState: unknown;
  optimizer: unknown;
  scheduler: unknown;
}

/**
 * Reads this rank's requested slices from checkpoint `tag` (saved under any world size). Every
 * index, size, shape, dtype and checksum involved is checked before anything is copied; a torn,
 * truncated or mismatched checkpoint is refused with an error naming the file and the tensor.
 * @example
 * const { tensors, clientState } = loadCheckpoint('ckpt', { rank, worldSize, want });
 */
export function loadCheckpoint(dir: string, opts: LoadCheckpointOptions): LoadedCheckpoint {
  const where = 'loadCheckpoint';
  const rank = opts.rank ?? 0;
  const worldSize = opts.worldSize ?? 1;
  checkRank(rank, worldSize, where);
  if (!Array.isArray(opts.want)) throw new Error(`${where}: want must be an array`);
  const ck = openCheckpoint(dir, opts.tag);
  const names = [...ck.tensors.keys()];
  const seen = new Set<string>();
  const plan = opts.want.map((w) => {
    const range = checkShard(w, where);
    if (seen.has(w.name)) throw new Error(`${where}: tensor "${w.name}" requested twice`);
    seen.add(w.name);
    const saved = ck.tensors.get(w.name);
    if (!saved) {
      const near = closestKey(w.name, names);
      throw new Error(`${where}: checkpoint ${ck.dir} has no tensor "${w.name}"${near ? ` (did you mean "${near}"?)` : ''}`);
    }
    if (fmt(saved.fullShape) !== fmt(w.fullShape)) {
      const why = opts.shapeHint?.(w.name, saved.fullShape);
      throw new Error(`${where}: tensor "${w.name}" is ${fmt(saved.fullShape)} in ${ck.dir}, requested ${fmt(w.fullShape)}${why ? `: ${why}` : ''}`);
    }
    if (saved.dtype !== w.dtype) throw new Error(`${where}: tensor "${w.name}" is ${saved.dtype} in ${ck.dir}, requested ${w.dtype}`);
    if (w.into) {
      const n = range[1] - range[0];
      if (w.into.numel !== n || w.into.dtype !== w.dtype || !w.into.isContiguous) {
        throw new Error(`${where}: tensor "${w.name}": into is ${fmt(w.into.shape)} ${w.into.dtype}${w.into.isContiguous ? '' : ' non-contiguous'}, need ${n} contiguous ${w.dtype} elements`);
      }
    }
    return { w, saved, range };
  });
  // Read and verify every byte needed before touching any destination.
  const cache = new Map<SavedSlice, Uint8Array>();
  const bytes = plan.map(({ saved, range }) => readRange(saved, range[0], range[1], cache));
  const tensors = new Map<string, Tensor>();
  plan.forEach(({ w, range }, i) => {
    if (w.into) {
      writeTensorBytes(w.into, 0, bytes[i]);
      tensors.set(w.name, w.into);
    } else {
      const full = range[0] === 0 && range[1] === numel(w.fullShape);
      tensors.set(w.name, tensorFromBytes(bytes[i], full ? [...w.fullShape] : [range[1] - range[0]], w.dtype));
    }
  });
  const source = ck.worldSize === worldSize ? ck.indexes[rank] : ck.indexes[0];
  const state = decodePlain(source.state) as { clientState?: unknown; optimizer?: unknown; scheduler?: unknown } | null;
  if (state !== null && typeof state !== 'object') throw new Error(`${where}: ${path.join(ck.dir, indexFileName(source.rank))} has malformed state`);
  return {
    tag: ck.tag,
    savedWorldSize: ck.worldSize,
    tensors,
    clientState: state?.clientState ?? null,
    optimizer: state?.optimizer ?? null,
    scheduler: state?.scheduler ?? null,
  };
}


/**
 * loadCheckpoint's shapeHint for a module's tensors: a state-dict key, or optimizer state
 * `optimizer.<key>.<state>`, asks the module (Module.stateDictShapeHint).
 * @example
 * loadCheckpoint(dir, { want, shapeHint: moduleShapeHint(model) });
 */
export function moduleShapeHint(module: Module): (name: string, savedShape: readonly number[]) => string | null {
  return (name, savedShape) => {
    const key = name.startsWith('optimizer.') ? name.slice('optimizer.'.length, name.lastIndexOf('.')) : name;
    return module.stateDictShapeHint(key, savedShape);
  };
}
