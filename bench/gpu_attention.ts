/**
 * Fused causal attention at GPT-2 124M's shape (batch 8, 12 heads, T 1024, head dim 64, bf16):
 * forward and forward + backward on the device, and the TFLOP/s they reach (the causal forward
 * counted as 2·B·H·T²·D FLOPs: two T×T×D products, half of them masked; the backward as 2.5
 * forwards, flash-attention's convention). Which kernels run follows MESHTRAIN_ATTENTION (unset or
 * `cudnn`: cuDNN's fused attention graphs, fa2 where cuDNN refuses; `fa2`: the mma.sync kernels where
 * they apply; `tc`: the WMMA ones; `simt`: the CUDA-core kernels), so gpu_check runs it each way. The
 * forward + backward time is the whole closure between events: sum() and its backward, the gradients'
 * allocation and any gap while the host issues them count (on the H200 fa2's was 1.27 ms where its
 * forward is 0.12 ms and its backward alone, bench/gpu_attention_bwd.ts, 0.45 ms).
 * A forward at head dim 128 ([4, 12, 1024, 128]) is printed first; under fa2 (cudnn), each shape's
 * output is first compared with the WMMA (fa2) forward's, and under cudnn the plans built, calls
 * run and refusals (with the last reason) are printed, so a run shows whether cuDNN ran at all. The peer, PyTorch's
 * F.scaled_dot_product_attention at the GPT-2 shape on the same GPU (bench/gpu_torch_gpt.py
 * --attention), runs after ours; the ratio is its ms over ours (> 1: ours is faster). --peer-cache
 * FILE shares one peer run between the runs of this script in one gpu_check call (see bench/torch_peer.ts).
 *   node --import tsx bench/gpu_attention.ts [--smoke] [--peer-cache FILE]
 */
import { cudaIsAvailable, native, noGrad, randn, scaledDotProductAttention, sum, type Tensor, tidy } from '../src/index.ts';
import { DEV, timeDevice } from './gpu_timing.ts';
import { runTorchPeer } from './torch_peer.ts';

const smoke = process.argv.includes('--smoke');
const [B, H, T, D] = smoke ? [1, 2, 128, 64] : [8, 12, 1024, 64];
// Unset: the default family, cuDNN where it takes the problem (native/cuda/attention.cu attnFamily).
const FAMILY: Record<string, string> = {
  simt: 'simt',
  tc: 'tensor cores (WMMA)',
  fa2: 'fa2 (mma.sync)',
  cudnn: 'cuDNN fused (graph API)',
};
const family = process.env.MESHTRAIN_ATTENTION || 'cudnn';
const path = FAMILY[family] ?? family;
// The family each compared one is checked against.
const REFERENCE: Record<string, string> = { fa2: 'tc', cudnn: 'fa2' };
const cacheAt = process.argv.indexOf('--peer-cache');

/** bench/gpu_torch_gpt.py --attention's line. */
interface TorchAttention {
  forward_ms: number;
  forward_backward_ms: number;
  torch: string;
  attention: string;
}

/** PyTorch's SDPA at [B, H, T, D] causal bf16 (~5 s, mostly importing torch), or why it did not run. */
function peer(): { t: TorchAttention; note: string } | { reason: string } {
  const args = ['--attention', ...(smoke ? ['--smoke', '--device', 'auto'] : ['--shape', `${B},${H},${T},${D}`])];
  const r = runTorchPeer<TorchAttention>('gpu_torch_gpt.py', args, { timeoutMs: 120_000, cache: cacheAt > 0 ? process.argv[cacheAt + 1] : undefined });
  if (!r.ok) return { reason: r.reason };
  const t = r.results[0];
  return { t, note: `PyTorch ${t.torch}, ${t.attention}${r.cached ? ', measured by an earlier run' : ''}` };
}

/**
 * The fa2 (cudnn) forward against the WMMA (fa2) one on this shape (MESHTRAIN_ATTENTION is read at
 * every call): many more tiles and blocks than the unit test's, on the real device, where a missing
 * barrier or cp.async wait would show (the emulated device cannot race), and cuDNN's graphs meet a
 * real cuDNN. Prints max |Δ| / max |reference|.
 */
