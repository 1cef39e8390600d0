/**
 * The addon's argument readers and storage lookup (native/util/args.h, native/tensor/storage.h),
 * which read each argument with one N-API call and look storages up without a lock: a missing or
 * mistyped argument and a bad or freed storage id are still clear errors, never a crash.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { native as typed } from '../../src/index.ts';

// Called with wrong arguments on purpose: untyped.
const native = typed as unknown as Record<string, (...args: unknown[]) => number>;

const F32 = 0; // dtype code (src/tensor/dtype.ts)
const OTHER = 5; // memory tag 'other'

test('a missing or mistyped argument names its position and the type it must be', () => {
  assert.throws(() => native.storageBytes(), /argument 0 must be a number/);
  assert.throws(() => native.storageBytes('1'), /argument 0 must be a number/);
  assert.throws(() => native.storageBytes(1n), /argument 0 must be a number/);
  assert.throws(() => native.alloc(16, OTHER, 0, 1), /argument 3 must be a boolean/);
  const id = native.alloc(16, OTHER, 0, true);
  try {
    // unary(op, dtype, xId, xOff, outId, outOff, n, scalar): the scalar is read as a double.
    assert.throws(() => native.unary(0, F32, id, 0, id, 0, 4, 'x'), /argument 7 must be a number/);
    assert.throws(() => native.unary(0, F32, id, 0, id, 0, 4), /argument 7 must be a number/);
  } finally {
    native.free(id);
  }
});

test('integers read as before: truncated toward zero', () => {
  const id = native.alloc(40.9, OTHER, 0, true);
  try {
    assert.is(native.storageBytes(id + 0.5), 40);
  } finally {
    native.free(id);
  }
});

test('a bad or freed storage id is an error naming it', () => {
  assert.throws(() => native.storageBytes(0), /invalid storage id 0/);
  assert.throws(() => native.storageBytes(-3), /invalid storage id -3/);
  assert.throws(() => native.storageBytes(2 ** 40), /invalid storage id 1099511627776/);
  const id = native.alloc(8, OTHER, 0, false);
  native.free(id);
  assert.throws(() => native.storageBytes(id), new RegExp(`storage ${id} was already freed \\(use after dispose\\)`));
  assert.throws(() => native.free(id), /already freed/);
});

test.run();
