/** The typed shape of a resolved DeepSpeed config (keys in DeepSpeed's snake_case) and loadConfig's options. */

export type OffloadDevice = 'none' | 'cpu' | 'nvme';

export interface OffloadOptimizerConfig {
  device: OffloadDevice;
  nvme_path: string | null;
  buffer_count: number;
  pin_memory: boolean;
  pipeline_read: boolean;
  pipeline_write: boolean;
  fast_init: boolean;
  ratio: number;
}

export interface OffloadParamConfig {
  device: OffloadDevice;
  nvme_path: string | null;
  buffer_count: number;
  buffer_size: number;
  max_in_cpu: number;
  pin_memory: boolean;
}

export interface ZeroConfig {
  stage: 0 | 1 | 2 | 3;
  contiguous_gradients: boolean;
  reduce_scatter: boolean;
  reduce_bucket_size: number;
  allgather_partitions: boolean;
  allgather_bucket_size: number;
  overlap_comm: boolean;
  load_from_fp32_weights: boolean;
  elastic_checkpoint: boolean;
  offload_optimizer: OffloadOptimizerConfig;
  offload_param: OffloadParamConfig;
  sub_group_size: number;
  stage3_prefetch_bucket_size: number;
  stage3_param_persistence_threshold: number;
  stage3_max_live_parameters: number;
  stage3_max_reuse_distance: number;
  stage3_gather_16bit_weights_on_model_save: boolean;
  ignore_unused_parameters: boolean;
  round_robin_gradients: boolean;
}

export interface Fp16Config {
  enabled: boolean;
  auto_cast: boolean;
  loss_scale: number;
  initial_scale_power: number;
  loss_scale_window: number;
  hysteresis: number;
  consecutive_hysteresis: boolean;
  min_loss_scale: number;
}

export interface PipelineConfig {
  schedule: '1f1b' | 'gpipe' | 'interleaved' | 'zb-h1' | null;
  virtual_stages: number | null;
}

export interface OptimizerSection {
  type: 'Adam' | 'AdamW' | 'SGD' | null;
  params: Record<string, unknown>;
}

export interface SchedulerSection {
  type: string | null;
  params: Record<string, unknown>;
}

/** The loss scaler DeepSpeed would build for this config (engine.py + fp16/loss_scaler.py). */
export type LossScalerSpec =
  | { kind: 'none' }
  | { kind: 'static'; scale: number }
  | { kind: 'dynamic'; initScale: number; scaleWindow: number; minScale: number; delayedShift: number; consecutiveHysteresis: boolean };

/** A resolved config: DeepSpeed's keys (snake_case, every one present) plus what was derived. */
export interface EngineConfig {
  train_batch_size: number;
  train_micro_batch_size_per_gpu: number;
  gradient_accumulation_steps: number;
  gradient_clipping: number;
  steps_per_print: number | null;
  wall_clock_breakdown: boolean;
  memory_breakdown: boolean;
  fp16: Fp16Config;
  bf16: { enabled: boolean };
  optimizer: OptimizerSection;
  scheduler: SchedulerSection;
  zero_optimization: ZeroConfig;
  /** Pipeline keys (meshtrain extensions; used by initialize with a PipelineModule). */
  pipeline: PipelineConfig;
  /** The data-parallel size the batch arithmetic used. */
  dpSize: number;
  /** The loss scaler to build (DeepSpeed's rules, including its defaults when fp16 sets no dynamic keys). */
  lossScaler: LossScalerSpec;
}

export interface LoadConfigOptions {
  /** Data-parallel size (ranks that split a batch); default 1. */
  dpSize?: number;
  /** Alias of dpSize, as DeepSpeed's world_size for pure data parallelism. */
  worldSize?: number;
  /** The model's hidden size, for "auto" bucket sizes and thresholds. */
  hiddenSize?: number;
  /** The data loader's per-rank batch: used for "auto" micro batch, or when no batch key is given. */
  microBatchSize?: number;
  /** Used for "auto" gradient_accumulation_steps. */
  gradientAccumulationSteps?: number;
}
