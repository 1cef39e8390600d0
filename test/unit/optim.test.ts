/**
 * Optimizers: SGD, Adam and AdamW against references written out in plain JS (f64, three steps,
 * within 1e-12), parameter groups, zeroGrad, memory under the `optim` tag, state save/load,
 * one native call per flat run, 16-bit params with fp32 master weights, and option errors.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  Adam, AdamW, copyInPlace, memoryStats, native, type Optimizer, SGD, type SGDOptions, type Tensor, tensor, WarmupLR,
} from '../../src/index.ts';
import { contiguousStrides } from '../../src/tensor/shape.ts';
import type { Device } from '../../src/tensor/storage.ts';
import { deviceTest } from '../helpers/devices.ts';

const GRADS = [
  [0.5, -1.25, 2, 0.125, -0.75, 3],
  [-0.25, 0.5, 1.5, -2, 0.375, -1],
  [1, 0.25, -0.5, 0.75, -1.5, 0.625],
];
const P0 = [0.3, -0.7, 1.1, -1.9, 0.05, 2.4];

function close(have: number[], want: number[], tol: number, what: string): void {
  assert.is(have.length, want.length, `${what}: length`);
  for (let i = 0; i < want.length; i++) {
    assert.ok(Math.abs(have[i] - want[i]) <= tol * Math.max(1, Math.abs(want[i])), `${what}[${i}]: ${have[i]} vs ${want[i]}`);
  }
}

/** Runs `opt` for one step per gradient list on an f64 [2, 3] parameter; returns its values. */
function run(make: (p: Tensor) => Optimizer<object>, grads = GRADS, device: Device = 'cpu'): number[] {
  const p = tensor(P0, { shape: [2, 3], dtype: 'f64', device, requiresGrad: true });
  const opt = make(p);
  for (const g of grads) {
    p.grad = tensor(g, { shape: [2, 3], dtype: 'f64', device });
    opt.step();
    opt.zeroGrad();
  }
  const out = p.toList();
  opt.dispose();
  p.dispose();
  return out;
}

// torch.optim.SGD, written out per element.
function sgdReference(o: SGDOptions): number[] {
  let p = [...P0];
  let buf: number[] = [];
  GRADS.forEach((grad, t) => {
    const g = grad.map((x, i) => (o.maximize ? -x : x) + o.weightDecay * p[i]);
    let d = g;
    if (o.momentum !== 0) {
      // The buffer starts as the first gradient (no dampening), then accumulates.
      buf = t === 0 ? [...g] : buf.map((b, i) => o.momentum * b + (1 - o.dampening) * g[i]);
      d = o.nesterov ? g.map((x, i) => x + o.momentum * buf[i]) : buf;
    }
    p = p.map((x, i) => x - o.lr * d[i]);
  });
  return p;
}

// torch.optim.Adam (decoupled = false) and AdamW (decoupled = true), written out per element.
function adamReference(lr: number, b1: number, b2: number, eps: number, wd: number, decoupled: boolean): number[] {
  let p = [...P0];
  let m = P0.map(() => 0);
  let v = P0.map(() => 0);
  GRADS.forEach((grad, k) => {
    const t = k + 1;
    if (decoupled) p = p.map((x) => x * (1 - lr * wd));
    const g = grad.map((x, i) => (decoupled ? x : x + wd * p[i]));
    m = m.map((x, i) => b1 * x + (1 - b1) * g[i]);
    v = v.map((x, i) => b2 * x + (1 - b2) * g[i] * g[i]);
    const bc1 = 1 - b1 ** t;
    const bc2 = 1 - b2 ** t;
    p = p.map((x, i) => x - (lr / bc1) * (m[i] / (Math.sqrt(v[i]) / Math.sqrt(bc2) + eps)));
  });
  return p;
}

