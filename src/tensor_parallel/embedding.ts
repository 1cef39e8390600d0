/**
 * Embedding table split by vocabulary: rank r holds rows [r·V/tp, (r+1)·V/tp) of the full
 * [V, D] table. Each rank looks up the ids in its slice (zeros for the others) and the
 * all-reduce sums the one non-zero row per id. Built from the same seed, the slices hold
 * exactly the rows of nn.Embedding's table.
 */
import type { ProcessGroup } from '../dist/process_group.ts';
import { checkCount, emptyParameter, normal_ } from '../nn/init.ts';
import { Module } from '../nn/module.ts';
import { tensor } from '../ops/create.ts';
import { mul } from '../ops/elementwise.ts';
import { embedding } from '../ops/embedding.ts';
import type { DType } from '../tensor/dtype.ts';
import { fmt } from '../tensor/shape.ts';
import type { Tensor } from '../tensor/tensor.ts';
import { reduceFromRegion } from './mappings.ts';
import { checkDivisible, fillShard, rowRuns, type ShardInit } from './shard_init.ts';

export interface VocabParallelEmbeddingOptions {
  /** The tensor-parallel group (`mesh.group('tp')`). */
  group: ProcessGroup;
  dtype?: DType;
  /** Fills a piece of the full table (default nn.Embedding's normal(0, 1)). */
  initWeight?: ShardInit;
}

/**
 * ids (i32/i64, any shape, full vocabulary) → [...ids.shape, D], replicated. `weight` [V/tp, D].
 * @example
 * const wte = new VocabParallelEmbedding(50304, 768, { group: mesh.group('tp') });
 */
export class VocabParallelEmbedding extends Module {
  readonly weight: Tensor;
  readonly group: ProcessGroup;
  /** This rank's vocabulary slice is [vocabStart, vocabEnd). */
  readonly vocabStart: number;
  readonly vocabEnd: number;

  constructor(
    readonly numEmbeddings: number,
    readonly embeddingDim: number,
    opts: VocabParallelEmbeddingOptions,
  ) {
    super();
    const layer = 'VocabParallelEmbedding';
    checkCount(numEmbeddings, layer, 'numEmbeddings');
    checkCount(embeddingDim, layer, 'embeddingDim');
    const g = opts.group;
    checkDivisible(numEmbeddings, g.size, layer, 'numEmbeddings (vocabulary size)', g);
    this.group = g;
    const per = numEmbeddings / g.size;
    this.vocabStart = g.rank * per;
    this.vocabEnd = this.vocabStart + per;
    this.weight = this.registerParameter('weight', emptyParameter([per, embeddingDim], opts.dtype ?? 'f32'));
    const init: ShardInit = opts.initWeight ?? ((piece, o) => normal_(piece, 0, 1, o));
    fillShard(this.weight, [numEmbeddings, embeddingDim], rowRuns(numEmbeddings, embeddingDim, 1, g.rank, g.size), init);
  }

  override forward(ids: Tensor): Tensor {
    if (ids.dtype !== 'i32' && ids.dtype !== 'i64') throw new Error(`VocabParallelEmbedding: ids must be i32 or i64, got ${ids.dtype}`);
    const all = ids.toArray();
    const local = new Int32Array(all.length);
    const mask = new Float64Array(all.length);
    for (let i = 0; i < all.length; i++) {
      const id = Number(all[i]);
      if (!(id >= 0 && id < this.numEmbeddings)) {
        throw new Error(`VocabParallelEmbedding: id ${id} at flat position ${i} of ids ${fmt(ids.shape)} is out of range for V = ${this.numEmbeddings}`);
      }
      if (id >= this.vocabStart && id < this.vocabEnd) {
        local[i] = id - this.vocabStart;
        mask[i] = 1;
      }
    }
    // The local ids and the mask go where the weight is (ids were read on the host for the range check).
    const device = this.weight.device;
    const rows = embedding(tensor(local, { dtype: 'i32', shape: [...ids.shape], device }), this.weight);
    const kept = mul(rows, tensor(mask, { dtype: this.weight.dtype, shape: [...ids.shape, 1], device }));
    return reduceFromRegion(kept, this.group);
  }

  protected override extraRepr(): string {
    return `${this.numEmbeddings}, ${this.embeddingDim} (rows ${this.vocabStart}-${this.vocabEnd - 1} on this rank)`;
  }
}
