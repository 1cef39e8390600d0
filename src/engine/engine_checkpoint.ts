/**
 * Engine checkpoints (DeepSpeed's engine.save_checkpoint / load_checkpoint) over the sharded,
 * layout-independent format of ./checkpoint: every tensor is stored under its full name and full
 * shape, so a checkpoint saved at one dp size loads at another.
 *
 * - Stage 0: rank 0 writes the whole model state and the optimizer state by parameter name
 *   (`optimizer.<param>.<state>`); the other ranks write empty shards (their plain state only).
 * - Stages 1-3: each rank writes its ZeRO optimizer's `partitionShards()`: the slices of the
 *   parameters it owns and the optimizer state for them under the same names; rank 0 adds the
 *   module's buffers. Loading asks for the slices of the new partition (the loader reshards, and
 *   any of stages 1-3 loads any other: the names and full shapes are the same), then makes the
 *   parameters current (stages 1/2 all-gather them).
 * - Stage 0 and stages 1-3 load each other's checkpoints too: the tensors have the same names;
 *   checkpoint_optimizer.ts translates the step counts (stage 0: per parameter; ZeRO: one).
 * - Plain state on every rank: globalSteps, skippedSteps, the loss scaler's state (a dynamic
 *   scaler's scale, hysteresis and iteration bookkeeping: restored into a dynamic scaler, so an
 *   fp16 run resumes with the same scale; a static scale comes from the config), microSteps, the
 *   learning rates, the optimizer's step counts, the scheduler's state, the rank's RNG state and
 *   the client state.
 *
 * Loading reads and verifies everything first, then the ranks agree (one all-reduce) before any
 * state changes, so a torn or mismatched checkpoint fails on every rank and none hangs.
 */
import { tensor } from '../ops/index.ts';
import * as k from '../ops/kernels.ts';
import type { LRSchedulerState } from '../optim/lr_schedules/base.ts';
import type { Optimizer } from '../optim/optimizer.ts';
import type { OptimizerStateDict, StateValue } from '../optim/state_dict.ts';
import { getRngState, type RngState, setRngState } from '../tensor/random.ts';
import type { Tensor } from '../tensor/tensor.ts';
import { flatView } from '../zero/comms.ts';
import { type LoadedCheckpoint, loadCheckpoint, moduleShapeHint, type TensorRequest } from './checkpoint/load.ts';
import { openCheckpoint } from './checkpoint/reader.ts';
import { saveCheckpoint, type TensorShard } from './checkpoint/save.ts';
import {
  type NamedOptimizerState, namedFromZero, optimName, type SavedOptimizer, zeroStepsFromNamed,
} from './checkpoint_optimizer.ts';
import type { Engine, EngineBackend } from './engine.ts';
import type { LossScalerState } from './loss_scaler.ts';

export interface SaveEngineCheckpointOptions {
  /** Default `global_step<globalSteps>` (DeepSpeed's). */
  tag?: string;
  /** Plain data saved with the checkpoint and returned by loadCheckpoint. */
  clientState?: unknown;
}

export interface LoadEngineCheckpointOptions {
  /** Default: the tag in `dir/latest`. */
  tag?: string;
  /** Restore the optimizer state (default true). */
  loadOptimizerStates?: boolean;
  /** Restore the LR scheduler's position (default true). */
  loadLrSchedulerStates?: boolean;
}

export interface LoadedEngineCheckpoint {
  tag: string;
  /** `dir/tag`. */
  loadPath: string;
  clientState: unknown;
}

/** Engine state saved by every rank as plain data. */
interface EngineState {
  stage: 0 | 1 | 2 | 3;
  dpSize: number;
  globalSteps: number;
  /** Absent in checkpoints saved before it was recorded. */
  skippedSteps?: number;
  /** The loss scaler's state (absent in older checkpoints). */
  lossScaler?: { dynamic: boolean; state: LossScalerState };
  microSteps: number;
  lrs: number[];
  rng: RngState;
  client: unknown;
}

interface Saved {
  clientState: EngineState;
  optimizer: SavedOptimizer | null;
  scheduler: LRSchedulerState | null;
}

// biome-ignore lint/suspicious/noExplicitAny: any optimizer's hyperparameters
function namesOf(engine: Engine, optimizer: Optimizer<any>): string[] {
  const byTensor = new Map(engine.module.namedParameters().map(([n, p]) => [p, n] as const));
  return optimizer.paramGroups.flatMap((g) =>
    g.params.map((p: Tensor) => {
      const n = byTensor.get(p);
      if (n === undefined) throw new Error(`engine checkpoint: the optimizer holds a parameter ${JSON.stringify(p.shape)} that is not in the model`);
      return n;
    }),
  );
}

