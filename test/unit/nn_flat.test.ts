/**
 * flattenParameters: parameters move into one contiguous buffer and become views of it (same
 * Tensor objects); training afterwards updates the module and the buffer alike.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mlp } from '../../models/index.ts';
import {
  addInPlace, flattenParameters, liveStorages, manualSeed, mean, memoryStats, noGrad, ones, randn, type Tensor, tidy, zeros,
} from '../../src/index.ts';

test('parameters become views of one buffer: same objects, same values, old memory released', () => {
  manualSeed(3);
  const model = mlp({ sizes: [5, 7, 3] });
  const params = model.parameters();
  const values = params.map((p) => p.toList());
  const live = liveStorages();
  const paramBytes = memoryStats().cpu.param.current;
  const flat = flattenParameters([...params, params[0]]); // duplicates are dropped
  assert.is(flat.params.length, 4);
  assert.equal(flat.offsets, [0, 35, 42, 63]);
  assert.is(flat.numel, 66);
  assert.equal(flat.buffer.shape, [66]);
  assert.is(liveStorages(), live - 4 + 1);
  assert.is(memoryStats().cpu.param.current, paramBytes); // moved, not duplicated
  model.parameters().forEach((p, i) => {
    assert.is(p, params[i], 'the module keeps the same tensor objects');
    assert.is(p.storage, flat.buffer.storage);
    assert.is(p.offset, flat.offsets[i]);
    assert.ok(p.requiresGrad && p.isLeaf);
    assert.equal(p.toList(), values[i]);
  });
  assert.equal(flat.buffer.toList(), values.flat());

  // Writing the buffer changes the module's parameters, with no copy.
  noGrad(() => tidy(() => addInPlace(flat.buffer, ones([66]), 1)));
  assert.equal(params[1].toList(), values[1].map((v) => Math.fround(v + 1)));
  model.dispose();
  assert.is(liveStorages(), live - 4 + 1, 'the buffer handle still holds the storage');
  flat.buffer.dispose();
  assert.is(liveStorages(), live - 4);
});

test('alignment pads each parameter start and the total with zeros', () => {
  const a = randn([3], { tag: 'param', requiresGrad: true });
  const b = randn([2, 2], { tag: 'param', requiresGrad: true });
  const flat = flattenParameters([a, b], { alignment: 8 });
  assert.equal(flat.offsets, [0, 8]);
  assert.is(flat.numel, 16);
  const buf = flat.buffer.toList();
  assert.equal([...buf.slice(3, 8), ...buf.slice(12)], [0, 0, 0, 0, 0, 0, 0, 0, 0]);
  for (const t of [a, b, flat.buffer]) t.dispose();
  const c = zeros([2], { tag: 'param', dtype: 'f64' });
  const d = zeros([2], { tag: 'param' });
  assert.throws(() => flattenParameters([d, c]), /parameter 1 .* differs from parameter 0 \(f32 on cpu\)/);
  c.dispose();
  d.dispose();
});

/** SGD steps on a regression target; returns the losses. */
function train(model: ReturnType<typeof mlp>, steps: number): number[] {
  manualSeed(11);
  const x = randn([16, 5]);
  const y = randn([16, 3]);
  const losses: number[] = [];
  for (let s = 0; s < steps; s++) {
    losses.push(
      tidy(() => {
        const d = model.forward(x).sub(y);
        const loss = mean(d.mul(d));
        loss.backward();
        noGrad(() => {
          for (const p of model.parameters()) addInPlace(p, p.grad as Tensor, -0.1);
        });
        model.zeroGrad();
        return loss.item();
      }),
    );
  }
  x.dispose();
  y.dispose();
  return losses;
}

test('training after flattening matches training without, and the buffer sees every update', () => {
  manualSeed(5);
  const plain = mlp({ sizes: [5, 16, 3] });
  manualSeed(5);
  const flatModel = mlp({ sizes: [5, 16, 3] });
  const flat = flattenParameters(flatModel.parameters());
  const a = train(plain, 20);
  const b = train(flatModel, 20);
  assert.equal(b, a);
  assert.ok(a[19] < 0.8 * a[0], `the loss falls: ${a[0]} -> ${a[19]}`);
  assert.equal(flat.buffer.toList(), plain.parameters().flatMap((p) => p.toList()));
  plain.dispose();
  flatModel.dispose();
  flat.buffer.dispose();
});

test.run();
