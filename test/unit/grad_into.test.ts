/**
 * Gradient destinations (src/autograd/grad_into.ts): linear, layer norm and embedding add their
 * parameters' gradients straight into `.grad` (a product with beta = 1, accumulating sums) and
 * linear writes its bias gradient over a `.grad` known to hold zeros (grad_zero.ts). Every case is run twice, with destinations and
 * with the engine adding every returned gradient (setGradInto(false), the old path), and the
 * gradients compared: f64 bit for bit; f32 and bf16 within the rounding of one addition (the
 * destination path may round the sum once where the old one rounded the product, then the sum).
 * Cases that would go wrong if a destination were written wrongly: two micro-batches over zeroed
 * grads (the second must add, not overwrite), a bias shared by two linears, tied embedding/head,
 * a leaf twice in one node, checkpoint recomputation, retainGraph, hooks, a grad of another dtype,
 * a non-contiguous grad, a grad the node reads. Per device (CPU, and cuda:0 under MT_TEST_DEVICES).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { gradsWrittenInto, setGradInto } from '../../src/autograd/grad_into.ts';
import { isGradZero, markGradZero } from '../../src/autograd/grad_zero.ts';
import {
  checkpoint, crossEntropy, type Device, type DType, destroyDistributed, embedding, gelu, initDistributed, layerNorm,
  linear, manualSeed, mul, randn, sum, type Tensor, tensor, tidy, zeros,
} from '../../src/index.ts';
import { kernelsSay } from '../../src/tensor/backend.ts';
import { deviceTest } from '../helpers/devices.ts';
import { gptEngineRun } from '../helpers/gpt_engine_run.ts';

type GradState = 'none' | 'zero' | 'random';

/** A leaf parameter whose .grad is absent, zeros marked as such, or random values. */
function param(shape: number[], dtype: DType, dev: Device, grad: GradState): Tensor {
  const p = randn(shape, { dtype, device: dev });
  p.requiresGrad = true;
  if (grad !== 'none') {
    const g = grad === 'zero' ? zeros(shape, { dtype, device: dev }) : randn(shape, { dtype, device: dev });
    g.kept = true;
    p.grad = g;
    if (grad === 'zero') markGradZero(g);
  }
  return p;
}

const values = (t: Tensor | null): number[] => Array.from((t?.toArray() ?? []) as ArrayLike<number>);

/** The case's gradients with destinations on and off (same seed), and how many were written into a .grad. */
function both(fn: () => (Tensor | null)[]): { on: number[][]; off: number[][]; written: number } {
  const run = (on: boolean) => {
    const prev = setGradInto(on);
    try {
      manualSeed(7);
      const before = gradsWrittenInto();
      const out = fn().map(values);
      return { out, written: gradsWrittenInto() - before };
    } finally {
      setGradInto(prev);
    }
  };
  const a = run(true);
  const b = run(false);
  assert.is(b.written, 0, 'setGradInto(false) writes nothing into .grad');
  return { on: a.out, off: b.out, written: a.written };
}

/** Worst |on - off| relative to the largest |off| of each tensor; throws past `tol` (0: bit for bit). */
function close(r: { on: number[][]; off: number[][] }, tol: number, what: string): void {
  r.off.forEach((want, i) => {
    const got = r.on[i];
    assert.is(got.length, want.length, `${what}: tensor ${i} length`);
    const scale = Math.max(1e-30, ...want.map(Math.abs));
    let worst = 0;
    got.forEach((v, j) => {
      worst = Math.max(worst, Math.abs(v - want[j]) / scale);
    });
    if (!(worst <= tol)) assert.unreachable(`${what}: tensor ${i} differs by ${worst.toExponential(2)} of its largest value (tolerance ${tol})`);
  });
}

// f64 bit for bit. f32: linear and embedding on the CPU too (oneDNN's sum post-op and the scatter
// add the rounded f32 sum as the engine did); layer norm adds its f64 sums to the grad before
// rounding, cuBLASLt's beta = 1 inside its f32 accumulation: one f32 ulp of the largest value.
// bf16: one rounding where the old path had two, within 2 bf16 ulps of the largest value.
const tol = (dtype: string, dev: Device, exactOnCpu = true): number =>
  dtype === 'bf16' ? 1.6e-2 : dtype === 'f32' && (dev !== 'cpu' || !exactOnCpu) ? 1.2e-7 : 0;