/** The module's state entries that are not parameters (buffers). */
function bufferEntries(engine: Engine): [string, Tensor][] {
  const params = new Set(engine.module.parameters());
  return Object.entries(engine.module.stateDict()).filter(([, t]) => !params.has(t));
}

/** Saves the engine's checkpoint `dir/tag` from every rank of its dp group. */
export async function saveEngineCheckpoint(engine: Engine, backend: EngineBackend, dir: string, opts: SaveEngineCheckpointOptions = {}): Promise<string> {
  const tag = opts.tag ?? `global_step${engine.globalSteps}`;
  const { rank, size } = engine.group;
  const tensors: TensorShard[] = [];
  const views: Tensor[] = [];
  let optimizer: SavedOptimizer;
  try {
    if (backend.stage === 0) {
      const names = namesOf(engine, backend.optimizer);
      const sd = backend.optimizer.stateDict();
      const named: NamedOptimizerState = { kind: 'named', paramGroups: sd.paramGroups.map((g) => ({ ...g, params: g.params.map((i) => names[i]) })), steps: {}, buffers: {} };
      for (const [idx, ps] of Object.entries(sd.state)) {
        const pname = names[Number(idx)];
        named.steps[pname] = ps.step;
        named.buffers[pname] = [];
        for (const [sname, v] of Object.entries(ps.buffers)) {
          named.buffers[pname].push({ name: sname, dtype: v.dtype, shape: [...v.shape] });
          if (rank !== 0) continue;
          const t = tensor(v.data, { shape: v.shape, dtype: v.dtype, tag: 'other' });
          views.push(t);
          tensors.push({ name: optimName(pname, sname), fullShape: [...v.shape], dtype: v.dtype, data: t, group: 'optimizer' });
        }
      }
      if (rank === 0) for (const [name, t] of Object.entries(engine.module.stateDict())) tensors.push({ name, fullShape: [...t.shape], dtype: t.dtype, data: t });
      optimizer = named;
    } else {
      for (const s of backend.zero.partitionShards()) {
        views.push(s.data);
        tensors.push(s);
      }
      if (rank === 0) for (const [name, t] of bufferEntries(engine)) tensors.push({ name, fullShape: [...t.shape], dtype: t.dtype, data: t });
      optimizer = { kind: 'zero', type: backend.zero.hyper.type, steps: backend.zero.steps };
    }
    const state: EngineState = {
      stage: backend.stage, dpSize: size, globalSteps: engine.globalSteps, skippedSteps: engine.skippedSteps,
      lossScaler: { dynamic: engine.lossScaler.dynamic, state: engine.lossScaler.stateDict() }, microSteps: engine.microSteps,
      lrs: engine.getLr(), rng: getRngState(), client: opts.clientState ?? null,
    };
    await saveCheckpoint(dir, tag, {
      rank, worldSize: size, tensors, clientState: state, optimizer, scheduler: engine.lrScheduler?.stateDict() ?? null,
      barrier: () => {
        engine.group.barrier();
      },
    });
  } finally {
    for (const t of views) t.dispose();
    // nvme offload: the save read the state into memory; free it now rather than at the next step.
    if (backend.stage !== 0) backend.zero.flushOffload?.();
  }
  return tag;
}

/** What a rank read: verified tensors and where each goes. */
interface Plan {
  ck: LoadedCheckpoint;
  saved: Saved;
  /** Copy each loaded tensor into its destination (a flat view or a whole tensor). */
  copies: { name: string; into: Tensor }[];
  optimizerState: OptimizerStateDict | null;
  /** Stages 1-3: the optimizer step count to restore. */
  zeroSteps: number;
  /** Stages 1-3: some fp32 master was not in the checkpoint (a stage-0 save of never-stepped parameters): take them from the weights. */
  mastersFromWeights: boolean;
}

/**
 * Restores the engine from `dir/tag` on every rank of its dp group (any dp size and any stage saved
 * it: the tensors are stored by full name whatever the layout; checkpoint_optimizer.ts translates
 * the optimizer's step counts between stage 0 and stages 1-3). Nothing changes unless every rank read and
 * verified its part; otherwise every rank throws (the failing rank's own error names the file).
 */
