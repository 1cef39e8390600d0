import { type Action, formatAction, type Schedule } from './action.ts';

/** Per-action costs. Without a split backward, a B is the whole backward and costs B + W. */
export interface ActionCosts {
  F: number;
  B: number;
  W: number;
  /** Latency of one send → receive between ranks. */
  comm: number;
  reduce?: number;
}

export interface TimedAction {
  action: Action;
  start: number;
  end: number;
  /** Measured runs: the process's CPU time over the action (ms), apart from waits for the CPU. */
  cpu?: number;
}

/** A rank that cannot go on: its next action and the one it waits for. */
export interface Blocked {
  rank: number;
  step: number;
  action: Action;
  waitsFor: string;
}

const key = (kind: string, stage: number, mb: number): string => `${stage}${kind}${mb}`;

/**
 * Runs each rank's list in order, every action as soon as the rank is free and its inputs are
 * ready. Sends are buffered (posted, never blocking: the runtime's async p2p); receives block until
 * the matching send is posted, plus `comm`. Returns the timelines, and who is stuck on a deadlock.
 * This is the real transport's behaviour as the runtime drives it (p2p.ts): sends are asynchronous,
 * and although shm matches messages per rank pair in posting order, the runtime posts receives in the
 * peer's send order, so a receive waits only for its own send (earlier ones on that pair were sent first).
 */
export function runSchedule(s: Schedule, costs: ActionCosts): { timelines: TimedAction[][]; blocked: Blocked[] } {
  const done = new Map<string, { end: number; rank: number }>();
  const timelines: TimedAction[][] = s.actions.map(() => []);
  const free = s.actions.map(() => 0);
  const pos = s.actions.map(() => 0);
  const last = s.stages - 1;
  const deps = (a: Action): string[] => {
    const { stage: st, microbatch: mb } = a;
    switch (a.kind) {
      case 'F':
        return st > 0 ? [key('F', st - 1, mb)] : [];
      case 'B':
        return st < last ? [key('F', st, mb), key('B', st + 1, mb)] : [key('F', st, mb)];
      case 'W':
        return [key('B', st, mb)];
      case 'SEND_F':
        return [key('F', st, mb)];
      case 'SEND_B':
        return [key('B', st, mb)];
      case 'RECV_F':
        return [key('SEND_F', st - 1, mb)];
      case 'RECV_B':
        return [key('SEND_B', st + 1, mb)];
      default:
        return [];
    }
  };
  const duration = (a: Action): number => {
    if (a.kind === 'F') return costs.F;
    if (a.kind === 'B') return s.splitBackward ? costs.B : costs.B + costs.W;
    if (a.kind === 'W') return costs.W;
    if (a.kind === 'REDUCE_GRAD') return costs.reduce ?? 0;
    return 0;
  };
  for (let progress = true; progress; ) {
    progress = false;
    s.actions.forEach((row, r) => {
      while (pos[r] < row.length) {
        const a = row[pos[r]];
        let ready = free[r];
        let ok = true;
        for (const d of deps(a)) {
          const got = done.get(d);
          if (!got) {
            ok = false;
            break;
          }
          const cross = got.rank !== r || a.kind === 'RECV_F' || a.kind === 'RECV_B';
          ready = Math.max(ready, got.end + (cross ? costs.comm : 0));
        }
        if (!ok) break;
        const start = a.kind.startsWith('RECV') ? free[r] : ready;
        const end = ready + duration(a);
        timelines[r].push({ action: a, start, end });
        done.set(formatAction(a), { end, rank: r });
        free[r] = end;
        pos[r]++;
        progress = true;
      }
    });
  }
  const blocked: Blocked[] = [];
  s.actions.forEach((row, r) => {
    if (pos[r] < row.length) {
      const a = row[pos[r]];
      blocked.push({ rank: r, step: pos[r], action: a, waitsFor: deps(a).find((d) => !done.has(d)) ?? '?' });
    }
  });
  return { timelines, blocked };
}
