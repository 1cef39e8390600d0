import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  DataLoader, type Dataset, DistributedSampler, keep, liveStorages, permutation, RandomSampler, SequentialSampler, syntheticCifar10, syntheticTokens,type Tensor, 
} from '../../src/index.ts';

const sorted = (a: number[]) => [...a].sort((x, y) => x - y);
const range = (n: number) => Array.from({ length: n }, (_, i) => i);
const shards = (n: number, numReplicas: number, opts: { shuffle?: boolean; seed?: number; dropLast?: boolean; epoch?: number } = {}) =>
  range(numReplicas).map((rank) => {
    const s = new DistributedSampler(n, { numReplicas, rank, ...opts });
    if (opts.epoch !== undefined) s.setEpoch(opts.epoch);
    return s.indices();
  });

test('permutation: a permutation that depends on (seed, epoch) only', () => {
  const p = permutation(1000, 7, 3);
  assert.equal(sorted(p), range(1000));
  assert.equal(permutation(1000, 7, 3), p, 'same seed and epoch, same order');
  assert.not.equal(permutation(1000, 7, 4), p, 'another epoch');
  assert.not.equal(permutation(1000, 8, 3), p, 'another seed');
  assert.not.equal(permutation(1000, 0, 1), permutation(1000, 1, 0), 'seed and epoch do not simply add');
});

test('DistributedSampler: shards are disjoint and cover the dataset when n divides evenly', () => {
  for (const shuffle of [true, false]) {
    const parts = shards(100, 4, { shuffle, seed: 3 });
    for (const p of parts) assert.is(p.length, 25);
    assert.equal(sorted(parts.flat()), range(100), `shuffle=${shuffle}: disjoint and complete`);
  }
  assert.not.equal(shards(100, 4)[0], range(25).map((i) => 4 * i), 'shuffled by default');
});

test('DistributedSampler: padding and dropLast follow PyTorch', () => {
  // PyTorch: indices += indices[:total - n] (repeated as needed); rank r takes indices[r::R].
  assert.equal(shards(10, 4, { shuffle: false }), [[0, 4, 8], [1, 5, 9], [2, 6, 0], [3, 7, 1]]);
  assert.equal(shards(2, 5, { shuffle: false }), [[0], [1], [0], [1], [0]], 'fewer samples than replicas');
  assert.equal(shards(10, 4, { shuffle: false, dropLast: true }), [[0, 4], [1, 5], [2, 6], [3, 7]]);
  assert.equal(shards(10, 3, { shuffle: false, dropLast: true }), [[0, 3, 6], [1, 4, 7], [2, 5, 8]]);
  const s = new DistributedSampler({ length: 10 }, { numReplicas: 4, rank: 0 });
  assert.is(s.length, 3);
  assert.is(s.totalSize, 12);
  // Shuffled and padded: every rank has ceil(n / R) samples; the padding repeats the head of the permutation.
  const parts = shards(10, 4, { seed: 5, epoch: 2 });
  const perm = permutation(10, 5, 2);
  const padded = [...perm, perm[0], perm[1]];
  parts.forEach((p, r) => assert.equal(p, padded.filter((_, i) => i % 4 === r)));
  assert.equal(sorted([...new Set(parts.flat())]), range(10), 'covers the dataset');
  // Shuffled with dropLast: disjoint, floor(n / R) each.
  const dropped = shards(10, 4, { seed: 5, dropLast: true });
  assert.equal(dropped.map((p) => p.length), [2, 2, 2, 2]);
  assert.is(new Set(dropped.flat()).size, 8);
});

test('DistributedSampler: setEpoch reshuffles deterministically and identically on every rank', () => {
  const e0 = shards(50, 2, { seed: 1, epoch: 0 });
  const e1 = shards(50, 2, { seed: 1, epoch: 1 });
  assert.equal(shards(50, 2, { seed: 1, epoch: 1 }), e1, 'same epoch, same shards');
  assert.not.equal(e0[0], e1[0]);
  assert.equal(sorted(e1.flat()), range(50), 'each epoch still partitions the dataset');
  const s = new DistributedSampler(50, { numReplicas: 2, rank: 0, seed: 1 });
  s.setEpoch(1);
  assert.equal(s.indices(), e1[0]);
  assert.equal(s.indices(), e1[0], 'indices() does not advance the epoch');
});

