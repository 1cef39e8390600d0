/**
 * Initializing a shard with exactly the values the full tensor would hold (the determinism
 * contract). A shard of a [rows, cols] weight is a set of runs of consecutive elements of the
 * full tensor: one run for a block of whole rows, one run per row for a column range. Each run
 * is filled with the init's `shard` option from the same generator state, so the generator
 * ends where one init of the full tensor leaves it and later layers draw the same numbers.
 */
import type { ProcessGroup } from '../dist/process_group.ts';
import { type KaimingOptions, kaimingUniform_, uniform_ } from '../nn/init.ts';
import { getRngState, setRngState } from '../tensor/random.ts';
import type { Tensor } from '../tensor/tensor.ts';

/** Fills `piece`, which holds `opts.shard` of a full tensor of shape `opts.fullShape`. */
export type ShardInit = (piece: Tensor, opts: KaimingOptions & { fullShape: readonly number[] }) => void;

/** `length` elements at local element `at` come from full elements [start, start + length). */
export interface Run {
  at: number;
  length: number;
  start: number;
}

/** Fills the runs of the contiguous `local` tensor from the full tensor of `fullShape`. */
export function fillShard(local: Tensor, fullShape: readonly number[], runs: readonly Run[], init: ShardInit): void {
  const total = fullShape.reduce((a, b) => a * b, 1);
  const state = getRngState();
  for (const r of runs) {
    setRngState(state);
    const piece = local.alias([r.length], [1], local.offset + r.at);
    init(piece, { shard: { start: r.start, total }, fullShape });
    piece.dispose();
  }
}

/**
 * Runs for a rank's rows of a [rows, cols] tensor that stacks `stacked` equal blocks along rows
 * (q, k, v), each split evenly across `tp` ranks: the rank's slice of each block, in block order.
 */
export function rowRuns(rows: number, cols: number, stacked: number, rank: number, tp: number): Run[] {
  const block = rows / stacked;
  const mine = block / tp;
  return Array.from({ length: stacked }, (_, j) => ({ at: j * mine * cols, length: mine * cols, start: (j * block + rank * mine) * cols }));
}

/** Runs for a rank's column range of a [rows, cols] tensor split evenly across `tp` ranks. */
export function colRuns(rows: number, cols: number, rank: number, tp: number): Run[] {
  const mine = cols / tp;
  return Array.from({ length: rows }, (_, i) => ({ at: i * mine, length: mine, start: i * cols + rank * mine }));
}

/** nn.Linear's defaults: kaiming-uniform (a = √5) weights, uniform ±1/√in biases, from the full shape. */
export const defaultWeightInit: ShardInit = (piece, opts) => kaimingUniform_(piece, { ...opts, a: Math.sqrt(5) });
export function defaultBiasInit(inFeatures: number): ShardInit {
  const bound = 1 / Math.sqrt(inFeatures);
  return (piece, opts) => uniform_(piece, -bound, bound, opts);
}

/** Throws, naming the layer, the size and the group, unless `n` divides by the group size. */
export function checkDivisible(n: number, by: number, layer: string, what: string, group: ProcessGroup): void {
  if (n % by !== 0) {
    const per = by === group.size ? `the tensor-parallel size ${group.size}` : `${by} (${by / group.size} blocks x tensor-parallel size ${group.size})`;
    throw new Error(`${layer}: ${what} ${n} is not divisible by ${per} of ${group}`);
  }
}
