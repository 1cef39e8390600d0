import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  CIFAR10_MEAN, CIFAR10_STD, Compose, CounterRng, type NDArray,Normalize, ndarray, RandomCrop, RandomHorizontalFlip, sampleRng, ToTensor, 
} from '../../src/index.ts';

/** A stand-in generator whose draws the test chooses: int(n) → min(k, n - 1); float() → f. */
const fixed = (k: number, f = 0) => ({ int: (n: number) => Math.min(k, n - 1), float: () => f }) as unknown as CounterRng;
const list = (a: NDArray) => Array.from(a.data as Float32Array);
const close = (a: number[], b: number[], tol = 1e-6) => a.length === b.length && a.every((v, i) => Math.abs(v - b[i]) <= tol);

// A 3x3 single-channel uint8 image (HWC), values 1..9 row-major.
const img3 = () => ndarray(Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8, 9]), [3, 3, 1]);

test('RandomCrop: zero padding, then a window at the drawn offsets', () => {
  const crop = RandomCrop(3, { padding: 1 });
  const tl = crop(img3(), fixed(0));
  assert.equal(tl.shape, [3, 3, 1]);
  assert.equal(list(tl), [0, 0, 0, 0, 1, 2, 0, 4, 5], 'top-left of the padded image');
  assert.equal(list(crop(img3(), fixed(2))), [5, 6, 0, 8, 9, 0, 0, 0, 0], 'bottom-right');
  assert.equal(list(crop(img3(), fixed(1))), [1, 2, 3, 4, 5, 6, 7, 8, 9], 'centre is the image');
  assert.equal(list(RandomCrop(2)(img3(), fixed(1))), [5, 6, 8, 9], 'no padding');
  assert.equal(list(RandomCrop([1, 3], { padding: 1, fill: 7 })(img3(), fixed(0))), [7, 7, 7], 'fill value, rectangular size');
  assert.throws(() => RandomCrop(6, { padding: 1 })(img3(), fixed(0)), /larger than the padded image 5x5/);
});

test('RandomCrop: HWC uint8 and CHW float crop the same pixels', () => {
  // 2 channels, 2x2: channel 0 = 1..4, channel 1 = 10*(1..4).
  const hwc = ndarray(Uint8Array.from([1, 10, 2, 20, 3, 30, 4, 40]), [2, 2, 2]);
  const chw = ndarray(Float32Array.from([1, 2, 3, 4, 10, 20, 30, 40]), [2, 2, 2]);
  const crop = RandomCrop(2, { padding: 1 });
  assert.equal(list(crop(hwc, fixed(0))), [0, 0, 0, 0, 0, 0, 1, 10]);
  const c = crop(chw, fixed(0));
  assert.ok(c.data instanceof Float32Array);
  assert.equal(list(c), [0, 0, 0, 1, 0, 0, 0, 10]);
});

test('RandomCrop(32, padding 4): offsets cover all 9x9 positions over samples', () => {
  const crop = RandomCrop(32, { padding: 4 });
  // Channel 0 holds row + 1 and channel 1 column + 1: the centre pixel of a crop tells its offsets.
  const img = ndarray(Uint8Array.from({ length: 32 * 32 * 3 }, (_, i) => (i % 3 === 0 ? Math.floor(i / 96) + 1 : i % 3 === 1 ? Math.floor(i / 3) % 32 + 1 : 0)), [32, 32, 3]);
  const seen = new Set<string>();
  for (let i = 0; i < 2000; i++) {
    const d = crop(img, sampleRng(i, { seed: 0, epoch: 0 })).data as Uint8Array;
    const at = 16 * 96 + 16 * 3;
    seen.add(`${d[at] - 17},${d[at + 1] - 17}`);
  }
  assert.equal([...seen].every((k) => k.split(',').every((v) => Math.abs(Number(v)) <= 4)), true, 'offsets within the padding');
  assert.is(seen.size, 81);
});

