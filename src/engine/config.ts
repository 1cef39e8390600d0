/**
 * Loading a DeepSpeed JSON config (a file with comments, or an object) into a typed, fully
 * resolved EngineConfig: every default filled in (DeepSpeed's code defaults, see config_schema.ts),
 * "auto" resolved from the model and the run, the batch sizes worked out, and every unknown key,
 * wrong type or impossible combination rejected with the key's full path.
 */
import { readFileSync } from 'node:fs';
import { suggestion } from '../optim/checks.ts';
import { createLrScheduler, LR_SCHEDULE_TYPES } from '../optim/lr_schedules/create.ts';
import { positiveInt, resolveAuto, resolveBatch, type Source } from './config_resolve.ts';
import { CONFIG_SCHEMA, type LeafSpec, type SectionSpec } from './config_schema.ts';
import type { EngineConfig, Fp16Config, LoadConfigOptions, LossScalerSpec, OptimizerSection, SchedulerSection } from './config_types.ts';
import { parseJsonc } from './jsonc.ts';

export type * from './config_types.ts';

const SOURCES = new WeakMap<EngineConfig, Map<string, Source>>();

/** DeepSpeed keys meshtrain knows but does not implement: rejected with this rather than "unknown". */
const UNSUPPORTED: Record<string, readonly string[]> = {
  '': [
    'amp', 'activation_checkpointing', 'aio', 'autotuning', 'bfloat16', 'checkpoint', 'comms_logger', 'communication_data_type',
    'compression_training', 'csv_monitor', 'data_efficiency', 'data_types', 'dataloader_drop_last', 'dump_state', 'elasticity',
    'flops_profiler', 'gradient_predivide_factor', 'prescale_gradients', 'sparse_attention', 'sparse_gradients',
    'tensorboard', 'wandb', 'zero_allow_untested_optimizer', 'zero_force_ds_cpu_optimizer',
  ],
  zero_optimization: [
    'cpu_offload', 'cpu_offload_param', 'cpu_offload_use_pin_memory', 'legacy_stage1', 'memory_efficient_linear', 'mics_shard_size',
    'mics_hierarchical_params_gather', 'stage3_gather_fp16_weights_on_model_save', 'stage3_model_persistence_threshold',
    'stage3_module_granularity_threshold', 'stage3_use_all_reduce_for_fetch_params', 'use_multi_rank_bucket_allreduce',
    'zero_hpz_partition_size', 'zero_quantized_gradients', 'zero_quantized_nontrainable_weights', 'zero_quantized_weights',
    'zeropp_loco_param', 'pipeline_loading_checkpoint', 'override_module_apply', 'log_trace_cache_warnings',
  ],
  // DeepSpeed's pipeline keys: stages and partition are PipelineModule's numStages and partitionMethod, the checkpoint interval its activationCheckpointInterval.
  pipeline: ['stages', 'partition', 'seed_layers', 'activation_checkpoint_interval', 'pipe_partitioned', 'grad_partitioned'],
};

/** Where meshtrain takes what DeepSpeed's pipeline keys set. */
const PIPELINE_HINT: Record<string, string> = {
  stages: 'PipelineModule numStages sets it', partition: 'PipelineModule partitionMethod sets it',
  activation_checkpoint_interval: 'PipelineModule activationCheckpointInterval sets it',
};

/** Hyperparameter names each optimizer type accepts in `optimizer.params`. */
const OPTIMIZER_PARAMS: Record<'Adam' | 'AdamW' | 'SGD', Record<string, 'number' | 'betas' | 'bool'>> = {
  Adam: { lr: 'number', betas: 'betas', eps: 'number', weight_decay: 'number', adam_w_mode: 'bool', torch_adam: 'bool' },
  AdamW: { lr: 'number', betas: 'betas', eps: 'number', weight_decay: 'number', adam_w_mode: 'bool', torch_adam: 'bool' },
  SGD: { lr: 'number', momentum: 'number', dampening: 'number', weight_decay: 'number', nesterov: 'bool' },
};

const isPlainObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);
const show = (v: unknown) => (typeof v === 'string' ? `"${v}"` : Array.isArray(v) ? JSON.stringify(v) : `${String(v)} (${v === null ? 'null' : typeof v})`);

function describe(spec: LeafSpec): string {
  switch (spec.kind) {
    case 'bool':
      return 'true or false';
    case 'int':
    case 'number': {
      const what = spec.kind === 'int' ? 'an integer' : 'a number';
      const range = spec.max !== undefined ? ` in [${spec.min}, ${spec.max}]` : ` >= ${spec.min}`;
      return `${what}${range}${spec.auto ? ' or "auto"' : ''}`;
    }
    case 'enum':
      return `one of ${spec.values.map((v) => `"${v}"`).join(', ')}`;
    case 'string':
      return 'a string';
    case 'object':
      return 'an object';
  }
}

/** The checked value of one leaf, or AUTO. Throws naming `path`. */
const AUTO = Symbol('auto');
function leaf(spec: LeafSpec, v: unknown, path: string): unknown {
  const bad = () => new Error(`${path}: expected ${describe(spec)}, got ${show(v)}`);
  switch (spec.kind) {
    case 'bool':
      if (typeof v !== 'boolean') throw bad();
      return v;
    case 'int':
    case 'number':
      if (v === 'auto' && spec.auto) return AUTO;
      if (typeof v !== 'number' || !Number.isFinite(v) || (spec.kind === 'int' && !Number.isInteger(v))) throw bad();
      if (v < spec.min || (spec.max !== undefined && v > spec.max)) throw bad();
      return v;
    case 'enum': {
      if (typeof v !== 'string') throw bad();
      const hit = spec.values.find((x) => (spec.caseInsensitive ? x.toLowerCase() === v.toLowerCase() : x === v));
      if (hit === undefined) throw new Error(`${path}: expected ${describe(spec)}, got "${v}"${suggestion(v, spec.values)}`);
      return hit;
    }
    case 'string':
      if (typeof v !== 'string') throw bad();
      return v;
    case 'object':
      if (!isPlainObject(v)) throw bad();
      return v;
  }
}

/** Checks `raw` against a section spec: fills defaults, records sources, collects "auto" paths. */
function section(spec: SectionSpec, raw: unknown, path: string, sources: Map<string, Source>, autos: string[]): Record<string, unknown> {
  if (raw !== undefined && !isPlainObject(raw)) throw new Error(`${path || 'config'}: expected an object, got ${show(raw)}`);
  const obj = raw ?? {};
  const allowed = Object.keys(spec.keys);
  for (const key of Object.keys(obj)) {
    if (Object.hasOwn(spec.keys, key)) continue;
    const full = path ? `${path}.${key}` : key;
    if (UNSUPPORTED[path]?.includes(key)) throw new Error(`${full}: a DeepSpeed key meshtrain does not support (remove it${PIPELINE_HINT[key] ? `; ${PIPELINE_HINT[key]}` : ''})`);
    throw new Error(`${full}: unknown key${suggestion(key, allowed)}`);
  }
  const out: Record<string, unknown> = {};
  for (const [key, s] of Object.entries(spec.keys)) {
    const full = path ? `${path}.${key}` : key;
    const v = obj[key];
    if (s.kind === 'section') {
      out[key] = section(s, v === null ? undefined : v, full, sources, autos);
    } else if (v === undefined || (v === null && s.default === null)) {
      out[key] = s.kind === 'object' ? { ...s.default } : s.default;
      sources.set(full, 'default');
    } else {
      const val = leaf(s, v, full);
      if (val === AUTO) {
        autos.push(full);
        out[key] = null;
      } else {
        out[key] = val;
        sources.set(full, 'set');
      }
    }
  }
  return out;
}


