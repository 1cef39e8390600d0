/**
 * Host cost of single ops in tight loops, as main-thread CPU µs per call (bench/thread_cpu.ts: a
 * loaded machine stretches wall time, not this): the ops of the eager ResNet and GPT steps at the
 * shapes they run, forward only under noGrad and forward + backward, result disposed each call.
 * On the emulated device in skip mode (docs/host_floor.md) that is the host path alone: the
 * TypeScript wrapper, N-API, the addon's checks and allocator, and the emulator's bookkeeping.
 * Without a device it reruns itself there (build-emu). Median of rounds.
 *
 *   npx tsx bench/host_op_loop.ts [--round-ms 150] [--rounds 7] [--only conv]
 */
import {
  add,
  batchNorm2dRelu,
  conv2d,
  cudaIsAvailable,
  cudaSynchronize,
  layerNorm,
  linear,
  matmul,
  maxPool2d,
  noGrad,
  randn,
  type Tensor,
  tidy,
} from '../src/index.ts';
import { Binary } from '../src/ops/kernels.ts';
import { kernelsOn } from '../src/tensor/backend.ts';
import { dtypeCode } from '../src/tensor/dtype.ts';
import { emulated, rerunEmulated, skipMode } from './emu_rerun.ts';
import { threadCpuMs } from './thread_cpu.ts';
import { median } from './timing.ts';

const arg = (name: string, dflt: number): number => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? Number(process.argv[i + 1]) : dflt;
};
const only = process.argv.includes('--only') ? process.argv[process.argv.indexOf('--only') + 1] : '';
const DEV = 'cuda:0';

/**
 * Main-thread CPU µs per call of fn: median over rounds of at least `roundMs` of CPU each (the
 * thread's CPU clock advances in scheduler ticks), after a warm-up round of `warmCalls` calls.
 */
function perCall(warmCalls: number, rounds: number, roundMs: number, fn: () => void): number {
  const round = (calls: number) => {
    const c0 = threadCpuMs();
    for (let i = 0; i < calls; i++) fn();
    const ms = threadCpuMs() - c0;
    cudaSynchronize(DEV);
    return ms / calls;
  };
  const warm = Math.max(round(warmCalls), 1e-4);
  const calls = Math.ceil(roundMs / warm);
  return median(Array.from({ length: rounds }, () => round(calls))) * 1e3;
}

const dev = (shape: number[], dtype: 'bf16' | 'f32', grad = false): Tensor => {
  const t = noGrad(() => tidy(() => randn(shape).to(dtype).to(DEV)));
  if (grad) t.requiresGrad = true;
  return t;
};

/** The conv layout ResNet's activations have: channels-last. */
const channelsLast = (t: Tensor): Tensor => noGrad(() => tidy(() => t.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])));

function main(): void {
  const roundMs = arg('--round-ms', 150);
  const rounds = arg('--rounds', 7);
  const rows: [string, number][] = [];
  const run = (name: string, fn: () => void) => {
    if (!only || name.includes(only)) rows.push([name, perCall(500, rounds, roundMs, fn)]);
  };
  const a1 = dev([1], 'f32');
  const b1 = dev([1], 'f32');
  const o1 = noGrad(() => a1.add(b1));
  const f32 = dtypeCode('f32');
  const kern = kernelsOn(DEV);
  run('add [1] f32, binding alone', () => kern.binaryFlat(Binary.add, f32, a1.id, a1.offset, b1.id, b1.offset, o1.id, 0, 1));
  run('add [1] f32, noGrad', () => noGrad(() => add(a1, b1).dispose()));
  const m64a = dev([64, 64], 'bf16');
  const m64b = dev([64, 64], 'bf16');
  run('matmul 64^3 bf16, noGrad', () => noGrad(() => matmul(m64a, m64b).dispose()));
  // ResNet-101 bottleneck shapes at batch 2, 8x8: a 3x3 conv over 128 channels, BN + ReLU, the stem's pool.
  const x = channelsLast(dev([2, 128, 8, 8], 'bf16', true));
  const w3 = dev([128, 128, 3, 3], 'bf16', true);
  const w1 = dev([512, 128, 1, 1], 'bf16', true);
  run('conv2d 3x3 bf16 NHWC, noGrad', () => noGrad(() => conv2d(x, w3, null, { padding: 1 }).dispose()));
  run('conv2d 1x1 bf16 NHWC, noGrad', () => noGrad(() => conv2d(x, w1).dispose()));
  run('conv2d 3x3 bf16 NHWC, fwd + bwd', () => tidy(() => conv2d(x, w3, null, { padding: 1 }).sum().backward()));
  const rm = noGrad(() => dev([128], 'f32'));
  const rv = noGrad(() => dev([128], 'f32'));
  const g = dev([128], 'bf16', true);
  const bt = dev([128], 'bf16', true);
  const bn = (t: Tensor) => batchNorm2dRelu(t, rm, rv, g, bt, { training: true });
  run('batchNorm2dRelu bf16 NHWC, noGrad', () => noGrad(() => bn(x).dispose()));
  run('batchNorm2dRelu bf16 NHWC, fwd + bwd', () => tidy(() => bn(x).sum().backward()));
  run('maxPool2d 3x3/2 bf16 NHWC, noGrad', () => noGrad(() => maxPool2d(x, 3, { stride: 2, padding: 1 }).dispose()));
  // GPT-2's shapes at one 64-token row: linear 768 -> 2304 (qkv) and layer norm over 768.
  const h = dev([64, 768], 'bf16', true);
  const wq = dev([2304, 768], 'bf16', true);
  const bq = dev([2304], 'bf16', true);
  const lw = dev([768], 'bf16', true);
  const lb = dev([768], 'bf16', true);
  run('linear 768->2304 bf16, noGrad', () => noGrad(() => linear(h, wq, bq).dispose()));
  run('linear 768->2304 bf16, fwd + bwd', () => tidy(() => linear(h, wq, bq).sum().backward()));
  run('layerNorm 768 bf16, noGrad', () => noGrad(() => layerNorm(h, [768], lw, lb).dispose()));
  for (const t of [a1, b1, o1, m64a, m64b, x, w3, w1, rm, rv, g, bt, h, wq, bq, lw, lb]) t.dispose();

  const w = Math.max(...rows.map((r) => r[0].length));
  console.log(`main-thread CPU µs per call (median of ${rounds} rounds of >= ${roundMs} ms)`);
  for (const [name, us] of rows) console.log(`${name.padEnd(w)}  ${us.toFixed(2).padStart(8)}`);
}

if (cudaIsAvailable() && emulated() && skipMode()) main();
else if (!rerunEmulated()) console.log('skipped: needs the emulated device in skip mode (build-emu)');
