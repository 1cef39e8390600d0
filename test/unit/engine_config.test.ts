import { readFileSync } from 'node:fs';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { formatResolvedConfig, loadConfig } from '../../src/engine/config.ts';
import { configDefaultsMarkdown, configDefaultsTable } from '../../src/engine/config_schema.ts';
import { parseJsonc } from '../../src/engine/jsonc.ts';

const REFERENCE = new URL('../fixtures/deepspeed_resnet101_zero3.json', import.meta.url).pathname;

/** Asserts `fn` throws a message containing every fragment. */
function throwsWith(fn: () => unknown, ...fragments: string[]): void {
  try {
    fn();
  } catch (e) {
    const msg = (e as Error).message;
    for (const f of fragments) assert.ok(msg.includes(f), `expected "${f}" in: ${msg}`);
    return;
  }
  assert.unreachable(`expected an error containing ${fragments.join(', ')}`);
}

const get = (obj: unknown, path: string): unknown => path.split('.').reduce((o, k) => (o as Record<string, unknown>)[k], obj);

test('the DeepSpeed ResNet101 reference config loads unchanged (comments included) and resolves', () => {
  const text = readFileSync(REFERENCE, 'utf8');
  assert.ok(text.includes('// 启用ZeRO-3阶段'), 'the fixture keeps its comment');
  const cfg = loadConfig(REFERENCE, { dpSize: 8, hiddenSize: 2048, microBatchSize: 128 });
  assert.is(cfg.train_micro_batch_size_per_gpu, 128);
  assert.is(cfg.gradient_accumulation_steps, 1);
  assert.is(cfg.train_batch_size, 1024);
  assert.is(cfg.zero_optimization.stage, 3);
  assert.is(cfg.zero_optimization.offload_optimizer.device, 'cpu');
  assert.is(cfg.zero_optimization.sub_group_size, 1e9);
  assert.is(cfg.zero_optimization.reduce_bucket_size, 2048 * 2048);
  assert.is(cfg.zero_optimization.stage3_prefetch_bucket_size, Math.floor(0.9 * 2048 * 2048));
  assert.is(cfg.zero_optimization.stage3_param_persistence_threshold, 20480);
  assert.is(cfg.zero_optimization.stage3_gather_16bit_weights_on_model_save, true);
  assert.is(cfg.optimizer.type, 'AdamW');
  assert.equal(cfg.optimizer.params, { lr: 0.0001, weight_decay: 0.01 });
  assert.is(cfg.scheduler.type, 'WarmupLR');
  assert.equal(cfg.lossScaler, { kind: 'dynamic', initScale: 65536, scaleWindow: 1000, minScale: 1, delayedShift: 2, consecutiveHysteresis: false });
  const printed = formatResolvedConfig(cfg);
  assert.match(printed, /zero_optimization\.reduce_bucket_size\s+4194304 {2}\(auto\)/);
  assert.match(printed, /fp16\.consecutive_hysteresis\s+false {2}\(default\)/);
});

test('JSON with comments: line and block comments, trailing commas, strings holding // are kept', () => {
  assert.equal(parseJsonc('{ /* a */ "a": "x//y", // c\n "b": [1, 2e3,], }'), { a: 'x//y', b: [1, 2000] });
  throwsWith(() => parseJsonc('{ "a": 1 "b": 2 }', 'cfg.json'), 'cfg.json', 'line 1');
  throwsWith(() => parseJsonc('{ /* open', 'cfg.json'), 'unterminated /* comment');
  // A repeated key is refused with its path and line, not silently overwritten; equal keys in sibling objects are fine.
  throwsWith(() => parseJsonc('{ "zero_optimization": {\n "stage": 2, "x": [{"a": 1}, {"a": 2}],\n "stage": 3 } }', 'cfg.json'), 'duplicate key "zero_optimization.stage"', 'line 3');
  assert.equal(parseJsonc('{ "a": { "k": 1 }, "b": { "k": "a\\"k" }, "k": [ { "k": 1 } ] }'), { a: { k: 1 }, b: { k: 'a"k' }, k: [{ k: 1 }] });
});

