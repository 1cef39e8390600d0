/**
 * Adopted first gradients (src/autograd/grad_adopt.ts): a leaf without a live `.grad` takes the
 * tensor its node returned as its `.grad` when only the engine holds it, instead of a copy. Every
 * case runs with adoption on and off (setGradAdopt(false): always copy) and the gradients must be
 * equal bit for bit: an adopted tensor that another consumer later wrote (a pending gradient, a
 * result handed to two inputs, a deferred job's alias, the caller's seed) would change them.
 * Cases: a + a, a used by add and mul (both edge orders), x.grad used again, retainGraph twice,
 * checkpoint segments, hooks that read or free .grad, a channels-last leaf, the seed of a leaf
 * root, GPT tiny (tied wte/head) without an engine and through initialize() at ZeRO 0-3.
 * Per device (CPU, and cuda:0 when one is usable).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { GPT, gptConfig } from '../../models/index.ts';
import { canAdopt, gradsAdopted, setGradAdopt } from '../../src/autograd/grad_adopt.ts';
import {
  add, checkpoint, crossEntropy, type Device, destroyDistributed, gelu, initDistributed, linear, manualSeed, mul,
  nn, randn, SGD, sum, type Tensor, tensor, tidy, withTag,
} from '../../src/index.ts';
import { deviceTest } from '../helpers/devices.ts';
import { gptEngineRun } from '../helpers/gpt_engine_run.ts';

const values = (t: Tensor | null): number[] => Array.from((t?.toArray() ?? []) as ArrayLike<number>);

function leaf(shape: number[], dev: Device, dtype: 'f32' | 'f64' = 'f64'): Tensor {
  return randn(shape, { dtype, device: dev, requiresGrad: true });
}

/** The case's outputs with adoption on and off (same seed); fails unless bit for bit equal. Returns the adoptions counted with it on. */
function same(what: string, fn: () => (Tensor | null)[]): number {
  const run = (on: boolean) => {
    const prev = setGradAdopt(on);
    try {
      manualSeed(11);
      const before = gradsAdopted();
      const out = tidy(() => fn().map(values));
      return { out, adopted: gradsAdopted() - before };
    } finally {
      setGradAdopt(prev);
    }
  };
  const on = run(true);
  const off = run(false);
  assert.is(off.adopted, 0, `${what}: setGradAdopt(false) adopts nothing`);
  assert.equal(on.out, off.out, `${what}: adopted vs copied`);
  return on.adopted;
}

test('canAdopt: a fresh grad-tagged result only; not an alias, kept, a view of more, another tag, dtype or layout', () => {
  withTag('grad', () => {
    const p = leaf([4, 3], 'cpu');
    const g = randn([4, 3], { dtype: 'f64' });
    assert.ok(canAdopt(p, g), 'fresh');
    const a = g.alias();
    assert.not.ok(canAdopt(p, g), 'another handle shares the memory');
    a.dispose();
    g.kept = true;
    assert.not.ok(canAdopt(p, g), 'kept');
    g.kept = false;
    assert.not.ok(canAdopt(p, g.to('f32')), 'dtype');
    const big = randn([5, 3], { dtype: 'f64' });
    const part = big.narrow(0, 0, 4);
    big.dispose();
    assert.not.ok(canAdopt(p, part), 'a view of a larger storage (its only handle)');
    const t = randn([3, 4], { dtype: 'f64' });
    const tt = t.transpose(0, 1);
    t.dispose();
    assert.not.ok(canAdopt(p, tt), 'a transposed layout for a contiguous leaf');
  });
  const act = randn([4, 3], { dtype: 'f64' });
  assert.not.ok(canAdopt(leaf([4, 3], 'cpu'), act), "tagged 'activation'");
});

deviceTest('a + a and mul(a, a): one tensor for two inputs is not adopted; a fresh one is', (dev) => {
  const n = same('a + a', () => {
    const a = leaf([3, 4], dev);
    sum(mul(add(a, a), randn([3, 4], { dtype: 'f64', device: dev }))).backward();
    return [a.grad];
  });
  assert.is(n, 0, "add's backward hands g to both inputs");
  const m = same('mul(a, a)', () => {
    const a = leaf([3, 4], dev);
    sum(mul(mul(a, a), randn([3, 4], { dtype: 'f64', device: dev }))).backward();
    return [a.grad];
  });
  assert.is(m, 1, "mul's two gradients are fresh: the first is adopted, the second added into it");
});