function checkOptimizer(opt: OptimizerSection): void {
  if (opt.type === null) {
    if (Object.keys(opt.params).length > 0) throw new Error(`optimizer.type: required when optimizer.params is given${suggestion('', ['Adam', 'AdamW', 'SGD'])}`);
    return;
  }
  const kinds = OPTIMIZER_PARAMS[opt.type];
  const names = Object.keys(kinds);
  for (const [key, v] of Object.entries(opt.params)) {
    const path = `optimizer.params.${key}`;
    const kind = Object.hasOwn(kinds, key) ? kinds[key] : undefined;
    if (!kind) throw new Error(`${path}: unknown ${opt.type} parameter${suggestion(key, names)}`);
    const ok =
      kind === 'bool' ? typeof v === 'boolean'
      : kind === 'number' ? typeof v === 'number' && Number.isFinite(v) && v >= 0
      : Array.isArray(v) && v.length === 2 && v.every((b) => typeof b === 'number' && b >= 0 && b < 1);
    if (!ok) throw new Error(`${path}: expected ${kind === 'betas' ? '[beta1, beta2] in [0, 1)' : kind === 'bool' ? 'true or false' : 'a finite number >= 0'}, got ${show(v)}`);
  }
}

function checkScheduler(s: SchedulerSection): void {
  if (s.type === null) {
    if (Object.keys(s.params).length > 0) throw new Error(`scheduler.type: required when scheduler.params is given (one of ${LR_SCHEDULE_TYPES.join(', ')})`);
    return;
  }
  if (!LR_SCHEDULE_TYPES.includes(s.type)) throw new Error(`scheduler.type: unknown schedule "${s.type}"${suggestion(s.type, LR_SCHEDULE_TYPES)}`);
  // The schedules check their own params; build one over a stand-in optimizer to run those checks.
  try {
    createLrScheduler({ paramGroups: [{ lr: 0, betas: [0.9, 0.999] }] }, { type: s.type, params: s.params });
  } catch (e) {
    throw new Error(`scheduler.params: ${(e as Error).message}`);
  }
}

function checkCombinations(cfg: EngineConfig): void {
  const z = cfg.zero_optimization;
  if (cfg.fp16.enabled && cfg.bf16.enabled) throw new Error('fp16.enabled and bf16.enabled: both true; choose one (DeepSpeed: cannot be simultaneously enabled)');
  if (z.offload_param.device !== 'none' && z.stage !== 3) {
    throw new Error(`zero_optimization.offload_param.device: "${z.offload_param.device}" needs zero_optimization.stage 3, got stage ${z.stage}`);
  }
  if (z.offload_optimizer.device !== 'none' && z.stage === 0) {
    throw new Error(`zero_optimization.offload_optimizer.device: "${z.offload_optimizer.device}" needs zero_optimization.stage 1, 2 or 3, got stage 0`);
  }
  if (z.offload_optimizer.ratio < 1 && z.stage !== 3) throw new Error(`zero_optimization.offload_optimizer.ratio: below 1 needs stage 3, got stage ${z.stage}`);
  for (const k of ['offload_optimizer', 'offload_param'] as const) {
    if (z[k].device === 'nvme' && !z[k].nvme_path) throw new Error(`zero_optimization.${k}.nvme_path: required with device "nvme"`);
  }
}

/** The scaler DeepSpeed builds: fp16 → dynamic (loss_scale 0) or static; bf16 and fp32 → none. */
function lossScalerSpec(fp16: Fp16Config, raw: unknown): LossScalerSpec {
  if (!fp16.enabled) return { kind: 'none' };
  if (fp16.loss_scale !== 0) return { kind: 'static', scale: fp16.loss_scale };
  const keys = ['initial_scale_power', 'loss_scale_window', 'min_loss_scale', 'hysteresis', 'consecutive_hysteresis'];
  const given = isPlainObject(raw) && keys.some((k) => raw[k] !== undefined);
  // DeepSpeed (get_dynamic_loss_scale_args) passes no args unless one of these is set, and the
  // scaler's own defaults then apply: 2^32 and delayed_shift 1.
  if (!given) return { kind: 'dynamic', initScale: 2 ** 32, scaleWindow: 1000, minScale: 1, delayedShift: 1, consecutiveHysteresis: false };
  return {
    kind: 'dynamic', initScale: 2 ** fp16.initial_scale_power, scaleWindow: fp16.loss_scale_window, minScale: fp16.min_loss_scale,
    delayedShift: fp16.hysteresis, consecutiveHysteresis: fp16.consecutive_hysteresis,
  };
}

