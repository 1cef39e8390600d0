import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  checkpoint, dropout, getRngState, linear, liveStorages, manualSeed, memoryStats, mul, noGrad, randn, resetPeakMemoryStats, sum, type Tensor, tanh,
  tidy,
} from '../../src/index.ts';
import { gradcheck, leaf, maxAbsDiff } from '../helpers/gradcheck.ts';

type Layer = [Tensor, Tensor];

function layers(n: number, width: number, dtype: 'f32' | 'f64'): Layer[] {
  return Array.from({ length: n }, () => [
    randn([width, width], { dtype, std: 1 / Math.sqrt(width), tag: 'param', requiresGrad: true }),
    randn([width], { dtype, tag: 'param', requiresGrad: true }),
  ]);
}

/** A chain of linear + tanh (+ dropout) layers, each checkpointed or not. */
function chain(x: Tensor, ws: Layer[], useCheckpoint: boolean, p = 0): Tensor {
  let h = x;
  for (const [w, b] of ws) {
    const layer = (t: Tensor) => {
      const y = tanh(linear(t, w, b));
      return p > 0 ? dropout(y, p) : y;
    };
    h = useCheckpoint ? checkpoint(layer, h) : layer(h);
  }
  return h;
}

function clearGrads(ts: Tensor[]): void {
  for (const t of ts) {
    t.grad?.dispose();
    t.grad = null;
  }
}

function gradsOf(ts: Tensor[]): number[][] {
  return ts.map((t) => (t.grad ? t.grad.toList() : []));
}

test('checkpointed chain with dropout: same loss, input and closure-weight gradients, same seed', () => {
  const ws = layers(4, 6, 'f64');
  const params = ws.flat();
  const x = randn([3, 6], { dtype: 'f64', requiresGrad: true });
  const run = (ck: boolean) =>
    tidy(() => {
      clearGrads([x, ...params]);
      manualSeed(42);
      const h = chain(x, ws, ck, 0.3);
      const loss = sum(mul(h, h));
      loss.backward();
      return { loss: loss.item(), grads: gradsOf([x, ...params]), rng: getRngState().offset };
    });
  const plain = run(false);
  const ck = run(true);
  assert.is(ck.loss, plain.loss);
  assert.is(ck.rng, plain.rng, 'the recomputation restores the generator');
  plain.grads.forEach((g, i) => {
    assert.ok(g.length > 0, `gradient ${i} present`);
    assert.is(maxAbsDiff(ck.grads[i], g), 0, `gradient ${i} identical`);
  });
  // The dropout masks really were replayed: a different seed gives different gradients.
  const other = tidy(() => {
    clearGrads([x, ...params]);
    manualSeed(43);
    sum(mul(chain(x, ws, true, 0.3), chain(x, ws, false, 0))).backward();
    return gradsOf([x])[0];
  });
  assert.ok(maxAbsDiff(other, plain.grads[0]) > 0);
  clearGrads([x, ...params]);
});

test('closure-captured weights get gradients when no input requires grad; nested checkpoints', () => {
  const ws = layers(3, 5, 'f64');
  const params = ws.flat();
  const x = randn([2, 5], { dtype: 'f64' });
  const run = (mode: 'plain' | 'flat' | 'nested') =>
    tidy(() => {
      clearGrads(params);
      let h: Tensor;
      if (mode === 'plain') h = chain(x, ws, false);
      else if (mode === 'flat') h = chain(x, ws, true);
      else h = checkpoint((t) => chain(checkpoint((u) => chain(u, ws.slice(0, 1), true), t), ws.slice(1), true), x);
      sum(mul(h, h)).backward();
      return gradsOf(params);
    });
  const plain = run('plain');
  for (const mode of ['flat', 'nested'] as const) {
    const got = run(mode);
    plain.forEach((g, i) => assert.is(maxAbsDiff(got[i], g), 0, `${mode}: weight gradient ${i}`));
  }
  clearGrads(params);
});

