/**
 * `initialize()`: DeepSpeed's deepspeed.initialize for meshtrain. Reads the DeepSpeed config,
 * builds the optimizer (config.optimizer unless one is given), the LR schedule (config.scheduler)
 * and the data-parallel back end zero_optimization.stage asks for (0: DataParallel; 1/2:
 * ZeroStage12; 3: ZeroStage3), and returns the Engine. Features the config can ask for that are
 * not implemented yet are refused with an error naming the key, never ignored. bf16 / fp16 need a model built in that
 * dtype (precision.ts).
 */
import { DataParallel } from '../dist/data_parallel.ts';
import { getWorld } from '../dist/distributed.ts';
import type { DeviceMesh } from '../dist/mesh.ts';
import type { ProcessGroup } from '../dist/process_group.ts';
import type { Module } from '../nn/module.ts';
import { moduleToDevice } from '../nn/to_device.ts';
import { Adam, AdamW } from '../optim/adam.ts';
import { checkKeys } from '../optim/checks.ts';
import type { LRScheduler, SchedulableOptimizer } from '../optim/lr_schedules/base.ts';
import { createLrScheduler } from '../optim/lr_schedules/create.ts';
import { Optimizer } from '../optim/optimizer.ts';
import { SGD } from '../optim/sgd.ts';
import { PipelineModule } from '../pipeline/module.ts';
import type { Device } from '../tensor/storage.ts';
import type { Tensor } from '../tensor/tensor.ts';
import type { ZeroOptimizerSpec } from '../zero/optimizer.ts';
import { ZeroStage3 } from '../zero/stage3.ts';
import { ZeroStage12 } from '../zero/stage12.ts';
import type { EngineBackend, EngineZero } from './backend.ts';
import { loadConfig, printResolvedConfig } from './config.ts';
import type { EngineConfig, OptimizerSection } from './config_types.ts';
import { formatZeroKeyUsage } from './config_usage.ts';
import { Engine } from './engine.ts';
import { type InitializedPipeline, initializePipeline } from './initialize_pipeline.ts';
import { createLossScaler } from './loss_scaler.ts';
import { engineDevice } from './placement.ts';
import { checkModelDtype, mixedDtype } from './precision.ts';

export interface InitializeOptions<M extends Module = Module> {
  model: M;
  /**
   * The parameters to train (default: all of the model's); the rest are frozen: no gradient
   * reduction, no optimizer state, never updated (checkpoints keep them as weights; stage 3 still
   * partitions and gathers them). As DeepSpeed's ZeRO, stages 1-3 also leave parameters with
   * requiresGrad false frozen.
   */
  modelParameters?: Iterable<Tensor>;
  /** A DeepSpeed config: a path (JSON, comments allowed) or an object. */
  config: string | Record<string, unknown>;
  /** The data-parallel group (default: the world). */
  group?: ProcessGroup;
  /** A device mesh: its 'dp' group is used (give group or mesh, not both). */
  mesh?: DeviceMesh;
  /**
   * Instead of config.optimizer: an Optimizer over the parameters (stage 0 only), or a ZeRO
   * optimizer spec `{ type: 'AdamW', lr, ... }` (any stage).
   */
  optimizer?: Optimizer<{ lr: number }> | ZeroOptimizerSpec;
  /** Instead of config.scheduler: a function building the schedule over what it drives, or (stage 0) a schedule over the given optimizer. */
  lrScheduler?: LRScheduler | ((optimizer: SchedulableOptimizer) => LRScheduler);
  /** Where the resolved config (rank 0, once) and steps_per_print lines go (default console.log). */
  log?: (s: string) => void;
  /**
   * The model's hidden size, for "auto" bucket sizes (default: `model.hiddenSize`, else GPT's
   * `model.config.nEmbd`; DeepSpeed's Hugging Face integration reads `config.hidden_size`).
   */
  hiddenSize?: number;
  /** The data loader's per-rank batch, for a config that sets no batch size or sets it to "auto". */
  microBatchSize?: number;
  /**
   * PipelineModule only: the full model's name of (layer index, parameter name in the layer) in
   * engine.saveCheckpoint (e.g. gptPipelineLayers' `key`); default `<index>.<name>`.
   */
  checkpointKey?: (index: number, name: string) => string;
  /**
   * Where the model trains: it is moved there (nn.moduleToDevice) with everything the engine
   * allocates. Default: MESHTRAIN_DEVICE, else 'cuda:(LOCAL_RANK % device count)' when CUDA
   * devices are present, else 'cpu' (placement.ts). A PipelineModule: this rank's stages, likewise.
   */
  device?: Device;
}

