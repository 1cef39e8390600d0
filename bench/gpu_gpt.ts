/**
 * bench/gpu.ts part (b): one GPT-2 124M training step in bf16 on one GPU (forward, loss,
 * backward, AdamW), tokens/s and model FLOP utilization.
 *
 * FLOPs counted per step (PaLM / nanoGPT convention, recomputation not counted):
 *   tokens · (6·N + 12·L·T·d)
 * N = parameters that take part in a matmul: every parameter except the position embedding
 *     (wpe is a lookup); the token embedding counts once, as the tied LM head (2·d·V per token
 *     forward). Layer-norm and bias parameters are included (under 0.1% of N).
 * 12·L·T·d = attention's two sequence-length products (q·kᵀ and p·v, 2·T·d each per token and
 *     layer forward, twice that backward), over the full T×T square: the causal half that a
 *     fused kernel skips is still counted, as PaLM does.
 * A vocabulary padded inside the model (makeVocabSizeDivisibleBy) is counted at its real V: the
 * padding columns' products are not useful work. One trained as 50304 classes counts 50304.
 * Divided by the dense bf16 peak (989 TFLOP/s for H100 SXM and H200 by NVIDIA's datasheet, or
 * --peak) and, as a second denominator, by the best bf16 rate cuBLASLt reached in part (a).
 */
import { GPT, gptConfig, gptParamCount, paddedVocabSize } from '../models/index.ts';
import { AdamW, copyInPlace, crossEntropy, manualSeed, nn, noGrad, type Tensor, tensor, tidy } from '../src/index.ts';
import { DEV, deviceSeconds } from './gpu_timing.ts';
import { graphedStep } from './graphed_step.ts';
import { median } from './timing.ts';

export interface GptResult {
  batch: number;
  seq: number;
  /** The vocabulary trained (padded when `padVocabTo` asked for it). */
  vocab: number;
  /** The LM head's product width: `vocab`, or the rows of a vocabulary padded inside the model (`padVocabInside`). */
  headRows: number;
  stepS: number;
  tokensPerS: number;
  flopsPerStep: number;
  loss: number;
}

/** The FLOPs of one training step as counted above. */
export function gptStepFlops(config: ReturnType<typeof gptConfig>, batch: number, seq: number): number {
  const n = gptParamCount({ ...config, makeVocabSizeDivisibleBy: 1 }) - config.nCtx * config.nEmbd;
  return batch * seq * (6 * n + 12 * config.nLayer * seq * config.nEmbd);
}

/** The model, optimizer and two fixed token batches of the benchmark; `step(k)` trains on batch k % 2. */
export interface GptBenchStep {
  config: ReturnType<typeof gptConfig>;
  /** One training step (forward, loss, backward, AdamW) in a tidy scope; returns the loss tensor's value when `readLoss` (a synchronization). */
  step(k: number, readLoss?: boolean): number;
  /** The loss of batch 0 without training (synchronizes). */
  loss(): number;
  dispose(): void;
}

/** Variants of the benchmark step. */
export interface GptBenchOptions {
  /** The whole step (forward, backward, AdamW) replays a CUDA graph (bench/graphed_step.ts) on static inputs that each step's batch is copied into. */
  graph?: boolean;
  /**
   * The vocabulary rounded up to a multiple of this (Megatron's --make-vocab-size-divisible-by, 128 by
   * default there; nanoGPT pads GPT-2's 50257 to 50304 too): the LM head's odd leading dimension keeps
   * cuBLASLt from its 16-byte-aligned kernels. The extra rows are trained like the others, never a target.
   */
  padVocabTo?: number;
  /**
   * GPT-2's 50257 padded inside the model to a multiple of this (GPTConfig.makeVocabSizeDivisibleBy):
   * the head's product has the padded width, the padding logits are never in the softmax, the
   * losses are the unpadded model's.
   */
  padVocabInside?: number;
}

