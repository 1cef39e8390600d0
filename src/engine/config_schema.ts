/**
 * The DeepSpeed config keys meshtrain reads, their types and their defaults, as one table of data.
 * Defaults are DeepSpeed's code defaults (deepspeed/runtime/constants.py, zero/config.py,
 * zero/offload_config.py), not its docs; `configDefaultsTable()` and docs/config.md come from here.
 */

/** A leaf's value kind. `auto` lists keys that accept "auto" (resolved from the model or the run). */
export type LeafSpec =
  | { kind: 'bool'; default: boolean | null; note: string }
  | { kind: 'int'; default: number | null; min: number; max?: number; auto?: boolean; note: string }
  | { kind: 'number'; default: number | null; min: number; max?: number; auto?: boolean; note: string }
  | { kind: 'enum'; values: readonly string[]; default: string | null; caseInsensitive?: boolean; note: string }
  | { kind: 'string'; default: string | null; note: string }
  | { kind: 'object'; default: Record<string, unknown>; note: string };

export interface SectionSpec {
  kind: 'section';
  keys: Record<string, Spec>;
  note: string;
}

export type Spec = LeafSpec | SectionSpec;

const offloadDevice = (what: string) =>
  ({ kind: 'enum', values: ['none', 'cpu', 'nvme'], default: 'none', note: `where ${what} live: none (device memory), cpu, or nvme (files under nvme_path)` }) as const;

/** The `zero_optimization.offload_optimizer` section (DeepSpeedZeroOffloadOptimizerConfig). */
const OFFLOAD_OPTIMIZER: SectionSpec = {
  kind: 'section',
  note: 'optimizer state offload (ZeRO stage 1-3); absent means device none',
  keys: {
    device: offloadDevice('the optimizer partitions'),
    nvme_path: { kind: 'string', default: null, note: 'directory for the nvme swap files; required with device nvme' },
    buffer_count: { kind: 'int', default: 4, min: 0, note: 'nvme: sub-group buffers in memory during a step (meshtrain: at least 2; from 3 on, reads and writes overlap the update)' },
    pin_memory: { kind: 'bool', default: false, note: 'page-locked host memory (a GPU transfer concern: no effect on CPU runs)' },
    pipeline_read: { kind: 'bool', default: false, note: 'overlap reading the next tile with the current step (nvme; meshtrain always does)' },
    pipeline_write: { kind: 'bool', default: false, note: 'overlap writing the previous tile with the current step (nvme; meshtrain always does)' },
    fast_init: { kind: 'bool', default: false, note: 'nvme: skip the initial write of the state files (meshtrain always writes them)' },
    ratio: { kind: 'number', default: 1, min: 0, max: 1, note: 'fraction of the partition offloaded; below 1 needs stage 3 (meshtrain: 1 only)' },
  },
};

/** The `zero_optimization.offload_param` section (DeepSpeedZeroOffloadParamConfig), stage 3 only. */
const OFFLOAD_PARAM: SectionSpec = {
  kind: 'section',
  note: 'parameter offload (ZeRO stage 3 only): where each rank\'s parameter partition lives; absent means device none',
  keys: {
    device: offloadDevice('the parameter partitions'),
    nvme_path: { kind: 'string', default: null, note: 'directory for the nvme parameter files; required with device nvme' },
    buffer_count: { kind: 'int', default: 5, min: 0, note: 'nvme: swap buffers in host memory (meshtrain: at least 1); shards are read ahead into free ones along the prefetch trace' },
    buffer_size: { kind: 'int', default: 1e8, min: 0, note: 'nvme: elements per swap buffer (meshtrain allocates at most the largest shard in the file); must hold the largest parameter shard (numel / dp)' },
    max_in_cpu: { kind: 'int', default: 1e9, min: 0, note: 'nvme: the first this many elements of the rank\'s partition (whole shards) stay in host memory, the rest go to the file' },
    pin_memory: { kind: 'bool', default: false, note: 'page-locked host memory (a GPU transfer concern: no effect on CPU runs)' },
  },
};