export function loadEngineCheckpoint(engine: Engine, backend: EngineBackend, dir: string, opts: LoadEngineCheckpointOptions = {}): LoadedEngineCheckpoint {
  const loadOptim = opts.loadOptimizerStates ?? true;
  const loadSched = opts.loadLrSchedulerStates ?? true;
  const views: Tensor[] = [];
  let plan: Plan | null = null;
  let error: unknown = null;
  try {
    plan = readPlan(engine, backend, dir, opts.tag, loadOptim, loadSched, views);
  } catch (e) {
    error = e;
  }
  try {
    agree(engine, error);
    const p = plan as Plan;
    const { saved, ck } = p;
    if (backend.stage !== 0 && loadOptim) backend.zero.clearOptimizerState();
    for (const { name, into } of p.copies) {
      const src = ck.tensors.get(name) as Tensor;
      const a = flatView(src, 0, src.numel);
      const b = flatView(into, 0, into.numel);
      k.copyInto(a, b);
      a.dispose();
      b.dispose();
    }
    if (backend.stage === 0) {
      if (p.optimizerState) backend.optimizer.loadStateDict(p.optimizerState);
    } else {
      if (loadOptim) backend.zero.steps = p.zeroSteps;
      if (!loadOptim || p.mastersFromWeights) backend.zero.syncMasters();
      backend.zero.allGatherParameters();
    }
    if (loadSched && engine.lrScheduler && saved.scheduler) engine.lrScheduler.loadStateDict(saved.scheduler);
    if (loadOptim || loadSched) engine.setLrs(saved.clientState.lrs);
    engine.globalSteps = saved.clientState.globalSteps;
    if (saved.clientState.skippedSteps !== undefined) engine.skippedSteps = saved.clientState.skippedSteps;
    const ls = saved.clientState.lossScaler;
    if (ls?.dynamic && engine.lossScaler.dynamic) engine.lossScaler.loadStateDict(ls.state);
    engine.microSteps = saved.clientState.microSteps;
    // The RNG state is per rank: restored when the dp size is the same, else rank 0's is used by all.
    setRngState(saved.clientState.rng);
    engine.zeroGrad();
    return { tag: ck.tag, loadPath: `${dir}/${ck.tag}`, clientState: saved.clientState.client };
  } finally {
    if (plan) for (const t of plan.ck.tensors.values()) t.dispose();
    for (const t of views) t.dispose();
  }
}

/** The saved skippedSteps and loss scaler state are well formed (checked before anything changes). */
function checkScalerState(st: EngineState, at: string): void {
  const where = 'loadCheckpoint';
  if (st.skippedSteps !== undefined && !(Number.isInteger(st.skippedSteps) && st.skippedSteps >= 0)) {
    throw new Error(`${where}: ${at} has a malformed skippedSteps (${String(st.skippedSteps)})`);
  }
  const ls = st.lossScaler;
  if (ls === undefined) return;
  const s = ls?.state;
  const ok = typeof ls === 'object' && ls !== null && typeof ls.dynamic === 'boolean' && typeof s === 'object' && s !== null
    && s.curScale > 0 && s.curIter >= 0 && s.lastOverflowIter >= -1 && s.curHysteresis >= 0;
  if (!ok) throw new Error(`${where}: ${at} has a malformed loss scaler state (${JSON.stringify(ls)})`);
}

/** Every rank reports whether it failed; all throw if any did (before anything changed). */
function agree(engine: Engine, error: unknown): void {
  const flag = tensor([error ? 1 : 0], { dtype: 'f64' });
  try {
    engine.group.allReduce(flag, 'sum');
    const failed = flag.item();
    if (error) throw error;
    if (failed > 0) throw new Error(`loadCheckpoint: ${failed} other rank(s) of the dp group could not read the checkpoint (see their errors); nothing was loaded`);
  } finally {
    flag.dispose();
  }
}

