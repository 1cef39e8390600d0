/**
 * The memory-bound kernels of the GPT-2 124M and ResNet-101 training steps, each timed alone at
 * the step's real shapes (GPT-2: batch 8 x 1024 tokens, d 768, vocab 50257, bf16; ResNet-101:
 * batch 128 CIFAR, bf16 channels-last, its largest batch-norm and pool layers): device time per
 * call (bench/gpu_kernel_timing.ts: a spin kernel hides the host's issue cost, CUDA events over
 * back-to-back calls), the bytes the op must move at the least (reads + writes, counted per line
 * in `Case.bytes`: each input read once, each output written once; scratch and second passes are
 * the kernel's own cost, so they lower its ratio), the GB/s that implies, and the ratio to a
 * device-to-device copy (cudaMemcpyAsync) moving the same bytes, timed the same way in the same
 * process (1.0: the op moves its bytes as fast as a copy would). Forward and backward are separate
 * lines: a backward line replays one recorded graph's backward (retainGraph), every parameter's
 * .grad cleared after each call so nothing accumulates. Each line names the device ops its call
 * queues, each with its own µs from a timed census (opsOf), so what it times is on the page and
 * a multi-kernel line splits by kernel. The summary line is last.
 *   node --import tsx bench/gpu_memory_kernels.ts [--smoke] [--only REGEX]
 * --smoke: tiny shapes and one round (the emulated device: plumbing only, times meaningless).
 */
import {
  AdamW,
  add,
  batchNorm2d,
  batchNorm2dRelu,
  cat,
  crossEntropy,
  cudaCensus,
  cudaIsAvailable,
  cudaSynchronize,
  embedding,
  layerNorm,
  maxPool2d,
  native,
  noGrad,
  ones,
  rand,
  relu,
  sum,
  type Tensor,
  tensor,
  tidy,
  zeros,
} from '../src/index.ts';
import { timeKernels } from './gpu_kernel_timing.ts';
import { DEV } from './gpu_timing.ts';

const smoke = process.argv.includes('--smoke');
const onlyAt = process.argv.indexOf('--only');
const only = onlyAt > 0 ? new RegExp(process.argv[onlyAt + 1]) : null;
// [calls per round, rounds, warm-up calls]
const TIMING = smoke ? { iters: 1, rounds: 1, warmup: 1 } : { iters: 20, rounds: 5, warmup: 3 };

// GPT-2 124M at batch 8 x 1024 (smoke: a shape with odd sizes and the same code paths).
const G = smoke ? { rows: 2 * 33, d: 96, vocab: 1001, layers: 1, ctx: 64 } : { rows: 8 * 1024, d: 768, vocab: 50257, layers: 12, ctx: 1024 };
// ResNet-101's stem after the first conv and layer1's widest BN at batch 128 CIFAR.
const R = smoke ? { n: 2 } : { n: 128 };
const BF = 2; // bytes per bf16

/** One line of the table: `run` is timed; `bytes` the least it must move; `dispose` frees what setup made. */
interface Case {
  name: string;
  /** Reads + writes in bytes, and how they were counted. */
  bytes: number;
  count: string;
  run: () => void;
  dispose: () => void;
}

interface Row {
  name: string;
  us: number;
  bytes: number;
  gbs: number;
  ratio: number;
  note: string;
}

const keep: Tensor[] = [];
const own = <T extends Tensor>(t: T): T => {
  keep.push(t);
  return t;
};
const freeAll = () => {
  for (const t of keep.splice(0)) t.dispose();
};

// Uniform samples: drawn on the device (randn draws on the CPU and copies: seconds for the 0.4 G logits).
const uniform = (shape: number[]): Tensor => noGrad(() => rand(shape, { device: DEV, low: -2, high: 2 }).to('bf16'));
const normal = (shape: number[], requiresGrad = false): Tensor => own(uniform(shape).requiresGrad_(requiresGrad));
/** A channels-last bf16 [n, c, h, w] (a permuted contiguous [n, h, w, c]), as ResNet runs them. */
const image = (n: number, c: number, h: number, w: number, requiresGrad = false): Tensor =>
  own(noGrad(() => uniform([n, h, w, c]).permute([0, 3, 1, 2])).requiresGrad_(requiresGrad));

