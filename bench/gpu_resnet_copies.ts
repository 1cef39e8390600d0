/**
 * The ResNet-101 bf16 training step (CIFAR shape, batch 128, SGD with momentum: bench/gpu.ts part
 * (c)) as it runs now against the same step with the native flags batchNormAffine16 and
 * conv2dFilterNhwc masked, i.e. with the copies they removed: batch norm's weight/bias casts,
 * num_batches_tracked's f64 round trip, and a 3x3 filter's NHWC copy in backward-data too. (1x1
 * filters are read in place either way: that change has no flag.) Prints device ops per step
 * (census) and device ms per step, rounds alternating which goes first, and the ratio.
 * `--flags batchNormRelu` masks other native flags instead: that one puts back the separate ReLU,
 * residual-add and ReLU-backward launches that batch norm's fused epilogue removed.
 *   node --import tsx bench/gpu_resnet_copies.ts [--smoke] [--flags a,b]   (smoke: ResNet-18, batch 2, one round)
 */
import { censusTotals, cudaCensus, cudaIsAvailable, native } from '../src/index.ts';
import { resnetBenchStep } from './gpu_resnet.ts';
import { deviceSeconds } from './gpu_timing.ts';
import { median } from './timing.ts';

const smoke = process.argv.includes('--smoke');
const [depth, batch, rounds, steps] = smoke ? [18, 2, 1, 1] : [101, 128, 6, 5];
const flagsAt = process.argv.indexOf('--flags');
const FLAGS = flagsAt > 0 ? (process.argv[flagsAt + 1] ?? '').split(',') : ['batchNormAffine16', 'conv2dFilterNhwc'];
const masked = flagsAt > 0 ? `${FLAGS.join('+')} masked` : 'with the copies';

if (!cudaIsAvailable()) {
  console.log('gpu_resnet_copies: skipped: no usable CUDA device');
} else {
  const cuda = native.cuda as Record<string, unknown>;
  const saved = FLAGS.map((f) => cuda[f]);
  const missing = FLAGS.filter((f) => cuda[f] !== true);
  if (missing.length) throw new Error(`gpu_resnet_copies: the addon has no native flag ${missing.join(', ')} (--flags takes a comma-separated list)`);
  const use = (now: boolean) => FLAGS.forEach((f, i) => (cuda[f] = now ? saved[i] : false));
  const bench = resnetBenchStep('bf16', batch, depth as 18 | 101);
  const step = bench.step;
  try {
    const ops: Record<string, number> = {};
    const ms: Record<string, number[]> = { now: [], masked: [] };
    for (const now of [true, false]) {
      use(now);
      step(); // warm: plans, allocator
      ops[now ? 'now' : 'masked'] = censusTotals(cudaCensus(step).entries).deviceOps;
    }
    for (let r = 0; r < rounds; r++) {
      for (const now of r % 2 === 0 ? [true, false] : [false, true]) {
        use(now);
        step();
        for (let k = 0; k < steps; k++) ms[now ? 'now' : 'masked'].push(deviceSeconds(step) * 1e3);
      }
    }
    const a = median(ms.now);
    const b = median(ms.masked);
    // Now first, then masked; the last line stays under gpu_check's 160 characters.
    console.log(`ResNet-${depth} bf16 batch ${batch} step, now vs ${masked} (medians of ${ms.now.length} steps):`);
    console.log(
      `${ops.now} vs ${ops.masked} device ops, ${a.toFixed(2)} vs ${b.toFixed(2)} ms, ` +
        `${((batch / a) * 1e3).toFixed(0)} vs ${((batch / b) * 1e3).toFixed(0)} img/s, ratio ${(b / a).toFixed(3)}`,
    );
  } finally {
    use(true);
    bench.dispose();
  }
}
