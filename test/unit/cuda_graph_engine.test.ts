/**
 * CUDA graphs with the DeepSpeed-style engine (one rank, bf16, GPT tiny): `engine.backward(loss)`
 * captured with the forward, `engine.step()` eager (clipping, AdamW, the engine's in-place
 * zero-grad), for ZeRO stages 0, 2 and 3 (1 shares stage 2's code). 3 steps, 2 of them replayed, equal 3 eager
 * steps bit for bit: losses and every weight. Without a device: one SKIP line.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { GPT, gptConfig } from '../../models/index.ts';
import {
  type CudaGraph, captureCudaGraph, copyInPlace, crossEntropy, cudaIsAvailable, destroyDistributed, initDistributed, initialize, manualSeed,
  native, type Tensor, tensor,
} from '../../src/index.ts';

const [M, T, V] = [4, 16, 64];

function batch(s: number): Tensor[] {
  return [
    tensor(Int32Array.from({ length: M * T }, (_, i) => (i * 7 + s * 5) % V), { dtype: 'i32', shape: [M, T] }),
    tensor(Int32Array.from({ length: M * T }, (_, i) => (i * 3 + s) % V), { dtype: 'i32', shape: [M * T] }),
  ];
}

async function run(stage: 0 | 1 | 2 | 3, graph: boolean): Promise<{ losses: number[]; weights: Buffer }> {
  manualSeed(1234);
  const model = new GPT(gptConfig('tiny', { dropout: 0, dtype: 'bf16' }));
  const config = {
    train_batch_size: M, train_micro_batch_size_per_gpu: M, gradient_clipping: 1.0,
    optimizer: { type: 'AdamW', params: { lr: 3e-3, weight_decay: 0.01 } },
    zero_optimization: { stage, reduce_bucket_size: 20_000, stage3_param_persistence_threshold: 100 },
    bf16: { enabled: true },
  };
  const { engine } = await initialize({ model, config, device: 'cuda:0', log: () => {} });
  const inputs = batch(0).map((t) => t.to('cuda:0'));
  const forwardBackward = () => {
    const l = crossEntropy(engine.forward(inputs[0]).to('f32').reshape([M * T, V]), inputs[1]);
    engine.backward(l);
    return l;
  };
  const losses: number[] = [];
  let g: CudaGraph<Tensor> | null = null;
  for (let s = 0; s < 3; s++) {
    batch(s).forEach((b, i) => copyInPlace(inputs[i], b));
    if (graph && s === 1) g = captureCudaGraph(forwardBackward, { parameters: model.parameters() });
    const l = g ? g.replay() : forwardBackward();
    engine.step();
    losses.push(l.item());
  }
  g?.dispose();
  engine.destroy(); // stage 3 gives every parameter its full values back
  const weights = Buffer.concat(model.parameters().map((p) => Buffer.from(Float32Array.from(p.to('f32').toList() as number[]).buffer)));
  model.dispose();
  return { losses, weights };
}

if (!cudaIsAvailable()) {
  test('CUDA graphs with the engine', () => {
    const info = native.deviceInfo();
    console.log(`SKIP test/unit/cuda_graph_engine: no usable CUDA device (${info.cudaCompiled ? info.cudaStatus : 'built without CUDA'})`);
  });
} else {
  // A world of one for initialize(), only while this file's tests run.
  test.before(async () => {
    await initDistributed({ timeoutMs: 30_000 });
  });
  test.after(async () => {
    await destroyDistributed();
  });
  for (const stage of [0, 2, 3] as const) {
    test(`ZeRO stage ${stage}, bf16: engine.backward replayed, engine.step eager = eager steps bit for bit`, async () => {
      const eager = await run(stage, false);
      const graphed = await run(stage, true);
      assert.equal(graphed.losses, eager.losses);
      assert.ok(graphed.weights.equals(eager.weights), 'weights differ');
      assert.ok(new Set(eager.losses).size > 1, 'the steps saw different batches');
    });
  }
}

test.run();
