/**
 * The optimizer's share of bench/gpu.ts part (c): SGD (momentum 0.9, weight decay 5e-4) over
 * ResNet-101's parameters (bf16 with f32 masters, 314 tensors) with many parameters per launch
 * (src/optim/sgd_multi.ts) against one launch per parameter (native.cuda.sgdMulti hidden):
 * launches per step (census), the host's time to issue one step (no synchronization inside) and
 * the device's time for it. Then the step captured in a CUDA graph (src/optim/graph_step.ts: the
 * captured kernels read their scalars from a device slot, per element) against the eager
 * many-per-launch step, for SGD and for AdamW over the same parameters: device ms per step (a
 * replay: the slot's write and the graph). Gradients are fixed random values; correctness is
 * test/unit/cuda_sgd_multi.test.ts's and cuda_graph_optimizer's.
 *   node --import tsx bench/gpu_sgd_multi.ts [--smoke]     (--smoke: 40 small bf16 Linear layers, one round)
 */
import { ResNet } from '../models/index.ts';
import { AdamW, captureCudaGraph, cudaCensus, cudaIsAvailable, cudaSynchronize, native, nn, noGrad, type Optimizer, randn, SGD } from '../src/index.ts';
import { DEV, deviceSeconds } from './gpu_timing.ts';
import { median } from './timing.ts';

const smoke = process.argv.includes('--smoke');
// --smoke (the emulated device, plumbing only): no warm-up, one round.
const ROUNDS = smoke ? 1 : 20;
const WARMUP = smoke ? 0 : 3;

interface Mode {
  launches: number;
  hostMs: number;
  deviceMs: number;
}

function measure(opt: SGD, multi: boolean): Mode {
  const saved = native.cuda.sgdMulti;
  if (!multi) native.cuda.sgdMulti = undefined;
  try {
    for (let w = 0; w < WARMUP; w++) opt.step();
    const launches = cudaCensus(() => opt.step())
      .entries.filter((e) => /optim\.cu|sgd_multi\.cu/.test(e.site))
      .reduce((n, e) => n + e.count, 0);
    const host: number[] = [];
    const device: number[] = [];
    for (let r = 0; r < ROUNDS; r++) {
      cudaSynchronize(DEV);
      const t0 = performance.now();
      opt.step();
      host.push(performance.now() - t0);
      device.push(deviceSeconds(() => opt.step()) * 1e3);
    }
    cudaSynchronize(DEV);
    return { launches, hostMs: median(host), deviceMs: median(device) };
  } finally {
    native.cuda.sgdMulti = saved;
  }
}

/** Device ms of one eager step and of one replay of the step captured alone (both many per launch). */
function graphed(opt: Optimizer<{ lr: number }>): { eagerMs: number; graphMs: number } {
  for (let w = 0; w < Math.max(WARMUP, 1); w++) opt.step(); // the state exists before the capture
  const eager: number[] = [];
  for (let r = 0; r < ROUNDS; r++) eager.push(deviceSeconds(() => opt.step()) * 1e3);
  const g = captureCudaGraph(() => opt.step(), { device: DEV });
  try {
    for (let w = 0; w < WARMUP; w++) g.replay();
    const replay: number[] = [];
    for (let r = 0; r < ROUNDS; r++) replay.push(deviceSeconds(() => g.replay()) * 1e3);
    cudaSynchronize(DEV);
    return { eagerMs: median(eager), graphMs: median(replay) };
  } finally {
    g.dispose();
  }
}

if (!cudaIsAvailable()) {
  console.log(`SKIP bench/gpu_sgd_multi: no usable CUDA device (${native.deviceInfo().cudaStatus ?? 'built without CUDA'})`);
} else {
  const what = smoke ? '40 Linear(16, 16)' : 'ResNet-101';
  const model = nn.moduleToDevice(
    smoke ? new nn.Sequential(...Array.from({ length: 40 }, () => new nn.Linear(16, 16, { dtype: 'bf16' }))) : new ResNet(101, { numClasses: 10, dtype: 'bf16' }),
    DEV,
  );
  const params = model.parameters();
  noGrad(() => {
    for (const p of params) p.grad = randn([...p.shape], { device: DEV }).mul(1e-3).to(p.dtype);
  });
  const opt = new SGD(params, { lr: 0.01, momentum: 0.9, weightDecay: 5e-4 });
  // Per-parameter first, then many per launch, then per-parameter again: the first pass warms the allocator and clocks.
  if (!smoke) measure(opt, false);
  const multi = measure(opt, true);
  const single = measure(opt, false);
  const line = (m: Mode) => `${m.launches} launches, host ${m.hostMs.toFixed(3)} ms, device ${m.deviceMs.toFixed(3)} ms`;
  console.log(JSON.stringify({ bench: 'sgd_multi', model: what, params: params.length, multi, single }));
  console.log(`SGD step, ${what} bf16 (${params.length} params): multi ${line(multi)} | per-parameter ${line(single)}`);
  const sgdGraph = graphed(opt);
  opt.dispose();
  const adamW = new AdamW(params, { lr: 1e-4, weightDecay: 0.1 });
  const adamGraph = graphed(adamW);
  adamW.dispose();
  console.log(JSON.stringify({ bench: 'optimizer_graph', model: what, sgd: sgdGraph, adamW: adamGraph }));
  const ratio = (m: { eagerMs: number; graphMs: number }) =>
    `eager ${m.eagerMs.toFixed(3)} ms, graphed ${m.graphMs.toFixed(3)} ms (x${(m.graphMs / m.eagerMs).toFixed(2)})`;
  console.log(`Optimizer step captured alone, ${what} bf16: SGD ${ratio(sgdGraph)} | AdamW ${ratio(adamGraph)}`);
  model.dispose();
}
