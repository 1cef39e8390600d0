/**
 * Column- and row-parallel linear layers (Megatron's): y = x Wᵀ + b with W [out, in] split
 * across the tp group by rows (each rank computes a slice of the outputs) or by columns (each
 * rank computes a partial sum over its slice of the inputs, summed across ranks). A column
 * layer followed by a row layer needs one all-reduce forward and one backward.
 */
import type { ProcessGroup } from '../dist/process_group.ts';
import { checkCount, emptyParameter } from '../nn/init.ts';
import { Module } from '../nn/module.ts';
import { add } from '../ops/elementwise.ts';
import { type LinearActivation, linearActivation } from '../ops/linear_activation.ts';
import { linear } from '../ops/matmul.ts';
import type { DType } from '../tensor/dtype.ts';
import type { Tensor } from '../tensor/tensor.ts';
import {
  allGatherFromSequence, copyToRegion, gatherFromRegion, reduceFromRegion, reduceScatterToSequence, scatterToRegion,
} from './mappings.ts';
import { markSequenceParallel } from './sequence_parallel.ts';
import { checkDivisible, colRuns, defaultBiasInit, defaultWeightInit, fillShard, rowRuns, type ShardInit } from './shard_init.ts';

export interface ParallelLinearOptions {
  /** The tensor-parallel group (`mesh.group('tp')`). */
  group: ProcessGroup;
  /** Learn an additive bias (default true). */
  bias?: boolean;
  dtype?: DType;
  /** Fills a piece of the full weight (default nn.Linear's kaiming-uniform); gets the piece's `shard` and `fullShape`. */
  initWeight?: ShardInit;
  /** Fills a piece of the full bias (default nn.Linear's uniform ±1/√in). */
  initBias?: ShardInit;
  /**
   * Sequence parallelism: activations outside the layer pair are split along the sequence dim
   * (dim 1 of [batch, seq, hidden]); the column layer all-gathers them, the row layer
   * reduce-scatters. The row layer's bias is then marked sequence-parallel: each rank's gradient
   * covers only its tokens, and `allReduceSequenceParallelGrads` sums it over tp after backward.
   */
  sequenceParallel?: boolean;
}

export interface ColumnParallelOptions extends ParallelLinearOptions {
  /** All-gather the output slices into the full output (default false: the output stays split on its last dim). */
  gatherOutput?: boolean;
  /**
   * The weight stacks this many equal matrices along `out` (3 for a fused q/k/v projection),
   * each split across the ranks; a rank's output is its slice of each, in order (default 1).
   */
  stacked?: number;
  /** Applied to this rank's output slice before any gather (element-wise, so the same as on the full output). */
  activation?: LinearActivation;
}

/**
 * Weight rows split: `weight` [out/tp, in], `bias` [out/tp] hold this rank's rows of the full
 * layer's. x [..., in] (replicated) → [..., out/tp], or [..., out] with `gatherOutput`.
 * @example
 * const fc = new ColumnParallelLinear(768, 3072, { group: mesh.group('tp') });
 */