/** Lines that time the kernel a 16-byte one replaced, on the same shape (inputs one element off alignment, or a layout it does not take). */
const TWIN = 'scalar twin';

/** x's values in a view one element into a longer buffer: a pointer off 16-byte alignment (the scalar kernels). */
function offByOne(x: Tensor): Tensor {
  return noGrad(() => {
    const flat = x.reshape([x.numel]);
    return cat([flat.narrow(0, 0, 1), flat], 0).narrow(0, 1, x.numel).view([...x.shape]);
  });
}

function clearGrads(ts: Tensor[]): void {
  for (const t of ts) {
    t.grad?.dispose();
    t.grad = null;
  }
}

/** The backward of one recorded forward, replayed: each call's gradients freed after it. */
function backwardCase(name: string, bytes: number, count: string, forward: () => Tensor, g: Tensor | undefined, leaves: Tensor[]): Case {
  const y = own(forward());
  return {
    name,
    bytes,
    count,
    run: () =>
      tidy(() => {
        y.backward(g, { retainGraph: true });
        clearGrads(leaves);
      }),
    dispose: () => clearGrads(leaves),
  };
}

const forwardCase = (name: string, bytes: number, count: string, fn: () => void): Case => ({
  name,
  bytes,
  count,
  run: () => tidy(() => noGrad(fn)),
  dispose: () => {},
});

