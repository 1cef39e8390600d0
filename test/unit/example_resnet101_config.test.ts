// The ResNet101 ZeRO-3 example's DeepSpeed config: the file is the reference config unchanged
// (text equal to the fixture, Chinese comment included), and what the example hands initialize()
// (examples/deepspeed_config.ts: the loader's batch added, nothing else unless a debugging
// override is asked for) resolves to ZeRO stage 3, fp16 with DeepSpeed's dynamic scaler from the
// file, AdamW, WarmupLR and the optimizer offloaded to CPU. The fixture's own resolution (auto
// buckets etc.) is covered by engine_config.test.ts.
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readExampleConfig } from '../../examples/deepspeed_config.ts';
import { loadConfig } from '../../src/engine/config.ts';

const EXAMPLE = new URL('../../examples/configs/resnet101_zero3.json', import.meta.url).pathname;
const REFERENCE = new URL('../fixtures/deepspeed_resnet101_zero3.json', import.meta.url).pathname;

test('examples/configs/resnet101_zero3.json is the DeepSpeed reference config, comments included', () => {
  assert.is(readFileSync(EXAMPLE, 'utf8'), readFileSync(REFERENCE, 'utf8'));
});

test('what the example passes to initialize() resolves to stage 3, fp16 dynamic, AdamW, WarmupLR, offload cpu', () => {
  const { config, microBatch, changes } = readExampleConfig(EXAMPLE, { microBatch: 4 });
  assert.is(microBatch, 4);
  assert.equal(changes, ["train_micro_batch_size_per_gpu = 4 (the loader's batch; the file sets no batch size)"]);
  const cfg = loadConfig(config, { dpSize: 8, hiddenSize: 2048 });
  assert.is(cfg.train_micro_batch_size_per_gpu, 4);
  assert.is(cfg.train_batch_size, 32);
  assert.is(cfg.zero_optimization.stage, 3);
  assert.is(cfg.zero_optimization.offload_optimizer.device, 'cpu');
  assert.is(cfg.zero_optimization.overlap_comm, true);
  assert.is(cfg.fp16.enabled, true);
  assert.equal(cfg.lossScaler, { kind: 'dynamic', initScale: 2 ** 16, scaleWindow: 1000, minScale: 1, delayedShift: 2, consecutiveHysteresis: false });
  assert.equal(cfg.optimizer, { type: 'AdamW', params: { lr: 0.0001, weight_decay: 0.01 } });
  assert.equal(cfg.scheduler, { type: 'WarmupLR', params: { warmup_min_lr: 0, warmup_max_lr: 0.0001, warmup_num_steps: 500 } });
});

test('debugging overrides patch only stage and offload device and say so; a micro batch in the file wins over the loader\'s', () => {
  const { config, changes } = readExampleConfig(EXAMPLE, { microBatch: 2, zeroStage: 2, offload: 'none' });
  const cfg = loadConfig(config, { dpSize: 2, hiddenSize: 512 });
  assert.is(cfg.zero_optimization.stage, 2);
  assert.is(cfg.zero_optimization.offload_optimizer.device, 'none');
  assert.is(cfg.zero_optimization.contiguous_gradients, true);
  assert.is(cfg.fp16.enabled, true);
  assert.equal(changes.slice(1), [
    'zero_optimization.stage = 2 (debugging override; the file says 3)',
    'zero_optimization.offload_optimizer.device = "none" (debugging override; the file says "cpu")',
  ]);
  const file = join(mkdtempSync(join(tmpdir(), 'mt-example-config-')), 'ds.json');
  writeFileSync(file, readFileSync(EXAMPLE, 'utf8').replace('{', '{ "train_micro_batch_size_per_gpu": 16, // set by the user\n'));
  const own = readExampleConfig(file, { microBatch: 2 });
  assert.is(own.microBatch, 16);
  assert.equal(own.changes, []);
  assert.is(loadConfig(own.config, { dpSize: 2, hiddenSize: 512 }).train_batch_size, 32);
});

test.run();
