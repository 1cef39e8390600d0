/**
 * Host cost of the eager op path: µs per call of tiny ops through the public API and of two model
 * steps per device op, each as a ratio to the N-API floor measured in the same process
 * (native.cuda.hostBench.noop, or native.liveStorages on a build without CUDA), and to PyTorch's µs
 * per call of the same CPU op where python3 can import torch (bench/torch_host_ops.py). Tiny ops are
 * timed as wall time in many short rounds, their lower quartile (another process's time slice
 * inflates a round, never shrinks it: robust on a shared machine), main-thread CPU beside it; the
 * model steps as main-thread CPU per device op (bench/thread_cpu.ts), as the host_* benches do:
 *
 *   add [1] cpu / cuda:0               add(a, b).dispose(), unscoped (the finalizer's safety net included)
 *   add [1] requiresGrad fwd+bwd       add(a, b).backward() into accumulating leaf grads
 *   add [256] / [4096] / [16384] cpu   f32 outputs of 1 / 16 / 64 KiB (the host allocator's small classes)
 *   matmul 64^3 bf16 cuda:0, no grad   matmul(a, b).dispose() under noGrad
 *   mm 64^3 f32 / bf16 cpu, no grad    the same on the CPU (real oneDNN work: PyTorch does the same)
 *   linear 64x64 bf16 cuda:0 fwd+bwd   linear(x, W, b).backward(g) with W and b requiring grad
 *   conv2d, batchNorm2dRelu, maxPool2d ResNet-101 bottleneck shapes (batch 2, 8x8, channels-last) and
 *   linear 768->2304, layerNorm 768    GPT-2's at a 64-token row, on cuda:0; and add's binding called alone
 *   ResNet-101 / GPT-2 124M step       an eager bf16 training step (bench/host_floor_resnet.ts and
 *                                      bench/host_profile.ts's steps), µs per device op (cudaCensus)
 *
 * CUDA lines need the emulated device in skip mode (docs/host_floor.md: kernels are checked and
 * counted, not run, so the CPU time is the host's): without one the script reruns itself there
 * (build-emu), as the host_* benches do; on a build without it only the CPU lines print.
 *
 *   npx tsx bench/host_op_cost.ts [--quick] [--no-models] [--json FILE]
 */
import { writeFileSync } from 'node:fs';
import { ResNet } from '../models/index.ts';
import {
  add,
  batchNorm2dRelu,
  censusTotals,
  conv2d,
  crossEntropy,
  cudaCensus,
  cudaIsAvailable,
  cudaSynchronize,
  destroyDistributed,
  initDistributed,
  layerNorm,
  linear,
  manualSeed,
  matmul,
  maxPool2d,
  native,
  nn,
  noGrad,
  ones,
  randn,
  SGD,
  type Tensor,
  tensor,
  tidy,
} from '../src/index.ts';
import { Binary } from '../src/ops/kernels.ts';
import { kernelsOn } from '../src/tensor/backend.ts';
import { dtypeCode } from '../src/tensor/dtype.ts';
import { emulated, rerunEmulated, skipMode } from './emu_rerun.ts';
import { gptEngineStep } from './gpu_census_gpt.ts';
import { threadCpuMs } from './thread_cpu.ts';
import { runTorchPeer } from './torch_peer.ts';

const quick = process.argv.includes('--quick');
/** Short rounds, many: the lower quartile of their wall times is what a call costs unpreempted. */
const ROUNDS = quick ? 15 : 41;
const ROUND_MS = quick ? 3 : 5;
const DEV = 'cuda:0';

interface Row {
  name: string;
  /**
   * Tiny ops: wall µs per call, the lower quartile of the rounds (another process's slice inflates a
   * round, never shrinks it). Model steps: main-thread CPU µs per device op, as bench/host_floor_resnet.ts
   * (their wall time also holds waits on the emulator's threads).
   */
  us: number;
  /**
   * Tiny ops: main-thread CPU µs per call over all rounds (schedstat moves at scheduler ticks: rough
   * below ~0.2 s in all; the process's CPU is no use, the emulator's threads poll). Model steps: wall
   * µs, lower quartile of the steps.
   */
  other: number;
  /** PyTorch's µs for the same op, where measured. */
  torch?: number;
}

/** The value a quarter of the way up the sorted list. */
function lowerQuartile(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor((s.length - 1) / 4)];
}