test('batch arithmetic: any two of train, micro, accumulation give the third', () => {
  const b = (c: Record<string, unknown>, dp: number) => {
    const r = loadConfig(c, { dpSize: dp });
    return [r.train_batch_size, r.train_micro_batch_size_per_gpu, r.gradient_accumulation_steps];
  };
  assert.equal(b({ train_batch_size: 64, train_micro_batch_size_per_gpu: 4 }, 4), [64, 4, 4]);
  assert.equal(b({ train_batch_size: 64, gradient_accumulation_steps: 2 }, 4), [64, 8, 2]);
  assert.equal(b({ train_micro_batch_size_per_gpu: 8, gradient_accumulation_steps: 3 }, 2), [48, 8, 3]);
  assert.equal(b({ train_batch_size: 32 }, 4), [32, 8, 1]);
  assert.equal(b({ train_micro_batch_size_per_gpu: 5 }, 3), [15, 5, 1]);
  assert.equal(b({ train_batch_size: 24, train_micro_batch_size_per_gpu: 3, gradient_accumulation_steps: 4 }, 2), [24, 3, 4]);
  assert.equal(loadConfig({}, { worldSize: 2, microBatchSize: 16 }).train_batch_size, 32);
  assert.equal(b({ train_batch_size: 'auto', train_micro_batch_size_per_gpu: 4, gradient_accumulation_steps: 2 }, 2), [16, 4, 2]);
});

test('batch arithmetic: mismatches and impossible splits name the keys and numbers', () => {
  throwsWith(
    () => loadConfig({ train_batch_size: 30, train_micro_batch_size_per_gpu: 4, gradient_accumulation_steps: 2 }, { dpSize: 4 }),
    'train_batch_size 30', 'train_micro_batch_size_per_gpu 4', 'gradient_accumulation_steps 2', 'dp 4', '32',
  );
  throwsWith(() => loadConfig({ train_batch_size: 10, train_micro_batch_size_per_gpu: 4 }, { dpSize: 1 }), 'gradient_accumulation_steps', 'train_batch_size 10');
  throwsWith(() => loadConfig({ train_batch_size: 10 }, { dpSize: 4 }), 'train_micro_batch_size_per_gpu', 'dp 4');
  throwsWith(() => loadConfig({ gradient_accumulation_steps: 2 }), 'train_batch_size', 'train_micro_batch_size_per_gpu');
  throwsWith(() => loadConfig({ train_batch_size: 0 }), 'train_batch_size', '>= 1', 'got 0');
  throwsWith(() => loadConfig({ train_micro_batch_size_per_gpu: -2 }), 'train_micro_batch_size_per_gpu', 'got -2');
  throwsWith(() => loadConfig({ train_batch_size: 8 }, { dpSize: 0 }), 'dpSize');
});

test('every default equals the table (and the table holds DeepSpeed code defaults)', () => {
  const cfg = loadConfig({ train_batch_size: 1 });
  const batchKeys = ['train_batch_size', 'train_micro_batch_size_per_gpu', 'gradient_accumulation_steps'];
  for (const row of configDefaultsTable()) {
    if (batchKeys.includes(row.path)) continue;
    if (row.path === 'zero_optimization.overlap_comm') continue; // null: derived from the stage
    assert.equal(get(cfg, row.path), row.default, row.path);
  }
  const d = Object.fromEntries(configDefaultsTable().map((r) => [r.path, r.default]));
  const expected: Record<string, unknown> = {
    gradient_clipping: 0, steps_per_print: null, wall_clock_breakdown: false, 'fp16.enabled': false, 'fp16.auto_cast': false,
    'fp16.loss_scale': 0, 'fp16.initial_scale_power': 16, 'fp16.loss_scale_window': 1000, 'fp16.hysteresis': 2,
    'fp16.consecutive_hysteresis': false, 'fp16.min_loss_scale': 1, 'bf16.enabled': false, 'zero_optimization.stage': 0,
    'zero_optimization.contiguous_gradients': true, 'zero_optimization.reduce_scatter': true, 'zero_optimization.reduce_bucket_size': 5e8,
    'zero_optimization.allgather_partitions': true, 'zero_optimization.allgather_bucket_size': 5e8, 'zero_optimization.overlap_comm': null,
    'zero_optimization.sub_group_size': 1e9, 'zero_optimization.stage3_prefetch_bucket_size': 5e7,
    'zero_optimization.stage3_param_persistence_threshold': 1e5, 'zero_optimization.stage3_max_live_parameters': 1e9,
    'zero_optimization.stage3_max_reuse_distance': 1e9, 'zero_optimization.stage3_gather_16bit_weights_on_model_save': false,
    'zero_optimization.round_robin_gradients': false, 'zero_optimization.offload_optimizer.device': 'none',
    'zero_optimization.offload_optimizer.buffer_count': 4, 'zero_optimization.offload_optimizer.pin_memory': false,
    'zero_optimization.offload_param.buffer_count': 5, 'zero_optimization.offload_param.buffer_size': 1e8,
    'zero_optimization.offload_param.max_in_cpu': 1e9,
  };
  for (const [k, v] of Object.entries(expected)) assert.equal(d[k], v, k);
  assert.is(cfg.zero_optimization.overlap_comm, false);
  assert.is(loadConfig({ train_batch_size: 1, zero_optimization: { stage: 3 } }).zero_optimization.overlap_comm, true);
});

