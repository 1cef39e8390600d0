/**
 * fp16 dynamic loss scaling's update on a state of 8 f64 (native/tensor/loss_scaler_rule.h):
 * `native.lossScalerUpdate` (the CPU twin) equals `DynamicLossScaler.update` bit for bit after every
 * update, over long random overflow sequences (bursts that drive the scale to minScale, calm runs that
 * let it grow) and every combination of scaleFactor 2/3, scaleWindow 1/2/1000, minScale, delayedShift
 * 1/2/4, consecutive hysteresis and raising on or off: curScale, curIter, lastOverflowIter,
 * curHysteresis, lossFactor = curScale / gas, unscale = 1 / curScale, and raised set exactly at the
 * update where JS throws (then sticky; that update changes nothing else, as JS throws first). Overflow is
 * any decision but 0 (NaN too, -0 not), as the engine's `skip === 0` reads it. On a CUDA device (the
 * emulated one in cuda_emu), `cuda.lossScalerUpdate` equals the twin bit for bit, reads nothing back,
 * and replays in a CUDA graph following each replay's decision; stepDecision reading the state's
 * unscale then the update, chained on the device, equal the host's scaler and rule.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { DynamicLossScaler, type DynamicLossScalerOptions } from '../../src/engine/loss_scaler.ts';
import { captureCudaGraph, copyInPlace, cudaIsAvailable, native, type Tensor, tensor, zeros } from '../../src/index.ts';
import { copyInto } from '../../src/ops/kernels.ts';
import { clipFactor } from '../../src/optim/clip_grad.ts';
import type { Device } from '../../src/tensor/storage.ts';
import { mulberry32 } from '../dist/fixtures/batches.ts';

const RESERVED = 12345.5;

interface Combo extends Required<DynamicLossScalerOptions> {
  gas: number;
  steps: number;
}

/** Every option combination; starting scales a few factors above minScale, so bursts reach it. */
function combos(long: boolean): Combo[] {
  const out: Combo[] = [];
  let i = 0;
  for (const scaleFactor of [2, 3])
    for (const scaleWindow of [1, 2, 1000])
      for (const minScale of [1, 0.25, 3])
        for (const delayedShift of [1, 2, 4])
          for (const consecutiveHysteresis of [false, true])
            for (const raiseErrorAtMinScale of [true, false]) {
              const initScale = i % 3 === 0 ? 2 ** 16 : minScale * scaleFactor ** (i % 4) * (i % 5 === 0 ? 1.5 : 1);
              const steps = (scaleWindow === 1000 ? 2600 : 500) / (long ? 1 : 10);
              out.push({ initScale, scaleFactor, scaleWindow, minScale, delayedShift, consecutiveHysteresis, raiseErrorAtMinScale, gas: [1, 3, 8][i % 3], steps });
              i++;
            }
  return out;
}

/** Decisions (a step decision's skip): bursts of overflows and calm runs; overflows as 1, 2, -1, inf or NaN, steps as 0 or -0. */
function decisions(n: number, seed: number): Float64Array {
  const rnd = mulberry32(seed);
  const out = new Float64Array(n);
  let p = 0.05;
  for (let i = 0; i < n; i++) {
    if (rnd() < 0.02) p = [0.9, 0.5, 0.01, 0, 0.05][Math.floor(rnd() * 5)];
    const pick = rnd();
    out[i] = rnd() < p ? [1, 1, 1, 2, -1, Number.POSITIVE_INFINITY, Number.NaN][Math.floor(pick * 7)] : pick < 0.2 ? -0 : 0;
  }
  return out;
}

/** The state layout the engine keeps: [curScale, curIter, lastOverflowIter, curHysteresis, lossFactor, unscale, raised, reserved]. */
function stateOf(s: DynamicLossScaler, gas: number, raised: boolean): number[] {
  return [s.curScale, s.curIter, s.lastOverflowIter, s.curHysteresis, s.curScale / gas, 1 / s.curScale, raised ? 1 : 0, RESERVED];
}