/** The `zero_optimization` section (DeepSpeedZeroConfig). */
const ZERO: SectionSpec = {
  kind: 'section',
  note: 'ZeRO over the mesh dp axis',
  keys: {
    stage: { kind: 'int', default: 0, min: 0, max: 3, note: '0 off; 1 optimizer state; 2 + gradients; 3 + parameters partitioned' },
    contiguous_gradients: { kind: 'bool', default: true, note: 'copy reduced gradients into one contiguous buffer' },
    reduce_scatter: { kind: 'bool', default: true, note: 'reduce-scatter (not all-reduce) gradients' },
    reduce_bucket_size: { kind: 'int', default: 5e8, min: 0, auto: true, note: 'elements per gradient reduction bucket; auto: hidden²' },
    allgather_partitions: { kind: 'bool', default: true, note: 'all-gather updated partitions (not broadcasts) after the step' },
    allgather_bucket_size: { kind: 'int', default: 5e8, min: 0, note: 'elements per parameter all-gather bucket' },
    overlap_comm: { kind: 'bool', default: null, note: 'overlap gradient reduction with backward; null resolves to stage == 3 (DeepSpeed code)' },
    load_from_fp32_weights: { kind: 'bool', default: true, note: 'load master weights from the fp32 copy in the checkpoint' },
    elastic_checkpoint: { kind: 'bool', default: false, note: 'checkpoints loadable at a different dp size (meshtrain always reshards)' },
    offload_optimizer: OFFLOAD_OPTIMIZER,
    offload_param: OFFLOAD_PARAM,
    sub_group_size: { kind: 'int', default: 1e9, min: 0, note: 'elements per optimizer sub-group step (meshtrain: what nvme offload streams through memory at once, stages 1-3)' },
    stage3_prefetch_bucket_size: { kind: 'int', default: 5e7, min: 0, auto: true, note: 'elements prefetched ahead (stage 3); auto: 0.9·hidden²' },
    stage3_param_persistence_threshold: {
      kind: 'int', default: 1e5, min: 0, auto: true, note: 'parameters below this many elements stay gathered (stage 3); auto: 10·hidden',
    },
    stage3_max_live_parameters: { kind: 'int', default: 1e9, min: 0, note: 'most gathered parameter elements at once (stage 3)' },
    stage3_max_reuse_distance: { kind: 'int', default: 1e9, min: 0, note: 'keep a parameter gathered if reused within this many elements (stage 3)' },
    stage3_gather_16bit_weights_on_model_save: { kind: 'bool', default: false, note: 'gather full 16-bit weights when saving the model (stage 3)' },
    ignore_unused_parameters: { kind: 'bool', default: true, note: 'tolerate parameters without gradients (stage 2)' },
    round_robin_gradients: { kind: 'bool', default: false, note: 'stage 1/2: spread gradient copies over ranks round robin' },
  },
};