test('loss scaler spec follows DeepSpeed: no dynamic keys set means 2^32 and hysteresis 1; static; bf16 none', () => {
  assert.equal(loadConfig({ train_batch_size: 1, fp16: { enabled: true } }).lossScaler, {
    kind: 'dynamic', initScale: 2 ** 32, scaleWindow: 1000, minScale: 1, delayedShift: 1, consecutiveHysteresis: false,
  });
  assert.equal(loadConfig({ train_batch_size: 1, fp16: { enabled: true, hysteresis: 3 } }).lossScaler, {
    kind: 'dynamic', initScale: 2 ** 16, scaleWindow: 1000, minScale: 1, delayedShift: 3, consecutiveHysteresis: false,
  });
  assert.equal(loadConfig({ train_batch_size: 1, fp16: { enabled: true, loss_scale: 128 } }).lossScaler, { kind: 'static', scale: 128 });
  assert.equal(loadConfig({ train_batch_size: 1, bf16: { enabled: true } }).lossScaler, { kind: 'none' });
});

test('a misspelled key at any depth is rejected with its full path and a suggestion', () => {
  throwsWith(() => loadConfig({ train_batch_size: 1, zero_optimization: { offload_optimizer: { devcie: 'cpu' } } }),
    'zero_optimization.offload_optimizer.devcie', 'did you mean "device"');
  throwsWith(() => loadConfig({ train_batch_size: 1, zero_optimization: { stage3_prefetch_bucket_sise: 1 } }),
    'zero_optimization.stage3_prefetch_bucket_sise', 'did you mean "stage3_prefetch_bucket_size"');
  throwsWith(() => loadConfig({ train_bach_size: 1 }), 'train_bach_size', 'did you mean "train_batch_size"');
  throwsWith(() => loadConfig({ train_batch_size: 1, fp16: { enabled: true, loss_scale_windw: 10 } }), 'fp16.loss_scale_windw', '"loss_scale_window"');
  throwsWith(() => loadConfig({ train_batch_size: 1, optimizer: { type: 'AdamW', params: { weight_dacay: 0 } } }),
    'optimizer.params.weight_dacay', '"weight_decay"');
  throwsWith(() => loadConfig({ train_batch_size: 1, optimizer: { type: 'Adamm' } }), 'optimizer.type', 'did you mean "Adam"');
  throwsWith(() => loadConfig({ train_batch_size: 1, scheduler: { type: 'WarmupLr' } }), 'scheduler.type', '"WarmupLR"');
  throwsWith(() => loadConfig({ train_batch_size: 1, scheduler: { type: 'WarmupLR', params: { warmup_num_step: 5 } } }),
    'scheduler.params', '"warmup_num_steps"');
  throwsWith(() => loadConfig({ train_batch_size: 1, flops_profiler: {} }), 'flops_profiler', 'does not support');
});

