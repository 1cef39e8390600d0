/** The step loop shared by the GPT engine benchmarks: one fixed token batch, timed engine steps. */
import { crossEntropy, type Engine, resetPeakMemoryStats, type Tensor, tensor, tidy } from '../src/index.ts';

/** A fixed batch of `b` rows of `t` tokens below `vocab` and its next-token targets (no RNG: the same every run). */
export function fixedTokens(b: number, t: number, vocab: number): { ids: Tensor; tg: Tensor } {
  const ids = tensor(Int32Array.from({ length: b * t }, (_, i) => (i * 7919) % vocab), { dtype: 'i32', shape: [b, t] });
  const tg = tensor(Int32Array.from({ length: b * t }, (_, i) => (i * 104729 + 1) % vocab), { dtype: 'i32', shape: [b * t] });
  return { ids, tg };
}

/**
 * `steps` forward/backward/step rounds of `engine` on one batch, the loss taken in f32 (bf16 logits
 * raised first). Peak memory stats are reset before each round and `after()` reads them after it;
 * returns each round's milliseconds.
 */
export function timeEngineSteps(engine: Engine, batch: { ids: Tensor; tg: Tensor }, vocab: number, steps: number, after: () => void): number[] {
  const times: number[] = [];
  for (let s = 0; s < steps; s++) {
    resetPeakMemoryStats();
    const t0 = performance.now();
    tidy(() => {
      const logits = (engine.forward(batch.ids) as Tensor).reshape([batch.tg.shape[0], vocab]);
      engine.backward(crossEntropy(logits.dtype === 'f32' ? logits : logits.to('f32'), batch.tg));
      engine.step();
    });
    times.push(performance.now() - t0);
    after();
  }
  return times;
}