for (const dtype of ['f64', 'f32', 'bf16'] as const) {
  deviceTest(`${dtype} linear: two micro-batches into zeroed, random and absent grads equal the engine's adds`, (dev) => {
    if (dtype === 'f64' && dev !== 'cpu') return; // the f64 product on CUDA is the same cuBLASLt call: CPU covers the bookkeeping
    for (const state of ['zero', 'random', 'none'] as const) {
      const r = both(() => {
        const w = param([6, 8], dtype, dev, state);
        const b = param([6], dtype, dev, state);
        for (let micro = 0; micro < 2; micro++) {
          tidy(() => sum(mul(linear(randn([3, 4, 8], { dtype, device: dev }), w, b), randn([3, 4, 6], { dtype, device: dev }))).backward());
        }
        return [w.grad, b.grad];
      });
      close(r, tol(dtype, dev), `${dtype} ${state}`);
      // zero: both written in micro-batch 1 (the bias over zeros), the weight again in micro-batch 2 (the bias is added by the engine).
      const want = { zero: 3, random: 2, none: 1 }[state];
      assert.is(r.written, want, `${state}: gradients written into .grad`);
    }
  });

  deviceTest(`${dtype} layer norm: weight and bias gradients added into .grad, zeroed and random, two passes`, (dev) => {
    if (dtype === 'f64' && dev !== 'cpu') return;
    for (const state of ['zero', 'random'] as const) {
      const r = both(() => {
        const w = param([16], dtype, dev, state);
        const b = param([16], dtype, dev, state);
        for (let micro = 0; micro < 2; micro++) {
          tidy(() => sum(mul(layerNorm(randn([5, 16], { dtype, device: dev }), [16], w, b), randn([5, 16], { dtype, device: dev }))).backward());
        }
        return [w.grad, b.grad];
      });
      close(r, tol(dtype, dev, false), `${dtype} ${state}`);
      // Both gradients in both passes, where the addon takes their offsets (an older one: none).
      assert.is(r.written, kernelsSay(dev, 'layerNormGradInto') ? 4 : 0, 'gradients written into .grad');
    }
  });
}

for (const dtype of ['f64', 'f32', 'bf16'] as const) {
  deviceTest(`${dtype} embedding: repeated ids, two passes into zeroed and random grads`, (dev) => {
    for (const state of ['zero', 'random'] as const) {
      const r = both(() => {
        const W = param([7, 5], dtype, dev, state);
        for (let micro = 0; micro < 2; micro++) {
          const ids = tensor([micro, 3, 3, 6, 0, 3], { dtype: 'i64', shape: [2, 3], device: dev });
          tidy(() => sum(mul(embedding(ids, W), randn([2, 3, 5], { dtype, device: dev }))).backward());
        }
        return [W.grad];
      });
      close(r, tol(dtype, dev), `${dtype} ${state}`);
      assert.is(r.written, kernelsSay(dev, 'embeddingGradInto') ? 2 : 0, 'gradients written into .grad');
    }
  });
}

deviceTest('a bias shared by two linears over zeroed grads: the first overwrites, the second adds', (dev) => {
  const r = both(() => {
    const w1 = param([4, 4], 'f32', dev, 'zero');
    const w2 = param([4, 4], 'f32', dev, 'zero');
    const b = param([4], 'f32', dev, 'zero');
    const x = randn([3, 4], { device: dev });
    sum(mul(linear(gelu(linear(x, w1, b)), w2, b), randn([3, 4], { device: dev }))).backward();
    return [w1.grad, w2.grad, b.grad];
  });
  close(r, tol('f32', dev), 'shared bias');
  assert.is(r.written, 3, 'two weights and one of the two bias gradients written');
});

deviceTest('tied embedding and head (GPT): embedding adds, the head writes with beta = 1, layer norm between', (dev) => {
  const r = both(() => {
    const W = param([11, 8], 'f32', dev, 'zero');
    const g = param([8], 'f32', dev, 'zero');
    const ids = tensor([1, 3, 3, 10, 0, 1], { dtype: 'i32', shape: [2, 3], device: dev });
    const h = layerNorm(embedding(ids, W), [8], g, null);
    crossEntropy(linear(h, W).reshape([6, 11]), tensor([2, 2, 5, 0, 1, 9], { dtype: 'i64', device: dev })).backward();
    return [W.grad, g.grad];
  });
  close(r, tol('f32', dev, false), 'tied');
});

deviceTest('a leaf twice in one node (linear(w, w)) gets no destination and both gradients', (dev) => {
  const r = both(() => {
    const w = param([5, 5], 'f32', dev, 'zero');
    sum(mul(linear(w, w), randn([5, 5], { device: dev }))).backward();
    return [w.grad];
  });
  close(r, tol('f32', dev), 'linear(w, w)');
  assert.is(r.written, 0);
});

