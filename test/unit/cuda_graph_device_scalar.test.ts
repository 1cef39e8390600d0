/**
 * mulByDeviceScalar inside a CUDA graph: a captured forward and backward multiply by the value the
 * scalar holds at each replay (fp16 loss scaling with the scale on the device), bit for bit eager
 * mulScalar by that value, values and gradients, f32/bf16/f16/f64. Without a usable device it prints
 * one SKIP line (values and gradients outside graphs: mul_by_device_scalar.test.ts).
 */
import { test } from 'uvu';
import {
  captureCudaGraph, cudaIsAvailable, type DType, fillInPlace, mul, mulByDeviceScalar, mulScalar, native, randn, sum, type Tensor, tensor, tidy,
} from '../../src/index.ts';
import { assertSameBits } from '../helpers/bits.ts';

const DEV = 'cuda:0';

if (!cudaIsAvailable()) {
  test('mulByDeviceScalar in a CUDA graph', () => {
    const info = native.deviceInfo();
    console.log(`SKIP test/unit/cuda_graph_device_scalar: no usable CUDA device (${info.cudaCompiled ? info.cudaStatus : 'built without CUDA'})`);
  });
} else {
  test('a captured mulByDeviceScalar forward and backward follow the scalar written between replays', () => {
    for (const dtype of ['f32', 'bf16', 'f16', 'f64'] as DType[]) {
      tidy(() => {
        const x = randn([5, 67], { dtype, device: DEV }).mul(100).detach().requiresGrad_(true);
        const w = randn([5, 67], { dtype, device: DEV });
        const s = tensor(2 ** 10, { dtype: 'f64', device: DEV });
        // No gradient at the capture: the graph writes x's first gradient (captureCudaGraph's contract).
        const step = () => {
          const y = mulByDeviceScalar(x, s);
          sum(mul(y, w)).backward();
          return y;
        };
        const g = captureCudaGraph(step, { parameters: [x] });
        for (const v of [2 ** 10, 0.5, 1 / 3, 65504, 2 ** 10]) {
          fillInPlace(s, v);
          const y = g.replay();
          const xe = x.detach().requiresGrad_(true);
          const ye = mulScalar(xe, v);
          sum(mul(ye, w)).backward();
          assertSameBits(`${dtype} value at ${v}`, y, ye);
          assertSameBits(`${dtype} gradient at ${v}`, x.grad as Tensor, xe.grad as Tensor);
        }
        g.dispose();
      });
    }
  });
}

test.run();