export interface Initialized<M extends Module = Module> {
  engine: Engine<M>;
  /** Stage 0: the Optimizer; stages 1-3: the ZeRO optimizer (ZeroStage12, ZeroStage3) that owns the partition. */
  optimizer: Optimizer<{ lr: number }> | EngineZero;
  lrScheduler: LRScheduler | null;
}

const OPTION_KEYS = ['model', 'modelParameters', 'config', 'group', 'mesh', 'optimizer', 'lrScheduler', 'log', 'hiddenSize', 'microBatchSize', 'checkpointKey', 'device'];

/**
 * @example
 * await initDistributed();
 * const model = new GPT(gptConfig('tiny'));
 * const { engine } = await initialize({ model, config: 'ds_config.json' });
 * for (const [x, y] of loader) {
 *   engine.backward(crossEntropy(engine.forward(x), y));
 *   engine.step();
 * }
 */
export async function initialize(opts: InitializeOptions<PipelineModule>): Promise<InitializedPipeline>;
export async function initialize<M extends Module>(opts: InitializeOptions<M>): Promise<Initialized<M>>;
export async function initialize<M extends Module>(opts: InitializeOptions<M>): Promise<Initialized<M> | InitializedPipeline> {
  checkKeys(opts, OPTION_KEYS, 'initialize');
  const { model } = opts;
  if (!model || typeof model.forward !== 'function' || typeof model.namedParameters !== 'function') {
    throw new Error('initialize: model must be a Module');
  }
  const pipe = model instanceof PipelineModule ? model : null;
  if (opts.group && opts.mesh) throw new Error('initialize: give group or mesh, not both');
  // A pipeline without a mesh or group has no data parallelism: the world is its pp group.
  const dpGroup = opts.group ?? opts.mesh?.group('dp') ?? null;
  const group = dpGroup ?? getWorld();
  const described = model as { hiddenSize?: unknown; config?: { nEmbd?: unknown } };
  const hidden = opts.hiddenSize ?? described.hiddenSize ?? described.config?.nEmbd;
  const config = loadConfig(opts.config, {
    dpSize: pipe && !dpGroup ? 1 : group.size,
    ...(typeof hidden === 'number' ? { hiddenSize: hidden } : {}),
    ...(opts.microBatchSize !== undefined ? { microBatchSize: opts.microBatchSize } : {}),
  });
  refuseUnimplemented(config);
  const mixed = mixedDtype(config);
  checkModelDtype(model.namedParameters(), mixed);
  const log = opts.log ?? console.log;
  // The resolved config, then the zero_optimization keys this stage accepts but does not use.
  // (The usage notes describe the data-parallel engine; a pipeline prints the config alone.)
  if (pipe && getWorld().rank === 0) printResolvedConfig(config, log);
  else if (!pipe && group.rank === 0) printResolvedConfig(config, (s) => log(`${s}\n${formatZeroKeyUsage(config)}`));

  if (opts.optimizer && config.optimizer.type !== null) {
    throw new Error('initialize: an optimizer was passed and config.optimizer is set; give one of them');
  }
  if (opts.lrScheduler && config.scheduler.type !== null) {
    throw new Error('initialize: an lrScheduler was passed and config.scheduler is set; give one of them');
  }
  if (pipe) {
    if (opts.modelParameters) throw new Error('initialize: modelParameters with a PipelineModule: not implemented yet (each rank trains its stages\' parameters)');
    // This rank's stages go to its device before anything (tying, optimizer state) reads them, as the plain engine's model.
    const device = engineDevice(opts.device);
    if ([...pipe.parameters(), ...pipe.buffers()].some((t) => t.device !== device)) moduleToDevice(pipe, device);
    return initializePipeline({
      model: pipe, config, mesh: opts.mesh, dpGroup, optimizer: opts.optimizer, lrScheduler: opts.lrScheduler, device,
      spec: () => specOf(opts.optimizer as ZeroOptimizerSpec | undefined, config.optimizer), build: (spec) => buildOptimizer(pipe.parameters(), spec),
      ...(opts.checkpointKey ? { checkpointKey: opts.checkpointKey } : {}),
    });
  }
  if (opts.checkpointKey) throw new Error('initialize: checkpointKey names a PipelineModule\'s layers; this model is not one');
  for (const key of ['schedule', 'virtual_stages'] as const) {
    if (config.pipeline[key] !== null) throw new Error(`pipeline.${key}: needs a PipelineModule model, got ${model.constructor.name}`);
  }
  const stage = config.zero_optimization.stage as 0 | 1 | 2 | 3;
  const device = engineDevice(opts.device);
  const misplaced = [...model.parameters(), ...model.buffers()].some((t) => t.device !== device);
  if (misplaced) moduleToDevice(model, device);
  const all = model.parameters();
  const params = opts.modelParameters ? [...opts.modelParameters] : all;

  let backend: EngineBackend;
  let schedulable: SchedulableOptimizer;
  let optimizer: Optimizer<{ lr: number }> | EngineZero;
  if (stage === 0) {
    const opt = opts.optimizer instanceof Optimizer ? opts.optimizer : buildOptimizer(params, specOf(opts.optimizer, config.optimizer));
    const dp = new DataParallel(model, { group, bucketBytes: Math.max(1, config.zero_optimization.reduce_bucket_size) * 4 });
    backend = { stage: 0, dp, optimizer: opt };
    schedulable = opt;
    optimizer = opt;
  } else {
    if (opts.optimizer instanceof Optimizer) {
      throw new Error(`initialize: zero_optimization.stage ${stage} runs its own partitioned optimizer; pass a spec ({ type: 'AdamW', lr }) or set config.optimizer instead of an Optimizer`);
    }
    const mine = new Set(all);
    const foreign = params.filter((p) => !mine.has(p));
    if (foreign.length > 0) throw new Error(`initialize: modelParameters holds ${foreign.length} tensor(s) that are not parameters of the model (first: ${String(foreign[0])})`);
    const subset = new Set(params).size !== all.length;
    const zero = buildZero(model, stage, specOf(opts.optimizer, config.optimizer), config, group, subset ? new Set(params) : undefined);
    backend = { stage, zero };
    schedulable = { paramGroups: [zero.hyper] };
    optimizer = zero;
  }

  let lrScheduler: LRScheduler | null = null;
  try {
    if (config.scheduler.type !== null) lrScheduler = createLrScheduler(schedulable, { type: config.scheduler.type, params: config.scheduler.params });
    else if (typeof opts.lrScheduler === 'function') lrScheduler = opts.lrScheduler(schedulable);
    else if (opts.lrScheduler) {
      if (opts.lrScheduler.optimizer !== schedulable) {
        throw new Error('initialize: lrScheduler does not drive this optimizer (with ZeRO pass a function: (optimizer) => new WarmupLR(optimizer, ...))');
      }
      lrScheduler = opts.lrScheduler;
    }
  } catch (e) {
    if (backend.stage === 0) backend.dp.destroy();
    else backend.zero.destroy();
    throw e;
  }
  const engine = new Engine<M>({ model, config, group, backend, schedulable, lrScheduler, scaler: createLossScaler(config.lossScaler), mixed, log, device });
  return { engine, optimizer, lrScheduler };
}

