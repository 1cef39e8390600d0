import { act, checkCounts, type Schedule } from './action.ts';

/** GPipe: every forward, then every backward (peak in-flight activations: all m micro-batches). */
export function gpipe(stages: number, microbatches: number): Schedule {
  checkCounts('gpipe', stages, microbatches);
  const actions = Array.from({ length: stages }, (_, r) => {
    const row = [];
    for (let mb = 0; mb < microbatches; mb++) row.push(act(r, 'F', mb));
    for (let mb = 0; mb < microbatches; mb++) row.push(act(r, 'B', mb));
    return row;
  });
  return { name: 'gpipe', ranks: stages, stages, virtualStages: 1, microbatches, splitBackward: false, lowered: false, actions };
}
