/**
 * Which zero_optimization keys take effect at which stage. DeepSpeed accepts its performance-only
 * keys at every stage and uses each only where it applies; meshtrain accepts them too (a
 * DeepSpeed config loads unchanged) and says, here and in the resolved config printed at start,
 * which ones a run honours and why the others change nothing.
 */
import type { EngineConfig } from './config_types.ts';

/** One key: the stages that honour it, and why it has no effect elsewhere. */
export interface ZeroKeyUsage {
  /** Key under zero_optimization. */
  key: string;
  stages: readonly (0 | 1 | 2 | 3)[];
  /** What meshtrain does instead at the other stages (or always, when `stages` is empty). */
  otherwise: string;
}

/** The performance and layout keys of zero_optimization, as meshtrain uses them. */
export const ZERO_KEY_USAGE: readonly ZeroKeyUsage[] = [
  { key: 'reduce_bucket_size', stages: [0, 2, 3], otherwise: 'stage 1 reduces the whole flat gradient once per step' },
  { key: 'overlap_comm', stages: [2, 3], otherwise: 'stage 0 always overlaps its bucket all-reduces; stage 1 reduces once after backward' },
  { key: 'contiguous_gradients', stages: [], otherwise: 'gradients always go into contiguous buckets / flat buffers' },
  { key: 'reduce_scatter', stages: [], otherwise: 'stages 1-3 always reduce-scatter (stage 0 all-reduces), the same averages either way' },
  { key: 'allgather_partitions', stages: [], otherwise: 'updated partitions are always all-gathered (stage 3: as each module needs them)' },
  { key: 'allgather_bucket_size', stages: [], otherwise: 'stages 1/2 all-gather one flat buffer per dtype; stage 3 gathers per module (stage3_prefetch_bucket_size bounds prefetch)' },
  { key: 'load_from_fp32_weights', stages: [], otherwise: 'fp32 masters come from the checkpoint when optimizer states are loaded, else from the weights' },
  { key: 'elastic_checkpoint', stages: [], otherwise: 'checkpoints always reshard to the loading dp size' },
  { key: 'ignore_unused_parameters', stages: [], otherwise: 'parameters without a gradient always count as zero gradients' },
  { key: 'round_robin_gradients', stages: [], otherwise: 'gradient copies follow bucket order' },
  { key: 'stage3_prefetch_bucket_size', stages: [3], otherwise: 'only stage 3 gathers parameters' },
  { key: 'stage3_param_persistence_threshold', stages: [3], otherwise: 'only stage 3 partitions parameters' },
  { key: 'stage3_max_live_parameters', stages: [3], otherwise: 'only stage 3 gathers parameters' },
  { key: 'stage3_max_reuse_distance', stages: [3], otherwise: 'only stage 3 releases parameters' },
  { key: 'stage3_gather_16bit_weights_on_model_save', stages: [3], otherwise: 'save16bitModel has the full weights on every rank below stage 3' },
];

/**
 * The keys of `cfg.zero_optimization` that its stage does not honour, one line each (`key: why`),
 * under a heading; printed after the resolved config.
 * @example
 * formatZeroKeyUsage(loadConfig({ zero_optimization: { stage: 1 } })).split('\n')[1]
 * // '  zero_optimization.reduce_bucket_size  no effect at stage 1: stage 1 reduces the whole flat gradient once per step'
 */
export function formatZeroKeyUsage(cfg: EngineConfig): string {
  const stage = cfg.zero_optimization.stage as 0 | 1 | 2 | 3;
  const unused = ZERO_KEY_USAGE.filter((u) => !u.stages.includes(stage));
  const width = Math.max(...unused.map((u) => u.key.length)) + 20;
  const lines = unused.map((u) => `  ${`zero_optimization.${u.key}`.padEnd(width, ' ')}no effect at stage ${stage}: ${u.otherwise}`);
  return `zero_optimization keys accepted for DeepSpeed parity without effect at stage ${stage}:\n${lines.join('\n')}`;
}
