/**
 * Kernel benchmark: our ops against the same oneDNN primitive called directly in this run
 * (goal: ratio >= 0.9), and the per-op overhead of a tiny op against a bare N-API call.
 * Rounds alternate ours and the peer, and medians are reported: the machine is shared and noisy.
 *   npm run bench              (or: npx tsx bench/kernels.ts --quick)
 */
import { add, conv2d, matmul, native, permute, randn, type Tensor, tidy } from '../src/index.ts';
import { dtypeCode } from '../src/tensor/dtype.ts';
import { median, timeIt } from './timing.ts';

const quick = process.argv.includes('--quick');
const rounds = quick ? 3 : 7;

function row(cells: (string | number)[]): string {
  return cells.map((c, i) => String(c).padStart(i === 0 ? 28 : 12)).join('');
}

const info = native.deviceInfo();
console.log(`meshtrain kernel benchmark: ${info.threads} threads, oneDNN ${info.onednn}\n`);

console.log(row(['matmul (M=N=K)', 'ours ms', 'oneDNN ms', 'ratio', 'GFLOP/s']));
for (const dtype of ['f32', 'bf16'] as const) {
  for (const n of [512, 1024, 2048]) {
    const iters = n >= 2048 ? 3 : n >= 1024 ? 10 : 30;
    const a = randn([n, n]).to(dtype);
    const b = randn([n, n]).to(dtype);
    const ours: number[] = [];
    const peer: number[] = [];
    for (let r = 0; r < rounds; r++) {
      ours.push(timeIt(iters, () => tidy(() => void matmul(a, b))));
      peer.push(native.benchOnednnMatmul(dtypeCode(dtype), n, n, n, iters));
    }
    const o = median(ours);
    const p = median(peer);
    console.log(row([`${dtype} ${n}`, (o * 1e3).toFixed(3), (p * 1e3).toFixed(3), (p / o).toFixed(3), ((2 * n ** 3) / o / 1e9).toFixed(0)]));
    a.dispose();
    b.dispose();
  }
}

console.log(`\n${row(['conv fwd+bwd (NHWC)', 'ours ms', 'oneDNN ms', 'ratio', 'GFLOP/s'])}`);
const convs = [
  { name: '3x3 64->64 N32 8x8', N: 32, C: 64, H: 8, O: 64, k: 3, s: 1, p: 1 },
  { name: '3x3 64->64 N32 32x32', N: 32, C: 64, H: 32, O: 64, k: 3, s: 1, p: 1 },
  { name: '1x1 256->64 N32 16x16', N: 32, C: 256, H: 16, O: 64, k: 1, s: 1, p: 0 },
  { name: '7x7/2 3->64 N32 32x32', N: 32, C: 3, H: 32, O: 64, k: 7, s: 2, p: 3 },
];
for (const dtype of ['f32', 'bf16'] as const) {
  for (const c of convs) {
    const iters = quick ? 3 : 8;
    // Activations channels-last, as every conv after the first sees them in a network.
    const x = permute(randn([c.N, c.H, c.H, c.C]).to(dtype), [0, 3, 1, 2]);
    const w = randn([c.O, c.C, c.k, c.k], { std: 0.05 }).to(dtype);
    x.requiresGrad = true;
    w.requiresGrad = true;
    const oh = Math.floor((c.H + 2 * c.p - c.k) / c.s) + 1;
    const gy = permute(randn([c.N, oh, oh, c.O]).to(dtype), [0, 3, 1, 2]);
    const step = () =>
      tidy(() => {
        const y: Tensor = conv2d(x, w, null, { stride: c.s, padding: c.p });
        y.backward(gy);
        x.grad?.dispose();
        w.grad?.dispose();
        x.grad = null;
        w.grad = null;
      });
    const ours: number[] = [];
    const peer: number[] = [];
    for (let r = 0; r < rounds; r++) {
      ours.push(timeIt(iters, step));
      const t = native.benchOnednnConv(dtypeCode(dtype), c.N, c.C, c.H, c.H, c.O, c.k, c.s, c.p, iters);
      peer.push(t.fwd + t.bwdData + t.bwdWeights);
    }
    const o = median(ours);
    const p = median(peer);
    const flops = 3 * 2 * c.N * c.O * oh * oh * c.C * c.k * c.k;
    console.log(row([`${dtype} ${c.name}`, (o * 1e3).toFixed(3), (p * 1e3).toFixed(3), (p / o).toFixed(3), (flops / o / 1e9).toFixed(0)]));
    x.dispose();
    w.dispose();
    gy.dispose();
  }
}
console.log('  (ours: conv2d forward + backward through autograd, incl. storing the input and weight gradients; oneDNN = fwd + bwd-data + bwd-weights)');

console.log(`\n${row(['per-op overhead', 'µs'])}`);
const one = randn([1]);
const two = randn([1]);
const n = 200_000;
const napi = median(Array.from({ length: rounds }, () => timeIt(1, () => { for (let i = 0; i < n; i++) native.liveStorages(); }) / n));
const op = median(Array.from({ length: rounds }, () => timeIt(1, () => tidy(() => { for (let i = 0; i < n; i++) add(one, two); })) / n));
console.log(row(['N-API no-op call', (napi * 1e6).toFixed(3)]));
console.log(row(['add of two 1-element tensors', (op * 1e6).toFixed(3)]));
