import { act, checkCounts, type Schedule } from './action.ts';

/**
 * 1F1B (PipeDream-flush): rank r runs p−r−1 warm-up forwards, then alternates one forward and one
 * backward, then drains the backwards; at most p−r activations in flight.
 */
export function oneFOneB(stages: number, microbatches: number): Schedule {
  checkCounts('1f1b', stages, microbatches);
  const m = microbatches;
  const actions = Array.from({ length: stages }, (_, r) => {
    const warmup = Math.min(stages - r - 1, m);
    const row = [];
    for (let mb = 0; mb < warmup; mb++) row.push(act(r, 'F', mb));
    for (let i = 0; i < m - warmup; i++) row.push(act(r, 'F', warmup + i), act(r, 'B', i));
    for (let mb = m - warmup; mb < m; mb++) row.push(act(r, 'B', mb));
    return row;
  });
  return { name: '1f1b', ranks: stages, stages, virtualStages: 1, microbatches, splitBackward: false, lowered: false, actions };
}