/** The partitioned optimizer for stages 1-3, with the zero_optimization keys each stage honours (config_usage.ts). */
function buildZero(model: Module, stage: 1 | 2 | 3, spec: ZeroOptimizerSpec, config: EngineConfig, group: ProcessGroup, trainable?: Set<Tensor>): EngineZero {
  const z = config.zero_optimization;
  const common = { group, reduceBucketSize: Math.max(1, z.reduce_bucket_size), overlapComm: z.overlap_comm, gradientClipping: config.gradient_clipping };
  const o = z.offload_optimizer;
  if (o.device === 'nvme' && o.buffer_count < 2) throw new Error(`zero_optimization.offload_optimizer.buffer_count: nvme needs at least 2 sub-group buffers, got ${o.buffer_count}`);
  const offload = { offloadOptimizer: { device: o.device, nvmePath: o.nvme_path, bufferCount: Math.max(2, o.buffer_count), pinMemory: o.pin_memory }, subGroupSize: Math.max(1, z.sub_group_size) };
  if (stage !== 3) return new ZeroStage12(model, spec, { stage, contiguousGradients: z.contiguous_gradients, ...common, ...offload, ...(trainable ? { trainable } : {}) });
  const op = z.offload_param;
  if (op.device === 'nvme') {
    for (const key of ['buffer_count', 'buffer_size'] as const) {
      if (op[key] < 1) throw new Error(`zero_optimization.offload_param.${key}: nvme needs at least 1, got ${op[key]}`);
    }
  }
  const offloadParam = { device: op.device, nvmePath: op.nvme_path, bufferCount: Math.max(1, op.buffer_count), bufferSize: Math.max(1, op.buffer_size), maxInCpu: op.max_in_cpu, pinMemory: op.pin_memory };
  return new ZeroStage3(model, spec, {
    ...common, ...(trainable ? { trainable } : {}), ...offload, offloadParam, contiguousGradients: z.contiguous_gradients, prefetchBucketSize: z.stage3_prefetch_bucket_size,
    paramPersistenceThreshold: z.stage3_param_persistence_threshold, maxLiveParameters: z.stage3_max_live_parameters,
    maxReuseDistance: z.stage3_max_reuse_distance,
  });
}

