/**
 * ResNet training steps with ReLU and the residual add fused into batch norm (batchNorm2dRelu,
 * native flag batchNormRelu) equal, bit for bit, the same steps with the flag masked (batchNorm2d,
 * add, relu as separate ops): every step's loss, every parameter's gradient of the last step, and
 * all parameters and buffers after the SGD steps (running statistics, num_batches_tracked). Each
 * fused step queues 2 ops per ReLU plus 1 per block fewer (a ReLU forward and backward, a residual
 * add). On the emulated device: a narrow net of ResNet's own blocks (a 3x3 stem, two BasicBlocks
 * and two Bottlenecks, each kind once with an identity and once with a strided, downsampled
 * shortcut; widths 8 to 32), bf16 and f32, 8x8 images, batch 2, one step (a few seconds: ResNet-18's
 * 11M parameters cost the emulator about 30 s; MT_RESNET_BN_RELU_FULL=1 adds ResNet-18 bf16 and
 * ResNet-50 bf16, several minutes). On a GPU:
 * ResNet-18 f32/bf16/f16 and ResNet-50 bf16/f32, 32x32 images (ImageNet stem), batch 8, 2 steps.
 * Without a usable device: one SKIP line.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { BasicBlock, Bottleneck, ResNet } from '../../models/resnet.ts';
import {
  censusTotals, crossEntropy, cudaCensus, cudaDeviceProperties, cudaIsAvailable, type DType, flatten, manualSeed, native, nn, noGrad, rand,
  randn, SGD, type Tensor, tidy,
} from '../../src/index.ts';

const DEV = 'cuda:0';
const cuda = native.cuda as Record<string, unknown>;

/** ResNet's stem, blocks and head at widths 8-32: every kind of fused batch norm the real depths have, for the emulator. */
class NarrowResNet extends nn.Module {
  readonly conv1: nn.Conv2d;
  readonly bn1: nn.BatchNorm2d;
  readonly blocks: nn.Sequential;
  readonly avgpool = this.registerModule('avgpool', new nn.AdaptiveAvgPool2d(1));
  readonly fc: nn.Linear;

  constructor(dtype: DType) {
    super();
    const ctx = { dtype };
    this.conv1 = this.registerModule('conv1', new nn.Conv2d(3, 8, 3, { padding: 1, bias: false, dtype }));
    this.bn1 = this.registerModule('bn1', new nn.BatchNorm2d(8, { dtype }));
    const blocks = [new BasicBlock(ctx, 8, 8, 1), new BasicBlock(ctx, 8, 16, 2), new Bottleneck(ctx, 16, 4, 1), new Bottleneck(ctx, 16, 8, 2)];
    this.blocks = this.registerModule('blocks', new nn.Sequential(...blocks));
    this.fc = this.registerModule('fc', new nn.Linear(32, 10, { dtype }));
  }

  override forward(x: Tensor): Tensor {
    const h = this.blocks.forward(this.bn1.forward(this.conv1.forward(x), { relu: true }));
    return this.fc.forward(flatten(this.avgpool.forward(h), 1));
  }
}

interface Config {
  /** 0: NarrowResNet. */
  depth: 0 | 18 | 50;
  dtype: DType;
  hw: number;
  batch: number;
  steps: number;
}

interface Run {
  losses: number[];
  /** Gradients of the last step, then parameters and buffers after it, by name. */
  tensors: Map<string, number[]>;
  /** Device ops of the last step's forward and backward. */
  deviceOps: number;
}

