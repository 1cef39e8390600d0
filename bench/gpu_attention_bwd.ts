/**
 * The attention backward alone, WMMA (attention_tc.cu) against FA2-style mma.sync
 * (attention_fa2_bwd.cu), in one process on one warm device: one forward, then repeated
 * backward() calls (graph retained) with MESHTRAIN_ATTENTION switched per call, so both read the
 * same o and lse. Causal bf16 at GPT-2 124M's shape [8, 12, 1024, 64] and at head dim 128
 * [4, 12, 1024, 128]. Each time includes the row dot(dO, o) kernel and the loss's gradient fill
 * that every backward pays. TFLOP/s count the causal backward as 2.5 causal forwards
 * (flash-attention's convention, as bench/gpu_attention.ts). Also checks on the device that the
 * two give the same gradients: max |fa2 − WMMA| over max |WMMA| (rounding only: a few 1e-3 at bf16).
 *   node --import tsx bench/gpu_attention_bwd.ts [--smoke]
 */
import { cudaIsAvailable, randn, scaledDotProductAttention, sum, type Tensor, tidy } from '../src/index.ts';
import { withAttentionFamily } from '../test/helpers/attention_family.ts';
import { DEV, timeDevice } from './gpu_timing.ts';

const smoke = process.argv.includes('--smoke');
const SHAPES = smoke ? [[1, 2, 128, 64], [1, 2, 128, 128]] : [[8, 12, 1024, 64], [4, 12, 1024, 128]];
/** Calls per round, rounds, warm-up calls: one each on the emulated device (plumbing only). */
const [ITERS, ROUNDS, WARMUP] = smoke ? [1, 1, 0] : [3, 5, 3];

function maxRel(a: Float32Array | number[], b: Float32Array | number[]): number {
  let d = 0;
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    d = Math.max(d, Math.abs(a[i] - b[i]));
    m = Math.max(m, Math.abs(b[i]));
  }
  return Number.isFinite(d) ? d / Math.max(m, 1e-30) : Number.POSITIVE_INFINITY;
}

if (!cudaIsAvailable()) {
  console.log('gpu_attention_bwd: skipped: no usable CUDA device');
} else {
  const lines: string[] = [];
  for (const [B, H, T, D] of SHAPES) {
    tidy(() => {
      const leaves = [0, 1, 2].map(() => randn([B, H, T, D], { device: DEV }).to('bf16').requiresGrad_(true));
      const loss = withAttentionFamily('tc', () => sum(scaledDotProductAttention(leaves[0], leaves[1], leaves[2], { causal: true })));
      const backward = (family: string) => {
        for (const x of leaves) {
          x.grad?.dispose();
          x.grad = null;
        }
        withAttentionFamily(family, () => loss.backward(undefined, { retainGraph: true }));
      };
      const grads = (family: string) => {
        backward(family);
        return leaves.map((x) => Float32Array.from((x.grad as Tensor).to('f32').toArray() as Float32Array));
      };
      const [gTc, gFa2] = [grads('tc'), grads('fa2')];
      const apart = Math.max(...gTc.map((g, i) => maxRel(gFa2[i], g)));
      const time = (family: string) => timeDevice(ITERS, ROUNDS, () => backward(family), WARMUP);
      const [tc, fa2] = [time('tc'), time('fa2')];
      const flops = 2.5 * ((4 * B * H * T * T * D) / 2);
      const tf = (s: number) => (flops / s / 1e12).toFixed(1);
      lines.push(
        `attention backward bf16 [${B}, ${H}, ${T}, ${D}] causal: WMMA ${(tc * 1e3).toFixed(3)} ms (${tf(tc)} TFLOP/s), ` +
          `fa2 ${(fa2 * 1e3).toFixed(3)} ms (${tf(fa2)} TFLOP/s), speedup ${(tc / fa2).toFixed(2)}x; fa2 vs WMMA gradients ${apart.toExponential(2)}`,
      );
    });
  }
  // The GPT-2 shape last: gpu_check's summary row takes the final line.
  for (const l of lines.reverse()) console.log(l);
}
