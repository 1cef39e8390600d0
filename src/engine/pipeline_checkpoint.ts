/**
 * engine.saveCheckpoint / loadCheckpoint for the PipelineEngine initialize() builds: the mesh
 * checkpoint (ZeRO 1-3: pipeline/mesh_checkpoint.ts, ZeRO partitions; stage 0:
 * pipeline/plain_mesh_checkpoint.ts, the plain optimizer's weights and state, written by dp rank 0;
 * both under full names and shapes, loadable at any dp × pp × tp), plus what the Engine's checkpoints also carry — the learning rates, the LR
 * schedule's position and the loss scaler's state — in its client state. Module buffers (BatchNorm's
 * running statistics) are saved by full name beside the parameters (pipeline/buffer_checkpoint.ts).
 */
import type { ProcessGroup } from '../dist/process_group.ts';
import type { LRScheduler, LRSchedulerState, SchedulableOptimizer } from '../optim/lr_schedules/base.ts';
import type { Optimizer } from '../optim/optimizer.ts';
import type { PipelineEngine } from '../pipeline/engine.ts';
import { loadMeshCheckpoint, type MeshLoadOptions, saveMeshCheckpoint } from '../pipeline/mesh_checkpoint.ts';
import type { PipelineModule } from '../pipeline/module.ts';
import { loadPlainMeshCheckpoint, savePlainMeshCheckpoint } from '../pipeline/plain_mesh_checkpoint.ts';
import { readLatestTag } from './checkpoint/reader.ts';
import type { LoadEngineCheckpointOptions, LoadedEngineCheckpoint, SaveEngineCheckpointOptions } from './engine_checkpoint.ts';
import type { LossScaler, LossScalerState } from './loss_scaler.ts';

export interface PipelineCheckpointing {
  /**
   * Saves `dir/tag` (default `global_step<N>`) from every rank of the mesh; loads at any dp, pp and tp.
   * Any zero_optimization.stage (0: the plain optimizer's state). Returns the tag.
   * @example
   * await engine.saveCheckpoint('ckpt');            // ckpt/global_step100
   * engine.loadCheckpoint('ckpt');                  // the latest, on every rank
   */
  saveCheckpoint(dir: string, opts?: SaveEngineCheckpointOptions): Promise<string>;
  /**
   * Restores a checkpoint saved by saveCheckpoint (any mesh); call on every rank. Returns its clientState.
   * A module buffer the checkpoint lacks is an error unless `loadModuleStrict: false` (DeepSpeed's
   * load_module_strict), which keeps the model's value.
   * @example
   * engine.loadCheckpoint('ckpt', { loadModuleStrict: false });   // saved before buffers were kept
   */
  loadCheckpoint(dir: string, opts?: Pick<LoadEngineCheckpointOptions, 'tag'> & Pick<MeshLoadOptions, 'loadModuleStrict'>): LoadedEngineCheckpoint;
}

export interface PipelineCheckpointParts {
  /** The full model's name of (layer index, parameter name in the layer); default `<index>.<name>`, a tied weight `tied.<key>.<name>`. */
  key?: (index: number, name: string) => string;
  tpGroup: ProcessGroup | null;
  world: ProcessGroup;
  schedulable: SchedulableOptimizer;
  /** Stage 0: the plain optimizer over this rank's stages (null with ZeRO). */
  plain?: Optimizer<{ lr: number }> | null;
  lrScheduler: () => LRScheduler | null;
  lossScaler: LossScaler | null;
}

interface Saved {
  user: unknown;
  lrs: number[];
  scheduler: LRSchedulerState | null;
  scaler: LossScalerState | null;
}

/** The engine with saveCheckpoint and loadCheckpoint added. */
export function withCheckpoints(engine: PipelineEngine, parts: PipelineCheckpointParts): PipelineEngine & PipelineCheckpointing {
  const key = parts.key ?? defaultKey(engine.module);
  const mesh = { key, tpGroup: parts.tpGroup, world: parts.world };
  const plainOf = (where: string): Optimizer<{ lr: number }> | null => {
    if (engine.zero) return null;
    if (!parts.plain) throw new Error(`engine.${where}: this pipeline engine has neither a ZeRO optimizer nor a plain Optimizer to checkpoint`);
    return parts.plain;
  };
  const methods: PipelineCheckpointing = {
    async saveCheckpoint(dir, opts = {}) {
      engine.settle(); // a step decided on the device: its outcome before the state is saved
      const plain = plainOf('saveCheckpoint');
      const tag = opts.tag ?? `global_step${engine.globalSteps}`;
      const saved: Saved = {
        user: opts.clientState ?? null, lrs: parts.schedulable.paramGroups.map((g) => g.lr),
        scheduler: parts.lrScheduler()?.stateDict() ?? null, scaler: parts.lossScaler?.stateDict() ?? null,
      };
      if (plain) await savePlainMeshCheckpoint(engine, plain, dir, tag, { ...mesh, clientState: saved });
      else await saveMeshCheckpoint(engine, dir, tag, { ...mesh, clientState: saved });
      return tag;
    },
    loadCheckpoint(dir, opts = {}) {
      engine.settle();
      const plain = plainOf('loadCheckpoint');
      const tag = opts.tag ?? readLatestTag(dir);
      const load = { ...mesh, tag, loadModuleStrict: opts.loadModuleStrict ?? true };
      const saved = (plain ? loadPlainMeshCheckpoint(engine, plain, dir, load) : loadMeshCheckpoint(engine, dir, load)) as Saved;
      if (!saved || !Array.isArray(saved.lrs)) throw new Error(`engine.loadCheckpoint: ${dir} was not saved by a pipeline engine's saveCheckpoint (saveMeshCheckpoint?)`);
      parts.schedulable.paramGroups.forEach((g, i) => {
        g.lr = saved.lrs[i];
      });
      const sched = parts.lrScheduler();
      if (sched && saved.scheduler) sched.loadStateDict(saved.scheduler);
      if (parts.lossScaler && saved.scaler) parts.lossScaler.loadStateDict(saved.scaler);
      engine.lossScalerChanged();
      return { tag, loadPath: `${dir}/${tag}`, clientState: saved.user };
    },
  };
  return Object.assign(engine, methods);
}

/**
 * `<index>.<name>`, except a weight tied across stages, named by its tie key so that every stage's
 * copy (e.g. GPT's embedding at layer 0 and head at the last) is one tensor in the checkpoint.
 */
function defaultKey(mod: PipelineModule): (index: number, name: string) => string {
  const tieOf = new Map(mod.ties.filter((t) => t.param).map((t) => [t.param, t.key]));
  const renamed = new Map<string, string>();
  for (const [full, p] of mod.namedParameters()) {
    const tie = tieOf.get(p);
    if (tie !== undefined) renamed.set(full, `tied.${tie}.${full.slice(full.indexOf('.') + 1)}`);
  }
  return (i, n) => renamed.get(`${i}.${n}`) ?? `${i}.${n}`;
}
