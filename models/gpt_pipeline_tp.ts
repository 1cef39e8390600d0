/**
 * GPT as a pipeline layer list whose layers are tensor-parallel over a tp group: the 3D (dp ×
 * pp × tp) layout. Same list and names as gpt_pipeline.ts, with the token embedding and the tied
 * head vocab-parallel (each tp rank its slice of the vocabulary; the head leaves vocab-parallel
 * logits for `vocabParallelCrossEntropy`), and every block split by heads and MLP columns as
 * gptTensorParallelPlan does. Each block is built whole then parallelized, so from the same seed
 * the shards hold exactly the single-process GPT's values on any (pp, tp). With
 * `sequenceParallel`, activations between blocks travel (and cross pipeline stages) as sequence
 * slices: positions scatter them, ln_f all-gathers them into the head.
 */
import type { ProcessGroup } from '../src/dist/process_group.ts';
import { LayerNorm, Module, TransformerBlock } from '../src/nn/index.ts';
import { normal_ } from '../src/nn/init.ts';
import { deferrableLinear, LayerSpec, type LayerSpecOptions, TiedLayerSpec } from '../src/pipeline/index.ts';
import type { Tensor } from '../src/tensor/tensor.ts';
import {
  allGatherFromSequence, copyToRegion, parallelize, SequenceParallelLayerNorm, scatterToSequence, type TensorParallelPlan,
  VocabParallelEmbedding, vocabParallelCrossEntropy,
} from '../src/tensor_parallel/index.ts';
import type { GPTConfig } from './gpt.ts';
import { GPTPositions, gptLayerKey } from './gpt_pipeline.ts';

/** A layer built by a function (a LayerSpec needs a class; these layers are built then parallelized). */
class BuiltLayerSpec extends LayerSpec {
  constructor(
    private readonly make: () => Module,
    opts: LayerSpecOptions,
  ) {
    super(Module as unknown as new () => Module, [], opts);
  }

  override build(): Module {
    return this.make();
  }
}

/** gptTensorParallelPlan for one TransformerBlock (its names without the `h.<i>.` prefix). */
export function blockTensorParallelPlan(sequenceParallel: boolean): TensorParallelPlan {
  return {
    sequenceParallel,
    modules: {
      ...(sequenceParallel ? { ln_1: 'sequence' as const, ln_2: 'sequence' as const, mlp: 'sequence' as const } : {}),
      attn: 'heads',
      'attn.c_attn': { style: 'colwise', stacked: 3 },
      'attn.c_proj': 'rowwise',
      'mlp.c_fc': 'colwise',
      'mlp.c_proj': 'rowwise',
    },
  };
}

export interface GPT3DLayers {
  layers: LayerSpec[];
  /** GPT's state-dict key of (layer index, parameter name in the layer). */
  key: (index: number, name: string) => string;
  /** The last stage's loss: vocab-parallel logits [B, T, V/tp] and targets [B, T] → mean over tokens. */
  lossFn: (logits: Tensor, targets: Tensor) => Tensor;
}

/**
 * The 2 + nLayer + 2 layers of GPT, tensor-parallel over `tp` (a group of size 1 gives the
 * plain model's computation with these modules).
 * @example
 * const mesh = await DeviceMesh.init({ dp: 2, pp: 2, tp: 2 });
 * manualSeed(0);
 * const { layers, lossFn } = gptTensorParallelPipelineLayers(gptConfig('tiny'), mesh.group('tp'));
 * const pipe = new PipelineModule({ layers, numStages: 2, partitionMethod: 'uniform', lossFn, group: mesh.group('pp') });
 */
export function gptTensorParallelPipelineLayers(config: GPTConfig, tp: ProcessGroup, opts: { sequenceParallel?: boolean } = {}): GPT3DLayers {
  const sp = opts.sequenceParallel ?? false;
  const { vocabSize: V, nCtx, nEmbd: C, nLayer: L, dtype } = config;
  if ((config.makeVocabSizeDivisibleBy ?? 1) !== 1) {
    throw new Error(`gptTensorParallelPipelineLayers: makeVocabSizeDivisibleBy ${config.makeVocabSizeDivisibleBy} is not supported: the vocabulary is split over tp, and the vocab-parallel cross-entropy would put the last slice's padding logits in the softmax (the padded and unpadded models would differ); leave it at 1 here`);
  }
  if (sp && nCtx % tp.size !== 0) throw new Error(`gptTensorParallelPipelineLayers: sequence parallelism splits the context ${nCtx} over tp = ${tp.size}, which does not divide it`);
  const wteArgs = [V, C, { group: tp, dtype, initWeight: (piece: Tensor, o: object) => normal_(piece, 0, 0.02, o) }];
  const block = {
    nEmbd: C, nHead: config.nHead, nLayer: L, dropout: config.dropout, bias: config.bias,
    layerNormEps: config.layerNormEps, initStd: 0.02, checkpoint: config.checkpoint, dtype,
  };
  const plan = blockTensorParallelPlan(sp);
  const layers: LayerSpec[] = [
    new TiedLayerSpec('wte', VocabParallelEmbedding, wteArgs, { rngDraws: V * C, name: 'wte' }),
    new BuiltLayerSpec(() => {
      const m = new GPTPositions(config);
      if (sp) m.registerForwardHook((_, __, y) => scatterToSequence(y as Tensor, tp));
      return m;
    }, { rngDraws: nCtx * C, name: 'wpe' }),
    // c_attn 3C², c_proj C², c_fc 4C², mlp c_proj 4C²: drawn whole, then sliced by parallelize.
    ...Array.from({ length: L }, () => new BuiltLayerSpec(() => parallelize(new TransformerBlock(block), plan, tp), { rngDraws: 12 * C * C, name: 'TransformerBlock' })),
    new BuiltLayerSpec(() => {
      const lnOpts = { eps: config.layerNormEps ?? 1e-5, bias: config.bias ?? true, dtype };
      const ln = sp ? new SequenceParallelLayerNorm(C, lnOpts) : new LayerNorm(C, lnOpts);
      // Into the vocab-parallel head: each tp rank's gradient of the input is partial.
      ln.registerForwardHook((_, __, y) => (sp ? allGatherFromSequence(y as Tensor, tp) : copyToRegion(y as Tensor, tp)));
      return ln;
    }, { name: 'ln_f' }),
    new TiedLayerSpec('wte', VocabParallelEmbedding, wteArgs, {
      rngDraws: V * C, name: 'head', forwardFn: (m: VocabParallelEmbedding, x: Tensor) => deferrableLinear(x, m.weight),
    }),
  ];
  const key = gptLayerKey(L);
  const lossFn = (logits: Tensor, targets: Tensor): Tensor =>
    vocabParallelCrossEntropy(logits.reshape([-1, logits.shape[logits.shape.length - 1]]), targets.reshape([-1]), tp);
  return { layers, key, lossFn };
}
