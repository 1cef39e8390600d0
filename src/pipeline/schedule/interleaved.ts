import { act, checkCounts, type Schedule } from './action.ts';

/**
 * Megatron's interleaved 1F1B: `ranks` devices, each holding `virtualStages` model chunks; chunk
 * c of rank r is stage r + c·ranks. Micro-batches go through the chunks in groups of `ranks`, so
 * their count must be a multiple of `ranks`. Warm-up: 2(p−r−1) + (v−1)p forwards (all of them when
 * m = p, as Megatron), then one forward / one backward, then the remaining backwards.
 */
export function interleaved1F1B(ranks: number, microbatches: number, virtualStages: number): Schedule {
  checkCounts('interleaved', ranks, microbatches, virtualStages);
  const [p, m, v] = [ranks, microbatches, virtualStages];
  if (m % p !== 0) throw new Error(`interleaved: micro-batches (${m}) must be a multiple of the pipeline ranks (${p})`);
  const total = m * v;
  // The k-th forward (or backward) of a rank: which chunk and micro-batch it is.
  const chunkOf = (k: number, forward: boolean): number => {
    const c = Math.floor((k % (p * v)) / p);
    return forward ? c : v - 1 - c;
  };
  const mbOf = (k: number): number => Math.floor(k / (p * v)) * p + (k % p);
  const actions = Array.from({ length: p }, (_, r) => {
    const warmup = m === p ? total : Math.min(total, 2 * (p - r - 1) + (v - 1) * p);
    const fwd = (k: number) => act(r + chunkOf(k, true) * p, 'F', mbOf(k));
    const bwd = (k: number) => act(r + chunkOf(k, false) * p, 'B', mbOf(k));
    const row = [];
    for (let k = 0; k < warmup; k++) row.push(fwd(k));
    for (let i = 0; i < total - warmup; i++) row.push(fwd(warmup + i), bwd(i));
    for (let k = total - warmup; k < total; k++) row.push(bwd(k));
    return row;
  });
  return { name: 'interleaved', ranks: p, stages: p * v, virtualStages: v, microbatches: m, splitBackward: false, lowered: false, actions };
}