test('wrong types name the path, the expected type and the value', () => {
  throwsWith(() => loadConfig({ train_batch_size: 1, fp16: { enabled: 'yes' } }), 'fp16.enabled', 'true or false', '"yes"');
  throwsWith(() => loadConfig({ train_batch_size: 1, fp16: { hysteresis: 1.5 } }), 'fp16.hysteresis', 'an integer');
  throwsWith(() => loadConfig({ train_batch_size: '8' }), 'train_batch_size', '"8"');
  throwsWith(() => loadConfig({ train_batch_size: 1, zero_optimization: 3 }), 'zero_optimization', 'an object');
  throwsWith(() => loadConfig({ train_batch_size: 1, zero_optimization: { offload_optimizer: { device: 'gpu' } } }),
    'zero_optimization.offload_optimizer.device', '"none", "cpu", "nvme"');
  throwsWith(() => loadConfig({ train_batch_size: 1, gradient_clipping: -1 }), 'gradient_clipping', '>= 0');
  throwsWith(() => loadConfig({ train_batch_size: 1, optimizer: { type: 'Adam', params: { betas: [0.9] } } }), 'optimizer.params.betas');
  throwsWith(() => loadConfig({ train_batch_size: 1, fp16: { hysteresis: 'auto' } }), 'fp16.hysteresis');
});

test('numbers written as 1e9 / 5e8 and case-insensitive optimizer types are accepted', () => {
  const cfg = loadConfig({ train_batch_size: 1, optimizer: { type: 'adamw' }, zero_optimization: { stage: 2, reduce_bucket_size: 5e8, allgather_bucket_size: 2e8 } });
  assert.is(cfg.optimizer.type, 'AdamW');
  assert.is(loadConfig({ train_batch_size: 1, optimizer: { type: 'sgd', params: { lr: 0.1, momentum: 0.9 } } }).optimizer.type, 'SGD');
  assert.is(cfg.zero_optimization.allgather_bucket_size, 200000000);
});

test('impossible combinations are rejected', () => {
  throwsWith(() => loadConfig({ train_batch_size: 1, fp16: { enabled: true }, bf16: { enabled: true } }), 'fp16.enabled', 'bf16.enabled');
  throwsWith(() => loadConfig({ train_batch_size: 1, zero_optimization: { stage: 2, offload_param: { device: 'cpu' } } }),
    'zero_optimization.offload_param.device', 'stage 3', 'stage 2');
  throwsWith(() => loadConfig({ train_batch_size: 1, zero_optimization: { stage: 3, offload_optimizer: { device: 'nvme' } } }),
    'zero_optimization.offload_optimizer.nvme_path', 'nvme');
  throwsWith(() => loadConfig({ train_batch_size: 1, zero_optimization: { stage: 4 } }), 'zero_optimization.stage', '[0, 3]', 'got 4');
  throwsWith(() => loadConfig({ train_batch_size: 1, zero_optimization: { stage: -1 } }), 'zero_optimization.stage');
  throwsWith(() => loadConfig({ train_batch_size: 1, zero_optimization: { offload_optimizer: { device: 'cpu' } } }), 'offload_optimizer.device', 'stage 0');
  const ok = loadConfig({ train_batch_size: 1, zero_optimization: { stage: 3, offload_param: { device: 'nvme', nvme_path: '/tmp/nv' } } });
  assert.is(ok.zero_optimization.offload_param.nvme_path, '/tmp/nv');
});

test('"auto" resolves from the hidden size, and without it names the key', () => {
  const z = { stage: 3, reduce_bucket_size: 'auto', stage3_prefetch_bucket_size: 'auto', stage3_param_persistence_threshold: 'auto' };
  const cfg = loadConfig({ train_batch_size: 8, zero_optimization: z }, { hiddenSize: 1000 });
  assert.is(cfg.zero_optimization.reduce_bucket_size, 1e6);
  assert.is(cfg.zero_optimization.stage3_prefetch_bucket_size, 900000);
  assert.is(cfg.zero_optimization.stage3_param_persistence_threshold, 10000);
  throwsWith(() => loadConfig({ train_batch_size: 8, zero_optimization: z }), 'zero_optimization.reduce_bucket_size', 'hiddenSize');
  throwsWith(() => loadConfig({ train_micro_batch_size_per_gpu: 'auto' }), 'train_micro_batch_size_per_gpu', 'microBatchSize');
  assert.is(loadConfig({ train_micro_batch_size_per_gpu: 'auto' }, { microBatchSize: 6, dpSize: 2 }).train_batch_size, 12);
});

test('docs/config.md is up to date (npm run docs:config)', () => {
  const doc = readFileSync(new URL('../../docs/config.md', import.meta.url), 'utf8');
  assert.is(doc, configDefaultsMarkdown(), 'docs/config.md is stale: run npm run docs:config');
});

test.run();