/**
 * A DeepSpeed config (a file path, JSON with comments allowed, or an object) resolved for a run.
 * @example
 * const cfg = loadConfig('ds_config.json', { dpSize: 8, hiddenSize: 1024 });
 * cfg.gradient_accumulation_steps; cfg.zero_optimization.reduce_bucket_size;
 */
export function loadConfig(pathOrObject: string | Record<string, unknown>, opts: LoadConfigOptions = {}): EngineConfig {
  let raw: unknown = pathOrObject;
  if (typeof pathOrObject === 'string') {
    let text: string;
    try {
      text = readFileSync(pathOrObject, 'utf8');
    } catch (e) {
      throw new Error(`loadConfig: cannot read ${pathOrObject}: ${(e as Error).message}`);
    }
    raw = parseJsonc(text, pathOrObject);
  }
  if (!isPlainObject(raw)) throw new Error(`loadConfig: the config must be an object, got ${show(raw)}`);
  if (!isPlainObject(opts)) throw new Error('loadConfig: options must be an object');
  const optKeys = ['dpSize', 'worldSize', 'hiddenSize', 'microBatchSize', 'gradientAccumulationSteps'];
  for (const k of Object.keys(opts)) if (!optKeys.includes(k)) throw new Error(`loadConfig: unknown option "${k}"${suggestion(k, optKeys)}`);
  if (opts.dpSize !== undefined && opts.worldSize !== undefined && opts.dpSize !== opts.worldSize) {
    throw new Error(`loadConfig: dpSize ${opts.dpSize} and worldSize ${opts.worldSize} disagree`);
  }
  const dp = positiveInt(opts.dpSize ?? opts.worldSize ?? 1, 'dpSize');

  const sources = new Map<string, Source>();
  const autos: string[] = [];
  const cfg = section(CONFIG_SCHEMA, raw, '', sources, autos);
  resolveAuto(cfg, autos, opts, sources);
  resolveBatch(cfg, dp, opts, sources);
  const zero = cfg.zero_optimization as Record<string, unknown>;
  if (zero.overlap_comm === null) {
    zero.overlap_comm = zero.stage === 3;
    sources.set('zero_optimization.overlap_comm', 'derived');
  }
  const out = cfg as unknown as EngineConfig;
  out.dpSize = dp;
  checkOptimizer(out.optimizer);
  checkScheduler(out.scheduler);
  checkCombinations(out);
  out.lossScaler = lossScalerSpec(out.fp16, raw.fp16);
  SOURCES.set(out, sources);
  return out;
}

/**
 * The resolved config as aligned `key = value` lines, each marked with where it came from
 * (set, default, auto, derived), for printing once at start.
 */
export function formatResolvedConfig(cfg: EngineConfig): string {
  const sources = SOURCES.get(cfg);
  const lines: string[] = [];
  const walk = (obj: Record<string, unknown>, prefix: string) => {
    for (const [k, v] of Object.entries(obj)) {
      const path = prefix ? `${prefix}.${k}` : k;
      if (isPlainObject(v) && !(prefix === 'optimizer' || prefix === 'scheduler') && k !== 'lossScaler') walk(v, path);
      else lines.push(`${path.padEnd(60, ' ')} ${JSON.stringify(v)}${sources?.has(path) ? `  (${sources.get(path)})` : ''}`);
    }
  };
  walk(cfg as unknown as Record<string, unknown>, '');
  return `meshtrain config (resolved):\n  ${lines.join('\n  ')}`;
}

const PRINTED = new WeakSet<EngineConfig>();

/** Prints formatResolvedConfig(cfg) with `log` the first time it is called for this config. */
export function printResolvedConfig(cfg: EngineConfig, log: (s: string) => void = console.log): void {
  if (PRINTED.has(cfg)) return;
  PRINTED.add(cfg);
  log(formatResolvedConfig(cfg));
}