export class ColumnParallelLinear extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor | null;
  readonly group: ProcessGroup;
  readonly gatherOutput: boolean;
  readonly sequenceParallel: boolean;
  /** Output features of this rank. */
  readonly outPerRank: number;
  /** Equal matrices stacked along `out`, each split across the ranks (3 for q/k/v). */
  readonly stacked: number;
  /** The activation applied to the output, or null. */
  readonly activation: LinearActivation | null;

  constructor(
    readonly inFeatures: number,
    readonly outFeatures: number,
    opts: ColumnParallelOptions,
  ) {
    super();
    const layer = 'ColumnParallelLinear';
    checkCount(inFeatures, layer, 'inFeatures');
    checkCount(outFeatures, layer, 'outFeatures');
    const g = opts.group;
    const stacked = opts.stacked ?? 1;
    checkCount(stacked, layer, 'stacked');
    checkDivisible(outFeatures, stacked * g.size, layer, 'outFeatures', g);
    if (stacked > 1 && opts.gatherOutput) throw new Error(`${layer}: gatherOutput would interleave the ${stacked} stacked blocks; gather each block instead`);
    this.group = g;
    this.stacked = stacked;
    this.gatherOutput = opts.gatherOutput ?? false;
    this.sequenceParallel = opts.sequenceParallel ?? false;
    this.activation = linearActivation(opts.activation, layer);
    this.outPerRank = outFeatures / g.size;
    const dtype = opts.dtype ?? 'f32';
    this.weight = this.registerParameter('weight', emptyParameter([this.outPerRank, inFeatures], dtype));
    fillShard(this.weight, [outFeatures, inFeatures], rowRuns(outFeatures, inFeatures, stacked, g.rank, g.size), opts.initWeight ?? defaultWeightInit);
    this.bias = null;
    if (opts.bias ?? true) {
      this.bias = this.registerParameter('bias', emptyParameter([this.outPerRank], dtype));
      fillShard(this.bias, [outFeatures], rowRuns(outFeatures, 1, stacked, g.rank, g.size), opts.initBias ?? defaultBiasInit(inFeatures));
    }
  }

  override forward(x: Tensor): Tensor {
    const input = this.sequenceParallel ? allGatherFromSequence(x, this.group) : copyToRegion(x, this.group);
    const y = linear(input, this.weight, this.bias, { activation: this.activation ?? undefined });
    return this.gatherOutput ? gatherFromRegion(y, this.group) : y;
  }

  protected override extraRepr(): string {
    const stacked = this.stacked > 1 ? `, stacked: ${this.stacked}` : '';
    return `${this.inFeatures}, ${this.outFeatures} (${this.outPerRank} on this rank)${stacked}${this.bias ? '' : ', bias: false'}${this.gatherOutput ? ', gatherOutput' : ''}${this.sequenceParallel ? ', sequenceParallel' : ''}${this.activation ? `, activation: ${this.activation}` : ''}`;
  }
}

export interface RowParallelOptions extends ParallelLinearOptions {
  /** The input is already split on its last dim, as a column-parallel layer leaves it (default true). */
  inputIsParallel?: boolean;
}

/**
 * Weight columns split: `weight` [out, in/tp] holds this rank's columns of the full layer's;
 * `bias` [out] is whole on every rank and added after the all-reduce (under sequenceParallel,
 * after the reduce-scatter, and marked: see sequence_parallel.ts). x [..., in/tp] (or
 * [..., in] with `inputIsParallel: false`) → [..., out], replicated.
 * @example
 * const proj = new RowParallelLinear(3072, 768, { group: mesh.group('tp') });
 */
export class RowParallelLinear extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor | null;
  readonly group: ProcessGroup;
  readonly inputIsParallel: boolean;
  readonly sequenceParallel: boolean;
  /** Input features of this rank. */
  readonly inPerRank: number;

  constructor(
    readonly inFeatures: number,
    readonly outFeatures: number,
    opts: RowParallelOptions,
  ) {
    super();
    const layer = 'RowParallelLinear';
    checkCount(inFeatures, layer, 'inFeatures');
    checkCount(outFeatures, layer, 'outFeatures');
    const g = opts.group;
    checkDivisible(inFeatures, g.size, layer, 'inFeatures', g);
    this.group = g;
    this.inputIsParallel = opts.inputIsParallel ?? true;
    this.sequenceParallel = opts.sequenceParallel ?? false;
    this.inPerRank = inFeatures / g.size;
    const dtype = opts.dtype ?? 'f32';
    this.weight = this.registerParameter('weight', emptyParameter([outFeatures, this.inPerRank], dtype));
    fillShard(this.weight, [outFeatures, inFeatures], colRuns(outFeatures, inFeatures, g.rank, g.size), opts.initWeight ?? defaultWeightInit);
    this.bias = null;
    if (opts.bias ?? true) {
      this.bias = this.registerParameter('bias', emptyParameter([outFeatures], dtype));
      fillShard(this.bias, [outFeatures], [{ at: 0, length: outFeatures, start: 0 }], opts.initBias ?? defaultBiasInit(inFeatures));
      if (this.sequenceParallel) markSequenceParallel(this.bias);
    }
  }

  override forward(x: Tensor): Tensor {
    const input = this.inputIsParallel ? x : scatterToRegion(x, this.group);
    const partial = linear(input, this.weight, null);
    // The partial product is ours and read no more: summed in place.
    const y = this.sequenceParallel ? reduceScatterToSequence(partial, this.group) : reduceFromRegion(partial, this.group, { inPlace: true });
    return this.bias ? add(y, this.bias) : y;
  }

  protected override extraRepr(): string {
    return `${this.inFeatures} (${this.inPerRank} on this rank), ${this.outFeatures}${this.bias ? '' : ', bias: false'}`;
  }
}
