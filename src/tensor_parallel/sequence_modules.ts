/**
 * LayerNorm and dropout for sequence-parallel regions, where activations are split along the
 * sequence dim ([batch, seq/tp, hidden]) between the tensor-parallel layers. LayerNorm is
 * per-token, so it runs unchanged on the slice; its weight and bias are whole on every rank
 * and see only this rank's tokens, hence marked for `allReduceSequenceParallelGrads`. Dropout on
 * different tokens must draw different masks: it uses this tp rank's stream (random.ts).
 */
import type { ProcessGroup } from '../dist/process_group.ts';
import { Module } from '../nn/module.ts';
import { LayerNorm, type LayerNormOptions } from '../nn/norm.ts';
import { dropout } from '../ops/nn.ts';
import type { Tensor } from '../tensor/tensor.ts';
import { withTensorParallelRng } from './random.ts';
import { markSequenceParallel } from './sequence_parallel.ts';

/**
 * nn.LayerNorm over a sequence slice, its parameters marked sequence-parallel.
 * @example
 * const ln = new SequenceParallelLayerNorm(768);     // x [batch, seq/tp, 768]
 * loss.backward(); allReduceSequenceParallelGrads(model, tp);
 */
export class SequenceParallelLayerNorm extends LayerNorm {
  constructor(normalizedShape: number | readonly number[], opts: LayerNormOptions = {}) {
    super(normalizedShape, opts);
    for (const p of [this.weight, this.bias]) if (p) markSequenceParallel(p);
  }
}

/**
 * Dropout whose mask differs across the tp ranks (each holds other tokens) and is reproducible
 * under `checkpoint()`. With a tp group of one it is nn.Dropout exactly.
 * @example
 * const drop = new SequenceParallelDropout(0.1, mesh.group('tp'));
 */
export class SequenceParallelDropout extends Module {
  constructor(
    readonly p: number,
    readonly group: ProcessGroup,
  ) {
    super();
    if (typeof p !== 'number' || !(p >= 0 && p < 1)) throw new Error(`SequenceParallelDropout: p must be in [0, 1), got ${p}`);
  }

  override forward(x: Tensor): Tensor {
    return withTensorParallelRng(this.group, () => dropout(x, this.p, this.training));
  }

  protected override extraRepr(): string {
    return `p ${this.p}, per-rank masks over ${this.group}`;
  }
}
