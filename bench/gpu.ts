/**
 * GPU benchmark (partial; issue 8 item 5): meshtrain's matmul against cuBLASLt called directly in
 * the same run (goal: ratio >= 0.95), and a GPT-2 124M bf16 training step on one GPU (tokens/s
 * and MFU against the bf16 dense peak, 989 TFLOP/s on H100 SXM and H200 unless --peak says).
 * Nothing here has been measured yet: run it on a GPU machine (scripts/gpu_check.sh with
 * MT_BENCH=1, or node --import tsx bench/gpu.ts [--quick] [--peak 989e12]).
 */
import { GPT, gptConfig, gptParamCount } from '../models/index.ts';
import { AdamW, crossEntropy, cudaIsAvailable, cudaSynchronize, matmul, native, nn, noGrad, rand, randn, tidy } from '../src/index.ts';
import { dtypeCode } from '../src/tensor/dtype.ts';
import { median } from './timing.ts';

const DEV = 'cuda:0';
const quick = process.argv.includes('--quick');
const peakAt = process.argv.indexOf('--peak');
const peak = peakAt > 0 ? Number(process.argv[peakAt + 1]) : 989e12;

function row(cells: (string | number)[]): string {
  return cells.map((c, i) => String(c).padStart(i === 0 ? 22 : 12)).join('');
}

/** Median seconds per call of fn over `rounds` groups of `iters` back-to-back calls, synchronized at the ends. */
function timeDevice(iters: number, rounds: number, fn: () => void): number {
  fn();
  cudaSynchronize(DEV);
  const t: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const t0 = performance.now();
    for (let i = 0; i < iters; i++) fn();
    cudaSynchronize(DEV);
    t.push((performance.now() - t0) / 1000 / iters);
  }
  return median(t);
}

if (!cudaIsAvailable()) {
  console.log(`bench/gpu: no usable CUDA device (${native.deviceInfo().cudaStatus}); nothing measured`);
  process.exit(0);
}

console.log(row(['matmul (M=N=K)', 'ours ms', 'cuBLASLt ms', 'ratio', 'TFLOP/s']));
for (const dtype of ['bf16', 'f32'] as const) {
  for (const n of quick ? [4096] : [2048, 4096, 8192]) {
    const iters = n >= 8192 ? 5 : 20;
    // Random operands (zeros run faster than real data and hide unwritten outputs).
    const a = noGrad(() => randn([n, n]).to(dtype).to(DEV));
    const b = noGrad(() => randn([n, n]).to(dtype).to(DEV));
    const out = noGrad(() => randn([n, n]).to(dtype).to(DEV));
    const ours = timeDevice(iters, 5, () => tidy(() => void matmul(a, b)));
    const peer = native.benchCublasLtMatmul(dtypeCode(dtype), a.id, b.id, out.id, n, n, n, iters, 5) as number;
    console.log(row([`${dtype} ${n}`, (ours * 1e3).toFixed(3), (peer * 1e3).toFixed(3), (peer / ours).toFixed(3), ((2 * n ** 3) / ours / 1e12).toFixed(1)]));
    for (const t of [a, b, out]) t.dispose();
  }
}

{
  const batch = quick ? 4 : 8;
  const seq = 1024;
  const config = gptConfig('124M', { dtype: 'bf16', dropout: 0 });
  const model = nn.moduleToDevice(new GPT(config), DEV);
  const optimizer = new AdamW(model.parameters(), { lr: 1e-4, weightDecay: 0.1 });
  const step = (): number =>
    tidy(() => {
      const ids = noGrad(() => rand([batch, seq]).mul(config.vocabSize).to('i32').to(DEV));
      const targets = noGrad(() => rand([batch * seq]).mul(config.vocabSize).to('i64').to(DEV));
      const logits = model.forward(ids);
      const loss = crossEntropy(logits.reshape([batch * seq, config.vocabSize]), targets);
      loss.backward();
      optimizer.step();
      optimizer.zeroGrad();
      return loss.item();
    });
  for (let i = 0; i < 2; i++) step();
  const times: number[] = [];
  for (let i = 0; i < (quick ? 3 : 5); i++) {
    const t0 = performance.now();
    step();
    times.push((performance.now() - t0) / 1000);
  }
  const s = median(times);
  const tokens = batch * seq;
  const params = gptParamCount(config);
  // 6 N per token for the weights, plus attention's 12 L T d (scores and values, forward and backward).
  const flops = tokens * (6 * params + 12 * config.nLayer * seq * config.nEmbd);
  console.log(`\nGPT-2 124M bf16, batch ${batch} x ${seq}: ${(s * 1e3).toFixed(1)} ms/step, ${(tokens / s).toFixed(0)} tokens/s, ` +
    `MFU ${((flops / s / peak) * 100).toFixed(1)}% of ${(peak / 1e12).toFixed(0)} TFLOP/s (goal >= 40%)`);
}
