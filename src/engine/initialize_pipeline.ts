/**
 * `initialize()` for a PipelineModule: DeepSpeed's deepspeed.initialize(model=PipelineModule(...))
 * returning a PipelineEngine built from the config. The mesh gives the groups (dp for ZeRO and the
 * batch arithmetic, pp checked against the module's group, tp for tensor-parallel stages);
 * gradient_accumulation_steps is the micro-batches per trainBatch; zero_optimization.stage picks a
 * plain optimizer with dp averaging (0) or ZeRO 1/2/3 over dp (zero_pipe.ts); fp16 its loss
 * scaler; gradient_clipping the norm over all stages; pipeline.schedule (a meshtrain extension:
 * DeepSpeed runs only 1F1B) the schedule.
 */
import { getWorld } from '../dist/distributed.ts';
import type { DeviceMesh } from '../dist/mesh.ts';
import type { ProcessGroup } from '../dist/process_group.ts';
import type { LRScheduler, SchedulableOptimizer } from '../optim/lr_schedules/base.ts';
import { createLrScheduler } from '../optim/lr_schedules/create.ts';
import { Optimizer } from '../optim/optimizer.ts';
import { PipelineEngine, type ScheduleName } from '../pipeline/engine.ts';
import type { PipelineModule } from '../pipeline/module.ts';
import type { Device } from '../tensor/storage.ts';
import type { ZeroOptimizerSpec } from '../zero/optimizer.ts';
import type { ZeroOptimizer } from '../zero/zero_optimizer.ts';
import type { EngineConfig } from './config_types.ts';
import { createLossScaler, type LossScaler, StaticLossScaler } from './loss_scaler.ts';
import { type PipelineCheckpointing, withCheckpoints } from './pipeline_checkpoint.ts';

export interface InitializedPipeline {
  /** The PipelineEngine, with saveCheckpoint / loadCheckpoint (mesh checkpoints, any ZeRO stage). */
  engine: PipelineEngine & PipelineCheckpointing;
  /** Stage 0: the Optimizer over this rank's stages; stages 1-3: the stages' ZeRO optimizer (`engine.zero`). */
  optimizer: Optimizer<{ lr: number }> | ZeroOptimizer;
  lrScheduler: LRScheduler | null;
}

/** What initialize() has resolved before handing a PipelineModule over. */
export interface PipelineSetup {
  model: PipelineModule;
  config: EngineConfig;
  mesh?: DeviceMesh;
  /** The data-parallel group (the mesh's 'dp' group, the group option, or none). */
  dpGroup: ProcessGroup | null;
  optimizer?: Optimizer<{ lr: number }> | ZeroOptimizerSpec;
  lrScheduler?: LRScheduler | ((optimizer: SchedulableOptimizer) => LRScheduler);
  /** The ZeRO spec for the config's optimizer section (or the given spec). */
  spec: () => ZeroOptimizerSpec;
  /** Stage 0: the plain optimizer for a spec. */
  build: (spec: ZeroOptimizerSpec) => Optimizer<{ lr: number }>;
  /** Checkpoint names: the full model's name of (layer index, parameter name); default `<index>.<name>`. */
  checkpointKey?: (index: number, name: string) => string;
  /** Where this rank's stages are (initialize() has moved them there). */
  device?: Device;
}

/** Config keys a PipelineEngine cannot honour yet: an error naming the key, never ignored. */
function refuseForPipelines(cfg: EngineConfig): void {
  const no = (key: string, value: unknown) => new Error(`initialize: ${key} = ${JSON.stringify(value)} with a PipelineModule: not implemented yet`);
  const z = cfg.zero_optimization;
  if (z.offload_optimizer.device !== 'none') throw no('zero_optimization.offload_optimizer.device', z.offload_optimizer.device);
  if (z.offload_param.device !== 'none') throw no('zero_optimization.offload_param.device', z.offload_param.device);
  if (cfg.steps_per_print !== null) throw no('steps_per_print', cfg.steps_per_print);
  if (cfg.wall_clock_breakdown) throw no('wall_clock_breakdown', true);
  if (cfg.memory_breakdown) throw no('memory_breakdown', true);
}

/** The schedule the config asks for, checked against the module's stages per pp rank. */
function scheduleOf(cfg: EngineConfig, model: PipelineModule): ScheduleName {
  const perRank = model.numStages / model.pipeRanks;
  const v = cfg.pipeline.virtual_stages;
  if (v !== null && v !== perRank) {
    throw new Error(`pipeline.virtual_stages: ${v}, but the PipelineModule has ${model.numStages} stages on ${model.pipeRanks} pp ranks (${perRank} per rank); build it with numStages ${v * model.pipeRanks}`);
  }
  const name = cfg.pipeline.schedule ?? (perRank > 1 ? 'interleaved' : '1f1b');
  if (name !== 'interleaved' && perRank > 1) {
    throw new Error(`pipeline.schedule: "${name}" runs one stage per pp rank, but the PipelineModule has ${perRank}; use "interleaved"`);
  }
  return name;
}

