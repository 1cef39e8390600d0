/**
 * The optimizer's plain state in engine checkpoints, and its translation between the two kinds,
 * so that a stage-0 checkpoint loads at stages 1-3 and the other way round. The tensors already
 * agree: both kinds store optimizer state as `optimizer.<param>.<state>` slices of full-shape f32
 * tensors (expAvg, expAvgSq, momentumBuffer, master); only the step counts, the state names per
 * parameter and the hyperparameters are kept differently.
 */
import { Adam, AdamW } from '../optim/adam.ts';
import type { Optimizer } from '../optim/optimizer.ts';
import { SGD } from '../optim/sgd.ts';
import type { StateValue } from '../optim/state_dict.ts';
import type { SavedTensor } from './checkpoint/reader.ts';

/** Stage 0's optimizer state with parameters named instead of numbered. */
export interface NamedOptimizerState {
  kind: 'named';
  paramGroups: (Record<string, unknown> & { params: string[] })[];
  steps: Record<string, number>;
  buffers: Record<string, { name: string; dtype: StateValue['dtype']; shape: number[] }[]>;
}

/** Stages 1-3: the partitioned optimizer's type and step count (the state is in the tensors). */
export interface ZeroOptimizerState {
  kind: 'zero';
  type: string;
  steps: number;
}

export type SavedOptimizer = NamedOptimizerState | ZeroOptimizerState;

export const optimName = (param: string, state: string): string => `optimizer.${param}.${state}`;

/** The state names a checkpoint may hold per parameter. */
const STATE_NAMES = ['expAvg', 'expAvgSq', 'momentumBuffer', 'master'];

// biome-ignore lint/suspicious/noExplicitAny: any optimizer's hyperparameters
function typeOf(opt: Optimizer<any>): string {
  if (opt instanceof AdamW) return 'AdamW';
  if (opt instanceof Adam) return 'Adam';
  if (opt instanceof SGD) return 'SGD';
  return opt.constructor.name;
}

/** Adam and AdamW keep the same state (the decay rule is the optimizer's, not the state's). */
const family = (type: string) => (type === 'SGD' ? 'SGD' : 'Adam');

/**
 * A ZeRO checkpoint's optimizer state as stage 0's: every parameter with the state tensors saved
 * for it (`saved`: the checkpoint's tensors by name) and the ZeRO step count; the groups'
 * hyperparameters are the loading optimizer's (the learning rates come back with the engine state).
 */
export function namedFromZero(
  z: ZeroOptimizerState,
  // biome-ignore lint/suspicious/noExplicitAny: any optimizer's hyperparameters
  optimizer: Optimizer<any>,
  names: string[],
  saved: Map<string, SavedTensor>,
  at: string,
): NamedOptimizerState {
  const type = typeOf(optimizer);
  if (family(z.type) !== family(type)) throw new Error(`loadCheckpoint: ${at} holds ${z.type} state, this engine runs ${type}`);
  const out: NamedOptimizerState = { kind: 'named', paramGroups: [], steps: {}, buffers: {} };
  let i = 0;
  for (const g of optimizer.paramGroups) {
    const { params, ...hyper } = g;
    out.paramGroups.push({ ...structuredClone(hyper), params: params.map(() => names[i++]) });
  }
  if (z.steps === 0) return out;            // nothing was stepped: no state
  for (const pname of names) {
    const bufs = STATE_NAMES.flatMap((s) => {
      const t = saved.get(optimName(pname, s));
      return t ? [{ name: s, dtype: t.dtype as StateValue['dtype'], shape: [...t.fullShape] }] : [];
    });
    if (bufs.length === 0) continue;
    out.steps[pname] = z.steps;
    out.buffers[pname] = bufs;
  }
  return out;
}

/**
 * The ZeRO step count of a stage-0 checkpoint's optimizer state (every stepped parameter's count;
 * they must agree), after checking that it holds the state `type` needs.
 */
export function zeroStepsFromNamed(named: NamedOptimizerState, type: string, at: string): number {
  const names = new Set(Object.values(named.buffers).flatMap((bufs) => bufs.map((b) => b.name)));
  const savedFamily = names.has('momentumBuffer') ? 'SGD' : names.has('expAvg') ? 'Adam' : null;
  if (savedFamily && savedFamily !== family(type)) throw new Error(`loadCheckpoint: ${at} holds ${savedFamily} state, this engine runs ${type}`);
  const steps = [...new Set(Object.values(named.steps))];
  if (steps.length > 1) {
    throw new Error(`loadCheckpoint: ${at} has parameters stepped different numbers of times (${steps.join(', ')}); ZeRO keeps one count for all`);
  }
  return steps[0] ?? 0;
}
