import { type Action, act, checkCounts, type Schedule } from './action.ts';

/**
 * ZB-H1 (Qi et al., "Zero Bubble Pipeline Parallelism"): the backward is split into B (input
 * gradient, on the critical path) and W (weight gradient, free to move). Forwards and B's keep
 * 1F1B's order; rank r defers its W's by r micro-batches (W(j−r) follows B(j)), so the B's travel
 * back faster and the W's fill the tail. In flight (F done, W not) stays ≤ min(p, m) on every rank:
 * 1F1B's peak on rank 0. With F = B = W the bubble is (p−1) per rank, a third of 1F1B's 3(p−1).
 */
export function zeroBubbleH1(stages: number, microbatches: number): Schedule {
  checkCounts('zb-h1', stages, microbatches);
  const [p, m] = [stages, microbatches];
  const actions = Array.from({ length: p }, (_, r) => {
    const warmup = Math.min(p - r - 1, m);
    const row: Action[] = [];
    let w = 0;
    for (let mb = 0; mb < warmup; mb++) row.push(act(r, 'F', mb));
    for (let j = 0; j < m; j++) {
      if (j + warmup < m) row.push(act(r, 'F', j + warmup));
      row.push(act(r, 'B', j));
      if (j >= r) row.push(act(r, 'W', w++));
    }
    while (w < m) row.push(act(r, 'W', w++));
    return row;
  });
  return { name: 'zb-h1', ranks: p, stages: p, virtualStages: 1, microbatches: m, splitBackward: true, lowered: false, actions };
}
