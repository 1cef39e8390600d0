/**
 * GPT-2 (Radford et al. 2019) and its GPT-3-paper sizes: token and learned position
 * embeddings, pre-LN transformer blocks, a final layer norm and an output head tied to the
 * token embedding. Plain model code: no parallelism here.
 *
 * State-dict keys follow Hugging Face's GPT-2 (without its `transformer.` prefix): `wte.weight`,
 * `wpe.weight`, `h.N.ln_1.*`, `h.N.attn.c_attn.*`, `h.N.attn.c_proj.*`, `h.N.ln_2.*`,
 * `h.N.mlp.c_fc.*`, `h.N.mlp.c_proj.*`, `ln_f.*`; linear weights are PyTorch's [out, in]
 * (Hugging Face stores GPT-2's Conv1D weights transposed). The head has no key of its own: it
 * reads `wte.weight`. `gptKeyFromFlatName` maps the flat naming of the golden reference file.
 */
import { add, arange, type DType, dropout, linear, registerExternalParameter, type Tensor } from '../src/index.ts';
import { Embedding, init, LayerNorm, Module, ModuleList, TransformerBlock } from '../src/nn/index.ts';
import { paddedVocabSize, realLogits, VocabEmbedding, vocabRowsMismatch } from './gpt_vocab.ts';

export interface GPTConfig {
  vocabSize: number;
  /** Context length: the number of learned positions. */
  nCtx: number;
  nLayer: number;
  nHead: number;
  nEmbd: number;
  /** Embedding, attention and residual dropout (GPT-2 trains with 0.1; default 0). */
  dropout?: number;
  layerNormEps?: number;
  /** Biases in linear layers and layer norms (default true). */
  bias?: boolean;
  /** Activation checkpointing of every block (default false). */
  checkpoint?: boolean;
  dtype?: DType;
  /**
   * Pads the vocabulary inside the model (Megatron's --make-vocab-size-divisible-by; default 1,
   * no padding): `wte.weight` gets Vp = vocabSize rounded up to a multiple of this many rows, the
   * extra rows start at zero and stay zero, and the tied head's product is [.., Vp] (GPT-2's 50257
   * with 64 or 128: 50304, a width cuBLASLt runs fast), of which forward returns the real
   * [.., vocabSize] logits as a view. Losses, logits and the real rows are the unpadded model's
   * (the padding logits are never in the softmax); the state dict's `wte.weight` is [Vp, nEmbd].
   */
  makeVocabSizeDivisibleBy?: number;
}

export type GPTSize = 'tiny' | '124M' | '350M' | '774M' | '1.5B' | '2.7B' | '6.7B' | '13B';

const GPT2_VOCAB = 50257;

/**
 * Named sizes: 'tiny' is the test model (vocab 64, context 16, 2 layers, 4 heads, hidden 32);
 * 124M–1.5B are GPT-2's (context 1024); 2.7B, 6.7B and 13B are the GPT-3 paper's (context
 * 2048). GPT-3 13B is listed with hidden 5140 and 40 heads, which do not divide; we use 5120
 * (128 per head), as Megatron's and OPT's 13B configurations do.
 */
const SIZES: Record<GPTSize, Omit<GPTConfig, 'dropout' | 'checkpoint' | 'dtype' | 'makeVocabSizeDivisibleBy'>> = {
  tiny: { vocabSize: 64, nCtx: 16, nLayer: 2, nHead: 4, nEmbd: 32 },
  '124M': { vocabSize: GPT2_VOCAB, nCtx: 1024, nLayer: 12, nHead: 12, nEmbd: 768 },
  '350M': { vocabSize: GPT2_VOCAB, nCtx: 1024, nLayer: 24, nHead: 16, nEmbd: 1024 },
  '774M': { vocabSize: GPT2_VOCAB, nCtx: 1024, nLayer: 36, nHead: 20, nEmbd: 1280 },
  '1.5B': { vocabSize: GPT2_VOCAB, nCtx: 1024, nLayer: 48, nHead: 25, nEmbd: 1600 },
  '2.7B': { vocabSize: GPT2_VOCAB, nCtx: 2048, nLayer: 32, nHead: 32, nEmbd: 2560 },
  '6.7B': { vocabSize: GPT2_VOCAB, nCtx: 2048, nLayer: 32, nHead: 32, nEmbd: 4096 },
  '13B': { vocabSize: GPT2_VOCAB, nCtx: 2048, nLayer: 40, nHead: 40, nEmbd: 5120 },
};

/** The names `gptConfig` knows. */
export const GPT_SIZES = Object.keys(SIZES) as GPTSize[];

/**
 * A named size (case-insensitive, e.g. '124M', '1.5b'), with optional overrides.
 * @example
 * const cfg = gptConfig('124M', { dropout: 0.1, checkpoint: true });
 */
export function gptConfig(name: string, overrides: Partial<GPTConfig> = {}): GPTConfig {
  const key = GPT_SIZES.find((s) => s.toLowerCase() === String(name).toLowerCase());
  if (!key) throw new Error(`gptConfig: unknown size ${JSON.stringify(name)} (known: ${GPT_SIZES.join(', ')})`);
  return { ...SIZES[key], ...overrides };
}

function checkConfig(c: GPTConfig): void {
  for (const f of ['vocabSize', 'nCtx', 'nLayer', 'nHead', 'nEmbd'] as const) {
    if (!Number.isSafeInteger(c[f]) || c[f] <= 0) throw new Error(`GPT: config.${f} must be a positive integer, got ${c[f]}`);
  }
  if (c.nEmbd % c.nHead !== 0) throw new Error(`GPT: nEmbd ${c.nEmbd} is not divisible by nHead ${c.nHead}`);
  paddedVocabSize(c.vocabSize, c.makeVocabSizeDivisibleBy);
}