/** Config keys that ask for what is not implemented yet: an error naming the key. */
function refuseUnimplemented(cfg: EngineConfig): void {
  const z = cfg.zero_optimization;
  const no = (key: string, value: unknown) => new Error(`initialize: ${key} = ${JSON.stringify(value)}: not implemented yet`);
  if (z.offload_optimizer.device !== 'none' && z.offload_optimizer.ratio < 1) throw no('zero_optimization.offload_optimizer.ratio', z.offload_optimizer.ratio);
}

/**
 * The optimizer DeepSpeed builds for a config section: "Adam" is AdamW unless
 * params.adam_w_mode is false (DeepSpeed's FusedAdam default), "AdamW" always decoupled; weight
 * decay defaults to 0 as FusedAdam's (torch's defaults with torch_adam: true).
 */
function fromSection(sec: OptimizerSection): ZeroOptimizerSpec {
  const p = sec.params as Record<string, number & [number, number] & boolean>;
  const pick = <T>(key: string) => (p[key] === undefined ? {} : { [camel(key)]: p[key] as T });
  if (sec.type === 'SGD') {
    return { type: 'SGD', ...pick('lr'), ...pick('momentum'), ...pick('dampening'), ...pick('weight_decay'), ...pick('nesterov') };
  }
  const decoupled = sec.type === 'AdamW' || p.adam_w_mode !== false;
  const torchDefaults = p.torch_adam === true;
  const weightDecay = p.weight_decay ?? (torchDefaults && decoupled ? 1e-2 : 0);
  return { type: decoupled ? 'AdamW' : 'Adam', ...pick('lr'), ...pick('betas'), ...pick('eps'), weightDecay };
}

function camel(key: string): string {
  return key.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());
}

function specOf(given: ZeroOptimizerSpec | undefined, sec: OptimizerSection): ZeroOptimizerSpec {
  if (given) {
    if (typeof given !== 'object' || !['Adam', 'AdamW', 'SGD'].includes((given as { type?: string }).type ?? '')) {
      throw new Error(`initialize: optimizer must be an Optimizer or a spec { type: 'Adam' | 'AdamW' | 'SGD', ... }, got ${String(given)}`);
    }
    return given;
  }
  if (sec.type === null) throw new Error('initialize: no optimizer: set config.optimizer ({ "type": "AdamW", "params": { "lr": ... } }) or pass optimizer');
  return fromSection(sec);
}

/** Stage 0: the plain optimizer for a spec. */
function buildOptimizer(params: Tensor[], spec: ZeroOptimizerSpec): Optimizer<{ lr: number }> {
  const { type, ...h } = spec;
  if (type === 'SGD') return new SGD(params, h);
  return type === 'AdamW' ? new AdamW(params, h) : new Adam(params, h);
}