/** Builds the PipelineEngine, its optimizer and LR schedule from a resolved config. */
export async function initializePipeline(s: PipelineSetup): Promise<InitializedPipeline> {
  const { model, config } = s;
  refuseForPipelines(config);
  if (s.mesh) {
    const pp = s.mesh.group('pp');
    if (pp.size !== model.pipeRanks || (model.group && model.group.rank !== pp.rank)) {
      throw new Error(`initialize: the PipelineModule's group (${model.pipeRanks} ranks) is not the mesh's pp group (${pp.size} ranks); build it with group: mesh.group('pp')`);
    }
  }
  const schedule = scheduleOf(config, model);
  const stage = config.zero_optimization.stage;
  const tpGroup = s.mesh?.group('tp');
  const z = config.zero_optimization;
  // The schedule needs the optimizer, which ZeRO builds inside the engine: it is made after create and stepped through this.
  let lrScheduler: LRScheduler | null = null;
  // snapshot: a step decided on the device advances the schedule at once and takes it back on a skip.
  const stepper = { step: () => lrScheduler?.step(), snapshot: () => lrScheduler?.snapshot() ?? (() => {}) };
  let plain: Optimizer<{ lr: number }> | null = null;
  if (stage === 0) plain = s.optimizer instanceof Optimizer ? s.optimizer : s.build(s.spec());
  else if (!s.dpGroup) {
    throw new Error(`initialize: zero_optimization.stage ${stage} with a PipelineModule partitions over the dp axis; pass mesh (a DeviceMesh, dp may be 1) or group`);
  } else if (s.optimizer instanceof Optimizer) {
    throw new Error(`initialize: zero_optimization.stage ${stage} runs its own partitioned optimizer; pass a spec ({ type: 'AdamW', lr }) or set config.optimizer instead of an Optimizer`);
  }
  const lossScaler = lossScalerOf(config);
  const engine = await PipelineEngine.create({
    module: model, microBatches: config.gradient_accumulation_steps, schedule, lrScheduler: stepper, ...(s.device ? { device: s.device } : {}),
    ...(s.dpGroup ? { dpGroup: s.dpGroup } : {}), ...(tpGroup ? { tpGroup } : {}),
    gradientClipping: config.gradient_clipping,
    ...(lossScaler ? { lossScaler } : {}),
    ...(plain
      ? { optimizer: plain }
      : {
          zero: {
            stage: stage as 1 | 2 | 3, optimizer: s.spec(), reduceBucketSize: Math.max(1, z.reduce_bucket_size), overlapComm: z.overlap_comm,
            ...(stage === 3 ? { paramPersistenceThreshold: z.stage3_param_persistence_threshold } : {}),
          },
        }),
  });
  const optimizer = plain ?? (engine.zero as ZeroOptimizer);
  const schedulable: SchedulableOptimizer = plain ?? { paramGroups: [(engine.zero as ZeroOptimizer).hyper] };
  try {
    if (config.scheduler.type !== null) lrScheduler = createLrScheduler(schedulable, { type: config.scheduler.type, params: config.scheduler.params });
    else if (typeof s.lrScheduler === 'function') lrScheduler = s.lrScheduler(schedulable);
    else if (s.lrScheduler) {
      if (s.lrScheduler.optimizer !== schedulable) {
        throw new Error('initialize: lrScheduler does not drive this optimizer (with ZeRO pass a function: (optimizer) => new WarmupLR(optimizer, ...))');
      }
      lrScheduler = s.lrScheduler;
    }
  } catch (e) {
    engine.zero?.destroy();
    throw e;
  }
  const withCk = withCheckpoints(engine, {
    ...(s.checkpointKey ? { key: s.checkpointKey } : {}), tpGroup: tpGroup ?? null, world: getWorld(), schedulable, plain, lrScheduler: () => lrScheduler, lossScaler,
  });
  return { engine: withCk, optimizer, lrScheduler };
}

/** fp16: DeepSpeed's scaler; bf16: scale 1, so overflows still skip the step; fp32: none. */
function lossScalerOf(cfg: EngineConfig): LossScaler | null {
  if (cfg.lossScaler.kind !== 'none') return createLossScaler(cfg.lossScaler);
  return cfg.bf16.enabled ? new StaticLossScaler(1) : null;
}