/** Builds what benchGpt times (bench/gpu_profile.ts times its ops). `size` 'tiny' is for checking the plumbing. */
export function gptBenchStep(batch: number, seq: number, size: '124M' | 'tiny' = '124M', opts: GptBenchOptions = {}): GptBenchStep {
  manualSeed(0);
  const base = gptConfig(size, { dtype: 'bf16', dropout: 0 });
  const pad = opts.padVocabTo ?? 1;
  const config = gptConfig(size, {
    dtype: 'bf16', dropout: 0, vocabSize: Math.ceil(base.vocabSize / pad) * pad, makeVocabSizeDivisibleBy: opts.padVocabInside ?? 1,
  });
  const graph = opts.graph ?? false;
  const model = nn.moduleToDevice(new GPT(config), DEV);
  const optimizer = new AdamW(model.parameters(), { lr: 1e-4, weightDecay: 0.1 });
  const V = config.vocabSize;
  // Fixed token batches made once, outside the timed steps (input loading is not measured).
  const batches: [Tensor, Tensor][] = [0, 1].map((b) => {
    // Tokens and targets of the real vocabulary: padded rows are never a target.
    const ids = Array.from({ length: batch * seq }, (_, i) => (i * 7919 + b * 31337) % base.vocabSize);
    const next = Array.from({ length: batch * seq }, (_, i) => (i * 104729 + b * 7) % base.vocabSize);
    return noGrad(() => [tensor(ids, { dtype: 'i32', shape: [batch, seq], device: DEV }), tensor(next, { dtype: 'i64', device: DEV })]);
  });
  const forwardBackward = (ids: Tensor, targets: Tensor) => {
    const l = crossEntropy(model.forward(ids).reshape([batch * seq, V]), targets);
    l.backward();
    return l;
  };
  const input = graph ? batches[0].map((t) => noGrad(() => t.clone())) : [];
  const graphed = graph ? graphedStep(() => forwardBackward(input[0], input[1]), optimizer, model.parameters()) : null;
  return {
    config,
    step: (k, readLoss = false) => {
      if (graphed) {
        batches[k % 2].forEach((t, i) => copyInPlace(input[i], t));
        const l = graphed.step();
        return readLoss ? l.item() : Number.NaN;
      }
      return tidy(() => {
        const [ids, targets] = batches[k % 2];
        const l = forwardBackward(ids, targets);
        optimizer.step();
        optimizer.zeroGrad();
        return readLoss ? l.item() : Number.NaN;
      });
    },
    loss: () => tidy(() => crossEntropy(model.forward(batches[0][0]).reshape([batch * seq, V]), batches[0][1]).item()),
    dispose: () => {
      graphed?.dispose();
      for (const t of input) t.dispose();
      model.dispose();
      for (const [a, b] of batches) {
        a.dispose();
        b.dispose();
      }
    },
  };
}

/** `size` 'tiny' is for checking the plumbing (bench/gpu.ts --smoke); `opts`: see gptBenchStep. */
export function benchGpt(batch: number, seq: number, steps: number, size: '124M' | 'tiny' = '124M', opts: GptBenchOptions = {}): GptResult {
  const g = gptBenchStep(batch, seq, size, opts);
  let loss = Number.NaN;
  // Reading the loss synchronizes: not every step.
  const step = (k: number): void => {
    const l = g.step(k, k % 4 === 3);
    if (k % 4 === 3) loss = l;
  };
  try {
    for (let k = 0; k < 2; k++) step(k);
    const times: number[] = [];
    for (let k = 0; k < steps; k++) times.push(deviceSeconds(() => step(k)));
    loss = g.loss();
    if (!Number.isFinite(loss)) throw new Error(`GPT-2 124M bf16: the loss is ${loss} after ${steps + 2} steps`);
    const s = median(times);
    const headRows = paddedVocabSize(g.config.vocabSize, g.config.makeVocabSizeDivisibleBy);
    return { batch, seq, vocab: g.config.vocabSize, headRows, stepS: s, tokensPerS: (batch * seq) / s, flopsPerStep: gptStepFlops(g.config, batch, seq), loss };
  } finally {
    g.dispose();
  }
}
