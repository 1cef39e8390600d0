/**
 * A padded vocabulary inside the model (Megatron's --make-vocab-size-divisible-by): the token
 * embedding holds Vp rows (V rounded up to a multiple), the tied head multiplies with N = Vp (a
 * width cuBLASLt runs fast: GPT-2's 50257 → 50304), and the model hands out logits [.., V], a
 * view of the [.., Vp] product. The padding logits are never in a softmax and the padding rows
 * start at zero, are never looked up and get zero gradients, so they stay zero and the losses and
 * the real rows' values are the unpadded model's (llm.c's padded vocabulary, not nanoGPT's
 * training of 50304 classes).
 */
import { embedding, narrow, type Tensor } from '../src/index.ts';
import { Embedding, type EmbeddingOptions, init } from '../src/nn/index.ts';

/** The embedding's row count: `vocabSize` rounded up to a multiple of `divisibleBy` (1: unchanged). */
export function paddedVocabSize(vocabSize: number, divisibleBy = 1): number {
  if (!Number.isSafeInteger(divisibleBy) || divisibleBy < 1) {
    throw new Error(`GPT: config.makeVocabSizeDivisibleBy must be a positive integer, got ${divisibleBy}`);
  }
  return Math.ceil(vocabSize / divisibleBy) * divisibleBy;
}

/**
 * A token embedding of `rows` >= `vocabSize` rows of which ids look up the first `vocabSize`
 * (an id >= vocabSize is out of range, as in the unpadded model). `initWeight` draws the real
 * rows exactly as an unpadded [vocabSize, D] table would (the same random numbers, so the rest of
 * the model is drawn as before too); the padding rows start at zero.
 * @example
 * const wte = new VocabEmbedding(50257, 50304, 768, { initWeight: (w) => init.normal_(w, 0, 0.02) });
 */
export class VocabEmbedding extends Embedding {
  readonly vocabSize: number;

  constructor(vocabSize: number, rows: number, embeddingDim: number, opts: EmbeddingOptions = {}) {
    const { initWeight } = opts;
    super(checkRows(vocabSize, rows), embeddingDim, {
      dtype: opts.dtype,
      initWeight: (w) => {
        const real = w.alias([vocabSize, embeddingDim], [embeddingDim, 1], w.offset);
        const pad = w.alias([rows - vocabSize, embeddingDim], [embeddingDim, 1], w.offset + vocabSize * embeddingDim);
        if (initWeight) initWeight(real);
        else init.normal_(real, 0, 1);
        if (pad.numel > 0) init.zeros_(pad);
        real.dispose();
        pad.dispose();
      },
    });
    this.vocabSize = vocabSize;
  }

  override forward(ids: Tensor): Tensor {
    // The lookup sees the real rows only: its range check is V's, its gradient reaches rows < V.
    return embedding(ids, this.weight, { rows: this.vocabSize });
  }

  protected override extraRepr(): string {
    return `${this.vocabSize} (padded to ${this.numEmbeddings}), ${this.embeddingDim}`;
  }
}

function checkRows(vocabSize: number, rows: number): number {
  if (!Number.isSafeInteger(vocabSize) || vocabSize <= 0 || !Number.isSafeInteger(rows) || rows < vocabSize) {
    throw new Error(`VocabEmbedding: ${rows} rows cannot hold a vocabulary of ${vocabSize}`);
  }
  return rows;
}

/**
 * The tied head's product [.., Vp] → the real logits [.., V]: a view at row pitch Vp (the product
 * handle is released; the view keeps its memory). The padding columns get zero gradients. An
 * unpadded model (`rows` = V) gets its product back whatever its width (a tensor-parallel head
 * hands out its vocabulary slice).
 */
export function realLogits(product: Tensor, vocabSize: number, rows: number): Tensor {
  if (rows === vocabSize) return product;
  const width = product.shape[product.ndim - 1];
  if (width !== rows) throw new Error(`GPT: the head's product is ${width} wide, not the padded vocabulary's ${rows} (vocabulary ${vocabSize})`);
  const out = narrow(product, product.ndim - 1, 0, vocabSize);
  product.dispose();
  return out;
}

/**
 * Why a token table of `savedShape` does not fit a GPT whose `wte.weight` is `modelShape` (null
 * when the rows agree): the padding on each side and the option that loads it.
 */
export function vocabRowsMismatch(savedShape: readonly number[], modelShape: readonly number[], vocabSize: number, divisibleBy = 1): string | null {
  if (savedShape.length !== 2 || modelShape.length !== 2 || savedShape[0] === modelShape[0]) return null;
  const saved = savedShape[0];
  let fix = `a table of ${saved} rows cannot hold this model's vocabulary of ${vocabSize}`;
  if (saved >= vocabSize) {
    // The largest power of two that rounds V up to the saved rows (1 when they are V).
    let m = 2 ** Math.floor(Math.log2(saved));
    while (m > 1 && paddedVocabSize(vocabSize, m) !== saved) m /= 2;
    fix = paddedVocabSize(vocabSize, m) === saved
      ? `build the model with makeVocabSizeDivisibleBy: ${m} (${vocabSize} → ${saved} rows) to load it`
      : `no power of two rounds ${vocabSize} up to ${saved} rows: build the model with makeVocabSizeDivisibleBy: ${saved} to load it`;
  }
  const padded = modelShape[0] === vocabSize ? 'is not padded' : `is padded to ${modelShape[0]} rows`;
  return `the model's vocabulary of ${vocabSize} ${padded} (makeVocabSizeDivisibleBy: ${divisibleBy}); ${fix}`;
}
