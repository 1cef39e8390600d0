/**
 * mulByDeviceScalar(x, s): values and gradients equal mulScalar(x, v)'s bit for bit, v being the f64
 * s holds, for f32/bf16/f16/f64, on contiguous, transposed (dense) and narrowed (strided) operands,
 * with s a 0-d tensor or an element at an offset; on the CPU and cuda:0 (deviceTest). Bad scalars are
 * refused naming the op and both devices. (A CUDA graph replay following s: cuda_graph_device_scalar.)
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { cudaIsAvailable, type DType, fillInPlace, mulByDeviceScalar, mulScalar, randn, type Tensor, tensor, tidy, zeros } from '../../src/index.ts';
import type { Device } from '../../src/tensor/storage.ts';
import { assertSameBits } from '../helpers/bits.ts';
import { deviceTest } from '../helpers/devices.ts';

const DTYPES: DType[] = ['f32', 'bf16', 'f16', 'f64'];
/** Values including ones that round in 16 bits, overflow f16 and bf16, a power of two, 1, 0 and negatives. */
const VALUES = [1 / 3, -2.75, 1, 0, -0, 2 ** 16, 1e5, 3.5e38, 2 ** -24, 0.1];
const LAYOUTS: [string, (x: Tensor) => Tensor][] = [
  ['contiguous', (x) => x],
  ['transposed', (x) => x.transpose(0, 1)],
  ['narrowed', (x) => x.narrow(1, 1, 5)],
];

/** The scalar v on dev as a 0-d f64 and as element 1 of a [3] (a non-zero offset). */
const scalars = (v: number, dev: Device): Tensor[] => [tensor(v, { dtype: 'f64', device: dev }), tensor([7, v, 7], { dtype: 'f64', device: dev }).narrow(0, 1, 1)];

/** y = f(lay(x)) and x's gradient for the upstream gradient gy. */
function run(x0: Tensor, lay: (x: Tensor) => Tensor, f: (x: Tensor) => Tensor, gy: Tensor): { y: Tensor; g: Tensor } {
  const x = x0.detach().requiresGrad_(true);
  const y = f(lay(x));
  y.backward(gy);
  return { y, g: x.grad as Tensor };
}

deviceTest('mulByDeviceScalar: values and gradients are mulScalar by value bit for bit, every float dtype and layout', (dev) => {
  for (const dtype of DTYPES) {
    for (const [layout, lay] of LAYOUTS) {
      tidy(() => {
        const x = randn([7, 9], { dtype, device: dev }).mul(1000);
        const gy = randn([...lay(x).shape], { dtype, device: dev }).mul(100);
        for (const v of VALUES) {
          const want = run(x, lay, (a) => mulScalar(a, v), gy);
          for (const s of scalars(v, dev)) {
            const got = run(x, lay, (a) => mulByDeviceScalar(a, s), gy);
            const what = `${v} ${dtype} ${layout} on ${dev}, s [${s.shape}] at ${s.offset}`;
            assert.equal([...got.y.shape], [...want.y.shape], what);
            assertSameBits(`value ${what}`, got.y, want.y);
            assertSameBits(`gradient ${what}`, got.g, want.g);
          }
        }
      });
    }
  }
});

deviceTest('mulByDeviceScalar reads s when the kernel runs, the backward when the backward runs', (dev) => {
  tidy(() => {
    const s = tensor(3, { dtype: 'f64', device: dev });
    const x = randn([64], { dtype: 'f32', device: dev }).requiresGrad_(true);
    const y = mulByDeviceScalar(x, s);
    // Queued after the forward, before the backward: the forward saw 3, the backward sees 0.5.
    fillInPlace(s, 0.5);
    const gy = randn([64], { dtype: 'f32', device: dev });
    y.backward(gy);
    assertSameBits('forward at 3', y, mulScalar(x.detach(), 3));
    assertSameBits('backward at 0.5', x.grad as Tensor, mulScalar(gy, 0.5));
  });
});

deviceTest('mulByDeviceScalar refuses a scalar that is not one f64 element on x\'s device, an integer x and an s requiring grad', (dev) => {
  tidy(() => {
    const x = randn([4], { device: dev });
    const re = (dtype: string, shape: string, sDev: string) =>
      new RegExp(`mulByDeviceScalar: a device scalar must be a one-element f64 tensor on ${dev}, got ${dtype} \\[${shape}\\] on ${sDev}`);
    assert.throws(() => mulByDeviceScalar(x, zeros([2], { dtype: 'f64', device: dev })), re('f64', '2', dev));
    assert.throws(() => mulByDeviceScalar(x, tensor(2, { dtype: 'f32', device: dev })), re('f32', '', dev));
    if (cudaIsAvailable()) {
      const other: Device = dev === 'cpu' ? 'cuda:0' : 'cpu';
      assert.throws(() => mulByDeviceScalar(x, tensor(2, { dtype: 'f64', device: other })), re('f64', '', other));
    }
    assert.throws(() => mulByDeviceScalar(zeros([3], { dtype: 'i32', device: dev }), tensor(2, { dtype: 'f64', device: dev })), /mulByDeviceScalar: needs a floating-point tensor, got i32 \[3\]/);
    const sg = tensor(2, { dtype: 'f64', device: dev, requiresGrad: true });
    assert.throws(() => mulByDeviceScalar(x, sg), /mulByDeviceScalar: the scalar f64 \[\] requires grad/);
  });
});

test.run();
