/**
 * The host cost of an eager ResNet bf16 training step (forward, cross-entropy, backward, SGD with
 * momentum, zero-grad: the step of bench/gpu_resnet_copies.ts) per device op. On the emulated
 * device in skip mode (docs/host_floor.md) the main thread's CPU time per step is the host cost:
 * kernels are checked and counted, not run, so the batch and image size only change shapes.
 * Without a device it reruns itself there (build-emu). Not meant for a GPU (it would time
 * max(host, device)); bench:host_floor and bench:host_profile cover the real driver.
 *   npx tsx bench/host_floor_resnet.ts [--depth 101] [--batch 2] [--size 32] [--steps 50] [--warmup 3]
 */
import { ResNet } from '../models/index.ts';
import { censusTotals, crossEntropy, cudaCensus, cudaIsAvailable, cudaSynchronize, manualSeed, nn, noGrad, randn, SGD, tensor, tidy } from '../src/index.ts';
import { emulated, rerunEmulated, skipMode } from './emu_rerun.ts';
import { threadCpuMs } from './thread_cpu.ts';

const arg = (name: string, dflt: number): number => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? Number(process.argv[i + 1]) : dflt;
};

function main(): void {
  const depth = arg('--depth', 101) as 18 | 34 | 50 | 101 | 152;
  const batch = arg('--batch', 2);
  const size = arg('--size', 32);
  const steps = arg('--steps', 50);
  const warmup = arg('--warmup', 3);
  const dev = 'cuda:0';
  manualSeed(0);
  const model = nn.moduleToDevice(new ResNet(depth, { numClasses: 10, dtype: 'bf16' }), dev);
  const opt = new SGD(model.parameters(), { lr: 0.01, momentum: 0.9, weightDecay: 5e-4 });
  const x = noGrad(() => tidy(() => randn([batch, 3, size, size]).to('bf16').to(dev)));
  const y = tensor(Array.from({ length: batch }, (_, i) => i % 10), { dtype: 'i64', device: dev });
  const step = () =>
    tidy(() => {
      crossEntropy(model.forward(x), y).backward();
      opt.step();
      opt.zeroGrad();
    });
  try {
    for (let k = 0; k < warmup; k++) step();
    cudaSynchronize(dev);
    const ops = censusTotals(cudaCensus(step).entries).deviceOps;
    const c0 = threadCpuMs();
    for (let k = 0; k < steps; k++) step();
    const ms = (threadCpuMs() - c0) / steps;
    // The last line is the key.
    console.log(
      `ResNet-${depth} bf16 batch ${batch} ${size}x${size} eager step, emulated skip mode: main-thread CPU ${ms.toFixed(2)} ms/step over ${steps} steps, ` +
        `${ops} device ops, ${((ms * 1e3) / ops).toFixed(2)} µs/op`,
    );
  } finally {
    x.dispose();
    y.dispose();
    model.dispose();
  }
}

if (cudaIsAvailable() && emulated() && skipMode()) main();
else if (!rerunEmulated()) console.log('skipped: needs the emulated device in skip mode (build-emu)');
