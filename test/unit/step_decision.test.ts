/**
 * The device-decided optimizer step's rule (native/tensor/step_decision.h): `native.stepDecision`
 * (the CPU reference) equals the engine's host arithmetic (engine.ts boundaryStep, precision.ts
 * prepare, clip_grad.ts clipFactor, written out below) bit for bit over random and edge inputs:
 * overflowed sums, a zero local sum, huge and tiny norms, no clipping, no overflow check. Products
 * and sums are rounded one by one as in JS (an FMA would differ for norms near 1e-6, which the
 * random cases cover). On a CUDA device (the emulated one in cuda_emu), `cuda.stepDecision`
 * equals the CPU reference bit for bit, and bad arguments are refused naming the op. Both read
 * unscale from an f64 tensor when given one (a loss scaler state's element 5), bit for bit the by-value
 * form, which they then ignore.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { cudaIsAvailable, native, type Tensor, tensor, zeros } from '../../src/index.ts';
import { clipFactor } from '../../src/optim/clip_grad.ts';
import { mulberry32 } from '../dist/fixtures/batches.ts';

interface Case {
  global: number;
  local: number;
  unscale: number;
  maxNorm: number;
  check: boolean;
}

/** The host's rule, as the engine computes it (the brief of the device rule). */
function hostRule({ global, local, unscale, maxNorm, check }: Case): [number, number, number] {
  if (check && !Number.isFinite(global)) return [1, 0, Number.NaN];
  let gradScale = unscale;
  let norm = Number.NaN;
  if (maxNorm > 0) {
    norm = Math.sqrt(local) * gradScale;
    gradScale *= clipFactor(norm, maxNorm);
  }
  return [0, gradScale, norm];
}

function cases(): Case[] {
  const rnd = mulberry32(7);
  const wide = (lo: number, hi: number) => (1 + rnd()) * 2 ** Math.floor(lo + rnd() * (hi - lo));
  const out: Case[] = [];
  const sums = [0, -0, 5e-324, 1e-300, 1e-12, 0.25, 1, 3, 1e20, 1e300, 1.7976931348623157e308, Number.POSITIVE_INFINITY, Number.NaN];
  const globals = [0.5, 1e308, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, Number.NaN];
  const unscales = [1, 2 ** -16, 1 / 3, 1 / 65536.5, 2 ** 24];
  const maxNorms = [0, -1, Number.NaN, 1e-12, 1e-3, 1, 1e300, Number.POSITIVE_INFINITY];
  for (const local of sums) for (const global of globals) for (const unscale of unscales) for (const maxNorm of maxNorms) for (const check of [true, false]) out.push({ global, local, unscale, maxNorm, check });
  for (let i = 0; i < 6000; i++) {
    // Norms from ~1e-9 to ~1e9, many near 1e-6 (where rounding the product before adding 1e-6 shows).
    const local = i % 3 === 0 ? wide(-60, -30) : wide(-60, 60);
    const unscale = i % 4 === 0 ? 1 : 1 / wide(0, 24);
    const maxNorm = i % 5 === 0 ? 0 : wide(-30, 10);
    out.push({ global: i % 7 === 0 ? Number.POSITIVE_INFINITY : local * (1 + rnd()), local, unscale, maxNorm, check: i % 2 === 0 });
  }
  return out;
}

/** The sums (global, local per case) and an output of 3 f64 per case on `device`. */
function buffers(cs: Case[], device: 'cpu' | 'cuda:0'): { sums: Tensor; out: Tensor } {
  const v = new Float64Array(cs.length * 2);
  cs.forEach((c, i) => {
    v[2 * i] = c.global;
    v[2 * i + 1] = c.local;
  });
  return { sums: tensor(v, { dtype: 'f64', device }), out: zeros([cs.length * 3], { dtype: 'f64', device }) };
}

/**
 * Runs `decide` (native.stepDecision or native.cuda.stepDecision) for every case; the outputs as f64.
 * byPointer: each case's unscale is read from an f64 tensor (at an offset), the by-value argument a decoy.
 */
function decideAll(cs: Case[], device: 'cpu' | 'cuda:0', decide: (...a: unknown[]) => void, byPointer = false): Float64Array {
  const { sums, out } = buffers(cs, device);
  const unscales = byPointer ? tensor([0, ...cs.map((c) => c.unscale)], { dtype: 'f64', device }).narrow(0, 1, cs.length) : null;
  cs.forEach((c, i) => {
    const at = unscales ? [unscales.id, unscales.offset + i] : [];
    decide(sums.id, sums.offset, 2 * i, 2 * i + 1, unscales ? 12345 : c.unscale, c.maxNorm, c.check, out.id, out.offset + 3 * i, ...at);
  });
  const r = out.to('cpu').toArray() as Float64Array;
  sums.dispose();
  out.dispose();
  unscales?.dispose();
  return r;
}

const bits = (x: number) => {
  const f = new Float64Array([x]);
  return new BigUint64Array(f.buffer)[0];
};
/** The index of the first element whose bits differ, or -1. */
const firstDiff = (a: Float64Array, b: Float64Array) => a.findIndex((v, j) => bits(v) !== bits(b[j]));
const describe = (c: Case) => `global ${c.global}, local ${c.local}, unscale ${c.unscale}, maxNorm ${c.maxNorm}, check ${c.check}`;

