import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { cifar10, type NDArray, syntheticCifar10, syntheticTokens, tokenDataset } from '../../src/index.ts';

const RECORD = 3073;
const FILE_BYTES = 10000 * RECORD; // the official files hold exactly 10,000 records

/** A full-size test_batch.bin whose record r has label r % 10 and byte k of the image (r * 7 + k * 13) & 255. */
function writeBatch(file: string): void {
  const buf = Buffer.allocUnsafe(FILE_BYTES);
  for (let r = 0; r < 10000; r++) {
    const at = r * RECORD;
    buf[at] = r % 10;
    for (let k = 0; k < 3072; k++) buf[at + 1 + k] = (r * 7 + k * 13) & 255;
  }
  fs.writeFileSync(file, buf);
}
const fileByte = (r: number, k: number) => (r * 7 + k * 13) & 255;

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'meshtrain-cifar-'));
const batch = path.join(tmp, 'test_batch.bin');
writeBatch(batch);
test.after(() => fs.rmSync(tmp, { recursive: true, force: true }));

test('cifar10: round-trips the official binary layout (label byte, then R, G, B planes)', () => {
  const raw = cifar10(tmp, { train: false, transform: null });
  assert.is(raw.length, 10000);
  for (const r of [0, 1, 4321, 9999]) {
    const [img, label] = raw.get(r) as [NDArray, number];
    assert.is(label, r % 10);
    assert.equal(img.shape, [32, 32, 3]);
    assert.ok(img.data instanceof Uint8Array);
    // HWC: pixel p's channel c is byte c * 1024 + p of the record's image.
    for (const [p, c] of [[0, 0], [0, 2], [33, 1], [1023, 2], [517, 0]]) assert.is(img.data[3 * p + c], fileByte(r, c * 1024 + p));
  }
  // The default transform (ToTensor) gives CHW floats: the file's own order, divided by 255.
  const [chw] = cifar10(tmp, { train: false }).get(17) as [NDArray, number];
  assert.equal(chw.shape, [3, 32, 32]);
  const want = Array.from({ length: 3072 }, (_, k) => Math.fround(fileByte(17, k) / 255));
  assert.equal(Array.from(chw.data as Float32Array), want);
  assert.throws(() => raw.get(10000), /index 10000 is out of range for 10000 samples/);
});

test('cifar10: train reads data_batch_1..5 in order; the unpacked cifar-10-batches-bin folder is found', () => {
  const root = path.join(tmp, 'train');
  const inner = path.join(root, 'cifar-10-batches-bin');
  fs.mkdirSync(inner, { recursive: true });
  for (let i = 1; i <= 5; i++) fs.symlinkSync(batch, path.join(inner, `data_batch_${i}.bin`));
  const train = cifar10(root, { train: true, transform: null });
  assert.is(train.length, 50000);
  const [a, la] = train.get(123) as [NDArray, number];
  const [b, lb] = train.get(4 * 10000 + 123) as [NDArray, number];
  assert.is(la, lb);
  assert.equal(Array.from(a.data as Uint8Array), Array.from(b.data as Uint8Array));
  fs.rmSync(path.join(inner, 'data_batch_3.bin'));
  assert.throws(() => cifar10(root), (e: Error) => e.message.includes(`missing ${path.join(inner, 'data_batch_3.bin')}`));
});

test('cifar10: rejects a truncated, a short, a missing and a foreign file, naming it', () => {
  const dir = path.join(tmp, 'bad');
  fs.mkdirSync(dir);
  const file = path.join(dir, 'test_batch.bin');
  assert.throws(() => cifar10(dir, { train: false }), (e: Error) => e.message.includes(`missing ${file}`));
  fs.copyFileSync(batch, file);
  fs.truncateSync(file, FILE_BYTES - 100);
  assert.throws(() => cifar10(dir, { train: false }), (e: Error) => e.message.includes(`${file} is truncated`) && e.message.includes(`${FILE_BYTES - 100} bytes`));
  fs.truncateSync(file, 5 * RECORD);
  assert.throws(() => cifar10(dir, { train: false }), (e: Error) => e.message.includes(`${file} holds 5 records, expected 10000`));
  fs.copyFileSync(batch, file);
  const fd = fs.openSync(file, 'r+');
  fs.writeSync(fd, Uint8Array.of(42), 0, 1, 3 * RECORD);
  fs.closeSync(fd);
  assert.throws(() => cifar10(dir, { train: false }), (e: Error) => e.message.includes(`${file} record 3 has label 42`));
});

