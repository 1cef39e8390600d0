/**
 * clipGradNormOnDevice against clipGradNorm on the same device, bit for bit: the returned norm and
 * every scaled gradient (f32, bf16, f16; orders 2, 1, inf; maxNorm below and above the norm; a
 * strided gradient; NaN and infinite gradients left unwritten; no gradients). On cuda:0 it makes
 * no host sync where clipGradNorm makes one, and captured in a CUDA graph each replay clips by that
 * replay's gradients as clipGradNorm does (which is refused there). Refusals name the option, the order or the devices.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { captureCudaGraph, clipGradNorm, clipGradNormOnDevice, copyInPlace, cudaIsAvailable, cudaSyncCount, type Tensor, tensor } from '../../src/index.ts';
import { scaleInPlace } from '../../src/optim/clip_grad.ts';
import type { DType } from '../../src/tensor/dtype.ts';
import type { Device } from '../../src/tensor/storage.ts';
import { tensorBytes } from '../helpers/bits.ts';
import { deviceTest } from '../helpers/devices.ts';

/** Deterministic values spanning several magnitudes. */
const values = (n: number, seed: number) => Array.from({ length: n }, (_, i) => Math.sin(seed + i * 1.7) * 10 ** ((i % 5) - 2));

// The last spans several native chunks of the norm reduction; [6, 5] is given a transposed (strided) gradient.
const SHAPES = [[3, 4], [7], [6, 5], [50, 100]];

/** Parameters with gradients holding `grads[i]` (the third one strided); the same values each call. */
function params(dtype: DType, device: Device, grads: number[][] = SHAPES.map((s, i) => values(s[0] * (s[1] ?? 1), i))): Tensor[] {
  return grads.map((g, i) => {
    const shape = SHAPES[i];
    const p = tensor(new Array(g.length).fill(0), { shape, dtype, device, requiresGrad: true });
    p.grad = i === 2 ? tensor(g, { shape: [shape[1], shape[0]], dtype, device }).transpose(0, 1) : tensor(g, { shape, dtype, device });
    return p;
  });
}

const gradBytes = (ps: Tensor[]) => ps.map((p) => tensorBytes((p.grad as Tensor).contiguous()));
const orderName = (p: number) => (p === Number.POSITIVE_INFINITY ? 'inf' : p);
const disposeAll = (ps: Tensor[]) => {
  for (const p of ps) p.dispose();
};

/** Clips a copy with each function; asserts the same norm and the same gradient bits; returns the norm and whether it clipped. */
function compare(dtype: DType, dev: Device, maxNorm: (norm: number) => number, p: number, grads?: number[][]): { norm: number; clipped: boolean } {
  const a = params(dtype, dev, grads);
  const b = params(dtype, dev, grads);
  const before = gradBytes(a);
  const normType = orderName(p);
  const probe = clipGradNorm(params(dtype, dev, grads), Number.MAX_VALUE, { normType });
  const max = maxNorm(probe);
  const want = clipGradNorm(a, max, { normType });
  const got = clipGradNormOnDevice(b, max, { normType });
  const what = `${dtype} p=${p} maxNorm=${max}`;
  assert.equal(got.shape, [], `${what}: a 0-d norm`);
  assert.is(got.dtype, 'f64');
  assert.is(got.device, dev);
  assert.ok(Object.is(got.item(), want), `${what}: norm ${got.item()} vs clipGradNorm's ${want}`);
  const wantBytes = gradBytes(a);
  gradBytes(b).forEach((g, i) => assert.ok(g.equals(wantBytes[i]), `${what}: gradient ${i} differs from clipGradNorm's`));
  const clipped = wantBytes.some((g, i) => !g.equals(before[i]));
  got.dispose();
  disposeAll(a);
  disposeAll(b);
  return { norm: want, clipped };
}

for (const dtype of ['f32', 'bf16', 'f16'] as const) {
  deviceTest(`clipGradNormOnDevice ${dtype}: the norm and the scaled gradients equal clipGradNorm's bit for bit (p = 2, 1, inf; clipped or not)`, (dev) => {
    for (const p of [2, 1, Number.POSITIVE_INFINITY]) {
      assert.ok(compare(dtype, dev, (n) => n / 3, p).clipped, `p=${p}: maxNorm below the norm clips`);
      compare(dtype, dev, (n) => n * 0.999999, p); // a coefficient just below 1 (in 16 bits the products may round back)
      assert.not.ok(compare(dtype, dev, (n) => n * 2, p).clipped, `p=${p}: maxNorm above the norm leaves the gradients`);
      assert.ok(compare(dtype, dev, () => 0, p).clipped, `p=${p}: maxNorm 0 zeroes them`);
    }
  });
}

deviceTest('clipGradNormOnDevice: a NaN or infinite norm leaves every gradient unwritten, as clipGradNorm', (dev) => {
  for (const bad of [Number.NaN, Number.POSITIVE_INFINITY]) {
    const grads = SHAPES.map((s, i) => values(s[0] * (s[1] ?? 1), i));
    grads[1][3] = bad;
    for (const p of [2, 1, Number.POSITIVE_INFINITY]) {
      const { norm, clipped } = compare('f32', dev, () => 1e-3, p, grads);
      assert.ok(Number.isNaN(bad) ? Number.isNaN(norm) : norm === Number.POSITIVE_INFINITY, `p=${p}: ${norm}`);
      assert.not.ok(clipped, `p=${p}: gradients untouched`);
    }
  }
});