test('DistributedSampler: argument errors', () => {
  assert.throws(() => new DistributedSampler(10, { numReplicas: 2, rank: 2 }), /rank 2 is out of range \[0, 1\]/);
  assert.throws(() => new DistributedSampler(10, { numReplicas: 0, rank: 0 }), /numReplicas/);
  assert.throws(() => new DistributedSampler(-1, { numReplicas: 1, rank: 0 }), /length/);
  assert.throws(() => new DistributedSampler(10, { numReplicas: 1, rank: 0 }).setEpoch(-1), /epoch/);
});

test('Sequential and random samplers', () => {
  assert.equal(new SequentialSampler(4).indices(), [0, 1, 2, 3]);
  const r = new RandomSampler(20, { seed: 2 });
  assert.equal(r.indices(), permutation(20, 2, 0));
  r.setEpoch(3);
  assert.equal(r.indices(), permutation(20, 2, 3));
});

test('DataLoader: batch shapes, dtypes, length and dropLast', () => {
  const ds = syntheticCifar10({ length: 10 });
  const loader = new DataLoader(ds, { batchSize: 4 });
  assert.is(loader.length, 3);
  const shapes: number[][][] = [];
  for (const [x, y] of loader) {
    assert.is(x.dtype, 'f32');
    assert.is(y.dtype, 'i64');
    shapes.push([[...x.shape], [...y.shape]]);
  }
  assert.equal(shapes, [[[4, 3, 32, 32], [4]], [[4, 3, 32, 32], [4]], [[2, 3, 32, 32], [2]]]);
  const dropping = new DataLoader(ds, { batchSize: 4, dropLast: true });
  assert.is(dropping.length, 2);
  assert.equal([...dropping].length, 2);
  assert.equal(dropping.batchIndices(), [[0, 1, 2, 3], [4, 5, 6, 7]]);
});

test('DataLoader: batches hold the samples, in order', () => {
  const ds = syntheticCifar10({ length: 6, seed: 4 });
  const loader = new DataLoader(ds, { batchSize: 3 });
  let b = 0;
  for (const [x, y] of loader) {
    const xs = x.toArray();
    const ys = y.toList();
    for (let k = 0; k < 3; k++) {
      const [img, label] = ds.get(3 * b + k);
      assert.is(ys[k], label);
      assert.equal(Array.from(xs.subarray(k * 3072, (k + 1) * 3072) as Float32Array), Array.from(img.data as Float32Array));
    }
    b++;
  }
});

test('DataLoader: shuffle is a permutation of (seed, epoch); setEpoch reshuffles', () => {
  const ds = syntheticCifar10({ length: 20 });
  const a = new DataLoader(ds, { batchSize: 8, shuffle: true, seed: 9 });
  const b = new DataLoader(ds, { batchSize: 8, shuffle: true, seed: 9 });
  assert.equal(a.batchIndices(), b.batchIndices());
  assert.equal(sorted(a.batchIndices().flat()), range(20));
  assert.equal(a.batchIndices().flat(), permutation(20, 9, 0));
  const e0 = a.batchIndices();
  a.setEpoch(1);
  assert.is(a.epoch, 1);
  assert.not.equal(a.batchIndices(), e0);
  b.setEpoch(1);
  assert.equal(a.batchIndices(), b.batchIndices());
  const [[, y1]] = [...tensorsOf(a)];
  assert.equal(y1, a.batchIndices()[0].map((i) => ds.get(i)[1]));
});

function* tensorsOf(loader: DataLoader): Generator<[number[], number[]]> {
  for (const [x, y] of loader) yield [x.shape as number[], y.toList()];
}