function readPlan(engine: Engine, backend: EngineBackend, dir: string, tag: string | undefined, loadOptim: boolean, loadSched: boolean, views: Tensor[]): Plan {
  const where = 'loadCheckpoint';
  const { rank, size } = engine.group;
  const head = loadCheckpoint(dir, { tag, rank, worldSize: size, want: [] });
  const saved = { clientState: head.clientState, optimizer: head.optimizer, scheduler: head.scheduler } as Saved;
  const st = saved.clientState;
  if (!st || typeof st !== 'object' || !Number.isInteger(st.globalSteps) || !Array.isArray(st.lrs)) {
    throw new Error(`${where}: ${dir}/${head.tag} is not an engine checkpoint (no engine state; saved with saveCheckpoint or saveModuleCheckpoint?)`);
  }
  checkScalerState(st, `${dir}/${head.tag}`);
  if (st.lrs.length !== engine.getLr().length) throw new Error(`${where}: ${dir}/${head.tag} has ${st.lrs.length} parameter group(s), this engine ${engine.getLr().length}`);
  if (loadSched && engine.lrScheduler && !saved.scheduler) throw new Error(`${where}: ${dir}/${head.tag} has no LR scheduler state (pass loadLrSchedulerStates: false)`);
  const want: TensorRequest[] = [];
  const copies: { name: string; into: Tensor }[] = [];
  let optimizerState: OptimizerStateDict | null = null;
  if (backend.stage === 0) {
    for (const [name, t] of Object.entries(engine.module.stateDict())) {
      want.push({ name, fullShape: [...t.shape], dtype: t.dtype });
      copies.push({ name, into: t });
    }
    let named = saved.optimizer as SavedOptimizer | null;
    if (loadOptim) {
      // A ZeRO checkpoint: the same tensors, described the stage-0 way.
      if (named?.kind === 'zero') named = namedFromZero(named, backend.optimizer, namesOf(engine, backend.optimizer), openCheckpoint(dir, head.tag).tensors, `${dir}/${head.tag}`);
      if (named?.kind !== 'named') throw new Error(`${where}: ${dir}/${head.tag} has no optimizer state (pass loadOptimizerStates: false)`);
      for (const [pname, bufs] of Object.entries(named.buffers)) for (const b of bufs) want.push({ name: optimName(pname, b.name), fullShape: b.shape, dtype: b.dtype });
    }
    const ck = loadCheckpoint(dir, { tag: head.tag, rank, worldSize: size, want, shapeHint: moduleShapeHint(engine.module) });
    if (loadOptim && named?.kind === 'named') {
      try {
        optimizerState = toOptimizerState(named, namesOf(engine, backend.optimizer), ck.tensors);
      } catch (e) {
        for (const t of ck.tensors.values()) t.dispose();
        throw e;
      }
    }
    return { ck, saved, copies, optimizerState, zeroSteps: 0, mastersFromWeights: false };
  }
  let zeroSteps = 0;
  // A stage-0 checkpoint holds state only for parameters it stepped; the rest stays zero.
  let present: (name: string) => boolean = () => true;
  if (loadOptim) {
    const z = saved.optimizer as SavedOptimizer | null;
    const at = `${dir}/${head.tag}`;
    if (z?.kind === 'zero') {
      if (z.type !== backend.zero.hyper.type) throw new Error(`${where}: ${at} holds ${z.type} state, this engine runs ${backend.zero.hyper.type}`);
      zeroSteps = z.steps;
    } else if (z?.kind === 'named') {
      zeroSteps = zeroStepsFromNamed(z, backend.zero.hyper.type, at);
      const have = new Set(Object.entries(z.buffers).flatMap(([pname, bufs]) => bufs.map((b) => optimName(pname, b.name))));
      present = (name) => have.has(name);
    } else {
      throw new Error(`${where}: ${at} has no optimizer state (pass loadOptimizerStates: false)`);
    }
  }
  let mastersFromWeights = false;
  for (const s of backend.zero.partitionShards({ optimizer: loadOptim })) {
    views.push(s.data);
    if (s.group === 'optimizer' && !present(s.name)) {
      if (s.name.endsWith('.master')) mastersFromWeights = true;
      continue;
    }
    want.push({ name: s.name, fullShape: s.fullShape, dtype: s.dtype, shardRange: s.shardRange });
    copies.push({ name: s.name, into: s.data });
  }
  for (const [name, t] of bufferEntries(engine)) {
    want.push({ name, fullShape: [...t.shape], dtype: t.dtype });
    copies.push({ name, into: t });
  }
  const ck = loadCheckpoint(dir, { tag: head.tag, rank, worldSize: size, want, shapeHint: moduleShapeHint(engine.module) });
  return { ck, saved, copies, optimizerState, zeroSteps, mastersFromWeights };
}

function toOptimizerState(s: NamedOptimizerState, names: string[], tensors: Map<string, Tensor>): OptimizerStateDict {
  const index = new Map(names.map((n, i) => [n, i]));
  const at = (n: string) => {
    const i = index.get(n);
    if (i === undefined) throw new Error(`loadCheckpoint: optimizer state for "${n}", which this optimizer does not hold`);
    return i;
  };
  const state: OptimizerStateDict['state'] = {};
  for (const [pname, bufs] of Object.entries(s.buffers)) {
    const buffers: Record<string, StateValue> = {};
    for (const b of bufs) buffers[b.name] = { shape: b.shape, dtype: b.dtype, data: (tensors.get(optimName(pname, b.name)) as Tensor).toArray() as Float32Array | Float64Array };
    state[at(pname)] = { step: s.steps[pname], buffers };
  }
  const paramGroups = s.paramGroups.map((g) => Object.assign({}, g, { params: g.params.map(at) }));
  return { state, paramGroups };
}
