/**
 * Layers: initialization statistics as PyTorch (and GPT-2, torchvision) define them, seed
 * determinism, and each layer's forward against the op it wraps.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { GPT, gptConfig } from '../../models/index.ts';
import {
  adaptiveAvgPool2d, conv2d, gelu, layerNorm, linear, type Module, manualSeed, maxPool2d, nn, noGrad, randn, relu, type Tensor, tensor,
  tidy,
} from '../../src/index.ts';
import { deviceTest } from '../helpers/devices.ts';

function stats(t: Tensor): { mean: number; std: number; maxAbs: number } {
  const v = t.toList();
  const mean = v.reduce((a, b) => a + b, 0) / v.length;
  const variance = v.reduce((a, b) => a + (b - mean) ** 2, 0) / v.length;
  return { mean, std: Math.sqrt(variance), maxAbs: v.reduce((a, b) => Math.max(a, Math.abs(b)), 0) };
}

/** Uniform(-bound, bound): every value inside, std bound/√3 within 3%, mean near 0. */
function assertUniform(t: Tensor, bound: number, what: string): void {
  const s = stats(t);
  assert.ok(s.maxAbs <= bound, `${what}: max |w| ${s.maxAbs} <= ${bound}`);
  assert.ok(s.maxAbs > 0.95 * bound, `${what}: values reach the bound`);
  if (t.numel > 1000) {
    assert.ok(Math.abs(s.std / (bound / Math.sqrt(3)) - 1) < 0.03, `${what}: std ${s.std} vs ${bound / Math.sqrt(3)}`);
    assert.ok(Math.abs(s.mean) < (4 * bound) / Math.sqrt(3 * t.numel), `${what}: mean ${s.mean}`);
  }
}

/** Normal(0, std): sample std within 3%, mean within 4 standard errors of 0. */
function assertNormal(t: Tensor, std: number, what: string): void {
  const s = stats(t);
  assert.ok(Math.abs(s.std / std - 1) < 0.03, `${what}: std ${s.std} vs ${std}`);
  assert.ok(Math.abs(s.mean) < (4 * std) / Math.sqrt(t.numel), `${what}: mean ${s.mean}`);
}

const constant = (t: Tensor | null, v: number) => t?.toList().every((x) => x === v);

test('PyTorch default init: Linear and Conv2d kaiming-uniform(a=√5) = U(±1/√fanIn), biases U(±1/√fanIn)', () => {
  manualSeed(0);
  const fc = new nn.Linear(256, 384);
  assertUniform(fc.weight, 1 / 16, 'Linear weight');
  assertUniform(fc.bias as Tensor, 1 / 16, 'Linear bias');
  const conv = new nn.Conv2d(16, 64, 3);
  assertUniform(conv.weight, 1 / 12, 'Conv2d weight');
  assertUniform(conv.bias as Tensor, 1 / 12, 'Conv2d bias');
  assert.is(new nn.Linear(3, 4, { bias: false }).bias, null);
  const emb = new nn.Embedding(1000, 64);
  assertNormal(emb.weight, 1, 'Embedding');
  const ln = new nn.LayerNorm(8);
  assert.ok(constant(ln.weight, 1) && constant(ln.bias, 0));
  const bn = new nn.BatchNorm2d(8);
  assert.ok(constant(bn.weight, 1) && constant(bn.bias, 0) && constant(bn.runningMean, 0) && constant(bn.runningVar, 1));
  assert.is(bn.numBatchesTracked?.item(), 0);
  for (const m of [fc, conv, emb, ln, bn]) m.dispose();
});

deviceTest('BatchNorm2d counts training batches on its own device (no host read), not in eval', (dev) => {
  const bn = nn.moduleToDevice(new nn.BatchNorm2d(3), dev);
  for (let i = 0; i < 3; i++) bn.forward(randn([2, 3, 4, 4]).to(dev));
  bn.eval();
  bn.forward(randn([2, 3, 4, 4]).to(dev));
  const n = bn.numBatchesTracked as Tensor;
  assert.is(n.device, dev);
  assert.is(n.dtype, 'i64');
  assert.is(Number(n.item()), 3);
  bn.dispose();
});