function agreement(q: Tensor, k: Tensor, v: Tensor): void {
  const ref = REFERENCE[family];
  if (!ref) return;
  noGrad(() =>
    tidy(() => {
      const a = scaledDotProductAttention(q, k, v, { causal: true }).toList();
      process.env.MESHTRAIN_ATTENTION = ref;
      const b = scaledDotProductAttention(q, k, v, { causal: true }).toList();
      process.env.MESHTRAIN_ATTENTION = family;
      let diff = 0;
      let scale = 0;
      for (let i = 0; i < b.length; i++) {
        diff = Math.max(diff, Number.isNaN(a[i]) ? Number.POSITIVE_INFINITY : Math.abs(a[i] - b[i]));
        scale = Math.max(scale, Math.abs(b[i]));
      }
      console.log(`${family} vs ${ref} forward [${q.shape}] causal: max |Δ| ${diff.toExponential(2)} of max |y| ${scale.toFixed(3)} (bf16 ulp at 1: ${2 ** -8})`);
    }),
  );
}

if (!cudaIsAvailable()) {
  console.log('gpu_attention: skipped: no usable CUDA device');
} else {
  const tf = (flops: number, s: number) => (flops / s / 1e12).toFixed(1);
  tidy(() => {
    const s128 = smoke ? [1, 2, 128, 128] : [4, 12, 1024, 128];
    const [q, k, v] = [0, 1, 2].map(() => randn(s128, { device: DEV }).to('bf16'));
    agreement(q, k, v);
    const t = timeDevice(5, 5, () => tidy(() => void scaledDotProductAttention(q, k, v, { causal: true })));
    const flops = (4 * s128[0] * s128[1] * s128[2] * s128[2] * 128) / 2;
    console.log(`attention bf16 [${s128}] causal, ${path}: forward ${(t * 1e3).toFixed(3)} ms (${tf(flops, t)} TFLOP/s)`);
  });
  const mk = () => randn([B, H, T, D], { device: DEV }).to('bf16').requiresGrad_(true);
  const [q, k, v] = [mk(), mk(), mk()];
  agreement(q, k, v);
  const flopsFwd = (4 * B * H * T * T * D) / 2;
  const fwd = timeDevice(5, 5, () => tidy(() => void scaledDotProductAttention(q, k, v, { causal: true })));
  const both = timeDevice(3, 5, () =>
    tidy(() => {
      sum(scaledDotProductAttention(q, k, v, { causal: true })).backward();
      for (const t of [q, k, v]) {
        t.grad?.dispose();
        t.grad = null;
      }
    }),
  );
  if (family === 'cudnn') {
    const st = native.cuda.attentionCudnnStats();
    console.log(`cuDNN attention: ${st.plansBuilt} plans built, ${st.calls} calls, ${st.refusals} refusals${st.lastRefusal ? ` (last: ${st.lastRefusal})` : ''}`);
  }
  const p = peer();
  let vs = '';
  if ('reason' in p) console.log(`attention peer: skipped (${p.reason})`);
  else {
    const [tf1, tb1] = [p.t.forward_ms / 1e3, p.t.forward_backward_ms / 1e3];
    const [rf, rb] = [(tf1 / fwd).toFixed(2), (tb1 / both).toFixed(2)];
    console.log(
      `attention peer (${p.note}): forward ${p.t.forward_ms.toFixed(3)} ms (${tf(flopsFwd, tf1)} TFLOP/s), forward+backward ${p.t.forward_backward_ms.toFixed(3)} ms ` +
        `(${tf(3.5 * flopsFwd, tb1)} TFLOP/s); ratio (its ms / ours) ${rf} forward, ${rb} forward+backward`,
    );
    vs = `; speed vs SDPA ${rf}/${rb}`;
  }
  // Last: gpu_check's table shows this line (160 characters).
  console.log(`attention bf16 [${B}, ${H}, ${T}, ${D}] causal, ${path}: forward ${(fwd * 1e3).toFixed(3)} ms (${tf(flopsFwd, fwd)} TFLOP/s), forward+backward ${(both * 1e3).toFixed(3)} ms (${tf(3.5 * flopsFwd, both)} TFLOP/s)${vs}`);
}
