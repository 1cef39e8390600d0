/**
 * GPT tiny (2 layers, no dropout, tied wte/head) trained through initialize() on the CPU for a few
 * micro-batches of fixed token patterns: the run the gradient-path tests (grad_into, grad_adopt,
 * zero_bucket_grads) compare with a feature on and off. The caller gives the engine config and a
 * counter to read before and after.
 */
import { GPT, type GPTConfig, gptConfig } from '../../models/index.ts';
import { crossEntropy, initialize, manualSeed, tensor, tidy } from '../../src/index.ts';

export interface GptEngineRunOptions {
  /** manualSeed before the model is built. */
  seed: number;
  /** The engine config (batch sizes, optimizer, zero_optimization). */
  config: Record<string, unknown>;
  /** Micro-batches run: forward, backward, step each. */
  micros: number;
  /** A running total (e.g. gradsWrittenInto); the run reports how much it grew. */
  counter: () => number;
  /** Called after each backward, before the step (inspect the model's gradients). */
  afterBackward?: (model: GPT) => void;
  /** Overrides of the model's config (e.g. makeVocabSizeDivisibleBy). */
  gpt?: Partial<GPTConfig>;
}

export interface GptEngineRun {
  /** Each micro-batch's loss. */
  losses: number[];
  /** The parameters' values after the run, in model.parameters() order. */
  weights: number[][];
  /** How much `counter` grew over the run. */
  counted: number;
}

/** Trains GPT tiny as described above; the model and engine are released before it returns. */
export async function gptEngineRun(o: GptEngineRunOptions): Promise<GptEngineRun> {
  manualSeed(o.seed);
  const cfg = gptConfig('tiny', { dropout: 0, nLayer: 2, ...o.gpt });
  const model = new GPT(cfg);
  const { engine } = await initialize({ model, config: o.config, device: 'cpu', log: () => {} });
  const losses: number[] = [];
  const before = o.counter();
  for (let micro = 0; micro < o.micros; micro++) {
    tidy(() => {
      const ids = tensor(Array.from({ length: 32 }, (_, i) => (i * 7 + micro * 13) % cfg.vocabSize), { dtype: 'i32', shape: [2, 16] });
      const tg = tensor(Array.from({ length: 32 }, (_, i) => (i * 5 + micro * 3 + 1) % cfg.vocabSize), { dtype: 'i64' });
      const l = crossEntropy(engine.forward(ids).reshape([32, cfg.vocabSize]), tg);
      engine.backward(l);
      o.afterBackward?.(model);
      engine.step();
      losses.push(l.item());
    });
  }
  const counted = o.counter() - before;
  engine.destroy();
  const weights = model.parameters().map((p) => Array.from(p.toArray() as ArrayLike<number>));
  model.dispose();
  return { losses, weights, counted };
}