test('GPT-2 init: normal(0, 0.02), zero biases, residual projections 0.02/√(2·nLayer)', () => {
  manualSeed(1);
  const block = new nn.TransformerBlock({ nEmbd: 256, nHead: 4, nLayer: 8 });
  assertNormal(block.attn.c_attn.weight, 0.02, 'c_attn');
  assertNormal(block.mlp.c_fc.weight, 0.02, 'c_fc');
  assertNormal(block.attn.c_proj.weight, 0.02 / 4, 'attn c_proj');
  assertNormal(block.mlp.c_proj.weight, 0.02 / 4, 'mlp c_proj');
  for (const l of [block.attn.c_attn, block.attn.c_proj, block.mlp.c_fc, block.mlp.c_proj]) assert.ok(constant(l.bias, 0));
  assert.ok(constant(block.ln_1.weight, 1) && constant(block.ln_2.bias, 0));
  block.dispose();
  const gpt = new GPT(gptConfig('tiny', { vocabSize: 2048 }));
  assertNormal(gpt.wte.weight, 0.02, 'wte');
  gpt.dispose();
});

test('kaiming-normal fan-out (torchvision ResNet convs)', () => {
  manualSeed(2);
  const conv = new nn.Conv2d(64, 128, 3, { initWeight: (w) => nn.init.kaimingNormal_(w, { mode: 'fanOut', nonlinearity: 'relu' }) });
  assertNormal(conv.weight, Math.sqrt(2 / (128 * 9)), 'conv');
  conv.dispose();
});

test('the same seed gives the same weights; another seed does not; withoutInit draws nothing', () => {
  const build = (seed: number) => {
    manualSeed(seed);
    return new GPT(gptConfig('tiny'));
  };
  const [a, b, c] = [build(42), build(42), build(43)];
  for (const [name, t] of Object.entries(a.stateDict())) {
    assert.equal(b.stateDict()[name].toList(), t.toList(), name);
  }
  assert.not.equal(c.wte.weight.toList(), a.wte.weight.toList());
  manualSeed(42);
  const skipped = nn.withoutInit(() => new GPT(gptConfig('tiny')));
  const after = new GPT(gptConfig('tiny'));
  assert.equal(after.wte.weight.toList(), a.wte.weight.toList(), 'withoutInit left the generator where it was');
  for (const m of [a, b, c, skipped, after]) m.dispose();
});

/** Runs the layer and the op it wraps on the same input; results must be identical. */
function same(m: Module, x: Tensor, op: (x: Tensor) => Tensor): void {
  tidy(() => assert.equal(m.forward(x).toList(), op(x).toList(), m.constructor.name));
  m.dispose();
}

test('each layer computes its op', () => {
  manualSeed(4);
  tidy(() => {
    const x = randn([2, 3, 8, 8]);
    const h = randn([2, 5, 16]);
    const fc = new nn.Linear(16, 4);
    same(fc, h, (t) => linear(t, fc.weight, fc.bias));
    const conv = new nn.Conv2d(3, 4, 3, { stride: 2, padding: 1 });
    same(conv, x, (t) => conv2d(t, conv.weight, conv.bias, { stride: 2, padding: 1 }));
    const ln = new nn.LayerNorm(16, { eps: 1e-6 });
    same(ln, h, (t) => layerNorm(t, [16], ln.weight, ln.bias, 1e-6));
    same(new nn.ReLU(), h, relu);
    same(new nn.GELU(), h, gelu);
    same(new nn.MaxPool2d(3, { stride: 2, padding: 1 }), x, (t) => maxPool2d(t, 3, { stride: 2, padding: 1 }));
    same(new nn.AdaptiveAvgPool2d([2, 1]), x, (t) => adaptiveAvgPool2d(t, [2, 1]));
    assert.equal(new nn.Flatten().forward(x).shape, [2, 192]);
    const emb = new nn.Embedding(10, 3);
    const ids = tensor([[1, 9], [0, 1]], { dtype: 'i32' });
    assert.equal(emb.forward(ids).toList().slice(0, 3), emb.weight.toList().slice(3, 6));
    emb.dispose();
  });
});

