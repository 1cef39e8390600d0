import { type Action, type Schedule, stageRank } from './action.ts';

/**
 * Inserts communication between stages on different ranks: RECV_F before a forward and SEND_F
 * after it, RECV_B before a backward and SEND_B after it; then one REDUCE_GRAD per stage at the end
 * of each rank (gradients are reduced once per step, after the last micro-batch).
 */
export function lowerSchedule(s: Schedule): Schedule {
  if (s.lowered) return s;
  const last = s.stages - 1;
  const actions = s.actions.map((row, r) => {
    const out: Action[] = [];
    const peerOf = (stage: number): number | undefined => {
      if (stage < 0 || stage > last) return undefined;
      const q = stageRank(s, stage);
      return q === r ? undefined : q;
    };
    for (const a of row) {
      const { stage, microbatch } = a;
      const prev = peerOf(stage - 1);
      const next = peerOf(stage + 1);
      if (a.kind === 'F') {
        if (prev !== undefined) out.push({ stage, kind: 'RECV_F', microbatch, peer: prev });
        out.push(a);
        if (next !== undefined) out.push({ stage, kind: 'SEND_F', microbatch, peer: next });
      } else if (a.kind === 'B') {
        if (next !== undefined) out.push({ stage, kind: 'RECV_B', microbatch, peer: next });
        out.push(a);
        if (prev !== undefined) out.push({ stage, kind: 'SEND_B', microbatch, peer: prev });
      } else out.push(a);
    }
    for (let stage = r; stage <= last; stage += s.ranks) out.push({ stage, kind: 'REDUCE_GRAD', microbatch: -1 });
    return out;
  });
  return { ...s, lowered: true, actions };
}
