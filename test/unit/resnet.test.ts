/**
 * models/resnet.ts: torchvision's parameter counts and state-dict names, the shape-only count,
 * and a forward/backward on a CIFAR-shaped batch.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ResNet, resnet18, resnet50, resnet101, resnetParamCount } from '../../models/index.ts';
import { crossEntropy, manualSeed, nn, randn, type Tensor, tensor, tidy } from '../../src/index.ts';

// torchvision.models.resnetN(num_classes=1000): sum(p.numel() for p in model.parameters()).
const TORCHVISION: Record<number, number> = {
  18: 11_689_512,
  34: 21_797_672,
  50: 25_557_032,
  101: 44_549_160,
  152: 60_192_808,
};

test('parameter counts equal torchvision\'s (ImageNet stem), allocated and shape-only', () => {
  for (const [depth, want] of Object.entries(TORCHVISION)) {
    const d = Number(depth);
    assert.is(resnetParamCount(d), want, `resnet${d} shape-only`);
    // withoutInit: allocation only (no random fill), so even ResNet-152 is quick to count.
    const m = nn.withoutInit(() => new ResNet(d));
    assert.is(m.numParameters(), want, `resnet${d} allocated`);
    m.dispose();
  }
  const r101 = nn.withoutInit(() => resnet101({ numClasses: 10 }));
  assert.is(r101.numParameters(), 42_520_650);
  r101.dispose();
  assert.is(resnetParamCount(101, { numClasses: 10 }), 42_520_650);
  // The CIFAR stem: a 3x3 conv instead of 7x7 (3·64·(49 − 9) fewer weights).
  assert.is(resnetParamCount(101, { numClasses: 10, cifar: true }), 42_520_650 - 3 * 64 * 40);
  assert.throws(() => new ResNet(20), /depth must be one of 18, 34, 50, 101, 152/);
});

test('state-dict names follow torchvision', () => {
  const m = nn.withoutInit(() => resnet50());
  const keys = Object.keys(m.stateDict());
  assert.is(keys.length, 320);
  assert.equal(keys.slice(0, 7), [
    'conv1.weight', 'bn1.weight', 'bn1.bias', 'bn1.running_mean', 'bn1.running_var', 'bn1.num_batches_tracked', 'layer1.0.conv1.weight',
  ]);
  for (const k of ['layer1.0.downsample.0.weight', 'layer1.0.downsample.1.running_var', 'layer3.5.conv3.weight', 'layer4.2.bn3.bias', 'fc.weight', 'fc.bias']) {
    assert.ok(keys.includes(k), k);
  }
  assert.not.ok(keys.some((k) => k.startsWith('layer1.1.downsample')));
  m.dispose();
  const r18 = nn.withoutInit(() => resnet18());
  assert.is(Object.keys(r18.stateDict()).length, 122);
  assert.ok('layer2.0.downsample.0.weight' in r18.stateDict());
  r18.dispose();
});

/**
 * A model filled with small uniform values: the kaiming-normal init is tested in nn_layers and
 * the normal generator costs ~50 ns per value on one thread, 1-3 s for these models.
 */
function quick(build: () => ResNet): ResNet {
  const m = nn.withoutInit(build);
  for (const p of m.parameters()) nn.init.uniform_(p, -0.05, 0.05);
  return m;
}

test('CIFAR-shaped batch: logits [N, classes]; backward reaches every parameter (ResNet-18 as initialized, ResNet-50)', () => {
  manualSeed(0);
  for (const model of [resnet18({ numClasses: 10, cifar: true }), quick(() => resnet50({ numClasses: 10, cifar: true }))]) {
    tidy(() => {
      const x = randn([2, 3, 32, 32]);
      const logits = model.forward(x);
      assert.equal(logits.shape, [2, 10]);
      const loss = crossEntropy(logits, tensor([3, 7], { dtype: 'i64' }));
      assert.ok(Number.isFinite(loss.item()));
      loss.backward();
    });
    for (const [name, p] of model.namedParameters()) {
      const g = p.grad as Tensor;
      assert.ok(g?.toList().every(Number.isFinite), `${name} has a finite gradient`);
    }
    model.dispose();
  }
});

test('the ImageNet stem takes 224x224 down to 7x7 before pooling', () => {
  manualSeed(1);
  const model = quick(() => resnet18({ numClasses: 4 }));
  model.eval();
  const log: number[][] = [];
  model.avgpool.registerForwardPreHook((_m, args) => void log.push([...(args[0] as Tensor).shape]));
  tidy(() => assert.equal(model.forward(randn([1, 3, 224, 224])).shape, [1, 4]));
  assert.equal(log, [[1, 512, 7, 7]]);
  model.dispose();
});

test.run();
