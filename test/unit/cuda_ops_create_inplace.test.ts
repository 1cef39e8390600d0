/**
 * The op suite on CUDA, continued: creation ops with `device: 'cuda:0'` hold exactly the CPU's
 * values for every dtype (16-bit rounding, subnormals and overflow included), and the in-place ops
 * (fillInPlace, addInPlace, copyInPlace, and the mulScalar kernel reading its scalar from device
 * memory) give the CPU's result while writing into the tensor's own storage and nothing else.
 * The emulated device fills fresh memory with NaN, so an element a kernel skips shows there.
 * Without a usable device the suite prints one SKIP line with the reason.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  addInPlace, arange, copyInPlace, cudaIsAvailable, DTYPES, type DType, fillInPlace, full, mulScalar, native, noGrad, ones, randn,
  type Tensor, tensor, tidy, zeros, zerosLike,
} from '../../src/index.ts';
import { deviceScalar, empty, Unary } from '../../src/ops/kernels.ts';
import { kernelsOn } from '../../src/tensor/backend.ts';
import { dtypeCode, isFloat } from '../../src/tensor/dtype.ts';
import type { Device } from '../../src/tensor/storage.ts';
import { assertSameBits } from '../helpers/bits.ts';
import { DEV, maxRelErr, TOL } from '../helpers/cuda_parity.ts';

/** Values that test each dtype's conversion: ties, 1/3, f16's overflow and subnormals, -0, f32's range, 2^24 + 1. */
const FLOATS = [0, -0, 1, -2.5, 0.1, 1 / 3, 1.00390625, 65504, 65520, 70000, 1e-7, 6e-8, 3e38, -1e-30, 16777217, 0.5 + 2 ** -9];
const INTS = [0, 1, -1, 7, -300, 65535, 2 ** 31 - 1, -(2 ** 31)];
const valuesFor = (dtype: DType) => (isFloat(dtype) ? FLOATS : INTS);

/** Asserts `t` is on the device, of `dtype` and `shape`, and holds `want`'s values bit for bit. */
function sameOnDevice(what: string, t: Tensor, want: Tensor): void {
  assert.is(t.device, DEV, `${what}: device`);
  assert.is(t.dtype, want.dtype, `${what}: dtype`);
  assert.equal(t.shape, want.shape, `${what}: shape`);
  assertSameBits(what, t, want);
}

/** Runs `f`, an in-place op on `target` (on `dev`), and asserts it returned `target` itself, its storage unchanged. */
function inPlace(what: string, dev: Device, f: () => Tensor, target: Tensor): Tensor {
  const id = target.id;
  const out = f();
  assert.ok(out === target, `${what} on ${dev}: returns the tensor it updated`);
  assert.is(out.id, id, `${what} on ${dev}: same storage`);
  return out;
}