/** The whole config: top-level keys in DeepSpeed's names. */
export const CONFIG_SCHEMA: SectionSpec = {
  kind: 'section',
  note: 'DeepSpeed JSON config',
  keys: {
    train_batch_size: { kind: 'int', default: null, min: 1, auto: true, note: 'samples per optimizer step over all dp ranks = micro × accumulation × dp' },
    train_micro_batch_size_per_gpu: { kind: 'int', default: null, min: 1, auto: true, note: 'samples per forward/backward on one rank' },
    gradient_accumulation_steps: { kind: 'int', default: null, min: 1, auto: true, note: 'micro-batches per optimizer step; 1 when only one batch key is given' },
    gradient_clipping: { kind: 'number', default: 0, min: 0, note: 'max global gradient norm; 0 disables clipping' },
    steps_per_print: { kind: 'int', default: null, min: 1, note: 'print progress every this many steps; null: never (code default; the docs say 10)' },
    wall_clock_breakdown: { kind: 'bool', default: false, note: 'time forward, backward and step' },
    memory_breakdown: {
      kind: 'bool', default: false, note: "print engine.memoryReport() on rank 0 with each steps_per_print line (every optimizer step when steps_per_print is null)",
    },
    fp16: {
      kind: 'section',
      note: 'fp16 mixed precision with loss scaling',
      keys: {
        enabled: { kind: 'bool', default: false, note: 'train in fp16 with fp32 master weights' },
        auto_cast: { kind: 'bool', default: false, note: 'cast the inputs of forward to fp16' },
        loss_scale: { kind: 'number', default: 0, min: 0, note: '0: dynamic loss scaling; else this static scale' },
        initial_scale_power: {
          kind: 'int', default: 16, min: 0, max: 1023,
          note: 'dynamic scale starts at 2^this; DeepSpeed code: when the fp16 section sets none of the five dynamic keys the scaler starts at 2^32 with hysteresis 1',
        },
        loss_scale_window: { kind: 'int', default: 1000, min: 1, note: 'double the scale after this many steps without overflow' },
        hysteresis: { kind: 'int', default: 2, min: 1, note: 'overflows tolerated before the scale is halved (delayed shift)' },
        consecutive_hysteresis: { kind: 'bool', default: false, note: 'refill the hysteresis on every step without overflow' },
        min_loss_scale: { kind: 'number', default: 1, min: Number.MIN_VALUE, note: 'the scale never drops below this; an overflow at it is an error' },
      },
    },
    bf16: {
      kind: 'section',
      note: 'bf16 mixed precision (no loss scaling; overflow still checked)',
      keys: { enabled: { kind: 'bool', default: false, note: 'train in bf16 with fp32 master weights' } },
    },
    optimizer: {
      kind: 'section',
      note: 'the optimizer built by initialize() when none is passed',
      keys: {
        type: { kind: 'enum', values: ['Adam', 'AdamW', 'SGD'], default: null, caseInsensitive: true, note: 'Adam, AdamW or SGD (any case); null: pass an optimizer' },
        params: { kind: 'object', default: {}, note: 'its hyperparameters (lr, betas, eps, weight_decay, adam_w_mode; SGD: momentum, dampening, nesterov)' },
      },
    },
    scheduler: {
      kind: 'section',
      note: 'the LR schedule (checked by createLrScheduler)',
      keys: {
        type: { kind: 'string', default: null, note: 'WarmupLR, WarmupDecayLR, WarmupCosineLR, OneCycle or LRRangeTest' },
        params: { kind: 'object', default: {}, note: "the schedule's params, DeepSpeed names" },
      },
    },
    zero_optimization: ZERO,
    pipeline: {
      kind: 'section',
      note: 'pipeline parallelism (initialize with a PipelineModule); DeepSpeed runs only 1F1B, these two keys are meshtrain extensions',
      keys: {
        schedule: {
          kind: 'enum', values: ['1f1b', 'gpipe', 'interleaved', 'zb-h1'], default: null,
          note: 'meshtrain: the pipeline schedule; null: 1f1b, or interleaved when the PipelineModule has several stages per pp rank',
        },
        virtual_stages: {
          kind: 'int', default: null, min: 1, note: "meshtrain: stages per pp rank (interleaved); checked against the PipelineModule's numStages / pp; null: the module's",
        },
      },
    },
  },
};

/** One row of the defaults table. */
export interface ConfigDefaultRow {
  /** Dotted key path, e.g. `zero_optimization.offload_optimizer.device`. */
  path: string;
  default: unknown;
  note: string;
}

/**
 * Every leaf key with its default and a one-line note, in schema order.
 * @example
 * configDefaultsTable().find((r) => r.path === 'fp16.hysteresis')?.default // 2
 */
export function configDefaultsTable(): ConfigDefaultRow[] {
  const rows: ConfigDefaultRow[] = [];
  const walk = (spec: SectionSpec, prefix: string) => {
    for (const [key, s] of Object.entries(spec.keys)) {
      const path = prefix ? `${prefix}.${key}` : key;
      if (s.kind === 'section') walk(s, path);
      else rows.push({ path, default: s.default, note: s.note });
    }
  };
  walk(CONFIG_SCHEMA, '');
  return rows;
}

/** docs/config.md: the defaults table as markdown (generated by `npm run docs:config`). */
export function configDefaultsMarkdown(): string {
  const fmt = (v: unknown) => (v === null ? 'null' : typeof v === 'number' && v >= 1e5 && Number.isInteger(v) ? v.toExponential().replace('e+', 'e') : JSON.stringify(v));
  const lines = [
    '# Config keys and defaults',
    '',
    'Generated from `src/engine/config_schema.ts` by `npm run docs:config`; do not edit by hand.',
    "Defaults are DeepSpeed's code defaults (deepspeed/runtime/constants.py, zero/config.py,",
    'zero/offload_config.py), which differ from its docs in places. Keys not listed are rejected.',
    '',
    '| key | default | note |',
    '|---|---|---|',
    ...configDefaultsTable().map((r) => `| \`${r.path}\` | \`${fmt(r.default)}\` | ${r.note.replace(/\|/g, '\\|')} |`),
    '',
  ];
  return lines.join('\n');
}
