/**
 * Deterministic token sequences for GPT tests and demos when no text is given: each sample is
 * an arithmetic progression modulo `vocab` with a start and a step (1, 2 or 3) drawn from
 * (seed, index). The step is visible only from two consecutive tokens, so a model must use its
 * context (not just the current token) to predict well; a small GPT learns it quickly.
 */
import { checkIndex, type Dataset } from './dataset.ts';
import { portable } from './portable.ts';
import { CounterRng, Stream } from './rng.ts';
import type { TokenSample } from './token_dataset.ts';

export interface SyntheticTokensOptions {
  /** Samples; default 10,000. */
  length?: number;
  /** Tokens per sample, T. */
  seqLen: number;
  /** Vocabulary size; default 256 (like the byte-level token dataset). */
  vocab?: number;
  /** Default 0. */
  seed?: number;
}

/**
 * @example
 * const ds = syntheticTokens({ seqLen: 64, vocab: 256 });
 * const [ids, targets] = ds.get(0);   // targets[t] === ids[t + 1]
 */
export function syntheticTokens(opts: SyntheticTokensOptions): Dataset<TokenSample> {
  const length = opts.length ?? 10000;
  const { seqLen } = opts;
  const vocab = opts.vocab ?? 256;
  const seed = opts.seed ?? 0;
  if (!Number.isSafeInteger(length) || length < 0) throw new Error(`syntheticTokens: length must be a non-negative integer, got ${length}`);
  if (!Number.isInteger(seqLen) || seqLen < 1) throw new Error(`syntheticTokens: seqLen must be a positive integer, got ${seqLen}`);
  if (!Number.isInteger(vocab) || vocab < 2) throw new Error(`syntheticTokens: vocab must be an integer >= 2, got ${vocab}`);
  if (!Number.isSafeInteger(seed) || seed < 0) throw new Error(`syntheticTokens: seed must be a non-negative integer, got ${seed}`);
  const ds: Dataset<TokenSample> = {
    length,
    get(index) {
      checkIndex(index, length, 'syntheticTokens');
      const rng = new CounterRng(seed, index, Stream.synthetic);
      const start = rng.int(vocab);
      const step = 1 + rng.int(3);
      const seq = new Int32Array(seqLen + 1);
      for (let t = 0; t <= seqLen; t++) seq[t] = (start + t * step) % vocab;
      return [seq.slice(0, seqLen), seq.slice(1)];
    },
  };
  return portable(ds, import.meta.url, 'syntheticTokens', [{ length, seqLen, vocab, seed }]);
}
