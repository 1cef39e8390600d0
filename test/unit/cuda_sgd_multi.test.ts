/**
 * SGD on a CUDA device updates many parameters per launch (src/optim/sgd_multi.ts,
 * native/cuda/sgd_multi.cu) instead of one launch per parameter. Against the per-parameter kernel
 * (native.cuda.sgdMulti hidden), bit for bit after every one of 3 steps: every parameter and
 * every momentum buffer, for f32, bf16 and f16 parameters (16-bit with f32 masters), f64
 * (f64 state), momentum on and off, Nesterov, dampening, weight decay, maximize, gradScale != 1,
 * odd sizes, parameters and gradients that are views at odd offsets of shared storages, more
 * tensors than one launch's 96, empty parameters between others, launches of more elements than
 * threads (each thread strides across tensors, so the tensor search carries from one element to
 * the next), and parameters without a gradient for a step (their momentum buffer starts a step
 * late: its own launch). Census: a 50-parameter model's step is <= 2 SGD
 * launches (per-parameter: 50). Without a device: one SKIP line (the CPU path is optim.test.ts's).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  crossEntropy, cudaCensus, cudaIsAvailable, type DType, manualSeed, native, nn, randn, SGD, type SGDOptions, type Tensor, tensor,
} from '../../src/index.ts';

const DEV = 'cuda:0';

interface Case {
  name: string;
  opts: Partial<SGDOptions>;
  gradScale: number;
  /** Whether the first step's launches have fewer threads than elements (threads stride across tensors). */
  strides?: boolean;
  /** The parameters (leaves on DEV) and, per step, their gradients (null: none this step). */
  make(): { params: Tensor[]; grads(step: number): (Tensor | null)[] };
}

function leaf(n: number, dtype: DType): Tensor {
  return randn([n], { device: DEV }).to(dtype).detach().requiresGrad_(true);
}

const size = (i: number): number => 1 + ((i * 37) % 97);

/** Independent parameters of mixed dtypes and `sizeOf(i)` elements; `skip(step, i)` leaves parameter i without a gradient. */
function separate(count: number, dtype: (i: number) => DType, scale: number, skip = (_s: number, _i: number) => false, sizeOf = size): Case['make'] {
  return () => {
    const params = Array.from({ length: count }, (_, i) => leaf(sizeOf(i), dtype(i)));
    // Views of one random buffer per dtype (a kernel per dtype, not per parameter: the emulated device is slow).
    const grads = (step: number) => {
      const flat = new Map<DType, Tensor>();
      let off = 0;
      return params.map((p, i) => {
        let f = flat.get(p.dtype);
        if (!f) {
          f = randn([total], { device: DEV }).mul(scale).to(p.dtype);
          flat.set(p.dtype, f);
        }
        off += p.numel;
        return skip(step, i) ? null : f.narrow(0, off - p.numel, p.numel);
      });
    };
    const total = params.reduce((a, p) => a + p.numel, 0);
    return { params, grads };
  };
}

/** Parameters that are views of two flat storages with one-element gaps, gradients views of one flat buffer at odd offsets. */
function views(): ReturnType<Case['make']> {
  const sizes = [3, 17, 1, 255, 64, 129, 5, 1000];
  const params: Tensor[] = [];
  for (const dtype of ['bf16', 'f32'] as const) {
    const total = sizes.reduce((a, n) => a + n + 1, 1);
    const flat = randn([total], { device: DEV }).to(dtype).detach();
    let off = 1;
    for (const n of sizes) {
      params.push(flat.narrow(0, off, n).detach().requiresGrad_(true));
      off += n + 1;
    }
  }
  const grads = () => {
    const total = params.reduce((a, p) => a + p.numel + 2, 3);
    const flat = { bf16: randn([total], { device: DEV }).to('bf16'), f32: randn([total], { device: DEV }) };
    let off = 3;
    return params.map((p) => {
      const g = flat[p.dtype as 'bf16' | 'f32'].narrow(0, off, p.numel);
      off += p.numel + 2;
      return g;
    });
  };
  return { params, grads };
}

