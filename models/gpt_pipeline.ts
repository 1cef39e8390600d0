/**
 * GPT (gpt.ts) as a flat layer list for a PipelineModule: the token embedding (tied with the
 * head), positions (+ dropout), the blocks, the final layer norm, and the head reading the
 * token embedding's weight. Built from the same seed, the layers get exactly the plain GPT's
 * initial values on any partition (each spec says how many random numbers it draws), and
 * `gptPipelineKey` names every parameter as GPT's state dict does.
 */
import { add, arange, dropout, type Tensor } from '../src/index.ts';
import { Embedding, init, LayerNorm, Module, TransformerBlock } from '../src/nn/index.ts';
import { deferrableLinear, LayerSpec, TiedLayerSpec } from '../src/pipeline/index.ts';
import type { GPTConfig } from './gpt.ts';
import { paddedVocabSize, realLogits, VocabEmbedding } from './gpt_vocab.ts';

/** Learned positions added to the token embeddings, then the embedding dropout. */
export class GPTPositions extends Module {
  readonly wpe: Embedding;
  readonly p: number;

  constructor(config: GPTConfig) {
    super();
    this.p = config.dropout ?? 0;
    const initWeight = (w: Tensor) => init.normal_(w, 0, 0.02);
    this.wpe = this.registerModule('wpe', new Embedding(config.nCtx, config.nEmbd, { dtype: config.dtype, initWeight }));
  }

  override forward(x: Tensor): Tensor {
    const T = x.shape[1];
    return dropout(add(x, this.wpe.forward(arange(T, { dtype: 'i32', device: x.device }))), this.p, this.training);
  }
}

/**
 * GPT's state-dict key of a parameter of the GPT layer list (wte, wpe, `nLayer` blocks, ln_f, tied
 * head): layer `index`'s parameter `name` → e.g. "h.0.attn.c_attn.weight".
 * @example
 * gptLayerKey(2)(2, 'ln_1.weight'); // 'h.0.ln_1.weight'
 */
export function gptLayerKey(nLayer: number): (index: number, name: string) => string {
  return (index, name) => {
    if (index === 0 || index === nLayer + 3) return `wte.${name}`;
    if (index === 1) return name;
    if (index === nLayer + 2) return `ln_f.${name}`;
    return `h.${index - 2}.${name}`;
  };
}

/**
 * The layers (2 + nLayer + 2 of them) and the map from (layer index, parameter name) to GPT's key.
 * @example
 * const { layers } = gptPipelineLayers(gptConfig('tiny'));
 * const pipe = new PipelineModule({ layers, numStages: 2, partitionMethod: 'uniform', group, lossFn });
 */
export function gptPipelineLayers(config: GPTConfig): { layers: LayerSpec[]; key: (index: number, name: string) => string } {
  const { vocabSize: V, nCtx, nEmbd: C, nLayer: L, dtype } = config;
  const initWeight = (w: Tensor) => init.normal_(w, 0, 0.02);
  // A padded vocabulary (makeVocabSizeDivisibleBy) as in GPT: Vp rows, the real V drawn, real logits out.
  const rows = paddedVocabSize(V, config.makeVocabSizeDivisibleBy);
  const wteClass = (rows === V ? Embedding : VocabEmbedding) as typeof Embedding;
  const wteArgs = rows === V ? [V, C, { dtype, initWeight }] : [V, rows, C, { dtype, initWeight }];
  const block = {
    nEmbd: C, nHead: config.nHead, nLayer: L, dropout: config.dropout, bias: config.bias,
    layerNormEps: config.layerNormEps, initStd: 0.02, checkpoint: config.checkpoint, dtype,
  };
  const layers: LayerSpec[] = [
    new TiedLayerSpec('wte', wteClass, wteArgs, { rngDraws: V * C, name: 'wte' }),
    new LayerSpec(GPTPositions, [config], { rngDraws: nCtx * C, name: 'wpe' }),
    // c_attn 3C², c_proj C², c_fc 4C², mlp c_proj 4C²: normal draws; biases and norms draw none.
    ...Array.from({ length: L }, () => new LayerSpec(TransformerBlock, [block], { rngDraws: 12 * C * C })),
    new LayerSpec(LayerNorm, [C, { eps: config.layerNormEps ?? 1e-5, bias: config.bias ?? true, dtype }], { name: 'ln_f' }),
    new TiedLayerSpec('wte', wteClass, wteArgs, {
      rngDraws: V * C, name: 'head', forwardFn: (m: Embedding, x: Tensor) => realLogits(deferrableLinear(x, m.weight), V, rows),
    }),
  ];
  const key = gptLayerKey(L);
  return { layers, key };
}
