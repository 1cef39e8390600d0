/**
 * The run-dependent parts of a config: DeepSpeed's batch arithmetic and "auto" values (bucket
 * sizes from the model's hidden size, as DeepSpeed's Hugging Face integration; batches from the run).
 */
import type { LoadConfigOptions } from './config_types.ts';

/** Where each resolved value came from, shown by formatResolvedConfig. */
export type Source = 'set' | 'default' | 'auto' | 'derived';

export function positiveInt(v: unknown, what: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) throw new Error(`loadConfig: ${what} must be a positive integer, got ${String(v)}`);
  return v;
}

/** DeepSpeed's batch arithmetic: train = micro × accumulation × dp; any two given, the third derived. */
export function resolveBatch(cfg: Record<string, unknown>, dp: number, opts: LoadConfigOptions, sources: Map<string, Source>): void {
  let train = cfg.train_batch_size as number | null;
  let micro = cfg.train_micro_batch_size_per_gpu as number | null;
  let acc = cfg.gradient_accumulation_steps as number | null;
  const derived = (key: string) => sources.set(key, 'derived');
  const exact = (num: number, den: number, key: string, formula: string) => {
    if (num % den !== 0) {
      throw new Error(`${key}: cannot be derived, ${formula} is not an integer (train_batch_size must be divisible by the other factors)`);
    }
    return num / den;
  };
  if (train !== null && micro !== null && acc !== null) {
    // all three given: checked below
  } else if (train !== null && micro !== null) {
    acc = exact(train, micro * dp, 'gradient_accumulation_steps', `train_batch_size ${train} / (train_micro_batch_size_per_gpu ${micro} × dp ${dp})`);
    derived('gradient_accumulation_steps');
  } else if (train !== null && acc !== null) {
    micro = exact(train, acc * dp, 'train_micro_batch_size_per_gpu', `train_batch_size ${train} / (gradient_accumulation_steps ${acc} × dp ${dp})`);
    derived('train_micro_batch_size_per_gpu');
  } else if (micro !== null && acc !== null) {
    train = micro * acc * dp;
    derived('train_batch_size');
  } else if (train !== null) {
    acc = 1;
    micro = exact(train, dp, 'train_micro_batch_size_per_gpu', `train_batch_size ${train} / dp ${dp}`);
    derived('gradient_accumulation_steps');
    derived('train_micro_batch_size_per_gpu');
  } else if (micro !== null) {
    acc = 1;
    train = micro * dp;
    derived('gradient_accumulation_steps');
    derived('train_batch_size');
  } else if (opts.microBatchSize !== undefined) {
    micro = positiveInt(opts.microBatchSize, 'microBatchSize');
    acc ??= 1;
    train = micro * acc * dp;
    for (const k of ['train_batch_size', 'train_micro_batch_size_per_gpu', 'gradient_accumulation_steps']) if (sources.get(k) !== 'set') derived(k);
  } else {
    throw new Error(
      'train_batch_size / train_micro_batch_size_per_gpu: give at least one of them (or pass {microBatchSize} to loadConfig, the data loader\'s per-rank batch)',
    );
  }
  if (train !== micro * acc * dp) {
    throw new Error(
      `train_batch_size ${train} != train_micro_batch_size_per_gpu ${micro} × gradient_accumulation_steps ${acc} × dp ${dp} (= ${micro * acc * dp})`,
    );
  }
  cfg.train_batch_size = train;
  cfg.train_micro_batch_size_per_gpu = micro;
  cfg.gradient_accumulation_steps = acc;
}

/** Resolves "auto" values: bucket sizes from the hidden size (as DeepSpeed's HF integration), batches from the run. */
export function resolveAuto(cfg: Record<string, unknown>, autos: string[], opts: LoadConfigOptions, sources: Map<string, Source>): void {
  const zero = cfg.zero_optimization as Record<string, unknown>;
  const hidden = (path: string): number => {
    if (opts.hiddenSize === undefined) throw new Error(`${path}: "auto" needs the model's hidden size (pass {hiddenSize} to loadConfig, or give a number)`);
    return positiveInt(opts.hiddenSize, 'hiddenSize');
  };
  for (const path of autos) {
    switch (path) {
      case 'zero_optimization.reduce_bucket_size':
        zero.reduce_bucket_size = hidden(path) ** 2;
        break;
      case 'zero_optimization.stage3_prefetch_bucket_size':
        zero.stage3_prefetch_bucket_size = Math.floor(0.9 * hidden(path) ** 2);
        break;
      case 'zero_optimization.stage3_param_persistence_threshold':
        zero.stage3_param_persistence_threshold = 10 * hidden(path);
        break;
      case 'train_micro_batch_size_per_gpu':
        if (opts.microBatchSize === undefined) throw new Error(`${path}: "auto" needs the data loader's batch (pass {microBatchSize} to loadConfig)`);
        cfg[path] = positiveInt(opts.microBatchSize, 'microBatchSize');
        break;
      case 'gradient_accumulation_steps':
        cfg[path] = positiveInt(opts.gradientAccumulationSteps ?? 1, 'gradientAccumulationSteps');
        break;
      case 'train_batch_size':
        continue; // derived by the batch arithmetic
      default:
        throw new Error(`${path}: "auto" cannot be resolved here`);
    }
    sources.set(path, 'auto');
  }
}
