/**
 * Single-process checkpoints of a module with its optimizer, LR scheduler and RNG state: every
 * tensor is saved whole under its full name (parameters and buffers as group 'model', optimizer
 * state as 'optimizer.<param name>.<state name>'), so a sharded engine can load them too.
 */
import type { Module } from '../../nn/module.ts';
import { tensor } from '../../ops/index.ts';
import type { LRScheduler, LRSchedulerState } from '../../optim/lr_schedules/base.ts';
import type { Optimizer } from '../../optim/optimizer.ts';
import type { OptimizerStateDict, StateValue } from '../../optim/state_dict.ts';
import { getRngState, type RngState, setRngState } from '../../tensor/random.ts';
import type { Tensor } from '../../tensor/tensor.ts';
import { type LoadedCheckpoint, loadCheckpoint, moduleShapeHint, type TensorRequest } from './load.ts';
import { decodePlain } from './plain_state.ts';
import { openCheckpoint } from './reader.ts';
import { saveCheckpoint, type TensorShard } from './save.ts';

// biome-ignore lint/suspicious/noExplicitAny: any optimizer's hyperparameters
type AnyOptimizer = Optimizer<any>;

export interface ModuleCheckpointOptions {
  optimizer?: AnyOptimizer;
  scheduler?: LRScheduler;
  clientState?: unknown;
  /** Default 'checkpoint'. */
  tag?: string;
}

/** The optimizer's plain state with parameters named instead of numbered. */
interface NamedOptimizerState {
  paramGroups: (Record<string, unknown> & { params: string[] })[];
  steps: Record<string, number>;
  buffers: Record<string, { name: string; dtype: StateValue['dtype']; shape: number[] }[]>;
}

interface ModuleState {
  clientState: unknown;
  rng: RngState;
}

function paramNames(module: Module, optimizer: AnyOptimizer): string[] {
  const byTensor = new Map(module.namedParameters().map(([n, p]) => [p, n] as const));
  return optimizer.paramGroups.flatMap((g) =>
    g.params.map((p: Tensor) => {
      const n = byTensor.get(p);
      if (n === undefined) throw new Error(`module checkpoint: the optimizer holds a parameter ${JSON.stringify(p.shape)} that is not in the module`);
      return n;
    }),
  );
}

const optimName = (param: string, state: string) => `optimizer.${param}.${state}`;

/**
 * Saves `module` (its stateDict), the optimizer and scheduler state, the RNG state and
 * `clientState` as a one-rank checkpoint `dir/tag`, then points `dir/latest` at it.
 * @example
 * await saveModuleCheckpoint('ckpt', model, { optimizer, scheduler, tag: 'step10', clientState: { step: 10 } });
 */
export async function saveModuleCheckpoint(dir: string, module: Module, opts: ModuleCheckpointOptions = {}): Promise<string> {
  const tag = opts.tag ?? 'checkpoint';
  const tensors: TensorShard[] = Object.entries(module.stateDict()).map(([name, t]) => ({ name, fullShape: [...t.shape], dtype: t.dtype, data: t }));
  const owned: Tensor[] = [];
  let optimizer: NamedOptimizerState | null = null;
  try {
    if (opts.optimizer) {
      const names = paramNames(module, opts.optimizer);
      const sd = opts.optimizer.stateDict();
      optimizer = { paramGroups: sd.paramGroups.map((g) => ({ ...g, params: g.params.map((i) => names[i]) })), steps: {}, buffers: {} };
      for (const [idx, ps] of Object.entries(sd.state)) {
        const pname = names[Number(idx)];
        optimizer.steps[pname] = ps.step;
        optimizer.buffers[pname] = [];
        for (const [sname, v] of Object.entries(ps.buffers)) {
          const t = tensor(v.data, { shape: v.shape, dtype: v.dtype, tag: 'other' });
          owned.push(t);
          tensors.push({ name: optimName(pname, sname), fullShape: [...v.shape], dtype: v.dtype, data: t, group: 'optimizer' });
          optimizer.buffers[pname].push({ name: sname, dtype: v.dtype, shape: [...v.shape] });
        }
      }
    }
    const state: ModuleState = { clientState: opts.clientState ?? null, rng: getRngState() };
    await saveCheckpoint(dir, tag, { tensors, clientState: state, optimizer, scheduler: opts.scheduler?.stateDict() ?? null });
  } finally {
    for (const t of owned) t.dispose();
  }
  return tag;
}