/** Per call of fn: wall µs (lower quartile of ROUNDS rounds of ~ROUND_MS) and main-thread CPU µs (all rounds). */
function perCall(fn: () => void, sync = false): { us: number; other: number } {
  for (let i = 0; i < 50; i++) fn(); // warm-up: compilation, plans, caches
  // Calls per round by wall time, doubling until a batch is long enough to scale from (warm by then).
  let n = 16;
  for (;;) {
    const t0 = performance.now();
    for (let i = 0; i < n; i++) fn();
    const ms = performance.now() - t0;
    if (ms >= ROUND_MS) {
      n = Math.max(1, Math.round((n * ROUND_MS) / ms));
      break;
    }
    n *= 2;
  }
  const wall: number[] = [];
  let cpu = 0;
  for (let r = 0; r < ROUNDS; r++) {
    if (sync) cudaSynchronize(DEV);
    const c = threadCpuMs();
    const t = performance.now();
    for (let i = 0; i < n; i++) fn();
    wall.push(((performance.now() - t) * 1e3) / n);
    cpu += threadCpuMs() - c;
  }
  return { us: lowerQuartile(wall), other: (cpu * 1e3) / (n * ROUNDS) };
}

function tinyOps(rows: Row[], cuda: boolean): void {
  const devices = cuda ? (['cpu', DEV] as const) : (['cpu'] as const);
  for (const dev of devices) {
    const [a, b] = noGrad(() => [randn([1], { device: dev }), randn([1], { device: dev })]);
    rows.push({ name: `add [1] ${dev}`, ...perCall(() => add(a, b).dispose(), dev !== 'cpu') });
    a.dispose();
    b.dispose();
  }
  // Outputs of 1 KiB to 64 KiB: the host allocator's small size classes, with a kernel that still costs little.
  for (const n of [256, 4096, 16384]) {
    const [a, b] = noGrad(() => [randn([n]), randn([n])]);
    rows.push({ name: `add [${n}] cpu`, ...perCall(() => add(a, b).dispose()) });
    a.dispose();
    b.dispose();
  }
  for (const dev of devices) {
    const a = randn([1], { device: dev, requiresGrad: true });
    const b = randn([1], { device: dev, requiresGrad: true });
    rows.push({
      name: `add [1] ${dev}, requiresGrad fwd+bwd`,
      ...perCall(() => {
        const y = add(a, b);
        y.backward();
        y.dispose();
      }, dev !== 'cpu'),
    });
    a.dispose();
    b.dispose();
  }
  const mm = (dev: 'cpu' | typeof DEV, dtype: 'f32' | 'bf16') => {
    const [x, y] = noGrad(() => tidy(() => [randn([64, 64]).to(dtype).to(dev), randn([64, 64]).to(dtype).to(dev)]));
    const r = noGrad(() => perCall(() => matmul(x, y).dispose(), dev !== 'cpu'));
    x.dispose();
    y.dispose();
    return r;
  };
  rows.push({ name: 'mm 64^3 f32 cpu, no grad', ...mm('cpu', 'f32') });
  rows.push({ name: 'mm 64^3 bf16 cpu, no grad', ...mm('cpu', 'bf16') });
  if (!cuda) return;
  rows.push({ name: `matmul 64^3 bf16 ${DEV}, no grad`, ...mm(DEV, 'bf16') });
  const [x, g] = noGrad(() => tidy(() => [randn([64, 64]).to('bf16').to(DEV), ones([64, 64], { dtype: 'bf16', device: DEV })]));
  const w = noGrad(() => tidy(() => randn([64, 64]).to('bf16').to(DEV))).requiresGrad_();
  const bias = noGrad(() => tidy(() => randn([64]).to('bf16').to(DEV))).requiresGrad_();
  rows.push({
    name: `linear 64x64 bf16 ${DEV}, fwd+bwd`,
    ...perCall(() => {
      const y = linear(x, w, bias);
      y.backward(g);
      y.dispose();
    }, true),
  });
  for (const t of [x, g, w, bias]) t.dispose();
}

/** The conv layout ResNet's activations have: channels-last. */
const channelsLast = (t: Tensor): Tensor => noGrad(() => tidy(() => t.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])));

/**
 * The ops of the eager ResNet and GPT steps at shapes they run, forward under noGrad and forward +
 * backward (result disposed each call), and one binding called directly (the addon's share of an add).
 */