test('syntheticCifar10: deterministic, every class present, classes separable by mean colour', () => {
  const a = syntheticCifar10({ length: 300, seed: 1 });
  const b = syntheticCifar10({ length: 300, seed: 1 });
  const [x0, y0] = a.get(7) as [NDArray, number];
  const [x1, y1] = b.get(7) as [NDArray, number];
  assert.is(y0, y1);
  assert.equal(Array.from(x0.data as Float32Array), Array.from(x1.data as Float32Array));
  assert.equal(x0.shape, [3, 32, 32]);
  assert.not.equal(Array.from((syntheticCifar10({ seed: 2 }).get(7)[0] as NDArray).data as Float32Array), Array.from(x0.data as Float32Array), 'another seed');
  // Nearest class-centroid on the channel means: a learnable dataset is separable this way.
  const feats: number[][] = [];
  const labels: number[] = [];
  for (let i = 0; i < 300; i++) {
    const [x, y] = a.get(i) as [NDArray, number];
    const d = x.data as Float32Array;
    feats.push([0, 1, 2].map((c) => d.subarray(c * 1024, (c + 1) * 1024).reduce((s, v) => s + v, 0) / 1024));
    labels.push(y);
  }
  assert.equal([...new Set(labels)].sort(), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  const centroid = (k: number) => [0, 1, 2].map((c) => {
    const mine = feats.filter((_, i) => labels[i] === k);
    return mine.reduce((s, f) => s + f[c], 0) / mine.length;
  });
  const cents = Array.from({ length: 10 }, (_, k) => centroid(k));
  const dist = (f: number[], c: number[]) => f.reduce((s, v, i) => s + (v - c[i]) ** 2, 0);
  const correct = feats.filter((f, i) => cents.map((c) => dist(f, c)).indexOf(Math.min(...cents.map((c) => dist(f, c)))) === labels[i]).length;
  assert.ok(correct / 300 > 0.95, `centroid accuracy ${correct / 300}`);
});

test('tokenDataset: byte-level windows, targets shifted by one; from text or a file', () => {
  const ds = tokenDataset({ text: 'hello world', seqLen: 4 });
  assert.is(ds.length, 2, 'floor((11 - 1) / 4) non-overlapping windows');
  const str = (a: Int32Array) => String.fromCharCode(...a);
  const [i0, t0] = ds.get(0);
  assert.is(str(i0), 'hell');
  assert.is(str(t0), 'ello');
  const [i1, t1] = ds.get(1);
  assert.is(str(i1), 'o wo');
  assert.is(str(t1), ' wor');
  const file = path.join(tmp, 'text.txt');
  fs.writeFileSync(file, 'héllo');
  const fromFile = tokenDataset({ file, seqLen: 2 });
  assert.equal(Array.from(fromFile.get(0)[0]), [104, 0xc3], 'UTF-8 bytes, vocabulary 256');
  assert.throws(() => tokenDataset({ file: path.join(tmp, 'nope.txt'), seqLen: 2 }), /cannot read .*nope\.txt/);
  assert.throws(() => tokenDataset({ text: 'abc', seqLen: 3 }), /3 bytes; one sample needs seqLen \+ 1 = 4/);
  assert.throws(() => tokenDataset({ seqLen: 3 }), /exactly one of text or file/);
});

test('syntheticTokens: progressions modulo vocab, deterministic, targets shifted', () => {
  const ds = syntheticTokens({ length: 50, seqLen: 16, vocab: 7, seed: 3 });
  assert.is(ds.length, 50);
  for (let i = 0; i < 50; i++) {
    const [ids, targets] = ds.get(i);
    const step = (ids[1] - ids[0] + 7) % 7;
    assert.ok(step >= 1 && step <= 3);
    for (let t = 0; t < 16; t++) {
      assert.ok(ids[t] >= 0 && ids[t] < 7);
      if (t < 15) assert.is(targets[t], ids[t + 1]);
      assert.is(targets[t], (ids[t] + step) % 7);
    }
  }
  assert.equal(Array.from(syntheticTokens({ length: 50, seqLen: 16, vocab: 7, seed: 3 }).get(9)[0]), Array.from(ds.get(9)[0]));
});

test.run();