// Each builder makes its tensors when its turn comes (the logits alone are 0.8 GB), then frees them.
const builders: (() => Case[])[] = [
  () => {
    const { rows, d } = G;
    const x = normal([rows, d], true);
    const w = own(noGrad(() => ones([d], { device: DEV }).to('bf16')).requiresGrad_(true));
    const b = normal([d], true);
    const gy = normal([rows, d]);
    const act = rows * d * BF;
    const xOff = own(offByOne(x)).requiresGrad_(true);
    const fwdB = 2 * act + 2 * d * BF + 2 * rows * 4;
    const bwdB = 3 * act + d * BF + 2 * rows * 4 + 2 * d * BF;
    return [
      forwardCase(`layerNorm fwd [${rows}, ${d}] bf16`, fwdB, 'x + w, b; y + mean, rstd (f32)', () => {
        layerNorm(x, [d], w, b);
      }),
      backwardCase(`layerNorm bwd [${rows}, ${d}] bf16`, bwdB, 'x, gy, w, mean, rstd; dx, dw, db', () => layerNorm(x, [d], w, b), gy, [x, w, b]),
      // The same with x off 16-byte alignment: the scalar row kernels (the cached ones' A/B twin).
      forwardCase(`layerNorm fwd [${rows}, ${d}] bf16 ${TWIN}`, fwdB, 'as above', () => {
        layerNorm(xOff, [d], w, b);
      }),
      backwardCase(`layerNorm bwd [${rows}, ${d}] bf16 ${TWIN}`, bwdB, 'as above', () => layerNorm(xOff, [d], w, b), gy, [xOff, w, b]),
    ];
  },
  () => {
    const { rows, d } = G;
    const a = normal([rows, d]);
    const b = normal([rows, d]);
    return [forwardCase(`add (residual) [${rows}, ${d}] bf16`, 3 * rows * d * BF, 'a, b; out', () => void add(a, b))];
  },
  () => {
    // GPT's token + position embedding add, [B, T, d] + [T, d] (binaryRows); its twin reads the
    // position table through a transposed view, which takes binaryStrided (the kernel it replaced).
    const { rows, d, ctx } = G;
    const T = rows % ctx === 0 ? ctx : rows;
    const tok = normal([rows / T, T, d]);
    const pos = normal([T, d]);
    const posT = own(noGrad(() => pos.transpose(0, 1).contiguous().transpose(0, 1)));
    const name = `add (positions) [${rows / T}, ${T}, ${d}] + [${T}, ${d}] bf16`;
    const bytes = (2 * rows * d + T * d) * BF;
    return [
      forwardCase(name, bytes, 'tokens, positions (once); out', () => void add(tok, pos)),
      forwardCase(`${name} ${TWIN}`, bytes, 'as above', () => void add(tok, posT)),
    ];
  },
  () => {
    const { rows, d } = G;
    const x = normal([rows, d]);
    return [forwardCase(`sum over rows [${rows}, ${d}] -> [${d}] bf16`, rows * d * BF + d * BF, 'x; out', () => void sum(x, 0))];
  },
  () => {
    const { rows, vocab } = G;
    const logits = normal([rows, vocab], true);
    const targets = own(noGrad(() => tensor(Array.from({ length: rows }, (_, i) => (i * 7919) % vocab), { dtype: 'i64', device: DEV })));
    const one = own(noGrad(() => ones([], { device: DEV }).to('bf16')));
    const lg = rows * vocab * BF;
    return [
      forwardCase(`crossEntropy fwd [${rows}, ${vocab}] bf16`, lg + rows * 8 + rows * (BF + 4), 'logits, targets (i64); loss, lse (f32) per row', () => {
        crossEntropy(logits, targets);
      }),
      backwardCase(`crossEntropy bwd [${rows}, ${vocab}] bf16`, 2 * lg + rows * (8 + 4), 'logits, targets, lse; dlogits',
        () => crossEntropy(logits, targets), one, [logits]),
    ];
  },
  () => {
    const { rows, d, vocab } = G;
    const wte = normal([vocab, d], true);
    const ids = own(noGrad(() => tensor(Array.from({ length: rows }, (_, i) => (i * 104729 + 7) % vocab), { dtype: 'i32', shape: [rows], device: DEV })));
    const gy = normal([rows, d]);
    const act = rows * d * BF;
    const wteOff = own(offByOne(wte)).requiresGrad_(true);
    const gyOff = own(offByOne(gy));
    const name = `[${vocab}, ${d}] x ${rows} ids bf16`;
    return [
      forwardCase(`embedding fwd ${name}`, 2 * act + rows * 4, 'ids (i32), the rows read; out', () => {
        embedding(ids, wte);
      }),
      backwardCase(`embedding bwd ${name}`, act + rows * 4 + vocab * d * BF, 'gy, ids; dw (every row: dense)', () => embedding(ids, wte), gy, [wte]),
      // Off 16-byte alignment (the weight; gy for the backward): the scalar gather and scatterSum.
      forwardCase(`embedding fwd ${name} ${TWIN}`, 2 * act + rows * 4, 'as above', () => {
        embedding(ids, wteOff);
      }),
      backwardCase(`embedding bwd ${name} ${TWIN}`, act + rows * 4 + vocab * d * BF, 'as above', () => embedding(ids, wte), gyOff, [wte]),
    ];
  },
  () => {
    // GPT-2 124M's 148 parameters (tied head), bf16 with f32 masters and moments, as the engine's bf16 AdamW.
    const { d, vocab, layers, ctx } = G;
    const shapes: number[][] = [[vocab, d], [ctx, d], [d], [d]];
    for (let l = 0; l < layers; l++) shapes.push([d], [d], [d, 3 * d], [3 * d], [d, d], [d], [d], [d], [d, 4 * d], [4 * d], [4 * d, d], [d]);
    const params = shapes.map((s) => normal(s, true));
    const opt = new AdamW(params, { lr: 1e-4, weightDecay: 0.1 });
    const setGrads = () => {
      for (const p of params) p.grad = noGrad(() => uniform([...p.shape]).mul(1e-3));
    };
    setGrads();
    opt.step(); // the first step copies the masters and zeroes the moments: not what is timed
    const n = params.reduce((a, p) => a + p.numel, 0);
    return [
      {
        name: `AdamW [${(n / 1e6).toFixed(1)}M params, ${params.length} tensors] bf16, f32 master + moments`,
        bytes: n * (4 + BF + 4 + 4) + n * (4 + BF + 4 + 4),
        count: 'master, grad, m, v; master, param, m, v',
        run: () => opt.step(),
        dispose: () => clearGrads(params),
      },
    ];
  },
  () => {
    const { n } = R;
    const cases: Case[] = [];
    // [name, C, H, W]: the stem's BN (after the 3x3 conv at 16x16, as bench/gpu_bn_pool.ts) and layer1's 256-channel BN.
    for (const [tag, C, H, W] of [['stem', 64, 16, 16], ['layer1', 256, 8, 8]] as [string, number, number, number][]) {
      const x = image(n, C, H, W, true);
      const res = image(n, C, H, W, true);
      const gy = image(n, C, H, W);
      const w = own(noGrad(() => ones([C], { device: DEV }).to('bf16')).requiresGrad_(true));
      const b = normal([C], true);
      const act = n * C * H * W * BF;
      const shape = `[${n}, ${C}, ${H}, ${W}] bf16 NHWC`;
      const bn = () => batchNorm2d(x, null, null, w, b, { training: true });
      const fused = () => batchNorm2dRelu(x, null, null, w, b, { training: true, residual: res });
      cases.push(
        forwardCase(`batchNorm2d ${tag} fwd ${shape}`, 2 * act, 'x; y', () => void bn()),
        backwardCase(`batchNorm2d ${tag} bwd ${shape}`, 3 * act, 'gy, x; gx', bn, gy, [x, w, b]),
        forwardCase(`batchNorm2dRelu+res ${tag} fwd ${shape}`, 3 * act, 'x, residual; y', () => void fused()),
        backwardCase(`batchNorm2dRelu+res ${tag} bwd ${shape}`, 5 * act, 'gy, x, y (the ReLU mask); gx, gresidual', fused, gy, [x, w, b, res]),
      );
    }
    const x = image(n, 256, 8, 8);
    cases.push(forwardCase(`relu [${n}, 256, 8, 8] bf16 NHWC`, 2 * n * 256 * 64 * BF, 'x; y', () => void relu(x)));
    return cases;
  },
  () => {
    const { n } = R;
    const x = image(n, 64, 16, 16, true);
    const gy = image(n, 64, 8, 8);
    const inB = n * 64 * 16 * 16 * BF;
    const outB = n * 64 * 8 * 8 * BF;
    const idxB = n * 64 * 8 * 8 * 4;
    const pool = () => maxPool2d(x, 3, { stride: 2, padding: 1 });
    return [
      forwardCase(`maxPool2d 3/2 pad 1 fwd [${n}, 64, 16, 16] bf16 NHWC`, inB + outB + idxB, 'x; y, argmax (i32)', () => void pool()),
      backwardCase(`maxPool2d 3/2 pad 1 bwd [${n}, 64, 16, 16] bf16 NHWC`, outB + idxB + inB, 'gy, argmax; gx', pool, gy, [x]),
    ];
  },
];

