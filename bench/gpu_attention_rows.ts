/**
 * The fa2 attention kernels at 16 query rows per warp (the default) against 32 (two m16 tiles per
 * warp, 128-query blocks, each K/V fragment read once for both), in one process on one warm device,
 * the two timed in alternating rounds (which goes first alternates too): the forward
 * (attention_fa2.cu, MESHTRAIN_FA2_ROWS) in bf16 at GPT-2 124M's shape [8, 12, 1024, 64] causal and
 * not and at head dim 32 causal (32 rows is built for head dims up to 64), then the backward with
 * its dQ kernel at 16 or 32 rows (attention_fa2_bwd.cu, MESHTRAIN_FA2_BWD_ROWS; head dim 64 only;
 * the time includes the row-dot and dK/dV kernels, the same in both). Per line: the median and
 * lower quartile of the per-round ratio (16-row ms / 32-row ms: > 1 means 32 rows is faster),
 * whether the two give the same numbers on the device (they should: test/unit/cuda_attention_fa2*
 * say why), and median ms of each. The GPT-2 causal forward line comes last (gpu_check's row).
 *   node --import tsx bench/gpu_attention_rows.ts [--smoke]
 */
import { cudaIsAvailable, noGrad, randn, scaledDotProductAttention, sum, type Tensor, tidy } from '../src/index.ts';
import { withAttentionFamily, withFa2BwdRows, withFa2Rows } from '../test/helpers/attention_family.ts';
import { DEV, deviceSeconds } from './gpu_timing.ts';
import { median } from './timing.ts';

const smoke = process.argv.includes('--smoke');
/** [B, H, T, D, causal]: the GPT-2 causal shape last. */
const SHAPES: [number, number, number, number, boolean][] = smoke
  ? [[1, 2, 128, 32, true], [1, 2, 200, 64, false], [1, 2, 200, 64, true]]
  : [[8, 12, 1024, 32, true], [8, 12, 1024, 64, false], [8, 12, 1024, 64, true]];
/** Calls per timed group, rounds (each times both variants), warm-up calls of each. */
const [ITERS, ROUNDS, WARMUP] = smoke ? [1, 2, 0] : [10, 11, 3];

const quantile = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.floor(p * (xs.length - 1))];

/** Numbers that differ between two equal-length arrays (NaN equal to NaN). */
function differing(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let n = 0;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i] && !(Number.isNaN(a[i]) && Number.isNaN(b[i]))) n++;
  return n;
}

/**
 * `run(rows)` at 16 and 32 rows, ROUNDS alternating rounds of ITERS calls each: the line for it.
 * `flops` per call; `differ`: elements whose values differ between the two.
 */
function compare(what: string, flops: number, differ: number, run: (rows: string) => void): string {
  const group = (rows: string) => deviceSeconds(() => tidy(() => { for (let i = 0; i < ITERS; i++) run(rows); })) / ITERS;
  for (let w = 0; w < WARMUP; w++) for (const rows of ['16', '32']) tidy(() => run(rows));
  const t: Record<string, number[]> = { '16': [], '32': [] };
  for (let r = 0; r < ROUNDS; r++) for (const rows of r % 2 ? ['32', '16'] : ['16', '32']) t[rows].push(group(rows));
  const ratios = t['16'].map((x, i) => x / t['32'][i]);
  const [m16, m32] = [median(t['16']), median(t['32'])];
  const tf = (s: number) => (flops / s / 1e12).toFixed(1);
  return (
    `${what}: 16/32 rows ms ratio ${median(ratios).toFixed(3)} median, ${quantile(ratios, 0.25).toFixed(3)} lower quartile (${ROUNDS} rounds); ` +
    `${differ ? `${differ} elements differ` : 'same numbers'}; 16 rows/warp ${(m16 * 1e3).toFixed(3)} ms (${tf(m16)} TFLOP/s), ` +
    `32 rows/warp ${(m32 * 1e3).toFixed(3)} ms (${tf(m32)} TFLOP/s)`
  );
}

if (!cudaIsAvailable()) {
  console.log('gpu_attention_rows: skipped: no usable CUDA device');
} else {
  const lines: string[] = [];
  withAttentionFamily('fa2', () => {
    for (const [B, H, T, D, causal] of SHAPES) {
      tidy(() => {
        const [q, k, v] = [0, 1, 2].map(() => randn([B, H, T, D], { device: DEV }).to('bf16').requiresGrad_(true));
        const forward = (rows: string): Tensor => withFa2Rows(rows, () => noGrad(() => scaledDotProductAttention(q, k, v, { causal })));
        const shape = `bf16 [${B}, ${H}, ${T}, ${D}]${causal ? ' causal' : ''}`;
        // The causal forward counted as half of its two T x T x D products (bench/gpu_attention.ts).
        const flops = ((causal ? 2 : 4) * B * H * T * T * D);
        const fwdLine = compare(`fa2 forward ${shape}`, flops, differing(forward('16').toList(), forward('32').toList()), (r) => void forward(r));
        if (D === 64 && causal) {
          // One forward, then backward() again and again on its graph with the dQ kernel's rows switched.
          const loss = sum(scaledDotProductAttention(q, k, v, { causal }));
          const backward = (rows: string) => {
            for (const x of [q, k, v]) {
              x.grad?.dispose();
              x.grad = null;
            }
            withFa2BwdRows(rows, () => loss.backward(undefined, { retainGraph: true }));
          };
          const dq = (rows: string) => {
            backward(rows);
            return (q.grad as Tensor).toList();
          };
          lines.push(compare(`fa2 backward (dQ kernel's rows) ${shape}`, 2.5 * flops, differing(dq('16'), dq('32')), backward));
        }
        lines.push(fwdLine);
      });
    }
  });
  for (const l of lines) console.log(l);
}