const CASES: Case[] = [
  {
    name: 'mixed f32/f16/bf16, momentum 0.9, weight decay 5e-4 (ResNet), 220 params, gradients missing',
    opts: { lr: 0.05, momentum: 0.9, weightDecay: 5e-4 },
    gradScale: 1,
    make: separate(220, (i) => (i % 4 === 0 ? 'f32' : i % 4 === 1 ? 'f16' : 'bf16'), 1, (s, i) => (s === 0 && i === 7) || (s === 1 && i === 11)),
  },
  {
    name: 'f16, no momentum, gradScale 1/1024',
    opts: { lr: 0.1 },
    gradScale: 1 / 1024,
    make: separate(24, () => 'f16', 1024),
  },
  {
    name: 'bf16 and f32, Nesterov, weight decay 1e-2',
    opts: { lr: 0.02, momentum: 0.9, nesterov: true, weightDecay: 1e-2 },
    gradScale: 1,
    make: separate(20, (i) => (i % 2 ? 'bf16' : 'f32'), 1),
  },
  {
    name: 'f32, dampening 0.25, momentum 0.5, maximize, gradScale 0.75',
    opts: { lr: 0.03, momentum: 0.5, dampening: 0.25, maximize: true, weightDecay: 1e-3 },
    gradScale: 0.75,
    make: separate(16, () => 'f32', 1),
  },
  { name: 'views of shared storages, momentum 0.9', opts: { lr: 0.05, momentum: 0.9, weightDecay: 5e-4 }, gradScale: 1, make: views },
  {
    name: 'f64 and f32 (f64 state), momentum 0.9',
    opts: { lr: 0.05, momentum: 0.9, weightDecay: 1e-3 },
    gradScale: 1,
    make: separate(12, (i) => (i % 2 ? 'f64' : 'f32'), 1),
  },
  {
    // f32: 101 nonempty tensors of 3000-8143 (2 launches; the first's 96 hold more elements than its threads, each tensor fewer).
    name: 'f32 and bf16, momentum 0.9, 2 launches of more elements than threads, empty parameters',
    opts: { lr: 0.05, momentum: 0.9, weightDecay: 5e-4 },
    gradScale: 1,
    strides: true,
    make: separate(140, (i) => (i % 4 === 3 ? 'bf16' : 'f32'), 1, undefined, (i) => (i % 25 === 2 ? 0 : 3000 + 37 * i)),
  },
];

/** Every value's bits, as f64 (exact for every float dtype; 16-bit tensors read as f32). */
function bits(t: Tensor | Float32Array | Float64Array): Buffer {
  const a = Float64Array.from('toArray' in t ? (t.toArray() as Float32Array | Float64Array) : t);
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength);
}

const sgdSites = (entries: { site: string; count: number; threads: number }[]) => entries.filter((e) => /optim\.cu|sgd_multi\.cu/.test(e.site));

function withMulti<T>(multi: boolean, fn: () => T): T {
  const saved = native.cuda.sgdMulti;
  if (!multi) native.cuda.sgdMulti = undefined;
  try {
    return fn();
  } finally {
    native.cuda.sgdMulti = saved;
  }
}

/** Per step: the bits of every parameter (after the last, of every momentum buffer too); the launches and threads of each step. */
function run(c: Case, multi: boolean): { steps: Buffer[][]; launches: number[]; threads: number[]; elements: number; moved: boolean } {
  manualSeed(5);
  const { params, grads } = c.make();
  const before = params.map((p) => bits(p));
  const opt = new SGD(params, c.opts);
  const steps: Buffer[][] = [];
  const launches: number[] = [];
  const threads: number[] = [];
  withMulti(multi, () => {
    for (let step = 0; step < 3; step++) {
      grads(step).forEach((g, i) => {
        params[i].grad = g;
      });
      const { entries } = cudaCensus(() => opt.step({ gradScale: c.gradScale }));
      launches.push(sgdSites(entries).reduce((n, e) => n + e.count, 0));
      threads.push(sgdSites(entries).reduce((n, e) => n + e.threads, 0));
      steps.push(params.map((p) => bits(p)));
    }
    for (const s of Object.values(opt.stateDict().state)) {
      for (const v of Object.values(s.buffers)) steps[2].push(bits(v.data));
    }
  });
  const moved = params.every((p, i) => p.numel === 0 || !bits(p).equals(before[i]));
  const elements = params.reduce((a, p) => a + p.numel, 0);
  opt.dispose();
  for (const p of params) p.dispose();
  return { steps, launches, threads, elements, moved };
}

