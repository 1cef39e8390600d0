import { execFile } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  CIFAR10_MEAN, CIFAR10_STD, Compose, DataLoader, type DataLoaderOptions, type Dataset, DistributedSampler, liveStorages, Normalize, RandomCrop,
  RandomHorizontalFlip, syntheticCifar10, type Tensor, ToTensor, tokenDataset,
} from '../../src/index.ts';
import { countingDataset, Jitter, recordDataset } from '../helpers/data_fixture.ts';

type Snapshot = { dtype: string; shape: number[]; values: number[] }[];

function snapshot(batch: Tensor | Tensor[] | { [k: string]: Tensor }): Snapshot {
  const list = Array.isArray(batch) ? batch : 'dtype' in batch ? [batch as Tensor] : Object.values(batch);
  return list.map((t) => ({ dtype: t.dtype, shape: [...t.shape], values: t.toList() }));
}

/** Every batch of a pass, read inside the loop (the loader frees each batch as it moves on). */
async function pass(dataset: Dataset, opts: DataLoaderOptions, epoch = 0, loader = new DataLoader(dataset, opts)): Promise<Snapshot[]> {
  loader.setEpoch(epoch);
  const out: Snapshot[] = [];
  for await (const b of loader) out.push(snapshot(b));
  return out;
}

test('workers produce the batches of the in-process path (augmented CIFAR, shuffled, two epochs)', async () => {
  const transform = Compose([RandomCrop(32, { padding: 4 }), RandomHorizontalFlip(), ToTensor(), Normalize(CIFAR10_MEAN, CIFAR10_STD)]);
  const ds = syntheticCifar10({ length: 40, seed: 3, transform });
  const opts: DataLoaderOptions = { batchSize: 8, shuffle: true, seed: 11 };
  const workers = new DataLoader(ds, { ...opts, numWorkers: 2, prefetch: 3, persistentWorkers: true });
  try {
    for (const epoch of [0, 1]) {
      const inProcess = await pass(ds, opts, epoch);
      const threaded = await pass(ds, opts, epoch, workers);
      assert.is(threaded.length, 5);
      assert.equal(threaded[0].map((f) => [f.dtype, f.shape]), [['f32', [8, 3, 32, 32]], ['i64', [8]]]);
      assert.ok(JSON.stringify(threaded) === JSON.stringify(inProcess), `epoch ${epoch}: identical batches`);
    }
  } finally {
    await workers.close();
  }
});

test('workers: a TypeScript transform from a user module, record samples, a DistributedSampler, token batches', async () => {
  const ds = recordDataset({ length: 13, jitter: Jitter(0.5) });
  const sampler = () => new DistributedSampler(13, { numReplicas: 2, rank: 1, seed: 4 });
  const inProcess = await pass(ds, { batchSize: 3, sampler: sampler(), seed: 2 }, 3);
  const threaded = await pass(ds, { batchSize: 3, sampler: sampler(), seed: 2, numWorkers: 1 }, 3);
  assert.equal(threaded.map((b) => b.map((f) => f.shape)), [[[3, 4], [3, 2, 2, 2], [3]], [[3, 4], [3, 2, 2, 2], [3]], [[1, 4], [1, 2, 2, 2], [1]]]);
  assert.equal(threaded, inProcess);
  const text = tokenDataset({ text: 'the quick brown fox jumps over the lazy dog', seqLen: 6 });
  const tIn = await pass(text, { batchSize: 4 });
  const tOut = await pass(text, { batchSize: 4, numWorkers: 1 });
  assert.equal(tOut, tIn);
  assert.equal(tOut[0][0].dtype, 'i64');
  assert.equal(tOut[0][0].shape, [4, 6]);
});

test('workers: prefetch is bounded while the loop holds a batch', async () => {
  const counter = new SharedArrayBuffer(4);
  const loader = new DataLoader(countingDataset(40, counter), { batchSize: 2, numWorkers: 1, prefetch: 2 });
  for await (const [x] of loader) {
    assert.equal(x.toList(), [0, 1]);
    await new Promise((r) => setTimeout(r, 200)); // give the worker time to run ahead
    const read = Atomics.load(new Int32Array(counter), 0);
    // This batch, plus `prefetch` more in flight once it was handed over: 3 batches of 2.
    assert.ok(read >= 4 && read <= 6, `${read} samples read ahead`);
    break;
  }
});

test('workers: an error in a sample reaches the loop with the batch and sample index', async () => {
  const ds = recordDataset({ length: 20, jitter: Jitter(0), failAt: 13 });
  const messages: string[] = [];
  for (const numWorkers of [0, 2]) {
    const loader = new DataLoader(ds, { batchSize: 4, numWorkers });
    let batches = 0;
    try {
      for await (const _ of loader) batches++;
    } catch (e) {
      messages.push((e as Error).message);
    }
    assert.is(batches, 3, `numWorkers ${numWorkers}: the batches before the bad one arrive`);
  }
  assert.is(messages.length, 2);
  assert.match(messages[1], /^DataLoader: batch 3: sample 13: corrupt record 13/);
  assert.is(messages[1], messages[0], 'the same message from a worker and in-process');
});

test('workers: a dataset or collate that workers cannot rebuild is refused with a hint', async () => {
  const plain: Dataset = { length: 4, get: (i) => [i] };
  assert.throws(() => new DataLoader(plain, { numWorkers: 1 }), /portable\(\)/);
  const loader = new DataLoader(syntheticCifar10({ length: 4 }), { numWorkers: 1, collate: () => [] });
  let message = '';
  try {
    for await (const _ of loader) break;
  } catch (e) {
    message = (e as Error).message;
  }
  assert.match(message, /DataLoader.collate: a function cannot be sent to a worker thread/);
});

test('workers: leaving a loop by break, by an exception or by finishing stops the pool; the process exits', async () => {
  const child = fileURLToPath(new URL('../helpers/data_break_child.ts', import.meta.url));
  const root = path.resolve(path.dirname(child), '../..');
  const before = liveStorages();
  const { code, stdout, stderr } = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
    execFile(process.execPath, ['--import', 'tsx', child], { cwd: root, timeout: 30_000, env: { ...process.env, OMP_NUM_THREADS: '1' } }, (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? null) : 0, stdout, stderr }),
    );
  });
  assert.is(code, 0, `the child exits by itself (a leaked pool would keep it alive until the timeout): ${stderr}`);
  assert.match(stdout, /ok seen=8 full=64 live=0/);
  assert.is(liveStorages(), before);
});

test.run();
