/**
 * Reads the host takes later (native/cuda/read_later.cc), the device-decided step's way of learning
 * its outcome without stalling: `cuda.readLater` queues a copy into pinned host memory after the
 * work that produces the bytes; `readLaterTake` returns them, waiting (one counted host wait) only
 * if the copy has not finished, so a take after the copy finished costs no cudaSyncCount; a token
 * is taken once; a read inside a CUDA graph capture is refused; 10,000 reads leave no pinned
 * memory, storage or event behind. Without a device: one SKIP line.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { captureCudaGraph, cudaIsAvailable, cudaSyncCount, fillInPlace, liveStorages, native, pinnedPoolStats, randn, type Tensor, zeros } from '../../src/index.ts';

const DEV = 'cuda:0';

/** Waits, without a host wait of ours, until the read's copy has finished (readLaterDone polled). */
function untilDone(token: number): void {
  const start = performance.now();
  while (!native.cuda.readLaterDone(token)) {
    if (performance.now() - start > 10_000) throw new Error(`read ${token} not done after 10 s`);
  }
}

/** The emulated runtime's event creations so far (0 on a GPU: no counters there). */
function eventsCreated(): number {
  if (typeof native.cudaEmuApiCounts !== 'function') return 0;
  const c = native.cudaEmuApiCounts() as Record<string, number>;
  return (c.cudaEventCreateWithFlags ?? 0) + (c.cudaEventCreate ?? 0);
}

if (!cudaIsAvailable() || typeof native.cuda?.readLater !== 'function') {
  test('reads taken later', () => {
    console.log('SKIP test/unit/cuda_read_later: no usable CUDA device, or an addon without cuda.readLater');
  });
} else {
  test('the bytes round-trip: whole tensors, a range at an offset, zero bytes', () => {
    const x = randn([1000], { device: DEV });
    const want = x.to('cpu').toArray() as Float32Array;
    const all = new Float32Array(native.cuda.readLaterTake(native.cuda.readLater(x.id, x.offset * 4, 4000)));
    assert.equal(Array.from(all), Array.from(want));
    const part = new Float32Array(native.cuda.readLaterTake(native.cuda.readLater(x.id, (x.offset + 17) * 4, 40)));
    assert.equal(Array.from(part), Array.from(want.subarray(17, 27)));
    assert.is(native.cuda.readLaterTake(native.cuda.readLater(x.id, 0, 0)).byteLength, 0);
    x.dispose();
  });

  test('the copy follows the work queued before it on the stream', () => {
    const x = zeros([64], { device: DEV });
    fillInPlace(x, 3);
    const token = native.cuda.readLater(x.id, x.offset * 4, 256);
    fillInPlace(x, 5); // queued after the copy: not in the bytes read
    assert.ok(Array.from(new Float32Array(native.cuda.readLaterTake(token))).every((v) => v === 3));
    x.dispose();
  });

  test('a take after the copy finished is no host wait; readLaterDone is true then; a token is taken once', () => {
    const x = randn([256], { device: DEV });
    const token = native.cuda.readLater(x.id, x.offset * 4, 1024);
    untilDone(token);
    assert.is(native.cuda.readLaterDone(token), true);
    const before = cudaSyncCount(DEV);
    native.cuda.readLaterTake(token);
    assert.is(cudaSyncCount(DEV), before, 'no host wait counted for a finished copy');
    assert.throws(() => native.cuda.readLaterTake(token), new RegExp(`readLaterTake: no pending read with token ${token} \\(already taken`));
    assert.throws(() => native.cuda.readLaterDone(token), new RegExp(`readLaterDone: no pending read with token ${token}`));
    assert.throws(() => native.cuda.readLaterDrop(token), new RegExp(`readLaterDrop: no pending read with token ${token}`));
    assert.throws(() => native.cuda.readLaterTake(123456789), /readLaterTake: no pending read with token 123456789/);
    x.dispose();
  });

  test('a dropped read is gone; bad ranges and host storages are refused naming the op', () => {
    const x = randn([8], { device: DEV });
    const token = native.cuda.readLater(x.id, x.offset * 4, 32);
    native.cuda.readLaterDrop(token);
    assert.throws(() => native.cuda.readLaterTake(token), /readLaterTake: no pending read with token/);
    assert.throws(() => native.cuda.readLater(x.id, 4, native.storageBytes(x.id)), /readLater: bytes \[4, \d+\) are outside storage \d+ of \d+ bytes/);
    assert.throws(() => native.cuda.readLater(x.id, -4, 4), /readLater: bytes \[-4, 0\) are outside storage/);
    const h = zeros([8]);
    assert.throws(() => native.cuda.readLater(h.id, 0, 32), /readLater: storage \d+ is not on a CUDA device/);
    for (const t of [x, h]) t.dispose();
  });

  test('refused inside a CUDA graph capture, naming the device', () => {
    const x = randn([8], { device: DEV });
    const pending = native.cuda.readLaterPending();
    assert.throws(
      () => captureCudaGraph(() => native.cuda.readLater(x.id, x.offset * 4, 32), { device: DEV }),
      /readLater: cuda:0 is capturing a CUDA graph; a graph replays device work only/,
    );
    assert.is(native.cuda.readLaterPending(), pending);
    // The stream works after the abandoned capture.
    assert.is(new Float32Array(native.cuda.readLaterTake(native.cuda.readLater(x.id, x.offset * 4, 32))).length, 8);
    x.dispose();
  });

  test('10,000 reads taken and 1,000 dropped leave no pinned memory, storage or event behind', () => {
    const x: Tensor = randn([6], { device: DEV });
    native.cuda.readLaterTake(native.cuda.readLater(x.id, x.offset * 4, 24)); // warm: a pinned block, an event
    const pinned = pinnedPoolStats();
    const live = liveStorages();
    const events = eventsCreated();
    for (let i = 0; i < 10_000; i++) native.cuda.readLaterTake(native.cuda.readLater(x.id, x.offset * 4, 24));
    for (let i = 0; i < 1000; i++) native.cuda.readLaterDrop(native.cuda.readLater(x.id, x.offset * 4, 24));
    const now = pinnedPoolStats();
    assert.is(now.reservedBytes, pinned.reservedBytes, 'pinned bytes reserved');
    assert.is(now.cachedBytes, pinned.cachedBytes, 'pinned bytes cached');
    assert.is(liveStorages(), live, 'live storages');
    assert.is(native.cuda.readLaterPending(), 0);
    assert.ok(eventsCreated() - events <= 1, `${eventsCreated() - events} events created by 11,000 reads`);
    x.dispose();
  });
}

test.run();