if (!cudaIsAvailable()) {
  test('SGD over many parameters per launch', () => {
    const info = native.deviceInfo();
    console.log(`SKIP test/unit/cuda_sgd_multi: no usable CUDA device (${info.cudaCompiled ? info.cudaStatus : 'built without CUDA'})`);
  });
} else {
  for (const c of CASES) {
    test(`bit for bit the per-parameter kernel: ${c.name}`, () => {
      const single = run(c, false);
      const multi = run(c, true);
      assert.ok(multi.moved, 'every parameter changed');
      multi.steps.forEach((values, s) => {
        assert.is(values.length, single.steps[s].length, `step ${s}: tensors`);
        values.forEach((v, i) => {
          if (!v.equals(single.steps[s][i])) {
            const a = new Float64Array(v.buffer, v.byteOffset, v.length / 8);
            const b = new Float64Array(single.steps[s][i].buffer, single.steps[s][i].byteOffset, a.length);
            const at = a.findIndex((x, k) => !Object.is(x, b[k]));
            assert.unreachable(`step ${s}, tensor ${i}, element ${at}: multi ${a[at]} vs per-parameter ${b[at]}`);
          }
        });
      });
      console.log(`  ${c.name}: SGD launches per step ${multi.launches.join('/')} (per-parameter ${single.launches.join('/')})`);
      assert.ok(multi.launches.every((n, s) => n < single.launches[s]), 'fewer launches every step');
      if (c.strides) assert.ok(multi.threads[0] < multi.elements, `step 0: ${multi.threads[0]} threads for ${multi.elements} elements`);
    });
  }

  test('launch counts: ceil(n / 96) per group of dtypes and first step', () => {
    // Case 0, step 2: f32 55, f16 55, bf16 110 (2 launches); step 1 adds param 7's first step (its own).
    assert.equal(run(CASES[0], true).launches, [4, 5, 4]);
    // Views: bf16's 8 and f32's 8 (runs, not storages: the gaps keep each view its own run).
    assert.equal(run(CASES[4], true).launches, [2, 2, 2]);
  });

  test('census: a 50-parameter model steps in <= 2 SGD launches', () => {
    manualSeed(1);
    const layers = Array.from({ length: 25 }, () => new nn.Linear(8, 8, { dtype: 'bf16' }));
    const model = nn.moduleToDevice(new nn.Sequential(...layers), DEV);
    const params = model.parameters();
    assert.is(params.length, 50);
    const opt = new SGD(params, { lr: 0.01, momentum: 0.9, weightDecay: 5e-4 });
    const x = randn([4, 8], { device: DEV }).to('bf16');
    const y = tensor([0, 1, 2, 3], { dtype: 'i64', device: DEV });
    const count = (multi: boolean) =>
      withMulti(multi, () => {
        crossEntropy(model.forward(x), y).backward();
        const n = sgdSites(cudaCensus(() => opt.step()).entries).reduce((a, e) => a + e.count, 0);
        opt.zeroGrad();
        return n;
      });
    count(true); // the momentum buffers' first step
    const multi = count(true);
    const single = count(false);
    console.log(`  50-parameter model: ${multi} SGD launch(es) per step (per-parameter ${single})`);
    assert.ok(multi <= 2, `${multi} SGD launches`);
    assert.is(single, 50);
    opt.dispose();
    model.dispose();
  });

  test('bad refs: clear errors naming sgdMulti', () => {
    // dtype codes: f32 0, bf16 2 (src/tensor/dtype.ts).
    assert.throws(() => native.cuda.sgdMulti(0, 0, 0, new Float64Array(8), 0.1, 0, 0, 0, false, false, false, 1), /sgdMulti: refs holds 9 numbers per tensor, got 8/);
    assert.throws(() => native.cuda.sgdMulti(0, 0, 2, new Float64Array(9), 0.1, 0, 0, 0, false, false, false, 1), /sgdMulti: the state dtype must be f32 or f64/);
    assert.throws(() => native.cuda.sgdMulti(0, 0, 0, new Float64Array(9), 0.1, 0, 0, 0, false, false, false, Number.NaN), /sgdMulti: gradScale must be finite/);
    const refs = new Float64Array(9);
    refs[8] = -1;
    assert.throws(() => native.cuda.sgdMulti(0, 0, 0, refs, 0.1, 0, 0, 0, false, false, false, 1), /sgdMulti: tensor 0 has negative length -1/);
  });
}

test.run();