test('native.stepDecision equals the host rule bit for bit (NaN for NaN), over random and edge inputs', () => {
  const cs = cases();
  const got = decideAll(cs, 'cpu', native.stepDecision);
  let clipped = 0;
  cs.forEach((c, i) => {
    const want = hostRule(c);
    for (let k = 0; k < 3; k++) {
      const g = got[3 * i + k];
      const same = Number.isNaN(want[k]) ? Number.isNaN(g) : bits(g) === bits(want[k]);
      if (!same) assert.unreachable(`${describe(c)}: element ${k} is ${g}, the host's ${want[k]}`);
    }
    if (want[0] === 0 && want[1] !== c.unscale) clipped++;
  });
  // The random cases clip often enough to exercise the factor's rounding.
  assert.ok(clipped > 1000, `${clipped} clipped cases`);
});

test('native.stepDecision with unscale read from an f64 tensor equals passing it by value, bit for bit (the by-value one ignored)', () => {
  const cs = cases();
  const byValue = decideAll(cs, 'cpu', native.stepDecision);
  const i = firstDiff(decideAll(cs, 'cpu', native.stepDecision, true), byValue);
  assert.is(i, -1, i < 0 ? '' : `${describe(cs[Math.floor(i / 3)])}: element ${i % 3} differs with the unscale pointer`);
});

test('native.stepDecision refuses offsets outside its storages, naming the op', () => {
  const sums = zeros([2], { dtype: 'f64' });
  const out = zeros([3], { dtype: 'f64' });
  assert.throws(() => native.stepDecision(sums.id, 0, 0, 2, 1, 1, true, out.id, 0), /stepDecision: sums elements 0 \(global\) and 2 \(local\) must lie in storage/);
  assert.throws(() => native.stepDecision(sums.id, 0, -1, 0, 1, 1, true, out.id, 0), /stepDecision: .*must be non-negative/);
  assert.throws(() => native.stepDecision(sums.id, 0, 0, 1, 1, 1, true, out.id, 1), /stepDecision: out elements \[1, 4\) must lie in storage/);
  assert.throws(() => native.stepDecision(sums.id, 0, 0, 1, 1, 1, true, out.id, 0, sums.id, 2), /stepDecision: unscale elements \[2, 3\) must lie in storage \d+ of 2 f64/);
  assert.throws(() => native.stepDecision(sums.id, 0, 0, 1, 1, 1, true, out.id, 0, sums.id, -1), /stepDecision: unscale elements \[-1, 0\) must lie/);
  sums.dispose();
  out.dispose();
});

if (cudaIsAvailable() && typeof native.cuda?.stepDecision === 'function') {
  test('cuda.stepDecision equals native.stepDecision bit for bit', () => {
    const cs = cases();
    const cpu = decideAll(cs, 'cpu', native.stepDecision);
    const dev = decideAll(cs, 'cuda:0', native.cuda.stepDecision);
    const i = cpu.findIndex((v, j) => bits(v) !== bits(dev[j]));
    assert.is(i, -1, i < 0 ? '' : `${describe(cs[Math.floor(i / 3)])}: element ${i % 3} is ${dev[i]} on the device, ${cpu[i]} on the CPU`);
  });

  test('cuda.stepDecision with unscale read from device memory equals native.stepDecision by value, bit for bit', () => {
    const cs = cases();
    const cpu = decideAll(cs, 'cpu', native.stepDecision);
    const dev = decideAll(cs, 'cuda:0', native.cuda.stepDecision, true);
    const i = firstDiff(dev, cpu);
    assert.is(i, -1, i < 0 ? '' : `${describe(cs[Math.floor(i / 3)])}: element ${i % 3} is ${dev[i]} on the device (unscale pointer), ${cpu[i]} on the CPU`);
  });

  test('cuda.stepDecision refuses CPU storages and offsets outside its storages, naming the op', () => {
    const sums = zeros([2], { dtype: 'f64', device: 'cuda:0' });
    const out = zeros([3], { dtype: 'f64', device: 'cuda:0' });
    const host = zeros([3], { dtype: 'f64' });
    assert.throws(() => native.cuda.stepDecision(sums.id, 1, 0, 1, 1, 1, true, out.id, 0), /stepDecision: sums elements 1 \(global\) and 2 \(local\) must lie in storage/);
    assert.throws(() => native.cuda.stepDecision(sums.id, 0, 0, 1, 1, 1, true, host.id, 0), /stepDecision: storage \d+ is not on a CUDA device/);
    assert.throws(() => native.cuda.stepDecision(sums.id, 0, 0, 1, 1, 1, true, out.id, 2), /stepDecision: out elements \[2, 5\) must lie in storage/);
    assert.throws(() => native.cuda.stepDecision(sums.id, 0, 0, 1, 1, 1, true, out.id, 0, host.id, 0), /stepDecision: storage \d+ is not on a CUDA device/);
    assert.throws(() => native.cuda.stepDecision(sums.id, 0, 0, 1, 1, 1, true, out.id, 0, sums.id, 2), /stepDecision: unscale elements \[2, 3\) must lie in storage/);
    for (const t of [sums, out, host]) t.dispose();
  });
}

test.run();
