/**
 * The op suite on CUDA, continued (cuda_ops.test.ts has the rest): the scalar forms, recordGelu,
 * the shape ops, broadcastBack and moves between devices, on 'cuda:0' against the CPU from the same
 * inputs in f64, f32 and bf16, on contiguous, transposed (dense) and narrowed (strided) operands.
 * Ops that compute one rounded operation per element, or only move values, must match bit for bit
 * (values and gradients); the others within cuda_parity's tolerances.
 * Without a usable device the suite prints one SKIP line with the reason.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  addScalar, broadcastBack, cat, clone, cudaIsAvailable, type DType, expand, flatten, gelu, mul, mulScalar, native, noGrad, permute,
  randn, recordGelu, reshape, split, squeeze, sum, type Tensor, tensor, tidy, toDevice, transpose, unsqueeze, view,
} from '../../src/index.ts';
import { DEV, parity } from '../helpers/cuda_parity.ts';

const r = (shape: number[], dtype: DType, grad = true) => randn(shape, { dtype, requiresGrad: grad });
const DTYPES: DType[] = ['f64', 'f32', 'bf16'];
/** The operand as given, transposed (dense, not contiguous) and narrowed (strided, with an offset). */
const LAYOUTS: [string, (x: Tensor) => Tensor][] = [
  ['contiguous', (x) => x],
  ['transposed', (x) => x.transpose(0, 1)],
  ['narrowed', (x) => x.narrow(1, 1, 4)],
];