function train(c: Config, fused: boolean): Run {
  const saved = cuda.batchNormRelu;
  cuda.batchNormRelu = fused ? saved : false;
  manualSeed(3);
  const net = c.depth === 0 ? new NarrowResNet(c.dtype) : new ResNet(c.depth, { numClasses: 10, dtype: c.dtype, cifar: c.hw < 32 });
  const model = nn.moduleToDevice(net, DEV);
  try {
    const opt = new SGD(model.parameters(), { lr: 0.05, momentum: 0.9, weightDecay: 1e-4 });
    const losses: number[] = [];
    const tensors = new Map<string, number[]>();
    let deviceOps = 0;
    for (let s = 0; s < c.steps; s++) {
      tidy(() => {
        // Batches drawn on the CPU from the seed: the same in both runs.
        const x = randn([c.batch, 3, c.hw, c.hw], { dtype: c.dtype }).to(DEV);
        const y = noGrad(() => rand([c.batch]).mul(10).to('i64')).to(DEV);
        const { result: loss, entries } = cudaCensus(() => {
          const l = crossEntropy(model.forward(x), y);
          l.backward();
          return l;
        });
        deviceOps = censusTotals(entries).deviceOps;
        if (s === c.steps - 1) for (const [name, p] of model.namedParameters()) tensors.set(`grad ${name}`, (p.grad as Tensor).toList() as number[]);
        opt.step();
        opt.zeroGrad();
        losses.push(loss.item());
      });
    }
    for (const [name, t] of model.namedParameters()) tensors.set(name, t.toList() as number[]);
    for (const [name, t] of model.namedBuffers()) tensors.set(name, t.toList() as number[]);
    return { losses, tensors, deviceOps };
  } finally {
    cuda.batchNormRelu = saved;
    model.dispose();
  }
}

/** The ReLUs (stem + 2 per basic block, 3 per bottleneck) and residual adds (1 per block) of a net. */
function fusedAway(depth: 0 | 18 | 50): number {
  const [basic, bottleneck] = depth === 0 ? [2, 2] : depth === 18 ? [8, 0] : [0, 16];
  const relus = 1 + 2 * basic + 3 * bottleneck;
  return 2 * relus + basic + bottleneck;
}

const name = (c: Config) => (c.depth === 0 ? 'narrow ResNet' : `ResNet-${c.depth}`);

if (!cudaIsAvailable()) {
  test('ResNet training with batch norm + ReLU fused', () => {
    const info = native.deviceInfo();
    console.log(`SKIP test/unit/cuda_resnet_bn_relu: no usable CUDA device (${info.cudaCompiled ? info.cudaStatus : 'built without CUDA'})`);
  });
} else {
  const emulated = /emulated/.test(cudaDeviceProperties(DEV).name);
  const small = { hw: 8, batch: 2, steps: 1 };
  const large = { hw: 32, batch: 8, steps: 2 };
  const configs: Config[] = emulated
    ? [
        { depth: 0, dtype: 'bf16', ...small },
        { depth: 0, dtype: 'f32', ...small },
        ...(process.env.MT_RESNET_BN_RELU_FULL === '1'
          ? ([
              { depth: 18, dtype: 'bf16', ...small },
              { depth: 50, dtype: 'bf16', ...small },
            ] as Config[])
          : []),
      ]
    : [
        { depth: 18, dtype: 'f32', ...large },
        { depth: 18, dtype: 'bf16', ...large },
        { depth: 18, dtype: 'f16', ...large },
        { depth: 50, dtype: 'bf16', ...large },
        { depth: 50, dtype: 'f32', ...large },
      ];
  for (const c of configs) {
    test(`${name(c)} ${c.dtype} ${c.hw}x${c.hw} batch ${c.batch}, ${c.steps} SGD step(s): fused equals separate ops bit for bit`, () => {
      const fused = train(c, true);
      const plain = train(c, false);
      assert.equal(fused.losses, plain.losses, 'losses');
      assert.ok(fused.losses.every(Number.isFinite), `finite losses ${fused.losses}`);
      assert.is(fused.tensors.size, plain.tensors.size);
      for (const [name, want] of plain.tensors) {
        const got = fused.tensors.get(name) as number[];
        const i = got.length === want.length ? got.findIndex((v, j) => !Object.is(v, want[j])) : 0;
        assert.is(i, -1, `${name}: element ${i} is ${got[i]}, want ${want[i]}`);
      }
      console.log(`  ${name(c)} ${c.dtype}: forward + backward ${fused.deviceOps} device ops fused, ${plain.deviceOps} separate`);
      assert.is(plain.deviceOps - fused.deviceOps, fusedAway(c.depth), 'ReLU forward/backward and residual adds gone');
    });
  }
}

test.run();