/**
 * Device ops one call queues, each with its mean µs from a timed census of 5 calls (an event pair
 * around each op: a few µs of launch gap may count), e.g. "forwardWarpRowsVec 9.1 us, fill x2 1.2 us".
 */
function opsOf(fn: () => void): string {
  const calls = 5;
  const { entries } = cudaCensus(() => {
    for (let k = 0; k < calls; k++) fn();
  }, { timing: true });
  const ops = entries.filter((e) => e.kind !== 'malloc' && e.kind !== 'note' && e.kind !== 'sync');
  const syncs = entries.filter((e) => e.kind === 'sync').reduce((a, e) => a + e.count, 0) / calls;
  const list = ops
    .map((e) => {
      const per = e.count / calls;
      const us = e.timed ? ` ${(((e.deviceMs ?? 0) / e.timed) * 1e3).toFixed(1)} us` : '';
      // Launches through a local pointer carry its name ('k', 'kern'): the site says which.
      const name = e.name.replace(/<T>$/, '');
      const where = name.length <= 4 ? `@${e.site.replace(/^cuda\//, '')}` : '';
      return `${name}${where}${per !== 1 ? ` x${per}` : ''}${us}`;
    })
    .join(', ');
  return syncs ? `${list}; ${syncs} host sync(s) per call!` : list;
}