/**
 * Parameter count of a config without allocating anything (the tied head counted once). With
 * makeVocabSizeDivisibleBy it counts what the model allocates and trains (Vp embedding rows, the
 * sum of model.parameters()); the real model's count is the config's without the option.
 * @example
 * gptParamCount(gptConfig('124M'));   // 124439808
 * gptParamCount(gptConfig('124M', { makeVocabSizeDivisibleBy: 128 }));   // 124475904 (50304 rows)
 */
export function gptParamCount(c: GPTConfig): number {
  checkConfig(c);
  const C = c.nEmbd;
  const b = (c.bias ?? true) ? 1 : 0;
  const ln = C + b * C;
  const block = ln + (3 * C * C + b * 3 * C) + (C * C + b * C) + ln + (4 * C * C + b * 4 * C) + (4 * C * C + b * C);
  return paddedVocabSize(c.vocabSize, c.makeVocabSizeDivisibleBy) * C + c.nCtx * C + c.nLayer * block + ln;
}

/**
 * GPT-2: ids [B, T] (i32/i64, T ≤ nCtx) → logits [B, T, vocab]. Init as GPT-2: normal(0, 0.02)
 * for embeddings and linear weights, zero biases, residual projections with std
 * 0.02/√(2·nLayer), layer norms ones/zeros; seeded by `manualSeed`. With a padded vocabulary
 * (makeVocabSizeDivisibleBy) the logits are a view with rows Vp apart and the same values.
 * @example
 * const model = new GPT(gptConfig('tiny'));
 * const loss = crossEntropy(model.forward(ids), targets);
 */
export class GPT extends Module {
  readonly config: GPTConfig;
  readonly wte: Embedding;
  readonly wpe: Embedding;
  readonly h: ModuleList<TransformerBlock>;
  readonly ln_f: LayerNorm;
  /** wte's rows: the vocabulary rounded up to makeVocabSizeDivisibleBy (the vocabulary itself when 1). */
  readonly paddedRows: number;

  constructor(config: GPTConfig) {
    super();
    checkConfig(config);
    this.config = { ...config };
    const { nEmbd, dtype } = config;
    const std = 0.02;
    const layer = {
      nEmbd,
      nHead: config.nHead,
      nLayer: config.nLayer,
      dropout: config.dropout,
      bias: config.bias,
      layerNormEps: config.layerNormEps,
      initStd: std,
      checkpoint: config.checkpoint,
      dtype,
    };
    const normal = (w: Tensor) => init.normal_(w, 0, std);
    const V = config.vocabSize;
    const rows = paddedVocabSize(V, config.makeVocabSizeDivisibleBy);
    this.paddedRows = rows;
    const wte = rows === V ? new Embedding(V, nEmbd, { dtype, initWeight: normal }) : new VocabEmbedding(V, rows, nEmbd, { dtype, initWeight: normal });
    this.wte = this.registerModule('wte', wte);
    this.wpe = this.registerModule('wpe', new Embedding(config.nCtx, nEmbd, { dtype, initWeight: normal }));
    this.h = this.registerModule('h', new ModuleList(Array.from({ length: config.nLayer }, () => new TransformerBlock(layer))));
    this.ln_f = this.registerModule('ln_f', new LayerNorm(nEmbd, { eps: config.layerNormEps ?? 1e-5, bias: config.bias ?? true, dtype }));
    // The tied head reads wte.weight in this module's forward: ZeRO stage 3 gathers it for GPT too.
    registerExternalParameter(this, this.wte.weight as Tensor);
  }

  override forward(ids: Tensor): Tensor {
    if (ids.ndim !== 2) throw new Error(`GPT: ids must be [batch, seq], got [${ids.shape.join(', ')}]`);
    const T = ids.shape[1];
    if (T > this.config.nCtx) throw new Error(`GPT: sequence length ${T} exceeds the context length ${this.config.nCtx}`);
    const pos = arange(T, { dtype: 'i32', device: ids.device });
    let x = add(this.wte.forward(ids), this.wpe.forward(pos));
    x = dropout(x, this.config.dropout ?? 0, this.training);
    for (const block of this.h) x = block.forward(x);
    // The head is tied to the token embedding: logits = ln_f(x) · wteᵀ (of a padded table: the real columns).
    return realLogits(linear(this.ln_f.forward(x), this.wte.weight), this.config.vocabSize, this.paddedRows);
  }

  /** A token table saved with another padding than this model's (makeVocabSizeDivisibleBy), explained. */
  override stateDictShapeHint(key: string, savedShape: readonly number[]): string | null {
    if (key !== 'wte.weight') return null;
    return vocabRowsMismatch(savedShape, this.wte.weight.shape, this.config.vocabSize, this.config.makeVocabSizeDivisibleBy);
  }

  /** Turns activation checkpointing of every block on or off. */
  setCheckpointing(on: boolean): void {
    for (const block of this.h) block.checkpoint = on;
  }
}

/**
 * Maps the flat block naming used by the golden reference (`h.0.attn_c_attn.weight`,
 * `h.0.mlp_c_fc.bias`: the block's attributes without submodules) to ours
 * (`h.0.attn.c_attn.weight`, `h.0.mlp.c_fc.bias`); other names are unchanged.
 */
export function gptKeyFromFlatName(name: string): string {
  return name.replace(/^(h\.\d+)\.(attn|mlp)_(c_\w+)\./, '$1.$2.$3.');
}