/** JS's states after each update (throws caught: the state is as JS leaves it), and the updates that threw. */
function hostStates(c: Combo, ds: Float64Array): { states: Float64Array; threw: number[] } {
  const { gas, steps: _, ...opts } = c;
  const s = new DynamicLossScaler(opts);
  const states = new Float64Array(ds.length * 8);
  const threw: number[] = [];
  ds.forEach((d, i) => {
    try {
      s.update(!(d === 0));
    } catch {
      threw.push(i);
    }
    states.set(stateOf(s, gas, threw.length > 0), 8 * i);
  });
  return { states, threw };
}

type Update = (...a: unknown[]) => void;
const args = (c: Combo) => [c.scaleFactor, c.scaleWindow, c.minScale, c.delayedShift, c.consecutiveHysteresis, c.raiseErrorAtMinScale, c.gas];

/** Runs `update` over the decisions on `device`; the state after each update, as f64 (a device copies it aside: no read per update). */
function deviceStates(c: Combo, ds: Float64Array, device: Device, update: Update): Float64Array {
  const { gas, steps: _, ...opts } = c;
  const state = tensor([0, ...stateOf(new DynamicLossScaler(opts), gas, false)], { dtype: 'f64', device }).narrow(0, 1, 8);
  const dec = tensor(ds, { dtype: 'f64', device });
  const out = new Float64Array(ds.length * 8);
  const hist = device === 'cpu' ? null : zeros([ds.length * 8], { dtype: 'f64', device });
  for (let i = 0; i < ds.length; i++) {
    update(state.id, state.offset, dec.id, dec.offset + i, ...args(c));
    if (hist === null) {
      out.set(new Float64Array(native.read(state.id, state.offset * 8, 64)), 8 * i);
    } else {
      const h = hist.narrow(0, 8 * i, 8);
      copyInto(state, h);
      h.dispose();
    }
  }
  if (hist) out.set(hist.to('cpu').toArray() as Float64Array);
  for (const t of [state, dec, hist]) t?.dispose();
  return out;
}

const bits = (x: number) => new BigUint64Array(new Float64Array([x]).buffer)[0];
const NAMES = ['curScale', 'curIter', 'lastOverflowIter', 'curHysteresis', 'lossFactor', 'unscale', 'raised', 'reserved'];
const describe = (c: Combo) => JSON.stringify(c);

/** The index of the first element whose bits differ, or -1. */
const firstDiff = (a: Float64Array, b: Float64Array) => (a.length !== b.length ? 0 : a.findIndex((v, j) => bits(v) !== bits(b[j])));

test('native.lossScalerUpdate equals DynamicLossScaler.update bit for bit after every update, every option combination', () => {
  let raisedCombos = 0;
  let atMin = 0;
  let grown = 0;
  combos(true).forEach((c, ci) => {
    const ds = decisions(c.steps, 101 + ci);
    const want = hostStates(c, ds);
    const got = deviceStates(c, ds, 'cpu', native.lossScalerUpdate);
    const i = firstDiff(got, want.states);
    if (i >= 0) {
      const u = Math.floor(i / 8);
      assert.unreachable(`${describe(c)}: after update ${u} (decision ${ds[u]}) ${NAMES[i % 8]} is ${got[i]}, JS's ${want.states[i]}`);
    }
    // raised turns 1 exactly at JS's first throw.
    const first = got.findIndex((v, j) => j % 8 === 6 && v === 1);
    assert.is(first < 0 ? -1 : (first - 6) / 8, want.threw.length > 0 ? want.threw[0] : -1, `${describe(c)}: raised`);
    if (want.threw.length > 0) raisedCombos++;
    for (let u = 0; u < ds.length; u++) {
      if (got[8 * u] === c.minScale) atMin++;
      if (u > 0 && got[8 * u] > got[8 * u - 8]) grown++;
    }
  });
  // The sequences exercise what they claim: throws, scales at minScale, growth.
  assert.ok(raisedCombos >= 20, `${raisedCombos} combinations raised`);
  assert.ok(atMin > 1000 && grown > 1000, `${atMin} states at minScale, ${grown} growths`);
});