const SGD_CASES: [string, Partial<SGDOptions>][] = [
  ['plain', { lr: 0.1 }],
  ['momentum', { lr: 0.1, momentum: 0.9 }],
  ['momentum with dampening', { lr: 0.05, momentum: 0.8, dampening: 0.3 }],
  ['nesterov', { lr: 0.1, momentum: 0.9, nesterov: true }],
  ['weight decay + momentum', { lr: 0.1, momentum: 0.5, weightDecay: 0.01 }],
  ['maximize', { lr: 0.1, momentum: 0.9, maximize: true }],
];
for (const [name, opts] of SGD_CASES) {
  deviceTest(`SGD ${name}: three steps equal the reference within 1e-12`, (dev) => {
    const full: SGDOptions = { lr: 1e-3, momentum: 0, dampening: 0, weightDecay: 0, nesterov: false, maximize: false, ...opts };
    close(run((p) => new SGD([p], opts), GRADS, dev), sgdReference(full), 1e-12, `SGD ${name}`);
  });
}

deviceTest('Adam and AdamW: three steps equal the reference within 1e-12 (with and without weight decay)', (dev) => {
  for (const wd of [0, 0.1]) {
    const opts = { lr: 0.01, betas: [0.8, 0.95] as [number, number], eps: 1e-6, weightDecay: wd };
    close(run((p) => new Adam([p], opts), GRADS, dev), adamReference(0.01, 0.8, 0.95, 1e-6, wd, false), 1e-12, `Adam wd ${wd}`);
    close(run((p) => new AdamW([p], opts), GRADS, dev), adamReference(0.01, 0.8, 0.95, 1e-6, wd, true), 1e-12, `AdamW wd ${wd}`);
  }
  // Defaults: Adam has no decay, AdamW 1e-2.
  close(run((p) => new AdamW([p]), GRADS, dev), adamReference(1e-3, 0.9, 0.999, 1e-8, 1e-2, true), 1e-12, 'AdamW defaults');
  close(run((p) => new Adam([p]), GRADS, dev), adamReference(1e-3, 0.9, 0.999, 1e-8, 0, false), 1e-12, 'Adam defaults');
});

test('parameter groups: each group steps with its own lr and weight decay; null grads are skipped', () => {
  const a = tensor([1, 2], { dtype: 'f64', requiresGrad: true });
  const b = tensor([3, 4], { dtype: 'f64', requiresGrad: true });
  const c = tensor([5], { dtype: 'f64', requiresGrad: true });
  const opt = new SGD([{ params: [a] }, { params: [b, c], lr: 0.01, weightDecay: 0.5 }], { lr: 0.1 });
  assert.is(opt.paramGroups[0].lr, 0.1);
  assert.is(opt.paramGroups[1].lr, 0.01);
  a.grad = tensor([1, -1], { dtype: 'f64' });
  b.grad = tensor([2, 2], { dtype: 'f64' });
  opt.step();
  close(a.toList(), [1 - 0.1, 2 + 0.1], 1e-15, 'group 0');
  close(b.toList(), [3 - 0.01 * (2 + 1.5), 4 - 0.01 * (2 + 2)], 1e-15, 'group 1');
  assert.equal(c.toList(), [5]);
  opt.paramGroups[0].lr = 1; // schedules change lr between steps
  opt.step();
  close(a.toList(), [0.9 - 1, 2.1 + 1], 1e-15, 'group 0 after lr change');
  for (const t of [a, b, c]) t.dispose();
});

test('zeroGrad: setToNone (default) drops grads; setToNone false zeroes them in place', () => {
  const p = tensor([1, 2, 3], { requiresGrad: true });
  const opt = new SGD([p], { lr: 0.1 });
  p.grad = tensor([1, 1, 1]);
  const g = p.grad;
  opt.zeroGrad({ setToNone: false });
  assert.is(p.grad, g);
  assert.equal(p.grad.toList(), [0, 0, 0]);
  opt.zeroGrad();
  assert.is(p.grad, null);
  assert.ok(g.disposed);
  assert.throws(() => opt.zeroGrad({ set_to_none: true } as never), /unknown key "set_to_none" \(did you mean "setToNone"\?\)/);
  p.dispose();
});