if (!cudaIsAvailable()) {
  test('CUDA op suite: creation and in-place ops', () => {
    const info = native.deviceInfo();
    console.log(`SKIP test/unit/cuda_ops_create_inplace: no usable CUDA device (${info.cudaCompiled ? info.cudaStatus : 'built without CUDA'})`);
  });
} else {
  test('tensor, full, zeros, ones, zerosLike and arange on the device equal the CPU bit for bit, every dtype', () => {
    tidy(() => {
      for (const dtype of DTYPES) {
        const vals = valuesFor(dtype);
        const on = (device: Device) => ({ dtype, device });
        sameOnDevice(`tensor ${dtype}`, tensor(vals, on(DEV)), tensor(vals, on('cpu')));
        sameOnDevice(`tensor 2-D ${dtype}`, tensor([vals.slice(0, 4), vals.slice(4, 8)], on(DEV)), tensor([vals.slice(0, 4), vals.slice(4, 8)], on('cpu')));
        for (const v of vals) sameOnDevice(`full ${v} ${dtype}`, full([3, 67], v, on(DEV)), full([3, 67], v, on('cpu')));
        sameOnDevice(`zeros ${dtype}`, zeros([1031], on(DEV)), zeros([1031], on('cpu')));
        sameOnDevice(`ones ${dtype}`, ones([2, 3, 5], on(DEV)), ones([2, 3, 5], on('cpu')));
        sameOnDevice(`empty shape ${dtype}`, zeros([0, 4], on(DEV)), zeros([0, 4], on('cpu')));
        sameOnDevice(`arange ${dtype}`, arange(517, on(DEV)), arange(517, on('cpu')));
        // zerosLike keeps x's device and dtype (a strided x gives contiguous zeros), or takes them from opts.
        const x = full([4, 6], 5, on(DEV)).transpose(0, 1);
        sameOnDevice(`zerosLike ${dtype}`, zerosLike(x), zeros([6, 4], on('cpu')));
        assert.is(zerosLike(x, { device: 'cpu' }).device, 'cpu');
        assert.is(zerosLike(x, { dtype: 'f64' }).dtype, 'f64');
        assert.is(zerosLike(x, { dtype: 'f64' }).device, DEV);
      }
      const g = zeros([3], { device: DEV, requiresGrad: true });
      assert.ok(g.requiresGrad && g.isLeaf, 'requiresGrad on a device factory');
    });
  });

  test('fillInPlace on the device writes the CPU value into its own storage, and only its region', () => {
    tidy(() => {
      for (const dtype of DTYPES) {
        for (const v of valuesFor(dtype)) {
          const [c, d] = (['cpu', DEV] as Device[]).map((dev) => {
            const t = full([5, 9], 3, { dtype, device: dev });
            inPlace(`fillInPlace ${v} ${dtype}`, dev, () => fillInPlace(t, v), t);
            // A contiguous region with an offset: rows 1..2 only.
            const region = t.narrow(0, 1, 2);
            inPlace(`fillInPlace region ${dtype}`, dev, () => fillInPlace(region, v === 0 ? 1 : 0), region);
            return t;
          });
          sameOnDevice(`fillInPlace ${v} ${dtype}`, d, c);
        }
      }
      const t = zeros([4, 4], { device: DEV });
      assert.throws(() => fillInPlace(t.transpose(0, 1), 1), /fillInPlace: in-place updates need a contiguous tensor/);
      assert.throws(() => fillInPlace(t, Number.NaN), /fillInPlace: the scalar must be a finite number, got NaN/);
      const leaf = zeros([2], { device: DEV, requiresGrad: true });
      assert.throws(() => fillInPlace(leaf, 1), /fillInPlace: in-place update of a tensor that requires grad/);
      noGrad(() => fillInPlace(leaf, 2));
      assert.equal(leaf.toList(), [2, 2]);
    });
  });

  for (const dtype of ['f64', 'f32', 'bf16'] as DType[]) {
    test(`addInPlace and copyInPlace on the device equal the CPU (same layout, transposed, other dtype, a region), in place, ${dtype}`, () => {
      tidy(() => {
        // [case, the target's parent, the target within it, the source, alpha]: whole parents are compared, so a write outside the target shows.
        const whole = (t: Tensor) => t;
        const rows = (t: Tensor) => t.narrow(0, 2, 3);
        const cases: [string, Tensor, (t: Tensor) => Tensor, Tensor, number][] = [
          ['same layout', randn([7, 129], { dtype }), whole, randn([7, 129], { dtype }), -0.5],
          ['transposed source', randn([6, 10], { dtype }), whole, randn([10, 6], { dtype }).transpose(0, 1), 3],
          ['f32 source', randn([300], { dtype }), whole, randn([300]), 1],
          ['region of rows', randn([8, 5], { dtype }), rows, randn([3, 5], { dtype }), 0.25],
        ];
        for (const [what, parent, target, x, alpha] of cases) {
          const run = (dev: Device) => {
            const [added, copied] = [parent.to(dev), parent.to(dev)];
            const [t1, t2] = [target(added), target(copied)];
            inPlace(`addInPlace ${what}`, dev, () => addInPlace(t1, x.to(dev), alpha), t1);
            // copyInPlace takes its source from the CPU on both (the source's dtype and layout converted).
            inPlace(`copyInPlace ${what}`, dev, () => copyInPlace(t2, x), t2);
            return { added, copied };
          };
          const cpu = run('cpu');
          const gpu = run(DEV);
          const e = maxRelErr(gpu.added.toList(), cpu.added.toList());
          assert.ok(e <= TOL[dtype], `addInPlace ${what} ${dtype}: differs from the CPU by ${e}`);
          sameOnDevice(`copyInPlace ${what} ${dtype}`, gpu.copied, cpu.copied);
        }
        const t = zeros([2, 3], { dtype, device: DEV });
        assert.throws(() => addInPlace(t, zeros([3, 2], { dtype, device: DEV })), /addInPlace: shapes \[2, 3\] and \[3, 2\] differ/);
        assert.throws(() => addInPlace(t, zeros([2, 3], { dtype })), /addInPlace: operands on different devices/);
      });
    });
  }

  test('mulScalar reading its scalar from device memory (a 0-d or offset f64) equals mulScalar by value, in place or not', () => {
    tidy(() => {
      for (const dtype of ['f64', 'f32', 'bf16', 'f16'] as DType[]) {
        for (const s of [1 / 3, -2, 1, 0]) {
          const x = randn([1027], { dtype });
          const want = mulScalar(x, s);
          for (const dev of ['cpu', DEV] as Device[]) {
            const kern = kernelsOn(dev);
            const xs = x.to(dev);
            const d = dtypeCode(dtype);
            // A 0-d scalar, and element 1 of a [3] (a non-zero offset).
            const scalars = [tensor(s, { dtype: 'f64', device: dev }), tensor([9, s, 9], { dtype: 'f64', device: dev }).narrow(0, 1, 1)];
            for (const sc of scalars) {
              const out = empty(xs.shape, dtype, undefined, false, dev);
              kern.unary(Unary.mulScalar, d, xs.id, xs.offset, out.id, 0, out.numel, 0, sc.id, deviceScalar(sc, xs, 'test'));
              assertSameBits(`device scalar ${s} ${dtype} on ${dev}, shape [${sc.shape}]`, out, want);
              const y = xs.clone();
              kern.unary(Unary.mulScalar, d, y.id, y.offset, y.id, y.offset, y.numel, 0, sc.id, deviceScalar(sc, y, 'test'));
              assertSameBits(`device scalar ${s} ${dtype} on ${dev} in place`, y, want);
            }
          }
        }
      }
    });
  });
}

test.run();