test('BatchNorm2d: training updates running stats and the counter; eval uses them', () => {
  manualSeed(5);
  const bn = new nn.BatchNorm2d(3, { momentum: 0.5 });
  tidy(() => {
    const x = randn([4, 3, 5, 5], { mean: 2, std: 3 });
    const y = bn.forward(x);
    assert.is(bn.numBatchesTracked?.item(), 1);
    const rm = (bn.runningMean as Tensor).toList();
    assert.ok(rm.every((v) => v > 0.6 && v < 1.4), `running mean moved half way to ~2: ${rm}`);
    const s = stats(y);
    assert.ok(Math.abs(s.mean) < 1e-5 && Math.abs(s.std - 1) < 1e-3, 'training normalizes with batch statistics');
    bn.eval();
    const z = bn.forward(x);
    assert.is(bn.numBatchesTracked?.item(), 1, 'eval does not count');
    assert.equal((bn.runningMean as Tensor).toList(), rm, 'eval does not update');
    assert.ok(Math.abs(stats(z).mean) > 0.2, 'eval normalizes with the running statistics');
  });
  bn.dispose();
});

deviceTest('Dropout and CausalSelfAttention: masks from the seed, causal (no look-ahead)', (dev) => {
  manualSeed(6);
  const attn = nn.moduleToDevice(new nn.CausalSelfAttention({ nEmbd: 16, nHead: 4, dropout: 0.2 }), dev);
  tidy(() => {
    const x = randn([1, 6, 16], { device: dev });
    // Training with dropout: the same seed gives the same output.
    manualSeed(9);
    const a = attn.forward(x).toList();
    manualSeed(9);
    assert.equal(attn.forward(x).toList(), a);
    // Eval: deterministic, and changing the last token leaves earlier outputs alone.
    attn.eval();
    const y = attn.forward(x).toList();
    const x2 = x.toList();
    for (let i = 5 * 16; i < 6 * 16; i++) x2[i] += 1;
    const y2 = attn.forward(tensor(x2, { shape: [1, 6, 16], device: dev })).toList();
    assert.equal(y2.slice(0, 5 * 16), y.slice(0, 5 * 16));
    assert.not.equal(y2.slice(5 * 16), y.slice(5 * 16));
  });
  assert.throws(() => new nn.CausalSelfAttention({ nEmbd: 10, nHead: 4 }), /nEmbd 10 is not divisible by nHead 4/);
  attn.dispose();
});

deviceTest('TransformerBlock with checkpoint gives the same output and gradients (dropout masks replayed)', (dev) => {
  manualSeed(7);
  const block = nn.moduleToDevice(new nn.TransformerBlock({ nEmbd: 16, nHead: 2, nLayer: 2, dropout: 0.1, dtype: 'f64' }), dev);
  const run = (ckpt: boolean) =>
    tidy(() => {
      block.checkpoint = ckpt;
      manualSeed(8);
      const x = randn([2, 5, 16], { dtype: 'f64', device: dev, requiresGrad: true });
      const y = block.forward(x);
      y.mul(y).sum().backward();
      const out = [y.toList(), (x.grad as Tensor).toList(), ...block.parameters().map((p) => (p.grad as Tensor).toList())];
      block.zeroGrad();
      return out;
    });
  const plain = run(false);
  const ckpt = run(true);
  assert.equal(ckpt, plain);
  noGrad(() => tidy(() => block.forward(randn([1, 2, 16], { dtype: 'f64', device: dev }))));
  block.dispose();
});

test('Sequential and ModuleList: naming, indexing, errors', () => {
  const seq = new nn.Sequential({ conv: new nn.Conv2d(1, 2, 1), act: new nn.ReLU() });
  assert.equal(seq.namedParameters().map(([n]) => n), ['conv.weight', 'conv.bias']);
  seq.append(new nn.Flatten());
  assert.is(seq.length, 3);
  assert.ok(seq.at(-1) instanceof nn.Flatten);
  const list = new nn.ModuleList([new nn.Linear(2, 2), new nn.Linear(2, 2)]);
  assert.equal(list.namedParameters().map(([n]) => n), ['0.weight', '0.bias', '1.weight', '1.bias']);
  assert.throws(() => list.forward(), /ModuleList has no forward/);
  assert.throws(() => list.at(5), /no module at index 5/);
  assert.match(String(seq), '(conv): Conv2d(1, 2, kernel 1x1');
  seq.dispose();
  list.dispose();
});

test.run();