test('state memory: allocated on the first step, under the optim tag, freed by dispose()', () => {
  const optimBytes = () => memoryStats().cpu.optim.current;
  const p = tensor(new Float32Array(1000), { shape: [10, 100], requiresGrad: true });
  const h = tensor(new Float32Array(24).fill(1), { shape: [24], dtype: 'bf16', requiresGrad: true });
  const base = optimBytes();
  const opt = new AdamW([p, h]);
  assert.is(optimBytes(), base, 'nothing before the first step');
  p.grad = tensor(new Float32Array(1000).fill(0.5), { shape: [10, 100] });
  h.grad = tensor(new Float32Array(24).fill(0.25), { shape: [24], dtype: 'bf16' });
  opt.step();
  // m and v in f32 for 1024 elements, plus an f32 master copy of the 24 bf16 elements.
  assert.is(optimBytes() - base, 2 * 1024 * 4 + 24 * 4);
  const sgd = new SGD([tensor([1, 2], { requiresGrad: true })], { lr: 0.1 });
  sgd.paramGroups[0].params[0].grad = tensor([1, 1]);
  sgd.step();
  assert.is(optimBytes() - base, 2 * 1024 * 4 + 24 * 4, 'no momentum: no state');
  opt.dispose();
  assert.is(optimBytes(), base);
  for (const t of [p, h, sgd.paramGroups[0].params[0]]) t.dispose();
});

/** Two groups of f32 params stepping with fixed grads; `t` picks the step's gradient. */
function setGrads(params: Tensor[], t: number): void {
  params.forEach((p, i) => {
    p.grad?.dispose();
    p.grad = tensor(Array.from({ length: p.numel }, (_, j) => Math.sin(1 + t * 7 + i * 3 + j)), { shape: [...p.shape] });
  });
}

test('stateDict / loadStateDict: a restored optimizer (and schedule) continues identically', () => {
  for (const kind of ['AdamW', 'SGD'] as const) {
    const make = (ps: Tensor[]) =>
      kind === 'AdamW'
        ? new AdamW([{ params: [ps[0]] }, { params: [ps[1], ps[2]], weightDecay: 0 }], { lr: 0.01 })
        : new SGD([{ params: [ps[0]] }, { params: [ps[1], ps[2]], nesterov: true }], { lr: 0.01, momentum: 0.9 });
    const params = [[2, 3], [4], [1, 5]].map((s, i) => tensor(Array.from({ length: s[0] * (s[1] ?? 1) }, (_, j) => i + j / 10), { shape: s, requiresGrad: true }));
    const opt = make(params);
    const sched = new WarmupLR(opt, { warmup_max_lr: 0.02, warmup_num_steps: 4, warmup_type: 'linear' });
    for (let t = 0; t < 2; t++) {
      setGrads(params, t);
      opt.step();
      sched.step();
    }
    const saved = structuredClone({ opt: opt.stateDict(), sched: sched.stateDict() }); // plain data
    assert.is(Object.keys(saved.opt.state).length, 3);
    const copies = params.map((p) => tensor(p.toList(), { shape: [...p.shape], requiresGrad: true }));
    const opt2 = make(copies);
    const sched2 = new WarmupLR(opt2, { warmup_max_lr: 0.02, warmup_num_steps: 4, warmup_type: 'linear' });
    opt2.loadStateDict(saved.opt);
    sched2.loadStateDict(saved.sched);
    assert.equal(opt2.paramGroups.map((g) => g.lr), opt.paramGroups.map((g) => g.lr));
    for (let t = 2; t < 5; t++) {
      setGrads(params, t);
      setGrads(copies, t);
      opt.step();
      opt2.step();
      sched.step();
      sched2.step();
    }
    params.forEach((p, i) => assert.equal(copies[i].toList(), p.toList(), `${kind} param ${i}`));
    assert.equal(opt2.stateDict(), opt.stateDict());
    for (const t of [...params, ...copies]) t.dispose();
    opt.dispose();
    opt2.dispose();
  }
});

