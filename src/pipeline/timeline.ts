/**
 * Measured timelines: every rank's actions with their wall-clock start and end, gathered over
 * the pipeline group and turned into the same Simulation the planner produces, so the SVG
 * renderer draws the measured run next to the planned one and the bubble is measured the same way.
 */
import type { ProcessGroup } from '../dist/process_group.ts';
import { tensor } from '../ops/create.ts';
import * as k from '../ops/kernels.ts';
import type { Schedule } from './schedule/action.ts';
import type { TimedAction } from './schedule/run.ts';
import { type Simulation, summarizeTimelines } from './schedule/simulate.ts';

/**
 * Every rank's timeline of the last trainBatch (all ranks call it; `mine` follows
 * `schedule.actions[group.rank]`). Times stay in epoch ms; `cpu` is each action's process CPU time (ms).
 * @example
 * engine.trainBatch(batch);
 * const sim = measuredSimulation(gatherTimelines(mesh.group('pp'), engine.schedule, engine.timeline));
 * if (mesh.group('pp').rank === 0) fs.writeFileSync('measured.svg', renderScheduleSvg(sim, { unit: 4 }));
 */
export function gatherTimelines(group: ProcessGroup, schedule: Schedule, mine: TimedAction[]): TimedAction[][] {
  const len = Math.max(...schedule.actions.map((r) => r.length));
  if (mine.length !== schedule.actions[group.rank].length) {
    throw new Error(`gatherTimelines: this rank's timeline has ${mine.length} actions, its schedule ${schedule.actions[group.rank].length} (pass the last trainBatch's timeline)`);
  }
  const out = k.empty([group.size * len * 3], 'f64', 'comm');
  const vals = new Float64Array(len * 3);
  mine.forEach((t, i) => {
    vals.set([t.start, t.end, t.cpu ?? Number.NaN], 3 * i);
  });
  const local = tensor(vals, { dtype: 'f64', shape: [len * 3], tag: 'comm' });
  group.allGather(out, local);
  const all = out.toArray() as Float64Array;
  local.dispose();
  out.dispose();
  const at = (r: number, i: number, j: number) => all[(r * len + i) * 3 + j];
  return schedule.actions.map((row, r) => row.map((action, i) => ({ action, start: at(r, i, 0), end: at(r, i, 1), cpu: at(r, i, 2) })));
}

/**
 * A Simulation from measured timelines: times in ms from the earliest start; the bubble is the
 * idle share of compute (F, B, W) over ranks × makespan, as simulateSchedule computes it.
 * @example
 * const sim = measuredSimulation(timelines, engine.schedule.splitBackward);
 * console.log(`measured bubble ${(100 * sim.bubbleFraction).toFixed(1)}%`);
 */
export function measuredSimulation(timelines: TimedAction[][], splitBackward = false): Simulation {
  const t0 = Math.min(...timelines.flat().map((t) => t.start));
  const rel = timelines.map((row) => row.map((t) => ({ ...t, start: t.start - t0, end: t.end - t0 })));
  return summarizeTimelines(rel, splitBackward);
}
