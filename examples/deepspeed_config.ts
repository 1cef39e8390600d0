/**
 * Reads a DeepSpeed config file for an example script as DeepSpeed users pass it: JSON with
 * comments, handed to initialize() as an object so that two run-time facts can be added:
 * - the per-rank batch, when the file gives no batch size (DeepSpeed's scripts often size the
 *   loader themselves; deepspeed.initialize would then assert, meshtrain fills
 *   train_micro_batch_size_per_gpu from the loader instead);
 * - debugging overrides of zero_optimization.stage and offload_optimizer.device, for trying the
 *   same script on another stage. They are printed, never silent.
 */
import { readFileSync } from 'node:fs';
import { parseJsonc } from '../src/index.ts';

export interface ExampleConfigOptions {
  /** The data loader's per-rank batch: train_micro_batch_size_per_gpu unless the file sets a batch size. */
  microBatch: number;
  /** Debugging aid: replaces zero_optimization.stage. */
  zeroStage?: number;
  /** Debugging aid: replaces zero_optimization.offload_optimizer.device ('none' | 'cpu' | 'nvme'). */
  offload?: string;
}

export interface ExampleConfig {
  /** The config object for initialize(). */
  config: Record<string, unknown>;
  /** The per-rank batch the loader must use (the file's train_micro_batch_size_per_gpu when it sets one). */
  microBatch: number;
  /** What was changed from the file, one line each (empty when the file ran as written). */
  changes: string[];
}

const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

/**
 * @example
 * const { config, microBatch } = readExampleConfig('examples/configs/resnet101_zero3.json', { microBatch: 4 });
 * const { engine } = await initialize({ model, config });
 */
export function readExampleConfig(path: string, opts: ExampleConfigOptions): ExampleConfig {
  const raw = parseJsonc(readFileSync(path, 'utf8'), path);
  if (!isObject(raw)) throw new Error(`${path}: a DeepSpeed config must be a JSON object`);
  const config: Record<string, unknown> = structuredClone(raw);
  const changes: string[] = [];
  let microBatch = opts.microBatch;
  const fileMicro = config.train_micro_batch_size_per_gpu;
  if (typeof fileMicro === 'number') {
    microBatch = fileMicro;
  } else if (config.train_batch_size === undefined && fileMicro === undefined) {
    config.train_micro_batch_size_per_gpu = microBatch;
    changes.push(`train_micro_batch_size_per_gpu = ${microBatch} (the loader's batch; the file sets no batch size)`);
  }
  if (opts.zeroStage !== undefined || opts.offload !== undefined) {
    const zero = isObject(config.zero_optimization) ? config.zero_optimization : {};
    config.zero_optimization = zero;
    if (opts.zeroStage !== undefined) {
      changes.push(`zero_optimization.stage = ${opts.zeroStage} (debugging override; the file says ${JSON.stringify(zero.stage)})`);
      zero.stage = opts.zeroStage;
    }
    if (opts.offload !== undefined) {
      const off = isObject(zero.offload_optimizer) ? zero.offload_optimizer : {};
      changes.push(`zero_optimization.offload_optimizer.device = "${opts.offload}" (debugging override; the file says ${JSON.stringify(off.device)})`);
      zero.offload_optimizer = { ...off, device: opts.offload };
    }
  }
  return { config, microBatch, changes };
}