function modelOps(rows: Row[]): void {
  const onDev = (shape: number[], dtype: 'bf16' | 'f32', grad = false): Tensor => {
    const t = noGrad(() => tidy(() => randn(shape).to(dtype).to(DEV)));
    if (grad) t.requiresGrad = true;
    return t;
  };
  const run = (name: string, fn: () => void) => rows.push({ name, ...perCall(fn, true) });
  const a1 = onDev([1], 'f32');
  const b1 = onDev([1], 'f32');
  const o1 = noGrad(() => a1.add(b1));
  const kern = kernelsOn(DEV);
  run('add [1] f32 cuda:0, binding alone', () => kern.binaryFlat(Binary.add, dtypeCode('f32'), a1.id, a1.offset, b1.id, b1.offset, o1.id, 0, 1));
  // ResNet-101 bottleneck shapes at batch 2, 8x8: a 3x3 and a 1x1 conv over 128 channels, BN + ReLU, the stem's pool.
  const x = channelsLast(onDev([2, 128, 8, 8], 'bf16', true));
  const w3 = onDev([128, 128, 3, 3], 'bf16', true);
  const w1 = onDev([512, 128, 1, 1], 'bf16', true);
  run('conv2d 3x3 bf16 NHWC, no grad', () => noGrad(() => conv2d(x, w3, null, { padding: 1 }).dispose()));
  run('conv2d 1x1 bf16 NHWC, no grad', () => noGrad(() => conv2d(x, w1).dispose()));
  run('conv2d 3x3 bf16 NHWC, fwd+bwd', () => tidy(() => conv2d(x, w3, null, { padding: 1 }).sum().backward()));
  const rm = onDev([128], 'f32');
  const rv = onDev([128], 'f32');
  const g = onDev([128], 'bf16', true);
  const bt = onDev([128], 'bf16', true);
  const bn = (t: Tensor) => batchNorm2dRelu(t, rm, rv, g, bt, { training: true });
  run('batchNorm2dRelu bf16 NHWC, no grad', () => noGrad(() => bn(x).dispose()));
  run('batchNorm2dRelu bf16 NHWC, fwd+bwd', () => tidy(() => bn(x).sum().backward()));
  run('maxPool2d 3x3/2 bf16 NHWC, no grad', () => noGrad(() => maxPool2d(x, 3, { stride: 2, padding: 1 }).dispose()));
  // GPT-2's shapes at one 64-token row: linear 768 -> 2304 (qkv) and layer norm over 768.
  const h = onDev([64, 768], 'bf16', true);
  const wq = onDev([2304, 768], 'bf16', true);
  const bq = onDev([2304], 'bf16', true);
  const lw = onDev([768], 'bf16', true);
  const lb = onDev([768], 'bf16', true);
  run('linear 768->2304 bf16, no grad', () => noGrad(() => linear(h, wq, bq).dispose()));
  run('linear 768->2304 bf16, fwd+bwd', () => tidy(() => linear(h, wq, bq).sum().backward()));
  run('layerNorm 768 bf16, no grad', () => noGrad(() => layerNorm(h, [768], lw, lb).dispose()));
  for (const t of [a1, b1, o1, x, w3, w1, rm, rv, g, bt, h, wq, bq, lw, lb]) t.dispose();
}

/** Per device op of `step` (the census counts one step's device ops): main-thread CPU µs (all steps) and wall µs (lower quartile of the steps). */
function perDeviceOp(step: () => void, steps: number): { us: number; other: number; ops: number } {
  for (let k = 0; k < 3; k++) step();
  cudaSynchronize(DEV);
  const ops = censusTotals(cudaCensus(step).entries).deviceOps;
  const wall: number[] = [];
  const c0 = threadCpuMs();
  for (let k = 0; k < steps; k++) {
    const t = performance.now();
    step();
    wall.push(((performance.now() - t) * 1e3) / ops);
  }
  return { us: ((threadCpuMs() - c0) * 1e3) / steps / ops, other: lowerQuartile(wall), ops };
}

function resnetStep(rows: Row[]): void {
  manualSeed(0);
  const model = nn.moduleToDevice(new ResNet(101, { numClasses: 10, dtype: 'bf16' }), DEV);
  const opt = new SGD(model.parameters(), { lr: 0.01, momentum: 0.9, weightDecay: 5e-4 });
  const x = noGrad(() => tidy(() => randn([2, 3, 32, 32]).to('bf16').to(DEV)));
  const y = tensor([0, 1], { dtype: 'i64', device: DEV });
  try {
    const r = perDeviceOp(
      () =>
        tidy(() => {
          crossEntropy(model.forward(x), y).backward();
          opt.step();
          opt.zeroGrad();
        }),
      quick ? 10 : 30,
    );
    rows.push({ name: `ResNet-101 bf16 eager step, per device op (${r.ops} ops)`, us: r.us, other: r.other });
  } finally {
    x.dispose();
    y.dispose();
    model.dispose();
  }
}