deviceTest('checkpoint: parameters used inside (recomputed, nested pass) and outside, hooks once with the full gradient', (dev) => {
  const seen: number[][] = [];
  const r = both(() => {
    const w = param([8, 8], 'f32', dev, 'zero');
    const b = param([8], 'f32', dev, 'zero');
    let fired = 0;
    w.gradReadyHooks.push((p) => {
      fired++;
      seen.push(values(p.grad));
    });
    const x = randn([4, 8], { device: dev, requiresGrad: true });
    const y = checkpoint((h) => gelu(linear(h, w, b)), x);
    sum(mul(linear(y, w, b), randn([4, 8], { device: dev }))).backward();
    assert.is(fired, 1, 'the hook fires once, after every use');
    return [w.grad, b.grad, x.grad];
  });
  close(r, tol('f32', dev), 'checkpoint');
  close({ on: [seen[0]], off: [seen[1]] }, tol('f32', dev), 'the gradient the hook saw');
  assert.ok(r.written >= 2);
});

deviceTest('retainGraph: a second backward through the same graph adds again (no stale zero mark)', (dev) => {
  const r = both(() => {
    const w = param([4, 6], 'f32', dev, 'zero');
    const b = param([4], 'f32', dev, 'zero');
    const l = sum(mul(linear(randn([3, 6], { device: dev }), w, b), randn([3, 4], { device: dev })));
    l.backward(undefined, { retainGraph: true });
    assert.not.ok(isGradZero(b.grad as Tensor), 'no mark outlives a pass');
    l.backward();
    return [w.grad, b.grad];
  });
  close(r, tol('f32', dev), 'retainGraph');
  assert.is(r.written, 3);
});

deviceTest('grads the node cannot write: another dtype, a non-contiguous view, memory the node reads', (dev) => {
  // An f32 grad of a bf16 weight: the engine converts and adds.
  const a = both(() => {
    const w = param([4, 6], 'bf16', dev, 'none');
    const g = zeros([4, 6], { device: dev });
    g.kept = true;
    w.grad = g;
    sum(linear(randn([3, 6], { dtype: 'bf16', device: dev }), w)).backward();
    return [w.grad];
  });
  close(a, 0, 'f32 grad of a bf16 weight');
  assert.is(a.written, 0);
  // A transposed view as .grad.
  const b = both(() => {
    const w = param([4, 6], 'f32', dev, 'none');
    const g = randn([6, 4], { device: dev }).transpose(0, 1);
    g.kept = true;
    w.grad = g;
    sum(linear(randn([3, 6], { device: dev }), w)).backward();
    return [w.grad];
  });
  close(b, 0, 'non-contiguous grad');
  assert.is(b.written, 0);
  // x is the weight's own .grad: a product adding into memory it reads would be wrong.
  const c = both(() => {
    const w = param([6, 6], 'f32', dev, 'random');
    sum(mul(linear(w.grad as Tensor, w), randn([6, 6], { device: dev }))).backward();
    return [w.grad];
  });
  close(c, 0, 'x is w.grad');
  assert.is(c.written, 0);
});

// GPT tiny through initialize(): the engine's zeroed gradient buffers, tied wte/head, ZeRO's hooks.
let world = false;
test.before(async () => {
  await initDistributed({ timeoutMs: 30_000 });
  world = true;
});
test.after(async () => {
  if (world) await destroyDistributed();
});

async function gptRun(stage: 0 | 1 | 2 | 3, on: boolean): Promise<{ losses: number[]; weights: number[][]; written: number }> {
  const prev = setGradInto(on);
  try {
    const config = {
      train_batch_size: 4, train_micro_batch_size_per_gpu: 2, gradient_accumulation_steps: 2, gradient_clipping: 1,
      // SGD: a weight moves by lr times its gradient, so the comparison sees the gradients' own
      // differences (Adam would blow an ulp of a zero gradient, the key bias's, up to lr).
      optimizer: { type: 'SGD', params: { lr: 0.1, momentum: 0.9 } },
      zero_optimization: { stage, reduce_bucket_size: 20_000, stage3_param_persistence_threshold: 100 },
    };
    const r = await gptEngineRun({ seed: 3, config, micros: 4, counter: gradsWrittenInto });
    return { losses: r.losses, weights: r.weights, written: r.counted };
  } finally {
    setGradInto(prev);
  }
}

test('GPT tiny, 2 micro-batches per step, ZeRO 0-3: losses and weights after 2 SGD steps equal the old path (f32 1e-6)', async () => {
  for (const stage of [0, 1, 2, 3] as const) {
    const on = await gptRun(stage, true);
    const off = await gptRun(stage, false);
    close({ on: [on.losses, ...on.weights], off: [off.losses, ...off.weights] }, 1e-6, `stage ${stage}`);
    if (stage <= 1) assert.ok(on.written > 0, `stage ${stage}: gradients written into the engine's buffers`);
  }
});

test.run();
