/** Normalization layers: BatchNorm2d (with running statistics) and LayerNorm. */
import { batchNorm2d, batchNorm2dRelu } from '../ops/batchnorm.ts';
import { ones, zeros } from '../ops/create.ts';
import { layerNorm } from '../ops/nn.ts';
import { statDType } from '../ops/nn_util.ts';
import type { DType } from '../tensor/dtype.ts';
import type { Tensor } from '../tensor/tensor.ts';
import { checkCount, emptyParameter, ones_, zeros_ } from './init.ts';
import { Module } from './module.ts';

export interface BatchNormOptions {
  eps?: number;
  /** Weight of the new batch statistic in the running averages (default 0.1). */
  momentum?: number;
  /** Learn a per-channel scale and shift (default true). */
  affine?: boolean;
  /** Keep running statistics for evaluation (default true); without them eval uses batch statistics. */
  trackRunningStats?: boolean;
  dtype?: DType;
}

/** A ReLU after batch norm, with a residual added before it (`batchNorm2dRelu`: fused on CUDA). */
export interface BatchNormRelu {
  relu: true;
  /** ResNet's shortcut, added to the normalized values before the ReLU. */
  residual?: Tensor | null;
}

/**
 * Batch normalization over the channels of [N, C, H, W]. Parameters `weight` (ones) and `bias`
 * (zeros); buffers `running_mean`, `running_var` and `num_batches_tracked` (tagged 'other'),
 * updated in place by each training forward, as PyTorch does. `forward(x, { relu: true })`
 * applies a ReLU after it (and adds `residual` first), fused into batch norm's kernels on CUDA.
 * @example
 * const bn = new BatchNorm2d(64);
 * const y = bn.forward(x);        // training: batch statistics, running stats updated
 * const h = bn.forward(x, { relu: true, residual: shortcut });   // relu(bn(x) + shortcut)
 * bn.eval(); bn.forward(x);       // evaluation: running statistics
 */
export class BatchNorm2d extends Module {
  readonly weight: Tensor | null = null;
  readonly bias: Tensor | null = null;
  readonly runningMean: Tensor | null = null;
  readonly runningVar: Tensor | null = null;
  readonly numBatchesTracked: Tensor | null = null;
  readonly eps: number;
  readonly momentum: number;

  constructor(
    readonly numFeatures: number,
    opts: BatchNormOptions = {},
  ) {
    super();
    checkCount(numFeatures, 'BatchNorm2d', 'numFeatures');
    this.eps = opts.eps ?? 1e-5;
    this.momentum = opts.momentum ?? 0.1;
    const dtype = opts.dtype ?? 'f32';
    if (opts.affine ?? true) {
      this.weight = this.registerParameter('weight', ones_(emptyParameter([numFeatures], dtype)));
      this.bias = this.registerParameter('bias', zeros_(emptyParameter([numFeatures], dtype)));
    }
    if (opts.trackRunningStats ?? true) {
      const S = statDType(dtype);
      this.runningMean = this.registerBuffer('running_mean', zeros([numFeatures], { dtype: S, tag: 'other' }));
      this.runningVar = this.registerBuffer('running_var', ones([numFeatures], { dtype: S, tag: 'other' }));
      this.numBatchesTracked = this.registerBuffer('num_batches_tracked', zeros([], { dtype: 'i64', tag: 'other' }));
    }
  }

  override forward(x: Tensor, then?: BatchNormRelu): Tensor {
    if (then !== undefined && then?.relu !== true) throw new Error('BatchNorm2d.forward: the second argument must be { relu: true, residual? }');
    const useBatchStats = this.training || this.runningMean === null;
    // The op counts the batch on the device (in its statistics launch on CUDA).
    const opts = {
      training: useBatchStats,
      momentum: this.momentum,
      eps: this.eps,
      numBatchesTracked: this.training ? this.numBatchesTracked : null,
    };
    if (!then) return batchNorm2d(x, this.runningMean, this.runningVar, this.weight, this.bias, opts);
    return batchNorm2dRelu(x, this.runningMean, this.runningVar, this.weight, this.bias, { ...opts, residual: then.residual });
  }

  protected override extraRepr(): string {
    return `${this.numFeatures}, eps ${this.eps}, momentum ${this.momentum}${this.weight ? '' : ', affine: false'}`;
  }
}

export interface LayerNormOptions {
  eps?: number;
  /** Learn `weight` (ones) and `bias` (zeros) over the normalized shape (default true). */
  elementwiseAffine?: boolean;
  /** With elementwiseAffine: learn the bias too (default true). */
  bias?: boolean;
  dtype?: DType;
}

/**
 * Normalizes the trailing `normalizedShape` dims to mean 0 and variance 1, then scales and shifts.
 * @example
 * const ln = new LayerNorm(768);
 * const h = ln.forward(x);   // x [batch, seq, 768]
 */
export class LayerNorm extends Module {
  readonly weight: Tensor | null = null;
  readonly bias: Tensor | null = null;
  readonly normalizedShape: number[];
  readonly eps: number;

  constructor(normalizedShape: number | readonly number[], opts: LayerNormOptions = {}) {
    super();
    this.normalizedShape = typeof normalizedShape === 'number' ? [normalizedShape] : [...normalizedShape];
    if (this.normalizedShape.length === 0) throw new Error('LayerNorm: normalizedShape must not be empty');
    for (const s of this.normalizedShape) checkCount(s, 'LayerNorm', 'normalizedShape');
    this.eps = opts.eps ?? 1e-5;
    const dtype = opts.dtype ?? 'f32';
    if (opts.elementwiseAffine ?? true) {
      this.weight = this.registerParameter('weight', ones_(emptyParameter(this.normalizedShape, dtype)));
      if (opts.bias ?? true) this.bias = this.registerParameter('bias', zeros_(emptyParameter(this.normalizedShape, dtype)));
    }
  }

  override forward(x: Tensor): Tensor {
    return layerNorm(x, this.normalizedShape, this.weight, this.bias, this.eps);
  }

  protected override extraRepr(): string {
    return `[${this.normalizedShape.join(', ')}], eps ${this.eps}`;
  }
}
