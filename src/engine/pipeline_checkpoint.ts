/**
 * engine.saveCheckpoint / loadCheckpoint for the PipelineEngine initialize() builds: the mesh
 * checkpoint (pipeline/mesh_checkpoint.ts: ZeRO partitions under full names and shapes, loadable at
 * any dp × pp × tp), plus what the Engine's checkpoints also carry — the learning rates, the LR
 * schedule's position and the loss scaler's state — in its client state.
 */
import type { ProcessGroup } from '../dist/process_group.ts';
import type { LRScheduler, LRSchedulerState, SchedulableOptimizer } from '../optim/lr_schedules/base.ts';
import type { PipelineEngine } from '../pipeline/engine.ts';
import { loadMeshCheckpoint, saveMeshCheckpoint } from '../pipeline/mesh_checkpoint.ts';
import type { PipelineModule } from '../pipeline/module.ts';
import { readLatestTag } from './checkpoint/reader.ts';
import type { LoadEngineCheckpointOptions, LoadedEngineCheckpoint, SaveEngineCheckpointOptions } from './engine_checkpoint.ts';
import type { LossScaler, LossScalerState } from './loss_scaler.ts';

export interface PipelineCheckpointing {
  /**
   * Saves `dir/tag` (default `global_step<N>`) from every rank of the mesh; loads at any dp, pp and tp.
   * Needs zero_optimization.stage 1, 2 or 3. Returns the tag.
   * @example
   * await engine.saveCheckpoint('ckpt');            // ckpt/global_step100
   * engine.loadCheckpoint('ckpt');                  // the latest, on every rank
   */
  saveCheckpoint(dir: string, opts?: SaveEngineCheckpointOptions): Promise<string>;
  /** Restores a checkpoint saved by saveCheckpoint (any mesh); call on every rank. Returns its clientState. */
  loadCheckpoint(dir: string, opts?: Pick<LoadEngineCheckpointOptions, 'tag'>): LoadedEngineCheckpoint;
}

export interface PipelineCheckpointParts {
  /** The full model's name of (layer index, parameter name in the layer); default `<index>.<name>`, a tied weight `tied.<key>.<name>`. */
  key?: (index: number, name: string) => string;
  tpGroup: ProcessGroup | null;
  world: ProcessGroup;
  schedulable: SchedulableOptimizer;
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
  const needZero = (where: string) => {
    if (!engine.zero) throw new Error(`engine.${where}: a pipeline checkpoint needs zero_optimization.stage 1, 2 or 3 (plain pipeline optimizers: not implemented yet)`);
  };
  const methods: PipelineCheckpointing = {
    async saveCheckpoint(dir, opts = {}) {
      needZero('saveCheckpoint');
      const tag = opts.tag ?? `global_step${engine.globalSteps}`;
      const saved: Saved = {
        user: opts.clientState ?? null, lrs: parts.schedulable.paramGroups.map((g) => g.lr),
        scheduler: parts.lrScheduler()?.stateDict() ?? null, scaler: parts.lossScaler?.stateDict() ?? null,
      };
      await saveMeshCheckpoint(engine, dir, tag, { ...mesh, clientState: saved });
      return tag;
    },
    loadCheckpoint(dir, opts = {}) {
      needZero('loadCheckpoint');
      const tag = opts.tag ?? readLatestTag(dir);
      const saved = loadMeshCheckpoint(engine, dir, { ...mesh, tag }) as Saved;
      if (!saved || !Array.isArray(saved.lrs)) throw new Error(`engine.loadCheckpoint: ${dir} was not saved by a pipeline engine's saveCheckpoint (saveMeshCheckpoint?)`);
      parts.schedulable.paramGroups.forEach((g, i) => {
        g.lr = saved.lrs[i];
      });
      const sched = parts.lrScheduler();
      if (sched && saved.scheduler) sched.loadStateDict(saved.scheduler);
      if (parts.lossScaler && saved.scaler) parts.lossScaler.loadStateDict(saved.scaler);
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
