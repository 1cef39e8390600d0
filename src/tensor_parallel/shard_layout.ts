/**
 * How each parameter of a tensor-parallel model is split across the tp group, and the two
 * conversions between a full tensor and a rank's shard. A split tensor's `dim` holds `blocks`
 * equal blocks (3 for a fused q/k/v weight), each divided evenly across the ranks; a rank's
 * shard is its piece of every block, in block order. Replicated tensors have no layout (null).
 */
import type { ProcessGroup } from '../dist/process_group.ts';
import type { Module } from '../nn/module.ts';
import * as k from '../ops/kernels.ts';
import { fmt } from '../tensor/shape.ts';
import type { Tensor } from '../tensor/tensor.ts';
import { gatherAlong } from './comms.ts';
import { VocabParallelEmbedding } from './embedding.ts';
import { ColumnParallelLinear, RowParallelLinear } from './layers.ts';

/** `dim` of the full tensor holds `blocks` blocks, each split evenly across the tp ranks. */
export interface ShardLayout {
  dim: number;
  blocks: number;
}

/** The layout of `module`'s own parameter `name`, or null when every rank holds it whole. */
export function parameterLayout(module: Module, name: string): ShardLayout | null {
  if (module instanceof ColumnParallelLinear) return { dim: 0, blocks: module.stacked };
  if (module instanceof RowParallelLinear) return name === 'weight' ? { dim: 1, blocks: 1 } : null;
  if (module instanceof VocabParallelEmbedding) return { dim: 0, blocks: 1 };
  return null;
}

/** Every state-dict key of `model` (parameters and persistent buffers) with its layout. */
export function shardLayouts(model: Module): Map<string, ShardLayout | null> {
  const sd = model.stateDict();
  const out = new Map<string, ShardLayout | null>();
  for (const [prefix, m] of model.namedModules()) {
    for (const [n] of m.namedParameters({ recurse: false })) {
      const key = prefix ? `${prefix}.${n}` : n;
      if (key in sd) out.set(key, parameterLayout(m, n));
    }
  }
  for (const key of Object.keys(sd)) if (!out.has(key)) out.set(key, null);
  return out;
}

/** The full tensor's shape given a rank's shard. */
export function fullShape(local: readonly number[], layout: ShardLayout | null, tp: number): number[] {
  const s = [...local];
  if (layout) s[layout.dim] *= tp;
  return s;
}

/** A view of `t` narrowed to [start, start + len) along `dim`. */
function along(t: Tensor, dim: number, start: number, len: number): Tensor {
  const shape = [...t.shape];
  shape[dim] = len;
  return t.alias(shape, t.strides, t.offset + start * t.strides[dim]);
}

/**
 * Copies between a full tensor and shards laid side by side along the layout's dim (slot s holds
 * the shard of rank `ranks[s]`: its piece of each block, in block order), in either direction.
 */
function movePieces(from: Tensor, to: Tensor, layout: ShardLayout, tp: number, ranks: number[], fullIsSource: boolean): void {
  const full = fullIsSource ? from : to;
  const block = full.shape[layout.dim] / layout.blocks;
  const piece = block / tp;
  ranks.forEach((r, slot) => {
    for (let j = 0; j < layout.blocks; j++) {
      const f = along(full, layout.dim, j * block + r * piece, piece);
      const l = along(fullIsSource ? to : from, layout.dim, (slot * layout.blocks + j) * piece, piece);
      if (fullIsSource) k.copyInto(f, l);
      else k.copyInto(l, f);
      f.dispose();
      l.dispose();
    }
  });
}

/** Rank `rank`'s shard of `full` (a new contiguous tensor), or an error naming `what` and the shapes. */
export function sliceShard(full: Tensor, layout: ShardLayout | null, rank: number, tp: number, what = 'sliceShard'): Tensor {
  if (!layout) return k.copy(full);
  const n = full.shape[layout.dim];
  if (n === undefined || n % (layout.blocks * tp) !== 0) {
    throw new Error(`${what}: dim ${layout.dim} of ${fmt(full.shape)} does not split into ${layout.blocks} block(s) x ${tp} ranks`);
  }
  const shape = [...full.shape];
  shape[layout.dim] = n / tp;
  const out = k.empty(shape, full.dtype, undefined, false, full.device);
  movePieces(full, out, layout, tp, [rank], true);
  return out;
}

/** The full tensor from every rank's shard (all-gathered over `group`; every rank gets it). */
export function gatherShard(local: Tensor, layout: ShardLayout | null, group: ProcessGroup): Tensor {
  if (!layout || group.size === 1) return k.copy(local);
  const all = gatherAlong(local, layout.dim, group, 'gatherShard');   // rank-major: r0's blocks, r1's, ...
  const out = k.empty(all.shape, local.dtype, undefined, false, local.device);
  movePieces(all, out, layout, group.size, [...Array(group.size).keys()], false);
  all.dispose();
  return out;
}