deviceTest('clipGradNormOnDevice: parameters without gradients are skipped; none at all gives a 0 on their device', (dev) => {
  const [a, b] = params('f32', dev).slice(0, 2);
  b.grad?.dispose();
  b.grad = null;
  const none = clipGradNormOnDevice(b, 1);
  assert.equal([none.shape, none.dtype, none.device, none.item()], [[], 'f64', dev, 0]);
  const empty = clipGradNormOnDevice([], 1);
  assert.equal([empty.device, empty.item()], ['cpu', 0]);
  const want = params('f32', dev).slice(0, 1);
  const norm = clipGradNormOnDevice([a, b], 0.5);
  assert.ok(Object.is(norm.item(), clipGradNorm(want, 0.5)));
  assert.ok(tensorBytes(a.grad as Tensor).equals(tensorBytes(want[0].grad as Tensor)));
  for (const t of [none, empty, norm, a, b, ...want]) t.dispose();
});

deviceTest('clipGradNormOnDevice: refuses errorIfNonfinite, orders other than 1, 2 and inf, and bad maxNorm, naming them', (dev) => {
  const ps = params('f32', dev);
  const before = gradBytes(ps);
  assert.throws(() => clipGradNormOnDevice(ps, 1, { errorIfNonfinite: true }), /clipGradNormOnDevice: errorIfNonfinite needs the norm on the host .* use clipGradNorm/);
  assert.throws(() => clipGradNormOnDevice(ps, 1, { normType: 3 }), /clipGradNormOnDevice: normType 3 is not supported \(1, 2 or 'inf'\)/);
  assert.throws(() => clipGradNormOnDevice(ps, -1), /clipGradNormOnDevice: maxNorm must be a finite number >= 0, got -1/);
  assert.throws(() => clipGradNormOnDevice(ps, 1, { normTyp: 2 } as never), /clipGradNormOnDevice/);
  // The device scalar the scaling kernel reads: one f64 element on the gradient's device, else refused.
  const grad = ps[0].grad as Tensor;
  const wrong = tensor([0.5, 0.5], { dtype: 'f64', device: dev });
  assert.throws(() => scaleInPlace(grad, wrong), /scaleInPlace: a device scalar must be a one-element f64 tensor on .*, got f64 \[2\]/);
  const f32 = tensor([0.5], { device: dev });
  assert.throws(() => scaleInPlace(grad, f32), /scaleInPlace: a device scalar must be a one-element f64 tensor on .*, got f32 \[1\]/);
  gradBytes(ps).forEach((g, i) => assert.ok(g.equals(before[i]), 'refused calls leave the gradients'));
  wrong.dispose();
  f32.dispose();
  disposeAll(ps);
});

if (cudaIsAvailable()) {
  test('clipGradNormOnDevice on cuda:0: no host sync (clipGradNorm makes one); gradients on two devices are refused', () => {
    const a = params('bf16', 'cuda:0');
    const b = params('bf16', 'cuda:0');
    clipGradNormOnDevice(a, 0.1).dispose(); // warm: first-use work stays out of the count
    let before = cudaSyncCount('cuda:0');
    const norm = clipGradNormOnDevice(a, 0.1);
    assert.is(cudaSyncCount('cuda:0') - before, 0, 'clipGradNormOnDevice waited for the device');
    before = cudaSyncCount('cuda:0');
    clipGradNorm(b, 0.1);
    assert.is(cudaSyncCount('cuda:0') - before, 1, 'clipGradNorm reads the norm once (the census counts it)');
    norm.dispose();
    const mixed = [...params('f32', 'cpu').slice(0, 1), ...params('f32', 'cuda:0').slice(0, 1)];
    assert.throws(() => clipGradNormOnDevice(mixed, 1), /clipGradNormOnDevice: gradients on cpu and cuda:0 \(shape \[3, 4\]\).*use clipGradNorm/);
    disposeAll([...a, ...b, ...mixed]);
  });

  test('clipGradNormOnDevice captured in a CUDA graph: each replay clips by its own gradients as clipGradNorm would (clipGradNorm there is refused)', () => {
    const scaled = (k: number) => SHAPES.map((s, i) => values(s[0] * (s[1] ?? 1), i + k).map((v) => v * k));
    const ps = params('f32', 'cuda:0');
    assert.throws(() => captureCudaGraph(() => clipGradNorm(ps, 1)), /capture/i);
    const g = captureCudaGraph(() => clipGradNormOnDevice(ps, 2));
    // Norms about 2.3e5, 0.23 and 6.8e4: clipped, left as they are, clipped.
    const clippedAt: boolean[] = [];
    for (const k of [100, 1e-4, 30]) {
      const src = params('f32', 'cuda:0', scaled(k));
      ps.forEach((p, i) => copyInPlace(p.grad as Tensor, src[i].grad as Tensor));
      const before = cudaSyncCount('cuda:0');
      const norm = g.replay();
      assert.is(cudaSyncCount('cuda:0') - before, 0, 'a replay waits for nothing');
      const given = gradBytes(src);
      const want = clipGradNorm(src, 2);
      clippedAt.push(gradBytes(src).some((b, i) => !b.equals(given[i])));
      assert.ok(Object.is(norm.item(), want), `k=${k}: norm ${norm.item()} vs ${want}`);
      const wantBytes = gradBytes(src);
      gradBytes(ps).forEach((b, i) => assert.ok(b.equals(wantBytes[i]), `k=${k}: gradient ${i} differs from clipGradNorm's`));
      disposeAll(src);
    }
    assert.equal(clippedAt, [true, false, true]);
    g.dispose();
    disposeAll(ps);
  });
}

test.run();