test('RandomHorizontalFlip: mirrors columns of every channel; p decides', () => {
  const hwc = ndarray(Uint8Array.from([1, 10, 2, 20, 3, 30, 4, 40, 5, 50, 6, 60]), [2, 3, 2]);
  const flip = RandomHorizontalFlip(0.5);
  assert.equal(list(flip(hwc, fixed(0, 0.3))), [3, 30, 2, 20, 1, 10, 6, 60, 5, 50, 4, 40]);
  assert.equal(list(flip(hwc, fixed(0, 0.7))), [1, 10, 2, 20, 3, 30, 4, 40, 5, 50, 6, 60]);
  const chw = ndarray(Float32Array.from([1, 2, 3, 4, 5, 6]), [1, 2, 3]);
  assert.equal(list(RandomHorizontalFlip(1)(chw, fixed(0, 0.999))), [3, 2, 1, 6, 5, 4]);
  assert.equal(list(RandomHorizontalFlip(0)(chw, fixed(0, 0))), [1, 2, 3, 4, 5, 6]);
  assert.throws(() => RandomHorizontalFlip(2), /p must be in \[0, 1\]/);
});

test('ToTensor: uint8 HWC → f32 CHW / 255', () => {
  const out = ToTensor()(ndarray(Uint8Array.from([0, 255, 51, 102, 153, 204]), [1, 2, 3]), fixed(0));
  assert.equal(out.shape, [3, 1, 2]);
  assert.ok(out.data instanceof Float32Array);
  assert.ok(close(list(out), [0, 0.4, 1, 0.6, 0.2, 0.8]));
  assert.throws(() => ToTensor()(out, fixed(0)), /expected a uint8 HWC image/);
});

test('Normalize: (x - mean[c]) / std[c]', () => {
  const x = ndarray(Float32Array.from([1, 0.5, 0.25, 0.75]), [2, 1, 2]);
  const out = Normalize([0.5, 0.25], [0.5, 0.25])(x, fixed(0));
  assert.equal(out.shape, [2, 1, 2]);
  assert.equal(list(out), [1, 0, 0, 2]);
  assert.equal(list(x), [1, 0.5, 0.25, 0.75], 'the input is left alone');
  assert.throws(() => Normalize([0.5], [0.5])(x, fixed(0)), /2 channels, mean and std have 1/);
  assert.throws(() => Normalize([0, 0], [1, 0]), /non-zero/);
  assert.throws(() => Normalize([0], [1])(img3(), fixed(0)), /apply ToTensor\(\) first/);
});

test('Compose: the CIFAR-10 training pipeline, deterministic per (seed, epoch, index)', () => {
  const img = ndarray(Uint8Array.from({ length: 32 * 32 * 3 }, (_, i) => (i * 37) % 256), [32, 32, 3]);
  const copy = Uint8Array.from(img.data);
  const train = Compose([RandomCrop(32, { padding: 4 }), RandomHorizontalFlip(), ToTensor(), Normalize(CIFAR10_MEAN, CIFAR10_STD)]);
  const a = train(img, sampleRng(5, { seed: 1, epoch: 2 }));
  assert.equal(a.shape, [3, 32, 32]);
  assert.equal(list(train(img, sampleRng(5, { seed: 1, epoch: 2 }))), list(a), 'same key, same sample');
  assert.equal(Array.from(img.data), Array.from(copy), 'transforms do not modify their input');
  const differs = [0, 1, 2, 3, 4].some((e) => !close(list(train(img, sampleRng(5, { seed: 1, epoch: e }))), list(a), 0));
  assert.ok(differs, 'another epoch draws other crops or flips');
  // By hand: the same draws replayed step by step.
  const rng = sampleRng(5, { seed: 1, epoch: 2 });
  const manual = Normalize(CIFAR10_MEAN, CIFAR10_STD)(ToTensor()(RandomHorizontalFlip()(RandomCrop(32, { padding: 4 })(img, rng), rng), rng), rng);
  assert.equal(list(manual), list(a));
});

test('CounterRng: ranges and independence of keys', () => {
  const r = new CounterRng(1, 2, 3);
  const counts = new Array(9).fill(0);
  let sum = 0;
  for (let i = 0; i < 9000; i++) {
    counts[r.int(9)]++;
    sum += r.float();
  }
  assert.ok(counts.every((c) => c > 800 && c < 1200), `roughly uniform: ${counts}`);
  assert.ok(Math.abs(sum / 9000 - 0.5) < 0.02);
  assert.is.not(new CounterRng(1, 2, 3).uint32(), new CounterRng(1, 2, 4).uint32());
  assert.is(new CounterRng(1, 2, 3).uint32(), new CounterRng(1, 2, 3).uint32());
  assert.throws(() => new CounterRng(-1), /non-negative safe integers/);
});

test.run();
