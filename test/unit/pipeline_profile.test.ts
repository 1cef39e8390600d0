/**
 * profileLayerTimes feeding the 'balanced' partitioner: a layer made slow on purpose is measured
 * as the slowest and gets a stage of its own, where 'uniform' would pair it; GPT's layer list is
 * profiled one layer at a time without drawing random numbers or keeping tensors.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { gptPipelineLayers } from '../../models/gpt_pipeline.ts';
import { gptConfig } from '../../models/index.ts';
import { partitionUniform } from '../../partitioners/index.ts';
import {
  getRngState, LayerSpec, liveStorages, manualSeed, nn, PipelineModule, profileLayerTimes, type Tensor, tensor,
} from '../../src/index.ts';

/** Busy for `ms` on every call: a layer whose cost no parameter count or FLOP formula sees. */
const slow = (ms: number) => (x: Tensor): Tensor => {
  const end = performance.now() + ms;
  while (performance.now() < end) {}
  return x;
};

test('balanced from a profile: the slow layer is measured slowest and stands alone on its stage', () => {
  manualSeed(0);
  const layers = [
    new LayerSpec(nn.Linear, [16, 16]), new LayerSpec(nn.Linear, [16, 16]), slow(20),
    new LayerSpec(nn.Linear, [16, 16]), new LayerSpec(nn.Linear, [16, 16]), new LayerSpec(nn.Linear, [16, 16]),
  ];
  const x = tensor(new Float32Array(4 * 16).fill(0.5), { shape: [4, 16] });
  const costs = profileLayerTimes(layers, x, { reps: 3 });
  assert.is(costs.length, layers.length);
  assert.ok(costs.every((c) => c > 0), `every layer took time: ${costs}`);
  assert.ok(costs[2] >= 20 && costs.every((c, i) => i === 2 || c < costs[2] / 4), `the busy layer dominates: ${costs.map((c) => c.toFixed(3))}`);
  const pipe = new PipelineModule({ layers, numStages: 3, partitionMethod: 'balanced', partitionCosts: costs });
  const [lo, hi] = pipe.stageRange(1);
  assert.ok(pipe.partition.boundaries.some((b, s) => b === 2 && pipe.partition.boundaries[s + 1] === 3), `layer 2 alone: ${pipe.partition.boundaries} (stage 1 = ${lo}..${hi})`);
  assert.ok(pipe.partition.maxCost < partitionUniform(layers.length, 3, costs).maxCost, 'better than uniform under the same costs');
  x.dispose();
});

test('profileLayerTimes on GPT-tiny: one time per layer, the generator untouched, nothing left allocated; bad options named', () => {
  const cfg = gptConfig('tiny');
  manualSeed(0);
  const { layers } = gptPipelineLayers(cfg);
  const rng = getRngState();
  const ids = tensor(Int32Array.from({ length: 2 * 16 }, (_, i) => i % cfg.vocabSize), { dtype: 'i32', shape: [2, 16] });
  const live = liveStorages();
  const costs = profileLayerTimes(layers, ids, { reps: 1 });
  assert.is(liveStorages(), live, 'no tensors left behind');
  assert.equal(getRngState(), rng, 'no random numbers drawn');
  assert.is(costs.length, layers.length);
  assert.ok(costs.every((c) => Number.isFinite(c) && c > 0), `${costs}`);
  const pipe = new PipelineModule({ layers, numStages: 3, partitionMethod: 'balanced', partitionCosts: costs });
  assert.is(pipe.partition.boundaries.length, 4);
  assert.throws(() => profileLayerTimes(layers, ids, { reps: 0 }), /reps must be a positive integer, got 0/);
  assert.throws(() => profileLayerTimes([], ids), /layers must be a non-empty array/);
  ids.dispose();
});

test.run();