async function gptStep(rows: Row[]): Promise<void> {
  await initDistributed({ timeoutMs: 30_000 });
  const s = await gptEngineStep({ size: '124M', layers: 12, nEmbd: 768, nHead: 12, seq: 1024, batch: 1, vocab: 50257 });
  try {
    const r = perDeviceOp(() => s.step(), quick ? 10 : 30);
    rows.push({ name: `GPT-2 124M bf16 engine step, per device op (${r.ops} ops)`, us: r.us, other: r.other });
  } finally {
    s.dispose();
    await destroyDistributed();
  }
}

/** PyTorch's µs per call for the CPU lines, by our row name; or why not. */
function torchPeer(): Map<string, number> | string {
  const r = runTorchPeer<{ name: string; us: number }>('torch_host_ops.py', quick ? ['--rounds', String(ROUNDS), '--ms', String(ROUND_MS)] : [], { timeoutMs: 120_000 });
  if (!r.ok) return r.reason;
  const ours: Record<string, string> = {
    'add [1] cpu': 'add [1] cpu',
    'add [1] cpu, requiresGrad fwd+bwd': 'add [1] cpu, requiresGrad fwd+bwd',
    'add [256] cpu': 'add [256] cpu',
    'add [4096] cpu': 'add [4096] cpu',
    'add [16384] cpu': 'add [16384] cpu',
    'mm 64^3 f32 cpu': 'mm 64^3 f32 cpu, no grad',
    'mm 64^3 bf16 cpu': 'mm 64^3 bf16 cpu, no grad',
  };
  return new Map(r.results.filter((p) => ours[p.name]).map((p) => [ours[p.name], p.us]));
}

async function main(cuda: boolean): Promise<void> {
  const hostBench = (native as unknown as { cuda?: { hostBench?: { noop(): void } } }).cuda?.hostBench;
  const floorFn = hostBench ? () => hostBench.noop() : () => void native.liveStorages();
  const rows: Row[] = [];
  const f = perCall(floorFn);
  const floor = f.us;
  rows.push({ name: hostBench ? 'N-API no-op (hostBench.noop): the floor' : 'N-API call (liveStorages): the floor', ...f });
  tinyOps(rows, cuda);
  if (cuda) modelOps(rows);
  if (cuda && !process.argv.includes('--no-models')) {
    resnetStep(rows);
    await gptStep(rows);
  }
  const peer = torchPeer();
  if (typeof peer !== 'string') for (const r of rows) r.torch = peer.get(r.name);
  const w = Math.max(...rows.map((r) => r.name.length));
  console.log(
    `ops: µs = wall per call (lower quartile of ${ROUNDS} rounds of ~${ROUND_MS} ms), other = main-thread CPU per call; ` +
      `model steps: µs = main-thread CPU per device op, other = wall (lower quartile of the steps)${cuda ? '; cuda:0 emulated in skip mode' : ''}`,
  );
  console.log(`${'op'.padEnd(w)}  ${'µs'.padStart(8)}  ${'other'.padStart(8)}  ${'x floor'.padStart(8)}  ${'torch µs'.padStart(8)}  ${'x torch'.padStart(7)}`);
  for (const r of rows) {
    const t = r.torch === undefined ? ['', ''] : [r.torch.toFixed(2), (r.us / r.torch).toFixed(2)];
    console.log(
      `${r.name.padEnd(w)}  ${r.us.toFixed(2).padStart(8)}  ${r.other.toFixed(2).padStart(8)}  ${(r.us / floor).toFixed(1).padStart(8)}  ${t[0].padStart(8)}  ${t[1].padStart(7)}`,
    );
  }
  if (typeof peer === 'string') console.log(`torch peer: skipped (${peer})`);
  const j = process.argv.indexOf('--json');
  if (j >= 0) writeFileSync(process.argv[j + 1], JSON.stringify({ floorUs: floor, rounds: ROUNDS, roundMs: ROUND_MS, rows }, null, 1));
}

if (cudaIsAvailable() && emulated() && skipMode()) await main(true);
else if (cudaIsAvailable() || !rerunEmulated()) await main(false);
