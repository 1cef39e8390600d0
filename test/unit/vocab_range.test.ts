/**
 * vocabSliceIndex (native vocabRange, CPU loop and CUDA kernel) against a JS reference: local rows,
 * here/valid masks for i32/i64 ids, every slice of a vocabulary, an ignore value inside and outside
 * [0, V), f64/f32/bf16 masks (0 and 1 are exact in each: equality). A bad id throws the caller's
 * message: at once on the CPU, at the next synchronization on a device (same message plus where it
 * was checked), with the first bad position whatever the order. Runs on every device of
 * test/helpers/devices.ts (one SKIP line without a usable CUDA device).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { type Device, type DType, native, type Tensor, tensor, tidy } from '../../src/index.ts';
import { flushDeviceChecks, pendingDeviceChecks } from '../../src/tensor/device_checks.ts';
import { LOCAL_IGNORE, vocabSliceIndex } from '../../src/tensor_parallel/vocab_range.ts';
import { deviceTest } from '../helpers/devices.ts';

/** Ids of every kind: each slice's ends, repeats, the ignore value, from a fixed LCG. */
function someIds(V: number, n: number, ignore: number): number[] {
  let s = 777;
  const out = [0, V - 1, ignore, 0];
  while (out.length < n) {
    s = (s * 1103515245 + 12345) % 2147483648;
    out.push(s % 7 === 0 ? ignore : s % V);
  }
  return out;
}

function reference(ids: number[], start: number, size: number, ignore: number | undefined) {
  const local = ids.map((v) => (v === ignore ? LOCAL_IGNORE : v >= start && v < start + size ? v - start : 0));
  const here = ids.map((v) => (v !== ignore && v >= start && v < start + size ? 1 : 0));
  const valid = ids.map((v) => (v === ignore ? 0 : 1));
  return { local, here, valid };
}

const describe = (pos: number, v: number) => `test: id ${v} at flat position ${pos} is out of range`;

function check(device: Device): void {
  const V = 24;
  for (const idType of ['i32', 'i64'] as const) {
    for (const maskDType of ['f64', 'f32', 'bf16'] as DType[]) {
      for (const ignore of [-100, 5, undefined]) {
        const ids = someIds(V, 61, ignore ?? 3);
        for (const [start, size] of [[0, 8], [8, 8], [16, 8], [0, 24], [5, 0]]) {
          tidy(() => {
            const t = tensor(ids, { dtype: idType, shape: [61] }).to(device);
            const r = vocabSliceIndex(t, { start, size, vocab: V, ignoreIndex: ignore, maskDType, valid: true, device, describe });
            const want = reference(ids, start, size, ignore);
            const what = `${device} ${idType} ${maskDType} ignore ${ignore} slice [${start}, ${start + size})`;
            assert.is(r.local.dtype, 'i32');
            assert.equal(r.local.shape, [61], what);
            assert.equal(Array.from(r.local.toArray() as Int32Array), want.local, `${what}: local`);
            assert.equal(Array.from(r.here.toArray() as ArrayLike<number>, Number), want.here, `${what}: here`);
            assert.equal(Array.from((r.valid as Tensor).toArray() as ArrayLike<number>, Number), want.valid, `${what}: valid`);
            assert.ok(r.here.device === device && r.local.device === device, what);
          });
        }
      }
    }
  }
  // Any shape; ids on the CPU are moved to the device asked for; no valid mask when not asked.
  tidy(() => {
    const t = tensor([[3, 9], [17, 23]], { dtype: 'i64' });
    const r = vocabSliceIndex(t, { start: 8, size: 8, vocab: 24, maskDType: 'f32', device, describe });
    assert.equal(r.local.shape, [2, 2]);
    assert.equal(r.local.toList(), [0, 1, 0, 0]);
    assert.equal(r.here.toList(), [0, 1, 0, 0]);
    assert.is(r.valid, null);
  });
}

function expectBad(device: Device, ids: number[], ignore: number | undefined, pos: number, value: number): void {
  const want = `test: id ${value} at flat position ${pos} is out of range`;
  let msg = '';
  tidy(() => {
    try {
      const t = tensor(ids, { dtype: 'i64' }).to(device);
      vocabSliceIndex(t, { start: 0, size: 4, vocab: 8, ignoreIndex: ignore, maskDType: 'f32', device, describe });
      if (device !== 'cpu') {
        assert.ok(pendingDeviceChecks() > 0, 'the device check is pending until the next synchronization');
        flushDeviceChecks();
      }
    } catch (e) {
      msg = (e as Error).message;
    }
  });
  if (device === 'cpu') assert.is(msg, want);
  else assert.is(msg, `${want} (checked on ${device}, reported at the next synchronization)`);
}

function checkErrors(device: Device): void {
  expectBad(device, [1, 2, 8, 3, -1], -100, 2, 8);
  expectBad(device, [1, -100, 2, -3, 9], -100, 3, -3);
  expectBad(device, [1, 7, -100], undefined, 2, -100);
  // Many bad ids: the first position is reported (the device's atomics are order-free).
  const many = Array.from({ length: 3000 }, (_, i) => (i < 1000 ? i % 8 : 100 + i));
  expectBad(device, many, -100, 1000, 1100);
}

deviceTest('vocabRange equals the JS reference (i32/i64 ids, f64/f32/bf16 masks, ignore inside and outside [0, V))', check);

deviceTest('vocabRange: a bad id throws the caller\'s message naming the first bad position (on a device at the next synchronization)', (dev) => {
  checkErrors(dev);
  assert.is(pendingDeviceChecks(), 0);
});

test('vocabRange on the CPU: the raw kernel returns the first bad position and writes the flag as the device does; bad slices and mask dtypes are refused', () => {
  tidy(() => {
    const ids = tensor([0, 3, 9, 11], { dtype: 'i32' });
    const out = [tensor([0, 0, 0, 0], { dtype: 'i32' }), tensor([0, 0, 0, 0]), tensor([0, 0, 0, 0])];
    const flag = tensor([7], { dtype: 'i64' });
    const bad = native.vocabRange(4, ids.id, ids.offset, 4, 0, 4, 10, -100, out[0].id, 0, out[1].id, out[2].id, flag.id);
    assert.is(bad, 3);
    assert.equal(flag.toList(), [1]);
    assert.throws(() => native.vocabRange(4, ids.id, ids.offset, 4, 8, 4, 10, -100, out[0].id, 0, out[1].id, 0, 0), /vocabRange: slice \[8, 12\) is not inside \[0, 10\)/);
    assert.throws(() => native.vocabRange(4, ids.id, ids.offset, 4, 0, 4, 10, -100, out[0].id, 4, out[1].id, 0, 0), /vocabRange: needs a floating-point dtype/);
  });
});

test.run();
