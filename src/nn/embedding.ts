/** Embedding table: rows of `weight` [V, D] picked by integer ids (PyTorch's nn.Embedding). */

import { embedding } from '../ops/embedding.ts';
import type { DType } from '../tensor/dtype.ts';
import type { Tensor } from '../tensor/tensor.ts';
import { checkCount, emptyParameter, normal_ } from './init.ts';
import { Module } from './module.ts';

export interface EmbeddingOptions {
  dtype?: DType;
  /** Replaces the default init (normal(0, 1), as PyTorch). */
  initWeight?: (weight: Tensor) => void;
}

/**
 * ids (i32/i64, any shape) → [...ids.shape, embeddingDim].
 * @example
 * const wte = new Embedding(50257, 768);
 * const x = wte.forward(tokens);   // [B, T] -> [B, T, 768]
 */
export class Embedding extends Module {
  readonly weight: Tensor;

  constructor(
    readonly numEmbeddings: number,
    readonly embeddingDim: number,
    opts: EmbeddingOptions = {},
  ) {
    super();
    checkCount(numEmbeddings, 'Embedding', 'numEmbeddings');
    checkCount(embeddingDim, 'Embedding', 'embeddingDim');
    this.weight = this.registerParameter('weight', emptyParameter([numEmbeddings, embeddingDim], opts.dtype ?? 'f32'));
    if (opts.initWeight) opts.initWeight(this.weight);
    else normal_(this.weight, 0, 1);
  }

  override forward(ids: Tensor): Tensor {
    return embedding(ids, this.weight);
  }

  protected override extraRepr(): string {
    return `${this.numEmbeddings}, ${this.embeddingDim}`;
  }
}