test('checkpoint of a two-input segment (finite differences, f64); retainGraph replays', () => {
  tidy(() => {
    const segment = (w: Tensor) => (a: Tensor, b: Tensor) => mul(tanh(linear(a, w)), b);
    // w reaches the segment by closure only.
    gradcheck('checkpoint', (a, b, w) => checkpoint(segment(w), a, b), [leaf([3, 4]), leaf([3, 4]), leaf([4, 4])]);
    const seg = segment(leaf([4, 4]));
    const a = leaf([3, 4]);
    const y = sum(checkpoint(seg, a, a));
    y.backward(undefined, { retainGraph: true });
    const once = (a.grad as Tensor).toList();
    y.backward();
    assert.ok(maxAbsDiff((a.grad as Tensor).toList(), once.map((v) => 2 * v)) < 1e-12);
  });
});

/** Peak 'activation' bytes of one forward + backward of an 8-layer [256, 256] f32 chain. */
function peakActivation(ws: Layer[], ck: boolean): number {
  return tidy(() => {
    const x = randn([256, 256]);
    resetPeakMemoryStats();
    const base = memoryStats().cpu.activation.current;
    const h = chain(x, ws, ck);
    sum(h).backward();
    return memoryStats().cpu.activation.peak - base;
  });
}

test('checkpointing lowers peak activation memory', () => {
  const ws = layers(8, 256, 'f32');
  const params = ws.flat();
  const without = peakActivation(ws, false);
  const withCk = peakActivation(ws, true);
  clearGrads(params);
  const mib = (b: number) => `${(b / 2 ** 20).toFixed(2)} MiB`;
  // Without: 16 saved [256, 256] activations; with: 8 segment outputs + one segment recomputed.
  assert.ok(without >= 16 * 256 * 256 * 4, `without checkpoint: ${mib(without)}`);
  assert.ok(withCk < 0.7 * without, `peak activation with checkpoint ${mib(withCk)}, without ${mib(without)}`);
  for (const t of params) t.dispose();
});

test('no grad mode runs the segment plainly; no storage leaks across steps', () => {
  const ws = layers(2, 8, 'f32');
  const params = ws.flat();
  tidy(() => {
    const y = noGrad(() => checkpoint((t) => chain(t, ws, false), randn([2, 8])));
    assert.is(y.gradFn, null);
    assert.is(y.requiresGrad, false);
  });
  const step = () => tidy(() => sum(chain(randn([4, 8]), ws, true, 0.1)).backward());
  step();
  const before = liveStorages();
  for (let i = 0; i < 20; i++) step();
  assert.is(liveStorages(), before);
  for (const t of params) {
    t.grad?.dispose();
    t.dispose();
  }
});

test('checkpoint rejects bad arguments with errors naming it', () => {
  tidy(() => {
    const x = randn([2]);
    assert.throws(() => checkpoint(42 as unknown as (t: Tensor) => Tensor, x), /checkpoint: fn must be a function/);
    assert.throws(() => checkpoint((t: Tensor) => t, [x] as unknown as Tensor), /checkpoint: input 0 must be a Tensor/);
    assert.throws(() => checkpoint(() => 3 as unknown as Tensor, x), /checkpoint: fn must return one Tensor, got number/);
  });
});

test('a parameter used inside and outside checkpointed segments fires its grad-ready hook once, when complete', () => {
  manualSeed(7);
  const [w, b] = layers(1, 6, 'f64')[0];
  const seen: number[][] = [];
  w.gradReadyHooks.push((t) => seen.push((t.grad as Tensor).toList()));
  const x = randn([3, 6], { dtype: 'f64' });
  tidy(() => {
    // w is read by two checkpointed segments and once directly: three uses.
    const seg = (t: Tensor) => tanh(linear(t, w, b));
    const h = checkpoint(seg, checkpoint(seg, x));
    sum(mul(linear(h, w), h)).backward();
  });
  assert.is(seen.length, 1, 'fired exactly once');
  assert.equal(seen[0], (w.grad as Tensor).toList(), 'the hook saw the complete gradient');
  const full = (w.grad as Tensor).toList();
  clearGrads([w, b]);
  tidy(() => {
    const seg = (t: Tensor) => tanh(linear(t, w, b));
    const h = seg(seg(x));
    sum(mul(linear(h, w), h)).backward();
  });
  assert.ok(maxAbsDiff(full, (w.grad as Tensor).toList()) < 1e-12, 'same gradient as without checkpoint');
  assert.is(seen.length, 2);
});

test.run();
