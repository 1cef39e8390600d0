/**
 * Peak RAM of ZeRO-3 parameter offload: a GPT bigger than tiny trained a few steps at stage 3
 * through initialize() on every rank of the launch, with offload_param none, cpu or nvme (and any
 * offload_optimizer). Each rank prints its 'param' bytes between steps under cpu and cpu-offload,
 * the peak 'param' under cpu during the steps, its RSS after the steps (allocator cache emptied)
 * and peak RSS (maxRSS, which includes building the full model before it is partitioned), the
 * median step time and the nvme shard reads (ahead / hits / blocking). Run once per device:
 *   npx tsx src/cli/launcher.ts --num_procs 2 bench/zero3_offload_param.ts --param nvme
 *   ... --param none|cpu|nvme --optim none|cpu|nvme --dtype f32|bf16 --layers 4 --embd 512 --vocab 8192 --steps 4
 *       --buffers 5 (buffer_count) --buffer_size N (default: the largest shard) --max_in_cpu 0 --dir /tmp/x
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { GPT } from '../models/index.ts';
import {
  destroyDistributed, emptyCache, initDistributed, initialize, manualSeed, memoryStats, type ZeroStage3,
} from '../src/index.ts';
import { fixedTokens, timeEngineSteps } from './engine_steps.ts';
import { median } from './timing.ts';

const { values: a } = parseArgs({
  options: {
    param: { type: 'string', default: 'nvme' }, optim: { type: 'string', default: 'none' }, layers: { type: 'string', default: '4' },
    embd: { type: 'string', default: '512' }, vocab: { type: 'string', default: '8192' }, steps: { type: 'string', default: '4' },
    dir: { type: 'string' }, batch: { type: 'string', default: '2' }, seq: { type: 'string', default: '64' }, dtype: { type: 'string', default: 'f32' },
    buffers: { type: 'string', default: '5' }, buffer_size: { type: 'string' }, max_in_cpu: { type: 'string', default: '0' },
    local_rank: { type: 'string' }, // the launcher's DeepSpeed-style argument
  },
});
const world = await initDistributed();
const [B, T] = [Number(a.batch), Number(a.seq)];
const cfg = { vocabSize: Number(a.vocab), nCtx: T, nLayer: Number(a.layers), nHead: 8, nEmbd: Number(a.embd) };
const dir = a.dir ?? mkdtempSync(path.join(tmpdir(), 'mt-param-offload-bench-'));
manualSeed(1);
const bf16 = a.dtype === 'bf16';
const model = new GPT({ ...cfg, ...(bf16 ? { dtype: 'bf16' as const } : {}) });
const numel = model.parameters().reduce((n, p) => n + p.numel, 0);
const largest = Math.max(...model.parameters().map((p) => Math.ceil(p.numel / world.size)));
const { engine, optimizer } = await initialize({
  model, log: () => {},
  config: {
    train_micro_batch_size_per_gpu: B, gradient_accumulation_steps: 1, optimizer: { type: 'AdamW', params: { lr: 1e-4 } },
    ...(bf16 ? { bf16: { enabled: true } } : {}),
    zero_optimization: {
      stage: 3,
      offload_optimizer: { device: a.optim, nvme_path: path.join(dir, 'optim') },
      offload_param: {
        device: a.param, nvme_path: path.join(dir, 'param'), buffer_count: Number(a.buffers),
        buffer_size: a.buffer_size ? Number(a.buffer_size) : largest, max_in_cpu: Number(a.max_in_cpu),
      },
    },
  },
});
const zero = optimizer as ZeroStage3;
emptyCache();
let between = { cpu: 0, pool: 0 };
let peak = 0;
const times = timeEngineSteps(engine, fixedTokens(B, T, cfg.vocabSize), cfg.vocabSize, Number(a.steps), () => {
  const m = memoryStats();
  peak = Math.max(peak, m.cpu.param.peak);
  between = { cpu: m.cpu.param.current, pool: m['cpu-offload']?.param.current ?? 0 };
});
emptyCache();
const MB = (x: number) => Math.round(x / 1e5) / 10;
const o = zero.paramOffload()[0];
const row = {
  param: a.param, optim: a.optim, dtype: a.dtype, params: numel, ranks: world.size,
  paramCpuMB: MB(between.cpu), paramOffloadPoolMB: MB(between.pool), paramPeakCpuMB: MB(peak), paramFileMB: MB(o.inFile * (bf16 ? 2 : 4)),
  rssMB: MB(process.memoryUsage().rss), maxRssMB: MB(process.resourceUsage().maxRSS * 1024),
  stepMs: Math.round(median(times.slice(1))), reads: o.reads,
};
console.log(JSON.stringify(row));
engine.destroy();
if (!a.dir) rmSync(dir, { recursive: true, force: true });   // each rank made its own temporary directory
await destroyDistributed();