/** Device seconds of a device-to-device copy of `bytes / 2` bytes (it reads and writes `bytes` in all). */
function copySeconds(bytes: number): number {
  const half = Math.max(16, Math.round(bytes / 4) * 2);
  const src = zeros([half / 2], { dtype: 'bf16', device: DEV });
  const dst = zeros([half / 2], { dtype: 'bf16', device: DEV });
  try {
    return timeKernels(() => native.copyBytes(src.id, src.offset * BF, dst.id, dst.offset * BF, half), TIMING).seconds;
  } finally {
    src.dispose();
    dst.dispose();
  }
}

function main(): void {
  if (!cudaIsAvailable()) {
    console.log('gpu_memory_kernels: skipped: no usable CUDA device');
    return;
  }
  const big = smoke ? 1 << 20 : 1 << 30;
  const copyPeak = (big / copySeconds(big)) / 1e9;
  console.log(`device-to-device copy of ${big / 2 ** 21} MiB: ${copyPeak.toFixed(0)} GB/s (reads + writes)`);
  const rows: Row[] = [];
  for (const build of builders) {
    let cases: Case[] = [];
    try {
      cases = build().filter((c) => !only || only.test(c.name));
      for (const c of cases) {
        try {
          const note = opsOf(c.run);
          cudaSynchronize(DEV);
          const t = timeKernels(c.run, TIMING);
          const peer = copySeconds(c.bytes);
          const row = { name: c.name, us: t.seconds * 1e6, bytes: c.bytes, gbs: c.bytes / t.seconds / 1e9, ratio: peer / t.seconds, note };
          rows.push(row);
          const flags = `${t.spun ? '' : ', no spin: host cost included'}${t.hostBoundRounds ? `, ${t.hostBoundRounds} host-bound round(s)` : ''}`;
          console.log(
            `${c.name}: ${row.us.toFixed(1)} us, ${(c.bytes / 1e6).toFixed(2)} MB (${c.count}), ${row.gbs.toFixed(0)} GB/s, ` +
              `copy ratio ${row.ratio.toFixed(2)} (copy ${(peer * 1e6).toFixed(1)} us); host ${t.hostUs.toFixed(0)} us/call${flags}; ops: ${note}`,
          );
        } catch (e) {
          console.log(`${c.name}: FAILED: ${(e instanceof Error ? e.message : String(e)).split('\n')[0]}`);
        } finally {
          c.dispose();
        }
      }
    } catch (e) {
      console.log(`setup FAILED: ${(e instanceof Error ? e.message : String(e)).split('\n')[0]}`);
    } finally {
      freeAll();
      cudaSynchronize(DEV);
    }
  }
  // The twins are the replaced kernels: out of the mean, into a speed-up per 16-byte kernel.
  const main = rows.filter((r) => !r.name.endsWith(TWIN));
  const worst = [...main].sort((a, b) => a.ratio - b.ratio).slice(0, 3);
  const geo = main.length ? Math.exp(main.reduce((a, r) => a + Math.log(r.ratio), 0) / main.length) : Number.NaN;
  const speedups = rows
    .filter((r) => r.name.endsWith(TWIN))
    .map((t) => {
      const m = main.find((r) => r.name === t.name.slice(0, -TWIN.length - 1));
      return m ? `${m.name.split(' [')[0]} ${(t.us / m.us).toFixed(2)}x` : null;
    })
    .filter((x) => x !== null);
  console.log(`16-byte kernels vs their scalar twins (twin us / us): ${speedups.join(', ') || 'none timed'}`);
  console.log(
    `gpu_memory_kernels: ${main.length} lines (+${rows.length - main.length} twins), copy ${copyPeak.toFixed(0)} GB/s; geometric mean ratio to copy ${geo.toFixed(2)}; ` +
      `lowest: ${worst.map((r) => `${r.name.split(' [')[0]} ${r.ratio.toFixed(2)}`).join(', ')}`,
  );
}

main();
