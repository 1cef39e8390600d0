/**
 * Peak RAM of ZeRO optimizer offload: a GPT bigger than tiny trained a few steps through
 * initialize() on every rank of the launch, with offload_optimizer none, cpu or nvme. Each rank
 * prints its 'optim' bytes (resident between steps under cpu and cpu-offload, and the peak
 * during the steps), its process RSS after the steps and its peak RSS (maxRSS), and the step
 * time (median). Run it once per device and compare:
 *   npx tsx src/cli/launcher.ts --num_procs 2 bench/zero_offload.ts --device nvme
 *   ... --device none|cpu|nvme --stage 1|2|3 --dtype f32|bf16 --layers 4 --embd 512 --vocab 8192 --steps 4
 *       --sub 1000000 (sub_group_size) --buffers 4 (buffer_count) --dir /tmp/x (nvme_path)
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { GPT } from '../models/index.ts';
import {
  allocatorStats, destroyDistributed, initDistributed, initialize, manualSeed, memoryStats,
} from '../src/index.ts';
import { fixedTokens, timeEngineSteps } from './engine_steps.ts';
import { median } from './timing.ts';

const { values: a } = parseArgs({
  options: {
    device: { type: 'string', default: 'nvme' }, stage: { type: 'string', default: '2' }, layers: { type: 'string', default: '4' },
    embd: { type: 'string', default: '512' }, vocab: { type: 'string', default: '8192' }, steps: { type: 'string', default: '4' },
    sub: { type: 'string', default: '1000000' }, dir: { type: 'string' }, batch: { type: 'string', default: '2' }, seq: { type: 'string', default: '64' },
    dtype: { type: 'string', default: 'f32' }, buffers: { type: 'string', default: '4' },
    local_rank: { type: 'string' }, // the launcher's DeepSpeed-style argument
  },
});
const world = await initDistributed();
const [B, T] = [Number(a.batch), Number(a.seq)];
const cfg = { vocabSize: Number(a.vocab), nCtx: T, nLayer: Number(a.layers), nHead: 8, nEmbd: Number(a.embd) };
const dir = a.dir ?? mkdtempSync(path.join(tmpdir(), 'mt-offload-bench-'));
manualSeed(1);
const bf16 = a.dtype === 'bf16';
const model = new GPT({ ...cfg, ...(bf16 ? { dtype: 'bf16' as const } : {}) });
const numel = model.parameters().reduce((n, p) => n + p.numel, 0);
const { engine } = await initialize({
  model, log: () => {},
  config: {
    train_micro_batch_size_per_gpu: B, gradient_accumulation_steps: 1, optimizer: { type: 'AdamW', params: { lr: 1e-4 } },
    ...(bf16 ? { bf16: { enabled: true } } : {}),
    zero_optimization: {
      stage: Number(a.stage), sub_group_size: Number(a.sub),
      offload_optimizer: { device: a.device, nvme_path: dir, buffer_count: Number(a.buffers) },
    },
  },
});
let optimBetween = 0;
let poolBetween = 0;
let optimPeak = 0;
const times = timeEngineSteps(engine, fixedTokens(B, T, cfg.vocabSize), cfg.vocabSize, Number(a.steps), () => {
  const m = memoryStats();
  optimPeak = Math.max(optimPeak, m.cpu.optim.peak);
  optimBetween = m.cpu.optim.current;
  poolBetween = m['cpu-offload']?.optim.current ?? 0;
});
const MB = (x: number) => Math.round(x / 1e5) / 10;
const row = {
  device: a.device, stage: Number(a.stage), dtype: a.dtype, params: numel, ranks: world.size,
  optimResidentMB: MB(optimBetween), offloadPoolMB: MB(poolBetween), optimPeakMB: MB(optimPeak),
  rssMB: MB(process.memoryUsage().rss), maxRssMB: MB(process.resourceUsage().maxRSS * 1024), cachedMB: MB(allocatorStats().cachedBytes),
  stepMs: Math.round(median(times.slice(1))),
};
console.log(JSON.stringify(row));
engine.destroy();
if (!a.dir && world.rank === 0) rmSync(dir, { recursive: true, force: true });
await destroyDistributed();
