/**
 * bench/gpu.ts part (a): meshtrain's matmul against cuBLASLt called directly (native
 * benchCublasLtMatmul: descriptors and algorithm chosen outside the timed region), bf16, f16 and
 * f32 (no TF32), square sizes. Both sides: random operands, rotated over enough pairs that every
 * round reads about 3x the L2 cache, CUDA events around back-to-back products, median of rounds.
 * Our products are checked first against float64 dot products of sampled rows and columns, and
 * cuBLASLt's last product (into a randomly poisoned output) against ours.
 */
import { matmul, native, noGrad, randn, type Tensor, tidy } from '../src/index.ts';
import { dtypeCode } from '../src/tensor/dtype.ts';
import { DEV, timeDevice } from './gpu_timing.ts';
import { median } from './timing.ts';

type Dt = 'bf16' | 'f16' | 'f32';

/** Rough device rate, only to size a timed round at ~20 ms. */
const GUESS_FLOPS: Record<Dt, number> = { bf16: 600e12, f16: 600e12, f32: 45e12 };
/** |ours - f64 reference| / ‖a_i∘b_j‖ allowed: bf16 rounds its output to 8 bits, f16 to 11; f32 accumulates K terms. */
const CHECK_TOL: Record<Dt, number> = { bf16: 1.5e-2, f16: 2e-3, f32: 1e-4 };

export interface MatmulResult {
  dtype: Dt;
  n: number;
  oursS: number;
  peerS: number;
  ratio: number;
  oursTflops: number;
  peerTflops: number;
}

/** The largest sampled error of out = a @ b against float64 dot products of 16 (row, column) pairs. */
function sampledError(a: Tensor, b: Tensor, out: Tensor, n: number): number {
  let worst = 0;
  for (let s = 0; s < 16; s++) {
    const i = (s * 7919 + 13) % n;
    const j = (s * 104729 + 7) % n;
    const row = noGrad(() => tidy(() => a.narrow(0, i, 1).contiguous().to('cpu').to('f64').toArray()));
    const col = noGrad(() => tidy(() => b.narrow(1, j, 1).contiguous().to('cpu').to('f64').toArray()));
    const got = noGrad(() => tidy(() => out.narrow(0, i, 1).narrow(1, j, 1).contiguous().to('cpu').to('f64').item()));
    let ref = 0;
    let norm = 0;
    for (let k = 0; k < n; k++) {
      const p = (row[k] as number) * (col[k] as number);
      ref += p;
      norm += p * p;
    }
    const e = Math.abs(got - ref) / Math.sqrt(norm + 1e-300);
    worst = Number.isNaN(e) ? Number.POSITIVE_INFINITY : Math.max(worst, e);
  }
  return worst;
}

/** ‖x − y‖ / ‖y‖ over all elements, in f32 on the device. */
function relativeDiff(x: Tensor, y: Tensor): number {
  const d = x.to('f32').sub(y.to('f32'));
  const yf = y.to('f32');
  return Math.sqrt(d.mul(d).sum().item() / yf.mul(yf).sum().item());
}

/** Times one size and dtype; throws if our product is wrong. `fixed` sets iters and rounds (--smoke). */
export function benchMatmulSize(dtype: Dt, n: number, l2Bytes: number, fixed?: { iters: number; rounds: number }): MatmulResult {
  const flop = 2 * n ** 3;
  const pairBytes = 2 * n * n * (dtype === 'f32' ? 4 : 2);
  const sets = fixed ? 2 : Math.max(1, Math.min(32, Math.ceil((3 * l2Bytes) / pairBytes)));
  const iters = fixed?.iters ?? Math.max(3, Math.min(200, Math.ceil(0.02 / (flop / GUESS_FLOPS[dtype]))));
  const rounds = fixed?.rounds ?? 7;
  const as: Tensor[] = [];
  const bs: Tensor[] = [];
  for (let s = 0; s < sets; s++) {
    // Random operands: zeros run faster than real data and hide unwritten outputs.
    as.push(noGrad(() => tidy(() => randn([n, n]).to(dtype).to(DEV))));
    bs.push(noGrad(() => tidy(() => randn([n, n]).to(dtype).to(DEV))));
  }
  const peerOut = noGrad(() => tidy(() => randn([n, n]).to(dtype).to(DEV)));
  try {
    const err = noGrad(() => tidy(() => sampledError(as[0], bs[0], matmul(as[0], bs[0]), n)));
    if (!(err <= CHECK_TOL[dtype])) throw new Error(`matmul ${dtype} ${n}: sampled error ${err} > ${CHECK_TOL[dtype]} (wrong result)`);
    const ids = (ts: Tensor[]) => ts.map((t) => t.id);
    // Rounds alternate between the two sides, each going first every other round: on the H200 the
    // side timed second (the peer, then) read 12-14% slower at 4096-8192, which clocks settling under
    // sustained load can explain; interleaving puts any drift on both sides alike.
    const oursT: number[] = [];
    const peerT: number[] = [];
    const timeOurs = () => oursT.push(timeDevice(iters, 1, (i) => noGrad(() => tidy(() => void matmul(as[i % sets], bs[i % sets])))));
    const timePeer = () => peerT.push(native.benchCublasLtMatmul(dtypeCode(dtype), ids(as), ids(bs), peerOut.id, n, n, n, iters, 1) as number);
    for (let r = 0; r < rounds; r++) {
      if (r % 2 === 0) {
        timeOurs();
        timePeer();
      } else {
        timePeer();
        timeOurs();
      }
    }
    const ours = median(oursT);
    const peer = median(peerT);
    // The peer's output (poisoned with random values before) holds its last product, pair
    // (3 warm-ups + iters - 1) mod sets of its last call: it must equal ours, so the ratio compares like with like.
    const last = (3 + iters - 1) % sets;
    const diff = noGrad(() => tidy(() => relativeDiff(peerOut, matmul(as[last], bs[last]))));
    if (!(diff <= CHECK_TOL[dtype])) throw new Error(`matmul ${dtype} ${n}: cuBLASLt's product differs from ours by ${diff} (relative)`);
    return { dtype, n, oursS: ours, peerS: peer, ratio: peer / ours, oursTflops: flop / ours / 1e12, peerTflops: flop / peer / 1e12 };
  } finally {
    for (const t of [...as, ...bs, peerOut]) t.dispose();
  }
}
