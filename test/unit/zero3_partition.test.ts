// ZeRO stage 3's per-parameter partitioning arithmetic (stage3_partition.ts): shard sizes and
// padding, the valid (non-padding) part of each rank's shard, packing into one partition buffer,
// and the rank-major bucket layout that one reduce-scatter turns into every rank's shards.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { tensor, zeros } from '../../src/index.ts';
import { bucketPieces, paramShard, planPartition } from '../../src/zero/index.ts';
import { fillPieces } from '../../src/zero/stage3_grads.ts';

test('zero3 partition: numel padded to N·ceil(n/N); rank r owns [r·s, (r+1)·s), its real part clipped at n', () => {
  assert.equal(paramShard('w', 10, 4, 0), { name: 'w', numel: 10, size: 3, padded: 12, paramStart: 0, valid: 3, offset: 0 });
  assert.equal(paramShard('w', 10, 4, 3), { name: 'w', numel: 10, size: 3, padded: 12, paramStart: 9, valid: 1, offset: 0 });
  // One element over four ranks: ranks 1-3 hold only padding.
  assert.is(paramShard('b', 1, 4, 0).valid, 1);
  assert.is(paramShard('b', 1, 4, 3).valid, 0);
  assert.is(paramShard('b', 1, 4, 3).padded, 4);
  assert.is(paramShard('e', 0, 4, 2).size, 0);
  // Every element is owned exactly once over the ranks.
  for (const [n, world] of [[5703, 4], [7, 2], [1, 1], [33, 8]]) {
    const valid = Array.from({ length: world }, (_, r) => paramShard('p', n, world, r).valid);
    assert.is(valid.reduce((a, b) => a + b, 0), n, `${n} over ${world}`);
  }
  assert.throws(() => paramShard('w', 10, 4, 4), /rank 4 is not in 0\.\.3/);
  assert.throws(() => paramShard('w', -1, 4, 0), /numel of "w"/);
});

test('zero3 partition: a rank\'s shards of all parameters packed in order', () => {
  const plan = planPartition([{ name: 'a', numel: 10 }, { name: 'b', numel: 3 }, { name: 'c', numel: 8 }], 4, 1);
  assert.is(plan.numel, 3 + 1 + 2);
  assert.equal(plan.shards.map((s) => [s.name, s.offset, s.size, s.paramStart, s.valid]), [['a', 0, 3, 3, 3], ['b', 3, 1, 1, 1], ['c', 4, 2, 2, 2]]);
  const last = planPartition([{ name: 'a', numel: 10 }, { name: 'b', numel: 3 }], 4, 3);
  assert.equal(last.shards.map((s) => s.valid), [1, 0]);
});

test('zero3 partition: rank-major bucket pieces (rank r\'s piece of the gradient at r·stride + at)', () => {
  // 10 elements, shard 3, 4 ranks, a bucket stride of 5 with 2 elements used before this one.
  assert.equal(bucketPieces(10, 3, 4, 5, 2), [
    { rank: 0, lo: 0, hi: 3, dst: 2 }, { rank: 1, lo: 3, hi: 6, dst: 7 }, { rank: 2, lo: 6, hi: 9, dst: 12 }, { rank: 3, lo: 9, hi: 10, dst: 17 },
  ]);
  // Ranks whose shard is all padding get no piece (the bucket's zeros stand for it).
  assert.equal(bucketPieces(1, 1, 4, 1, 0), [{ rank: 0, lo: 0, hi: 1, dst: 0 }]);
  assert.throws(() => bucketPieces(10, 3, 4, 4, 2), /overflows a bucket stride/);
});

test('zero3 bucket fill: fillPieces (whole pieces in one strided copy, then the partial one) places every piece as bucketPieces says', () => {
  for (const [numel, size, world, stride, at] of [[10, 3, 4, 5, 2], [12, 3, 4, 3, 0], [1, 1, 4, 1, 0], [7, 7, 1, 9, 2], [9, 3, 4, 4, 1], [0, 0, 3, 2, 0]]) {
    const g = tensor(Array.from({ length: numel }, (_, i) => i + 1), { dtype: 'f32' });
    const got = zeros([world * stride]);
    fillPieces(g, got, size, world, stride, at);
    const want = new Array<number>(world * stride).fill(0);
    for (const p of bucketPieces(numel, size, world, stride, at)) for (let i = p.lo; i < p.hi; i++) want[p.dst + i - p.lo] = i + 1;
    assert.equal(got.toList(), want, `numel ${numel}, size ${size}, world ${world}, stride ${stride}, at ${at}`);
    g.dispose();
    got.dispose();
  }
});

test.run();
