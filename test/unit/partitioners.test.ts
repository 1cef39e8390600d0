/**
 * Pipeline partitioners: hand-checked cases, clear errors, and `balanced` against a brute force
 * over every boundary placement on small random cost vectors.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  formatPartition, type LayerInfo, partitionBalanced, partitionByType, partitionLayers, partitionParameters, partitionUniform,
} from '../../partitioners/index.ts';

test('uniform: DeepSpeed-style, earlier stages take the remainder', () => {
  assert.equal(partitionUniform(10, 4).boundaries, [0, 3, 6, 8, 10]);
  assert.equal(partitionUniform(10, 4).stageCosts, [3, 3, 2, 2]);
  assert.equal(partitionUniform(8, 4).boundaries, [0, 2, 4, 6, 8]);
  assert.equal(partitionUniform(3, 3).boundaries, [0, 1, 2, 3]);
  const p = partitionUniform(4, 2, [1, 1, 1, 5]);
  assert.equal(p.stageCosts, [2, 6]);
  assert.is(p.maxCost, 6);
});

test('balanced: hand-checked min–max partitions', () => {
  assert.equal(partitionBalanced([1, 1, 1, 5], 2).boundaries, [0, 3, 4]);
  assert.equal(partitionBalanced([1, 2, 3, 4, 5, 6, 7, 8, 9], 3).maxCost, 17); // 1..5 | 6 7 | 8 9
  assert.equal(partitionBalanced([10, 1, 1, 1, 1, 10], 3).maxCost, 10);
  assert.equal(partitionBalanced([5, 5, 5, 5], 4).boundaries, [0, 1, 2, 3, 4]);
  assert.equal(partitionBalanced([0, 0, 7, 0], 2).maxCost, 7);
  assert.equal(partitionBalanced([3], 1), { method: 'balanced', boundaries: [0, 1], stageCosts: [3], maxCost: 3 });
});

test('parameters: balances parameter counts (embedding, blocks, head)', () => {
  const layers: LayerInfo[] = [
    { name: 'embed', type: 'Embedding', params: 4000 },
    ...Array.from({ length: 6 }, (_, i) => ({ name: `block${i}`, type: 'TransformerBlock', params: 1000 })),
    { name: 'head', type: 'Linear', params: 4000 },
  ];
  const p = partitionParameters(layers, 2);
  assert.equal(p.boundaries, [0, 4, 8]);
  assert.equal(p.stageCosts, [7000, 7000]);
  assert.equal(partitionLayers('parameters', layers, 2), p);
  // type: balance the transformer blocks only
  const t = partitionByType(layers, 'transformerblock', 3);
  assert.equal(t.stageCosts, [2, 2, 2]);
  assert.equal(t.method, 'type:transformerblock');
  assert.equal(partitionLayers('type:^block', layers, 2).stageCosts, [3, 3]); // matches names too
  assert.equal(
    formatPartition(p, layers.map((l) => l.name!)),
    'parameters: 2 stages, boundaries [0, 4, 8], max cost 7000\n  stage 0: layers 0..3 (4) cost 7000 embed..block2\n  stage 1: layers 4..7 (4) cost 7000 block3..head',
  );
});

test('clear errors for impossible requests', () => {
  assert.throws(() => partitionUniform(3, 4), /4 stages but only 3 layers/);
  assert.throws(() => partitionBalanced([], 1), /no layers/);
  assert.throws(() => partitionBalanced([1, -2], 1), /costs\[1\] = -2/);
  assert.throws(() => partitionBalanced([1, Number.NaN], 1), /costs\[1\] = NaN/);
  assert.throws(() => partitionBalanced([1, Number.POSITIVE_INFINITY], 2), /not a finite/);
  assert.throws(() => partitionBalanced([1, 2], 0), /positive integer/);
  assert.throws(() => partitionByType([{ type: 'Linear' }], 'Conv', 1), /matches none/);
  assert.throws(() => partitionParameters([{ name: 'x' }], 1), /no parameter count/);
  assert.throws(() => partitionLayers('balanced', [{}, {}], 2), /needs a cost/);
  assert.throws(() => partitionLayers('flops', [{}], 1), /unknown method 'flops'/);
});

/** The least bottleneck over every way to cut `costs` into `k` non-empty contiguous parts. */
function bruteForce(costs: number[], k: number): number {
  const n = costs.length;
  let best = Number.POSITIVE_INFINITY;
  const cuts: number[] = [];
  const rec = (from: number, left: number): void => {
    if (left === 1) {
      const bounds = [0, ...cuts, n];
      let worst = 0;
      for (let j = 0; j + 1 < bounds.length; j++) worst = Math.max(worst, costs.slice(bounds[j], bounds[j + 1]).reduce((a, b) => a + b, 0));
      best = Math.min(best, worst);
      return;
    }
    for (let c = from; c <= n - left + 1; c++) {
      cuts.push(c);
      rec(c + 1, left - 1);
      cuts.pop();
    }
  };
  rec(1, k);
  return best;
}

test('balanced is optimal: brute force on small random vectors', () => {
  let seed = 12345;
  const rand = (): number => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return seed / 2147483648;
  };
  for (let trial = 0; trial < 300; trial++) {
    const n = 1 + Math.floor(rand() * 9);
    const k = 1 + Math.floor(rand() * n);
    const costs = Array.from({ length: n }, () => (trial % 2 ? Math.floor(rand() * 10) : rand() * 5));
    const p = partitionBalanced(costs, k);
    const want = bruteForce(costs, k);
    assert.is(p.boundaries.length, k + 1);
    assert.is(p.boundaries[0], 0);
    assert.is(p.boundaries[k], n);
    for (let j = 0; j < k; j++) assert.ok(p.boundaries[j + 1] > p.boundaries[j], `empty stage in ${p.boundaries}`);
    assert.ok(Math.abs(p.maxCost - want) <= 1e-9 * Math.max(1, want), `costs ${costs} k=${k}: ${p.maxCost} vs brute force ${want}`);
  }
});

test.run();