if (!cudaIsAvailable()) {
  test('CUDA op suite: scalars and views', () => {
    const info = native.deviceInfo();
    console.log(`SKIP test/unit/cuda_ops_scalars_views: no usable CUDA device (${info.cudaCompiled ? info.cudaStatus : 'built without CUDA'})`);
  });
} else {
  for (const dtype of DTYPES) {
    test(`addScalar and mulScalar on every layout equal the CPU bit for bit, ${dtype}`, () => {
      for (const [layout, lay] of LAYOUTS) {
        const x = () => [r([6, 7], dtype)];
        parity(`addScalar ${layout}`, (a) => addScalar(lay(a), 0.3), x, 0);
        parity(`addScalar negative ${layout}`, (a) => addScalar(lay(a), -2.75), x, 0);
        parity(`mulScalar ${layout}`, (a) => mulScalar(lay(a), 1 / 3), x, 0);
        parity(`mulScalar by 0 ${layout}`, (a) => mulScalar(lay(a), 0), x, 0);
      }
    });

    test(`recordGelu (a GELU computed elsewhere) has gelu's gradient on the device, ${dtype}`, () => {
      const fused = (a: Tensor) => recordGelu(a, noGrad(() => gelu(a)));
      parity('recordGelu', fused, () => [r([300], dtype)]);
      parity('recordGelu transposed', (a) => fused(a.transpose(0, 1)), () => [r([9, 13], dtype)]);
      tidy(() => {
        const a = randn([257], { dtype, device: DEV, requiresGrad: true });
        const b = noGrad(() => clone(a)).requiresGrad_(true);
        const w = randn([257], { dtype, device: DEV });
        sum(mul(fused(a), w)).backward();
        sum(mul(gelu(b), w)).backward();
        assert.equal((a.grad as Tensor).toList(), (b.grad as Tensor).toList(), 'recordGelu and gelu gradients on the device');
      });
    });

    test(`shape ops on the device: values and gradients equal the CPU's, ${dtype}`, () => {
      // Stride-0 views feeding a kernel, and expand's gradient (a reduction: not bit for bit in f32).
      parity('expand', (a) => expand(a, [4, 3, 5]), () => [r([3, 1], dtype)]);
      parity('expand transposed into mul', (a, b) => mul(expand(a.transpose(0, 1), [2, 5, 4]), b), () => [r([1, 5], dtype), r([4], dtype)]);
      for (const [layout, lay] of LAYOUTS) {
        const x = () => [r([6, 7], dtype)];
        parity(`unsqueeze ${layout}`, (a) => mulScalar(unsqueeze(lay(a), 1), 2), x, 0);
        parity(`unsqueeze last ${layout}`, (a) => unsqueeze(lay(a), -1), x, 0);
        parity(`squeeze ${layout}`, (a) => squeeze(lay(a).narrow(0, 2, 1), 0), x, 0);
        parity(`flatten ${layout}`, (a) => flatten(lay(a)), x, 0);
        parity(`reshape ${layout}`, (a) => reshape(lay(a), [-1, 2]), x, 0);
        parity(`clone ${layout}`, (a) => clone(lay(a)), x, 0);
      }
      parity('view', (a) => view(a, [5, -1]), () => [r([3, 4, 5], dtype)], 0);
      parity('permute then flatten (a copy)', (a) => flatten(permute(a, [2, 0, 1]), 1), () => [r([3, 4, 5], dtype)], 0);
      parity('transpose of a narrowed', (a) => transpose(a.narrow(2, 1, 3), 0, 2), () => [r([3, 4, 5], dtype)], 0);
      // Pieces 0 and 2 only: the middle piece's gradient region is zero-filled on the device.
      parity('split', (a) => {
        const [p, , q] = split(a, [2, 3, 2], 1);
        return cat([q, p], 1);
      }, () => [r([4, 7], dtype)], 0);
      parity('split by size', (a) => split(a, 3, 0)[2], () => [r([7, 2], dtype)], 0);
    });

    test(`broadcastBack (sum and mean's gradient) equals the CPU bit for bit, ${dtype}`, () => {
      parity('broadcastBack', (g) => broadcastBack(g, [3, 4, 5], [0, 2], 0.25), () => [r([4], dtype, false)], 0);
      parity('broadcastBack of a strided gradient', (g) => broadcastBack(g.narrow(0, 1, 4), [4, 2], [1], 1), () => [r([6], dtype, false)], 0);
      parity('broadcastBack all dims', (g) => broadcastBack(g, [5, 3], [0, 1], 1 / 15), () => [r([], dtype, false)], 0);
    });

    test(`toDevice moves values both ways (any layout in, contiguous out) and the gradient back, ${dtype}`, () => {
      tidy(() => {
        for (const [layout, lay] of LAYOUTS) {
          const x = r([6, 7], dtype);
          const src = lay(x);
          const y = toDevice(src, DEV);
          assert.is(y.device, DEV);
          assert.ok(y.isContiguous, `${layout}: contiguous on the device`);
          assert.equal(y.toList(), src.toList(), `${layout}: values on the device`);
          const w = randn([...y.shape], { dtype });
          sum(mul(y, toDevice(w, DEV))).backward();
          const g = x.grad as Tensor;
          assert.is(g.device, 'cpu', `${layout}: the gradient comes back to the CPU`);
          // The gradient of lay(x) is w at the elements lay took (their flat indices: lay of 0..n-1), 0 elsewhere.
          const want = new Array<number>(x.numel).fill(0);
          const at = lay(tensor(Array.from({ length: x.numel }, (_, i) => i), { dtype: 'f64', shape: [...x.shape] })).toList();
          const wl = w.toList();
          at.forEach((j, i) => {
            want[j] = wl[i];
          });
          assert.equal(g.toList(), want, `${layout}: gradient on the CPU`);
        }
        // Back to the CPU from a strided device tensor, the gradient going to the device.
        const d = noGrad(() => r([5, 8], dtype).to(DEV)).requiresGrad_(true);
        const back = toDevice(d.narrow(1, 2, 3), 'cpu');
        assert.is(back.device, 'cpu');
        sum(mul(back, 2)).backward();
        const gd = d.grad as Tensor;
        assert.is(gd.device, DEV);
        assert.equal(gd.toList(), Array.from({ length: 40 }, (_, i) => (i % 8 >= 2 && i % 8 < 5 ? 2 : 0)));
      });
    });
  }
}

test.run();