test('native.lossScalerUpdate refuses bad options and offsets outside its storages, naming the op', () => {
  const st = zeros([8], { dtype: 'f64' });
  const d = zeros([1], { dtype: 'f64' });
  const ok = [2, 1000, 1, 2, false, true, 1];
  const call = (sOff: number, dOff: number, o: unknown[], s: Tensor = st) => () => native.lossScalerUpdate(s.id, sOff, d.id, dOff, ...o);
  const bad = (i: number, v: unknown) => ok.map((x, j) => (j === i ? v : x));
  assert.throws(call(0, 0, bad(0, 0.5)), /lossScalerUpdate: scaleFactor must be finite and >= 1, got 0.5/);
  assert.throws(call(0, 0, bad(1, 1.5)), /lossScalerUpdate: scaleWindow must be an integer >= 1, got 1.5/);
  assert.throws(call(0, 0, bad(2, 0)), /lossScalerUpdate: minScale must be finite and positive, got 0/);
  assert.throws(call(0, 0, bad(3, 0)), /lossScalerUpdate: delayedShift must be an integer >= 1, got 0/);
  assert.throws(call(0, 0, bad(6, Number.NaN)), /lossScalerUpdate: gas \(gradient accumulation steps\) must be finite and positive, got nan/);
  assert.throws(call(1, 0, ok), /lossScalerUpdate: state elements \[1, 9\) must lie in storage \d+ of 8 f64/);
  assert.throws(call(0, 1, ok), /lossScalerUpdate: decision elements \[1, 2\) must lie in storage \d+ of 1 f64/);
  assert.throws(call(-1, 0, ok), /lossScalerUpdate: state elements \[-1, 7\)/);
  st.dispose();
  d.dispose();
});

/** The host's step decision (test/unit/step_decision.test.ts's rule) for one sum, no check-free or clip-free shortcut. */
function hostDecision(global: number, unscale: number, maxNorm: number): [number, number, number] {
  if (!Number.isFinite(global)) return [1, 0, Number.NaN];
  const norm = Math.sqrt(global) * unscale;
  return [0, unscale * clipFactor(norm, maxNorm), norm];
}

/**
 * stepDecision reading unscale from the state (element 5), then lossScalerUpdate reading that
 * decision, per step on `device` (or through `step` instead, e.g. a graph replay); the decisions.
 */
function chain(device: Device, sums: Float64Array, c: Combo, decide: Update, update: Update): Float64Array {
  const { gas, steps: _, ...opts } = c;
  const state = tensor(stateOf(new DynamicLossScaler(opts), gas, false), { dtype: 'f64', device });
  const s = tensor(sums, { dtype: 'f64', device });
  const out = zeros([sums.length * 3], { dtype: 'f64', device });
  for (let i = 0; i < sums.length; i++) {
    decide(s.id, s.offset, i, i, 0.5, 1.0, true, out.id, 3 * i, state.id, state.offset + 5);
    update(state.id, state.offset, out.id, 3 * i, ...args(c));
  }
  const r = out.to('cpu').toArray() as Float64Array;
  for (const t of [state, s, out]) t.dispose();
  return r;
}

const CHAIN: Combo = { initScale: 2 ** 8, scaleFactor: 2, scaleWindow: 3, minScale: 1, delayedShift: 2, consecutiveHysteresis: false, raiseErrorAtMinScale: false, gas: 4, steps: 0 };

/** Gradient sums: finite (some clipped at maxNorm 1 after unscaling) or overflowed. */
function chainSums(n: number): Float64Array {
  const rnd = mulberry32(5);
  return Float64Array.from({ length: n }, () => (rnd() < 0.3 ? Number.POSITIVE_INFINITY : rnd() * 2 ** (Math.floor(rnd() * 24) - 4)));
}

test('stepDecision with the state\'s unscale, then lossScalerUpdate from that decision, equal the host scaler and rule (CPU)', () => {
  const sums = chainSums(200);
  const { gas, steps: _, ...opts } = CHAIN;
  const host = new DynamicLossScaler(opts);
  const want = new Float64Array(sums.length * 3);
  sums.forEach((g, i) => {
    const d = hostDecision(g, 1 / host.curScale, 1.0);
    want.set(d, 3 * i);
    host.update(d[0] !== 0);
  });
  const got = chain('cpu', sums, CHAIN, native.stepDecision, native.lossScalerUpdate);
  const i = firstDiff(got, want);
  assert.is(i, -1, i < 0 ? '' : `step ${Math.floor(i / 3)} element ${i % 3}: ${got[i]}, the host's ${want[i]}`);
  assert.ok(want.some((v, j) => j % 3 === 0 && v === 1) && new Set(want.filter((_, j) => j % 3 === 1)).size > 5, 'skips and several gradScales');
});

