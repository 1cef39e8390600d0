/**
 * ResNet-18 training on CUDA equals the CPU run: ImageNet stem (7x7/2 conv, 3x3/2 max-pool) on
 * 32x32 images, so every image op runs — strided, 1x1 downsample and 3x3 convs, batch norm in
 * training mode, max and adaptive average pooling — from the same seed and batches, SGD with
 * momentum, 3 steps. The learning rate keeps rounding differences small: at lr 0.002 the CPU's
 * own f32 and f64 runs agree to 1e-6, at lr 0.05 they differ by 1% by step 3 (random labels
 * drive the loss up). f32 (cuDNN without TF32 vs oneDNN): each step's loss within 1e-4 relative,
 * final weights and running statistics within 1e-3 of each tensor's largest value. bf16 weights:
 * losses within 5e-2 relative. Without a usable device it prints one SKIP line with the reason.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { resnet18 } from '../../models/index.ts';
import { crossEntropy, cudaIsAvailable, type DType, manualSeed, native, nn, noGrad, rand, randn, SGD, type Tensor, tidy } from '../../src/index.ts';

const DEV = 'cuda:0';

function maxRelErr(got: ArrayLike<number>, want: ArrayLike<number>): number {
  let scale = 1e-30;
  let err = 0;
  for (let i = 0; i < want.length; i++) scale = Math.max(scale, Math.abs(want[i]));
  for (let i = 0; i < want.length; i++) err = Math.max(err, Math.abs(got[i] - want[i]));
  return Number.isNaN(err) ? Number.POSITIVE_INFINITY : err / scale;
}

interface Run {
  losses: number[];
  state: Map<string, number[]>;
}

/** `steps` SGD steps of ResNet-18 on `device`; the losses and the final parameters and buffers. */
function run(device: 'cpu' | typeof DEV, dtype: DType, steps: number): Run {
  manualSeed(7);
  const model = resnet18({ numClasses: 10, dtype });
  if (device !== 'cpu') nn.moduleToDevice(model, device);
  const optimizer = new SGD(model.parameters(), { lr: 0.002, momentum: 0.9, weightDecay: 1e-4 });
  const losses: number[] = [];
  for (let s = 0; s < steps; s++) {
    tidy(() => {
      // Batches drawn on the CPU (the same for both runs), then moved.
      const x = randn([8, 3, 32, 32], { dtype });
      const y = noGrad(() => rand([8]).mul(10).to('i64'));
      const onDev = (t: Tensor) => (device === 'cpu' ? t : t.to(device));
      const loss = crossEntropy(model.forward(onDev(x)).to('f32'), onDev(y));
      loss.backward();
      optimizer.step();
      optimizer.zeroGrad();
      losses.push(loss.item());
    });
  }
  const state = new Map<string, number[]>();
  for (const [name, t] of model.namedParameters()) state.set(name, t.toList());
  for (const [name, t] of model.namedBuffers()) if (t.dtype !== 'i64') state.set(name, t.toList());
  model.dispose();
  return { losses, state };
}

if (!cudaIsAvailable()) {
  test('CUDA ResNet training parity', () => {
    const info = native.deviceInfo();
    console.log(`SKIP test/unit/cuda_resnet: no usable CUDA device (${info.cudaCompiled ? info.cudaStatus : 'built without CUDA'})`);
  });
} else {
  test('ResNet-18, 3 SGD steps in f32: CUDA equals the CPU', () => {
    const cpu = run('cpu', 'f32', 3);
    const gpu = run(DEV, 'f32', 3);
    cpu.losses.forEach((l, i) => assert.ok(Math.abs(gpu.losses[i] - l) <= 1e-4 * Math.abs(l), `step ${i}: loss ${gpu.losses[i]} on CUDA, ${l} on the CPU`));
    for (const [name, w] of cpu.state) {
      const e = maxRelErr(gpu.state.get(name) as number[], w);
      assert.ok(e <= 1e-3, `${name}: differs by ${e}`);
    }
  });

  test('ResNet-18, 3 SGD steps in bf16: CUDA losses track the CPU', () => {
    const cpu = run('cpu', 'bf16', 3);
    const gpu = run(DEV, 'bf16', 3);
    cpu.losses.forEach((l, i) => assert.ok(Math.abs(gpu.losses[i] - l) <= 5e-2 * Math.abs(l), `step ${i}: loss ${gpu.losses[i]} on CUDA, ${l} on the CPU`));
  });
}

test.run();