test('DataLoader: a DistributedSampler decides the order; setEpoch reaches it', () => {
  const ds = syntheticCifar10({ length: 10 });
  const sampler = new DistributedSampler(ds.length, { numReplicas: 3, rank: 1, seed: 2 });
  const loader = new DataLoader(ds, { batchSize: 2, sampler });
  assert.is(loader.length, 2);
  loader.setEpoch(4);
  const check = new DistributedSampler(ds.length, { numReplicas: 3, rank: 1, seed: 2 });
  check.setEpoch(4);
  assert.equal(loader.batchIndices().flat(), check.indices());
  assert.throws(() => new DataLoader(ds, { sampler, shuffle: true }), /either shuffle or a sampler/);
});

test('DataLoader: record samples, 1-D fields and integer arrays', () => {
  const ds: Dataset = { length: 5, get: (i) => ({ x: Float32Array.of(i, -i), y: i - 2 }) };
  const batches: { x: unknown[]; y: unknown[] }[] = [];
  for (const b of new DataLoader<{ x: Tensor; y: Tensor }>(ds, { batchSize: 5 })) {
    batches.push({ x: [b.x.dtype, [...b.x.shape], b.x.toList()], y: [b.y.dtype, [...b.y.shape], b.y.toList()] });
  }
  const [batch] = batches;
  assert.equal(batch.x, ['f32', [5, 2], [0, -0, 1, -1, 2, -2, 3, -3, 4, -4]]);
  assert.equal(batch.y, ['i64', [5], [-2, -1, 0, 1, 2]], 'negative labels survive the i64 packing');
  const tokens = new DataLoader(syntheticTokens({ length: 6, seqLen: 5, vocab: 11 }), { batchSize: 3 });
  for (const [ids, targets] of tokens) {
    assert.is(ids.dtype, 'i64');
    assert.equal(ids.shape, [3, 5]);
    const a = ids.toList();
    const t = targets.toList();
    for (let r = 0; r < 3; r++) for (let c = 0; c < 4; c++) assert.is(t[r * 5 + c], a[r * 5 + c + 1]);
  }
});

test('DataLoader: collate names the bad sample', () => {
  const ds: Dataset = { length: 3, get: (i) => [Float32Array.from({ length: i === 2 ? 3 : 2 }), 1] };
  assert.throws(() => [...new DataLoader(ds, { batchSize: 3 })], /sample 2 field 0 is f32 \[3\], sample 0's is f32 \[2\]/);
  const frac: Dataset = { length: 1, get: () => [0.5] };
  assert.throws(() => [...new DataLoader(frac)], /integer labels/);
  const failing: Dataset = { length: 4, get: (i) => { if (i === 3) throw new Error('bad record'); return [i]; } };
  assert.throws(() => [...new DataLoader(failing, { batchSize: 2 })], /DataLoader: batch 1: sample 3: bad record/);
});

test('DataLoader: the loader frees each batch when the loop moves on; keep() takes one over', () => {
  const ds = syntheticCifar10({ length: 12 });
  const before = liveStorages();
  for (const [x, y] of new DataLoader(ds, { batchSize: 4 })) {
    assert.ok(liveStorages() - before <= 2, 'only the current batch is alive');
    assert.ok(!x.disposed && !y.disposed);
  }
  assert.is(liveStorages(), before, 'nothing left after the loop');
  for (const _ of new DataLoader(ds, { batchSize: 4 })) break;
  assert.is(liveStorages(), before, 'nothing left after a break');
  let kept: Tensor | null = null;
  for (const [x] of new DataLoader(ds, { batchSize: 4 })) kept ??= keep(x);
  assert.ok(kept && !kept.disposed);
  kept?.dispose();
  assert.is(liveStorages(), before);
});

test('DataLoader: argument errors', () => {
  const ds = syntheticCifar10({ length: 4 });
  assert.throws(() => new DataLoader(ds, { batchSize: 0 }), /batchSize must be a positive integer/);
  assert.throws(() => new DataLoader(ds, { numWorkers: -1 }), /numWorkers/);
  assert.throws(() => new DataLoader({ length: 2, get: () => [1] }, { numWorkers: 1 }), /portable\(\)/);
  assert.throws(() => [...new DataLoader(ds, { numWorkers: 1 })], /for await/);
});

test.run();