deviceTest('a used by add and three muls, every operand order: the pending gradient is never the adopted .grad', (dev) => {
  // u = a c feeds add and a second mul, so its node waits with add's gradient pending while
  // mul(a, d) adds into a.grad: a .grad adopted from add sharing that memory (the same tensor
  // went to u's node) would change the pending gradient before u's node reads it.
  for (const o of [0, 1, 2, 3, 4, 5, 6, 7]) {
    same(`operand order ${o}`, () => {
      const a = leaf([3, 4], dev);
      const [c, d, k] = [0, 1, 2].map(() => randn([3, 4], { dtype: 'f64', device: dev }));
      const u = mul(a, c);
      const v = o & 1 ? add(u, a) : add(a, u);
      const w = mul(a, d);
      const s1 = sum(o & 2 ? mul(v, w) : mul(w, v));
      const s2 = sum(mul(u, k));
      (o & 4 ? add(s1, s2) : add(s2, s1)).backward();
      return [a.grad];
    });
  }
});

deviceTest('x.grad used again: as an input of the next pass, and backward twice with retainGraph', (dev) => {
  const n = same('x.grad reused', () => {
    const x = leaf([5], dev);
    const w = leaf([5], dev);
    sum(mul(mul(x, w), x)).backward();
    const g1 = values(x.grad);
    sum(mul(x, x.grad as Tensor)).backward(); // reads x.grad (saved) while adding into it
    return [tensor(g1, { dtype: 'f64' }), x.grad, w.grad];
  });
  assert.ok(n >= 2, `adopted ${n}`);
  same('retainGraph twice', () => {
    const w = leaf([4, 6], dev);
    const b = leaf([4], dev);
    const l = sum(mul(gelu(linear(randn([3, 6], { dtype: 'f64', device: dev }), w, b)), randn([3, 4], { dtype: 'f64', device: dev })));
    l.backward(undefined, { retainGraph: true });
    const first = [values(w.grad), values(b.grad)];
    l.backward();
    return [tensor(first[0], { dtype: 'f64' }), tensor(first[1], { dtype: 'f64' }), w.grad, b.grad];
  });
});

deviceTest('checkpoint segments and hooks that read, keep or free .grad', (dev) => {
  const seen: number[][] = [];
  const n = same('checkpoint + hooks', () => {
    const w = leaf([8, 8], dev);
    const b = leaf([8], dev);
    const x = leaf([4, 8], dev);
    let fired = 0;
    let held: Tensor | null = null;
    w.gradReadyHooks.push((p) => {
      fired++;
      seen.push(values(p.grad));
    });
    // ZeRO 2/3's pattern: read .grad, then free it.
    const kept: number[][] = [];
    b.gradReadyHooks.push((p) => {
      held = p.grad;
      kept.push(values(p.grad));
      p.grad?.dispose();
      p.grad = null;
    });
    const y = checkpoint((h) => gelu(linear(h, w, b)), x);
    const z = checkpoint((h) => linear(h, w), y);
    sum(mul(linear(z, w, b), randn([4, 8], { dtype: 'f64', device: dev }))).backward();
    assert.is(fired, 1, 'the hook fires once, after every use');
    assert.ok((held as Tensor | null)?.disposed, 'the freed .grad');
    return [w.grad, x.grad, tensor(kept[0], { dtype: 'f64' })];
  });
  assert.equal(seen[0], seen[1], 'the gradient the hook saw');
  assert.ok(n >= 2, `adopted ${n}`);
});