test('loadStateDict rejects mismatched group counts, parameter counts, shapes and keys', () => {
  const a = tensor([1, 2, 3], { requiresGrad: true });
  const b = tensor([[1, 2], [3, 4]], { requiresGrad: true });
  const opt = new Adam([a, b]);
  setGrads([a, b], 0);
  opt.step();
  const sd = opt.stateDict();
  const two = new Adam([{ params: [a] }, { params: [b] }]);
  assert.throws(() => two.loadStateDict(sd), /the state has 1 param groups, this optimizer 2/);
  const c = tensor([1], { requiresGrad: true });
  assert.throws(() => new Adam([a, b, c]).loadStateDict(sd), /param group 0 has 2 parameters in the state, 3 here/);
  const swapped = new Adam([b, a]);
  assert.throws(() => swapped.loadStateDict(sd), /parameter 0 \[2, 2\]: state "expAvg" has shape \[3\]/);
  const bad = structuredClone(sd);
  (bad.state[0].buffers as Record<string, unknown>).exp_avg = bad.state[0].buffers.expAvg;
  assert.throws(() => new Adam([a, b]).loadStateDict(bad), /unknown key "exp_avg" \(did you mean "expAvg"\?\)/);
  const badHyper = structuredClone(sd);
  badHyper.paramGroups[0].lr = Number.NaN;
  assert.throws(() => new Adam([a, b]).loadStateDict(badHyper), /lr must be a finite number >= 0, got NaN/);
  for (const t of [a, b, c]) t.dispose();
  opt.dispose();
});

test('flat runs: params and grads adjacent in one storage are updated by one native call, with the same values', () => {
  const shapes = [[3, 4], [5], [2, 2, 2]];
  const total = 12 + 5 + 8;
  const values = (t: number) => Array.from({ length: total }, (_, j) => Math.cos(t + j * 0.37));
  const views = (buf: Tensor) => {
    let off = 0;
    return shapes.map((s) => {
      const n = s.reduce((x, y) => x * y, 1);
      const v = buf.alias(s, contiguousStrides(s), off);
      off += n;
      return v;
    });
  };
  const init = Array.from({ length: total }, (_, j) => j / 10 - 1);
  const flatBuf = tensor(init, { dtype: 'f64' });
  const flatParams = views(flatBuf).map((v) => v.requiresGrad_());
  const gradBuf = tensor(new Float64Array(total), { dtype: 'f64' });
  const separate = views(tensor(init, { dtype: 'f64' })).map((v) => tensor(v.toList(), { shape: [...v.shape], dtype: 'f64', requiresGrad: true }));
  const a = new AdamW(flatParams, { lr: 0.05 });
  const b = new AdamW(separate, { lr: 0.05 });
  const orig = native.adamStep;
  let calls = 0;
  native.adamStep = (...args: unknown[]) => {
    calls++;
    return orig(...args);
  };
  try {
    const stepBoth = (t: number, skip: number) => {
      copyInPlace(gradBuf, tensor(values(t), { dtype: 'f64' }));
      const gv = views(gradBuf);
      flatParams.forEach((p, i) => {
        p.grad?.dispose();
        if (i === skip) gv[i].dispose();
        p.grad = i === skip ? null : gv[i];
      });
      const sv = views(tensor(values(t), { dtype: 'f64' }));
      separate.forEach((p, i) => {
        p.grad?.dispose();
        if (i === skip) sv[i].dispose();
        p.grad = i === skip ? null : sv[i];
      });
      calls = 0;
      a.step();
      const flatCalls = calls;
      calls = 0;
      b.step();
      return [flatCalls, calls];
    };
    assert.equal(stepBoth(0, -1), [1, 3], 'one call for the flat group, one per separate param');
    assert.equal(stepBoth(1, 1), [2, 2], 'a null grad splits the run');
    assert.equal(stepBoth(2, -1), [3, 3], 'differing step counts split it too');
    assert.equal(stepBoth(3, -1), [3, 3]);
  } finally {
    native.adamStep = orig;
  }
  flatParams.forEach((p, i) => assert.equal(p.toList(), separate[i].toList(), `param ${i}`));
  for (const t of [...flatParams, ...separate, flatBuf, gradBuf]) t.dispose();
  a.dispose();
  b.dispose();
});