export interface LoadModuleCheckpointOptions {
  optimizer?: AnyOptimizer;
  scheduler?: LRScheduler;
  /** Default: the tag in `dir/latest`. */
  tag?: string;
  loadOptimizerStates?: boolean;
  loadLrSchedulerStates?: boolean;
  /** Restore the global RNG state saved with the checkpoint (default true). */
  restoreRng?: boolean;
}

/**
 * Restores what `saveModuleCheckpoint` saved. Everything is read and verified (checksums, shapes,
 * the optimizer's state) before the module, optimizer, scheduler or RNG change.
 * @returns the tag and the saved clientState
 */
export function loadModuleCheckpoint(dir: string, module: Module, opts: LoadModuleCheckpointOptions = {}): { tag: string; clientState: unknown } {
  const ck = openCheckpoint(dir, opts.tag);
  const saved = decodePlain(ck.indexes[0].state) as { clientState: ModuleState; optimizer: NamedOptimizerState | null; scheduler: LRSchedulerState | null };
  const sd = module.stateDict();
  const want: TensorRequest[] = Object.entries(sd).map(([name, t]) => ({ name, fullShape: [...t.shape], dtype: t.dtype }));
  const useOptimizer = opts.optimizer && (opts.loadOptimizerStates ?? true);
  if (useOptimizer) {
    if (!saved.optimizer) throw new Error(`loadModuleCheckpoint: ${ck.dir} has no optimizer state`);
    for (const [pname, bufs] of Object.entries(saved.optimizer.buffers)) {
      for (const b of bufs) want.push({ name: optimName(pname, b.name), fullShape: b.shape, dtype: b.dtype });
    }
  }
  const loaded: LoadedCheckpoint = loadCheckpoint(dir, { tag: ck.tag, want, shapeHint: moduleShapeHint(module) });
  try {
    if (useOptimizer && saved.optimizer) opts.optimizer!.loadStateDict(toOptimizerState(saved.optimizer, paramNames(module, opts.optimizer!), loaded.tensors));
    if (opts.scheduler && (opts.loadLrSchedulerStates ?? true)) {
      if (!saved.scheduler) throw new Error(`loadModuleCheckpoint: ${ck.dir} has no scheduler state`);
      opts.scheduler.loadStateDict(saved.scheduler);
    }
    const model: Record<string, Tensor> = {};
    for (const name of Object.keys(sd)) model[name] = loaded.tensors.get(name)!;
    module.loadStateDict(model);
    if (opts.restoreRng ?? true) setRngState(saved.clientState.rng);
  } finally {
    for (const t of loaded.tensors.values()) t.dispose();
  }
  return { tag: ck.tag, clientState: saved.clientState.clientState };
}

function toOptimizerState(s: NamedOptimizerState, names: string[], tensors: Map<string, Tensor>): OptimizerStateDict {
  const index = new Map(names.map((n, i) => [n, i]));
  const state: OptimizerStateDict['state'] = {};
  for (const [pname, bufs] of Object.entries(s.buffers)) {
    const i = index.get(pname);
    if (i === undefined) throw new Error(`loadModuleCheckpoint: optimizer state for "${pname}", which this optimizer does not hold`);
    const buffers: Record<string, StateValue> = {};
    for (const b of bufs) buffers[b.name] = { shape: b.shape, dtype: b.dtype, data: tensors.get(optimName(pname, b.name))!.toArray() as Float32Array | Float64Array };
    state[i] = { step: s.steps[pname], buffers };
  }
  const paramGroups = s.paramGroups.map((g) =>
    Object.assign({}, g, {
      params: g.params.map((n) => {
        const i = index.get(n);
        if (i === undefined) throw new Error(`loadModuleCheckpoint: saved param group holds "${n}", which this optimizer does not hold`);
        return i;
      }),
    }),
  );
  return { state, paramGroups };
}
