import type { Schedule } from './action.ts';
import { formatAction } from './action.ts';
import { lowerSchedule } from './lower.ts';
import { type ActionCosts, runSchedule, type TimedAction } from './run.ts';

export interface Simulation {
  /** Per rank, every action (communication included) with its start and end. */
  timelines: TimedAction[][];
  makespan: number;
  /** Idle compute time over ranks × makespan. */
  bubbleFraction: number;
  /** Per rank, the most micro-batch activations held at once (per stage chunk): an F adds one, the
   * last backward piece of that micro-batch (W when split, else B) frees it. */
  peakActivations: number[];
}

export const UNIT_COSTS: ActionCosts = { F: 1, B: 1, W: 1, comm: 0 };

/** Lowers (if needed) and runs the schedule with the given costs; throws on a deadlock. */
export function simulateSchedule(schedule: Schedule, costs: ActionCosts = UNIT_COSTS): Simulation {
  const s = lowerSchedule(schedule);
  const { timelines, blocked } = runSchedule(s, costs);
  if (blocked.length > 0) throw new Error(`simulate: ${s.name} deadlocks: rank ${blocked[0].rank} waits at ${formatAction(blocked[0].action)}`);
  return summarizeTimelines(timelines, s.splitBackward);
}

/**
 * The makespan, bubble fraction and peak activations of per-rank timelines starting at 0 (one row a
 * rank), simulated or measured. With `splitBackward` a micro-batch's activations are freed by its W.
 */
export function summarizeTimelines(timelines: TimedAction[][], splitBackward: boolean): Simulation {
  const makespan = Math.max(0, ...timelines.flat().map((t) => t.end));
  let busy = 0;
  const freeKind = splitBackward ? 'W' : 'B';
  const peakActivations = timelines.map((row) => {
    let live = 0;
    let peak = 0;
    for (const { action, start, end } of row) {
      if (action.kind === 'F' || action.kind === 'B' || action.kind === 'W') busy += end - start;
      if (action.kind === 'F') peak = Math.max(peak, ++live);
      if (action.kind === freeKind) live--;
    }
    return peak;
  });
  const bubbleFraction = makespan > 0 ? 1 - busy / (timelines.length * makespan) : 0;
  return { timelines, makespan, bubbleFraction, peakActivations };
}

/**
 * The textbook bubble fraction with F = B = W (a whole backward = 2F) and free communication:
 * (p−1)/(m+p−1) for GPipe and 1F1B, (p−1)/(v·m+p−1) interleaved (≈ 1F1B's / v), and
 * (p−1)/(3m+p−1) for ZB-H1 (a bubble of (p−1)(F+B−W) = (p−1), a third of 1F1B's 3(p−1)).
 */
export function theoreticalBubble(name: string, ranks: number, microbatches: number, virtualStages = 1): number {
  const [p, m, v] = [ranks, microbatches, virtualStages];
  if (name === 'gpipe' || name === '1f1b') return (p - 1) / (m + p - 1);
  if (name === 'interleaved') return (p - 1) / (v * m + p - 1);
  if (name === 'zb-h1') return (p - 1) / (3 * m + p - 1);
  throw new Error(`theoreticalBubble: unknown schedule '${name}'`);
}