if (cudaIsAvailable() && typeof native.cuda?.lossScalerUpdate === 'function') {
  const cuda = native.cuda;

  test('cuda.lossScalerUpdate equals native.lossScalerUpdate bit for bit and reads nothing back', () => {
    combos(false).forEach((c, ci) => {
      const ds = decisions(c.steps, 101 + ci);
      const cpu = deviceStates(c, ds, 'cpu', native.lossScalerUpdate);
      let waits = -1;
      const dev = deviceStates(c, ds, 'cuda:0', (...a) => {
        if (waits < 0) waits = native.cudaSyncCount(0);
        cuda.lossScalerUpdate(...a);
        assert.is(native.cudaSyncCount(0), waits, 'a host wait during the updates');
      });
      const i = firstDiff(dev, cpu);
      if (i >= 0) assert.unreachable(`${describe(c)}: after update ${Math.floor(i / 8)} ${NAMES[i % 8]} is ${dev[i]} on the device, ${cpu[i]} on the CPU`);
    });
  });

  test('the chain stepDecision -> lossScalerUpdate on the device equals the CPU\'s, eager and replayed in a CUDA graph', () => {
    const sums = chainSums(60);
    const cpu = chain('cpu', sums, CHAIN, native.stepDecision, native.lossScalerUpdate);
    const eager = chain('cuda:0', sums, CHAIN, cuda.stepDecision, cuda.lossScalerUpdate);
    let i = firstDiff(eager, cpu);
    assert.is(i, -1, i < 0 ? '' : `eager step ${Math.floor(i / 3)} element ${i % 3}: ${eager[i]}, the CPU's ${cpu[i]}`);
    // One graph of both kernels over fixed buffers; each replay's sum copied in first.
    const { gas, steps: _, ...opts } = CHAIN;
    const state = tensor(stateOf(new DynamicLossScaler(opts), gas, false), { dtype: 'f64', device: 'cuda:0' });
    const sum = zeros([1], { dtype: 'f64', device: 'cuda:0' });
    const dec = zeros([3], { dtype: 'f64', device: 'cuda:0' });
    const g = captureCudaGraph(() => {
      cuda.stepDecision(sum.id, sum.offset, 0, 0, 0.5, 1.0, true, dec.id, dec.offset, state.id, state.offset + 5);
      cuda.lossScalerUpdate(state.id, state.offset, dec.id, dec.offset, ...args(CHAIN));
    });
    const replayed = new Float64Array(sums.length * 3);
    sums.forEach((v, k) => {
      copyInPlace(sum, tensor([v], { dtype: 'f64', device: 'cuda:0' }));
      g.replay();
      replayed.set(dec.to('cpu').toArray() as Float64Array, 3 * k);
    });
    g.dispose();
    for (const t of [state, sum, dec]) t.dispose();
    i = firstDiff(replayed, cpu);
    assert.is(i, -1, i < 0 ? '' : `replay ${Math.floor(i / 3)} element ${i % 3}: ${replayed[i]}, the CPU's ${cpu[i]}`);
  });

  test('cuda.lossScalerUpdate refuses CPU storages, two devices\' mix and offsets outside, naming the op', () => {
    const st = zeros([8], { dtype: 'f64', device: 'cuda:0' });
    const d = zeros([1], { dtype: 'f64', device: 'cuda:0' });
    const host = zeros([8], { dtype: 'f64' });
    const o = args(CHAIN);
    assert.throws(() => cuda.lossScalerUpdate(host.id, 0, d.id, 0, ...o), /lossScalerUpdate: storage \d+ is not on a CUDA device/);
    assert.throws(() => cuda.lossScalerUpdate(st.id, 0, host.id, 0, ...o), /lossScalerUpdate: storage \d+ is not on a CUDA device/);
    assert.throws(() => cuda.lossScalerUpdate(st.id, 1, d.id, 0, ...o), /lossScalerUpdate: state elements \[1, 9\) must lie in storage/);
    assert.throws(() => cuda.lossScalerUpdate(st.id, 0, d.id, 0, 0.5, 1, 1, 1, false, false, 1), /lossScalerUpdate: scaleFactor must be finite/);
    for (const t of [st, d, host]) t.dispose();
  });
}

test.run();
