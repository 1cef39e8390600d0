/**
 * CPU attention, forward + backward from a fused qkv projection: qkvAttention's fused CPU kernels
 * (native/cpu/attention.cc, MESHTRAIN_ATTENTION_CPU=fused: operands read and gradients written in
 * place, no [T, T] buffer) against the composed ops the CPU runs by default (split, two oneDNN
 * matmuls around the scaled causal softmax, the [T, T] probabilities kept for backward, layout
 * copies). Medians of a few steps; the ratio is the composed time over the fused one. Shapes:
 * GPT-2 124M's heads (12 of 64) at a small batch.
 *   npx tsx bench/cpu_attention.ts [--T 256] [--batch 2] [--reps 5]
 */
import {
  type DType, mul, noGrad, qkvAttention, randn, reshape, scaledDotProductAttention, split, sum, type Tensor, tidy, transpose,
} from '../src/index.ts';

const arg = (name: string, dflt: number) => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? Number(process.argv[i + 1]) : dflt;
};

function composed(qkv: Tensor, H: number): Tensor {
  const [B, T, W] = qkv.shape;
  const C = W / 3;
  const heads = (t: Tensor) => transpose(reshape(t, [B, T, H, C / H]), 1, 2);
  const [q, k, v] = split(qkv, C, -1).map(heads);
  return reshape(transpose(scaledDotProductAttention(q, k, v, { causal: true }), 1, 2), [B, T, C]);
}

function median(f: () => void, reps: number): number {
  f();
  const ts: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    f();
    ts.push(performance.now() - t0);
  }
  return ts.sort((a, b) => a - b)[reps >> 1];
}

const [B, T, H, D, reps] = [arg('--batch', 2), arg('--T', 256), 12, 64, arg('--reps', 5)];
console.log(`CPU attention fwd+bwd, qkv [${B}, ${T}, ${3 * H * D}], ${H} heads of ${D}, causal (ms, median of ${reps})`);
for (const dtype of ['f32', 'bf16'] as DType[]) {
  const x = noGrad(() => randn([B, T, 3 * H * D]).to(dtype));
  const w = noGrad(() => randn([B, T, H * D]).to(dtype));
  const step = (f: (t: Tensor, h: number) => Tensor) => () =>
    tidy(() => {
      const leaf = x.detach().requiresGrad_(true);
      sum(mul(f(leaf, H), w)).backward();
    });
  process.env.MESHTRAIN_ATTENTION_CPU = 'fused';
  const fused = median(step(qkvAttention), reps);
  delete process.env.MESHTRAIN_ATTENTION_CPU;
  const peer = median(step(composed), reps);
  console.log(`${dtype.padEnd(6)} fused ${fused.toFixed(1).padStart(8)}   composed ${peer.toFixed(1).padStart(8)}   ratio ${(peer / fused).toFixed(2)}`);
}
