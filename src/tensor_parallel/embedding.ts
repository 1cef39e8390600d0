/**
 * Embedding table split by vocabulary: rank r holds rows [r·V/tp, (r+1)·V/tp) of the full
 * [V, D] table. Each rank looks up the ids in its slice (zeros for the others) and the
 * all-reduce sums the one non-zero row per id. Built from the same seed, the slices hold
 * exactly the rows of nn.Embedding's table. The slice test runs where the weight is
 * (vocab_range.ts): on a GPU the ids are never read on the host.
 */
import type { ProcessGroup } from '../dist/process_group.ts';
import { checkCount, emptyParameter, normal_ } from '../nn/init.ts';
import { Module } from '../nn/module.ts';
import { mul } from '../ops/elementwise.ts';
import { embedding } from '../ops/embedding.ts';
import type { DType } from '../tensor/dtype.ts';
import { contiguousStrides, fmt } from '../tensor/shape.ts';
import type { Tensor } from '../tensor/tensor.ts';
import { reduceFromRegion } from './mappings.ts';
import { checkDivisible, fillShard, rowRuns, type ShardInit } from './shard_init.ts';
import { vocabSliceIndex } from './vocab_range.ts';

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
    // Local rows and the here-mask are computed where the weight is: the ids never go to the host.
    const shape = [...ids.shape];
    const { local, here } = vocabSliceIndex(ids, {
      start: this.vocabStart,
      size: this.vocabEnd - this.vocabStart,
      vocab: this.numEmbeddings,
      maskDType: this.weight.dtype,
      device: this.weight.device,
      describe: (pos, id) => `VocabParallelEmbedding: id ${id} at flat position ${pos} of ids ${fmt(shape)} is out of range for V = ${this.numEmbeddings}`,
    });
    const rows = embedding(local, this.weight);
    const mask = here.alias([...shape, 1], contiguousStrides([...shape, 1]), here.offset);
    const kept = mul(rows, mask);
    for (const t of [local, here, mask, rows]) t.dispose();
    return reduceFromRegion(kept, this.group, { inPlace: true });
  }

  protected override extraRepr(): string {
    return `${this.numEmbeddings}, ${this.embeddingDim} (rows ${this.vocabStart}-${this.vocabEnd - 1} on this rank)`;
  }
}
