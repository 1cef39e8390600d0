/**
 * Where a PipelineEngine computes, in one process: engine.device is its stages' device ('cpu'
 * here), a device option its stages are not on is refused naming the device and a misplaced tensor,
 * and initialize() with a PipelineModule accepts `device` (no longer refused) but names a CUDA
 * device this process does not have. Micro-batches already on the device are used as they are.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { gptPipelineLayers } from '../../models/gpt_pipeline.ts';
import { gptConfig } from '../../models/index.ts';
import { AdamW, crossEntropy, cudaDeviceCount, destroyDistributed, initDistributed, initialize, manualSeed, native, PipelineEngine, PipelineModule, type Tensor, tensor } from '../../src/index.ts';
import { rejects } from './rejects.ts';

// A world of one for initialize(), only while this file's tests run (uvu imports every file first;
// a world left initialized breaks the files that start their own).
test.before(async () => {
  await initDistributed({ timeoutMs: 30_000 });
});
test.after(async () => {
  await destroyDistributed();
});
const cfg = gptConfig('tiny');
const lossFn = (logits: Tensor, y: Tensor) => crossEntropy(logits.reshape([-1, cfg.vocabSize]), y.reshape([-1]));

function build(): PipelineModule {
  manualSeed(0);
  return new PipelineModule({ layers: gptPipelineLayers(cfg).layers, numStages: 2, partitionMethod: 'uniform', lossFn });
}

test('engine.device is where the stages are; the batch trains there', async () => {
  const pipe = build();
  const engine = await PipelineEngine.create({ module: pipe, microBatches: 1, optimizer: new AdamW(pipe.parameters(), { lr: 1e-2 }) });
  assert.is(engine.device, 'cpu');
  const ids = tensor(Int32Array.from({ length: 32 }, (_, i) => i % cfg.vocabSize), { dtype: 'i32', shape: [2, 16] });
  const loss = engine.trainBatch([[ids, ids]]);
  assert.ok(Number.isFinite(loss) && loss > 0, `loss ${loss}`);
  assert.not.ok(ids.disposed, 'the caller\'s micro-batch is left alone');
  ids.dispose();
});

test('a device option the stages are not on is refused, naming it and a misplaced tensor', async () => {
  const pipe = build();
  await rejects(
    PipelineEngine.create({ module: pipe, microBatches: 1, device: 'cuda:0', optimizer: new AdamW(pipe.parameters(), { lr: 1e-2 }) }),
    /PipelineEngine: device cuda:0, but pipeline rank 0's stages hold a f32 \[\d+(,\d+)*\] tensor on cpu; move the module first/,
  );
});

test('initialize() with a PipelineModule takes device: a missing CUDA device is named', async () => {
  if (native.cuda && cudaDeviceCount() > 0) return;   // with a device this would place the stages (cuda_pipeline covers it)
  const config = { train_batch_size: 2, train_micro_batch_size_per_gpu: 2, optimizer: { type: 'AdamW', params: { lr: 1e-2 } } };
  await rejects(initialize({ model: build(), config, device: 'cuda:0', log: () => {} }), /initialize: device: cuda:0 is not available \(0 CUDA device\(s\)/);
  const { engine } = await initialize({ model: build(), config, device: 'cpu', log: () => {} });
  assert.is(engine.device, 'cpu');
});

test.run();
