/**
 * State dicts across tensor-parallel sizes. A tp model's parameters keep the unsharded model's
 * names (parallelize swaps modules in place), so the full state dict is the same keys with the
 * shards all-gathered (`consolidatedStateDict`): what the checkpoint and safetensors writers
 * take, and what loads into the unsharded model. `loadFullStateDict` cuts a full state dict
 * into this rank's shards, whatever tp size wrote it.
 */
import { noGrad } from '../autograd/grad_mode.ts';
import type { ProcessGroup } from '../dist/process_group.ts';
import type { Module } from '../nn/module.ts';
import type { LoadResult } from '../nn/state_dict.ts';
import { fmt, sameShape } from '../tensor/shape.ts';
import { withTag } from '../tensor/tag_context.ts';
import type { Tensor } from '../tensor/tensor.ts';
import { fullShape, gatherShard, shardLayouts, sliceShard } from './shard_layout.ts';

/**
 * Every state-dict key of `model` with its full tensor (shards all-gathered over `group`, the
 * tp group; every tp rank gets them all). New tensors tagged 'other': dispose them after use.
 * @example
 * const full = consolidatedStateDict(model, mesh.group('tp'));
 * await saveCheckpoint('ckpt', 'final', { rank: 0, worldSize: 1, tensors: Object.entries(full).map(...) });
 */
export function consolidatedStateDict(model: Module, group: ProcessGroup): Record<string, Tensor> {
  const layouts = shardLayouts(model);
  const sd = model.stateDict();
  const out: Record<string, Tensor> = {};
  withTag('other', () =>
    noGrad(() => {
      for (const [key, t] of Object.entries(sd)) out[key] = gatherShard(t, layouts.get(key) ?? null, group);
    }),
  );
  return out;
}

/**
 * Loads a full (unsharded) state dict into the tp model: each rank copies its slice of every
 * split tensor and the whole of every replicated one. Full shapes are checked first and every
 * mismatch named with both shapes; keys are then checked as `Module.loadStateDict` does.
 * @example
 * loadFullStateDict(tp4Model, consolidatedStateDict(tp2Model, tp2), mesh.group('tp'));
 */
export function loadFullStateDict(model: Module, sd: Record<string, Tensor>, group: ProcessGroup, opts: { strict?: boolean } = {}): LoadResult {
  const layouts = shardLayouts(model);
  const own = model.stateDict();
  const problems: string[] = [];
  for (const [key, t] of Object.entries(sd)) {
    if (!(key in own)) continue;
    const want = fullShape(own[key].shape, layouts.get(key) ?? null, group.size);
    if (!sameShape(t.shape, want)) problems.push(`${key}: the state dict has ${fmt(t.shape)}, the model's full shape is ${fmt(want)} (${fmt(own[key].shape)} on each of ${group.size} tp ranks)`);
  }
  if (problems.length) throw new Error(`loadFullStateDict: ${problems.length} shape mismatch(es):\n  ${problems.join('\n  ')}`);
  const local: Record<string, Tensor> = {};
  try {
    noGrad(() => {
      for (const [key, t] of Object.entries(sd)) {
        local[key] = key in own ? sliceShard(t, layouts.get(key) ?? null, group.rank, group.size, `loadFullStateDict ${key}`) : t;
      }
    });
    return model.loadStateDict(local, opts);
  } finally {
    for (const [key, t] of Object.entries(local)) if (t !== sd[key]) t.dispose();
  }
}
