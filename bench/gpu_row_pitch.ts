/**
 * The padded row pitch of odd-width products (src/ops/row_pitch.ts) on GPT-2's LM head, on and
 * off (MESHTRAIN_PAD_LD=0), in one process on one GPU:
 *  1. the head's three products alone, bf16, x [8192, 768], wte [50257, 768]: forward logits =
 *     x . wteᵀ, dgrad g . wte, wgrad gᵀ . x, with g laid out as the forward wrote the logits;
 *  2. GPT-2 124M bf16 training steps at batch 8 x 1024 (bench/gpu_gpt.ts), vocabulary 50257, pitch
 *     on then off (same seed, batches and model).
 * Expected on an H100/H200: ~10 s in all; the pitch-on step near the vocab-50304 row of bench (b).
 * --smoke: small sizes, one step, for the emulated device (timings mean nothing).
 *   node --import tsx bench/gpu_row_pitch.ts [--smoke]
 */
import { cudaIsAvailable, linear, matmul, noGrad, type RowPitchMode, randn, type Tensor, tidy, transpose, withRowPitchMode } from '../src/index.ts';
import { paddedPitch, rowPitchOf } from '../src/ops/row_pitch.ts';
import { benchGpt } from './gpu_gpt.ts';
import { DEV, timeDevice } from './gpu_timing.ts';

const smoke = process.argv.includes('--smoke');

/** Milliseconds of the head's forward, dgrad and wgrad products under `mode`, and the logits' row pitch. */
function headProducts(mode: RowPitchMode, M: number, V: number, C: number): { ms: number[]; pitch: number } {
  return withRowPitchMode(mode, () =>
    noGrad(() =>
      tidy(() => {
        const x = randn([M, C], { dtype: 'bf16', device: DEV });
        const w = randn([V, C], { dtype: 'bf16', device: DEV });
        const g = linear(x, w); // the logits' layout stands in for their gradient's (cross-entropy keeps it)
        const gT = transpose(g, 0, 1);
        const iters = smoke ? 1 : 10;
        const rounds = smoke ? 1 : 5;
        const ms = [() => linear(x, w), () => matmul(g, w), () => matmul(gT, x)].map(
          (f) => timeDevice(iters, rounds, () => tidy(() => void f()), smoke ? 1 : 3) * 1e3,
        );
        return { ms, pitch: rowPitchOf(g as Tensor) };
      }),
    ),
  );
}

if (!cudaIsAvailable()) {
  console.log('bench/gpu_row_pitch: skipped: no usable CUDA device');
} else {
  const [M, V, C] = smoke ? [64, 1031, 32] : [8192, 50257, 768];
  const mode: RowPitchMode = smoke ? 'all' : 'auto';
  console.log(`row pitch of [${M}, ${V}] bf16 products: ${withRowPitchMode(mode, () => paddedPitch(M, V, 'bf16', DEV))} elements (${mode})`);
  const on = headProducts(mode, M, V, C);
  const off = headProducts('off', M, V, C);
  const names = ['forward x.wT', 'dgrad g.w', 'wgrad gT.x'];
  const flops = 2 * M * V * C;
  for (let i = 0; i < 3; i++) {
    const tf = (ms: number) => (flops / (ms * 1e-3) / 1e12).toFixed(0);
    console.log(
      `  ${names[i].padEnd(13)} pitch ${on.pitch}: ${on.ms[i].toFixed(3)} ms (${tf(on.ms[i])} TF/s)   pitch ${off.pitch}: ${off.ms[i].toFixed(3)} ms (${tf(off.ms[i])} TF/s)   off/on ${(off.ms[i] / on.ms[i]).toFixed(2)}`,
    );
  }
  const steps = smoke ? 1 : 6;
  const step = (m: RowPitchMode) => withRowPitchMode(m, () => (smoke ? benchGpt(4, 16, steps, 'tiny') : benchGpt(8, 1024, steps)));
  const a = step(mode);
  const b = step('off');
  const headMs = (r: number[]) => r.reduce((s, v) => s + v, 0);
  console.log(
    `GPT-2 ${smoke ? 'tiny (vocab 64: no pitch)' : '124M'} bf16${smoke ? '' : ` vocab ${V}`}: pitch on ${(a.stepS * 1e3).toFixed(1)} ms/step, off ${(b.stepS * 1e3).toFixed(1)} ms/step ` +
      `(off/on ${(b.stepS / a.stepS).toFixed(3)}); head products on ${headMs(on.ms).toFixed(2)} ms, off ${headMs(off.ms).toFixed(2)} ms; loss ${a.loss.toFixed(3)} / ${b.loss.toFixed(3)}`,
  );
}