deviceTest('bf16 params: the update runs on an fp32 master copy and the param holds it rounded', (dev) => {
  const init = [0.5, -1.25, 3, 0.0078125];
  const p32 = tensor(init, { device: dev, requiresGrad: true });
  const p16 = tensor(init, { dtype: 'bf16', device: dev, requiresGrad: true });
  const o32 = new AdamW([p32], { lr: 0.01 });
  const o16 = new AdamW([p16], { lr: 0.01 });
  for (let t = 0; t < 3; t++) {
    const g = [0.5, -0.25, 1, -2].map((x) => x * (t + 1)); // exact in bf16
    p32.grad = tensor(g, { device: dev });
    p16.grad = tensor(g, { dtype: 'bf16', device: dev });
    o32.step();
    o16.step();
  }
  const rounded = p32.to('bf16');
  assert.equal(p16.toList(), rounded.toList());
  assert.equal(Array.from(o16.stateDict().state[0].buffers.master.data), p32.toList());
  assert.not.equal(p16.toList(), p32.toList(), 'the master keeps bits the bf16 param cannot');
  for (const t of [p32, p16, rounded]) t.dispose();
  o32.dispose();
  o16.dispose();
});

test('bad options and parameters are rejected with a message', () => {
  const p = tensor([1, 2], { requiresGrad: true });
  assert.throws(() => new AdamW([p], { weight_decay: 0.1 } as never), /AdamW: unknown key "weight_decay" \(did you mean "weightDecay"\?\)/);
  assert.throws(() => new SGD([p], { lr: -1 }), /lr must be a finite number >= 0, got -1/);
  assert.throws(() => new SGD([p], { lr: Number.NaN }), /lr must be a finite number >= 0, got NaN/);
  assert.throws(() => new SGD([p], { nesterov: true }), /Nesterov momentum needs momentum > 0 and dampening 0/);
  assert.throws(() => new Adam([p], { betas: [0.9, 1] }), /betas\[1\] must be a finite number in \[0, 1\), got 1/);
  assert.throws(() => new Adam([{ params: [p], lr: 0.1, amsgrad: true } as never]), /unknown key "amsgrad"/);
  assert.throws(() => new Adam([p, p]), /appears more than once/);
  assert.throws(() => new Adam([{ params: [p] }, { params: [p] }]), /appears more than once/);
  assert.throws(() => new Adam([]), /empty parameter list/);
  const q = tensor([1, 2], { requiresGrad: true });
  const nonLeaf = q.mul(2);
  assert.throws(() => new Adam([nonLeaf]), /is not a leaf/);
  assert.throws(() => new Adam([tensor([1], { dtype: 'i32' })]), /dtype i32/);
  const opt = new SGD([p], { lr: 0.1 });
  p.grad = tensor([1, 2, 3]);
  assert.throws(() => opt.step(), /its grad has shape \[3\]/);
  opt.paramGroups[0].lr = Number.POSITIVE_INFINITY;
  p.grad = tensor([1, 2]);
  assert.throws(() => opt.step(), /SGD.step: param group 0: lr must be a finite number >= 0, got Infinity/);
  for (const t of [p, q, nonLeaf]) t.dispose();
});

test.run();