deviceTest('a channels-last leaf keeps a channels-last .grad; the seed of a leaf root is never the caller\'s tensor', (dev) => {
  same('channels-last', () => {
    const base = randn([2, 4, 5, 3], { dtype: 'f64', device: dev });
    const p = base.permute([0, 3, 1, 2]); // [2, 3, 4, 5] in channels-last order
    p.requiresGrad = true;
    sum(mul(p, randn([2, 3, 4, 5], { dtype: 'f64', device: dev }))).backward();
    assert.equal(p.grad?.strides, p.strides, 'the leaf\'s layout');
    const q = base.permute([0, 3, 1, 2]);
    q.requiresGrad = true;
    sum(mul(q.reshape([2, 60]), randn([2, 60], { dtype: 'f64', device: dev }))).backward();
    assert.equal(q.grad?.strides, q.strides, 'copied into the leaf\'s layout');
    return [p.grad, q.grad];
  });
  const x = leaf([3], dev);
  const gt = randn([3], { dtype: 'f64', device: dev });
  x.backward(gt);
  assert.ok(x.grad !== gt && x.grad?.storage !== gt.storage, "the caller's gradient is copied");
  assert.equal(values(x.grad), values(gt));
  const s = leaf([1], dev);
  const before = gradsAdopted();
  s.backward();
  assert.is(gradsAdopted() - before, 1, 'a seed made by the engine is adopted');
  assert.equal(values(s.grad), [1]);
});

deviceTest('GPT tiny (tied wte/head), plain loop with zeroGrad(set to none): 3 SGD steps bit for bit, fewer grad bytes', (dev) => {
  const n = same('GPT tiny', () => {
    const cfg = gptConfig('tiny', { dropout: 0, nLayer: 2 });
    const model = nn.moduleToDevice(new GPT(cfg), dev);
    const opt = new SGD(model.parameters(), { lr: 0.1, momentum: 0.9 });
    const losses: number[] = [];
    for (let step = 0; step < 3; step++) {
      tidy(() => {
        const ids = tensor(Array.from({ length: 32 }, (_, i) => (i * 7 + step * 13) % cfg.vocabSize), { dtype: 'i32', shape: [2, 16], device: dev });
        const tg = tensor(Array.from({ length: 32 }, (_, i) => (i * 5 + step * 3 + 1) % cfg.vocabSize), { dtype: 'i64', device: dev });
        const l = crossEntropy(model.forward(ids).reshape([32, cfg.vocabSize]), tg);
        l.backward();
        opt.step();
        opt.zeroGrad();
        losses.push(l.item());
      });
    }
    const out = [tensor(losses, { dtype: 'f64' }), ...model.parameters().map((p) => p.alias())];
    return out;
  });
  assert.ok(n > 0, `adopted ${n}`);
});

// Through initialize(): ZeRO 2/3 free each .grad in their hooks (every first gradient is adoptable there).
let world = false;
test.before(async () => {
  await initDistributed({ timeoutMs: 30_000 });
  world = true;
});
test.after(async () => {
  if (world) await destroyDistributed();
});

async function gptEngine(stage: 0 | 1 | 2 | 3, on: boolean): Promise<{ out: number[][]; adopted: number }> {
  const prev = setGradAdopt(on);
  try {
    const config = {
      train_batch_size: 4, train_micro_batch_size_per_gpu: 2, gradient_accumulation_steps: 2, gradient_clipping: 1,
      optimizer: { type: 'AdamW', params: { lr: 1e-3 } },
      zero_optimization: { stage, reduce_bucket_size: 20_000, stage3_param_persistence_threshold: 100 },
    };
    const r = await gptEngineRun({ seed: 3, config, micros: 4, counter: gradsAdopted });
    return { out: [r.losses, ...r.weights], adopted: r.counted };
  } finally {
    setGradAdopt(prev);
  }
}

test('GPT tiny through initialize(), 2 micro-batches per step, ZeRO 0-3 (AdamW, clipping): losses and weights bit for bit', async () => {
  for (const stage of [0, 1, 2, 3] as const) {
    const on = await gptEngine(stage, true);
    const off = await gptEngine(stage, false);
    assert.equal(on.out, off.out, `stage ${stage}`);
    assert.is(off.adopted, 0);
    if (stage >= 2) assert.ok(on.adopted > 0, `stage ${stage}: adopted ${on.adopted}`);
    console.log(`  stage ${stage}: ${on.adopted} gradients adopted over 4 micro-batches`);
  }
});

test.run();
