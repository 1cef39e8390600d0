/**
 * arange on a CUDA device is written by a kernel (native/cuda/arange.cu): the same values as the
 * CPU's for every dtype (bf16/f16 rounded to nearest even, as the host path rounds), one launch
 * and no host copy (a host-to-device copy waits for the device's queue: GPT's positions, every
 * forward). Per device (CPU, and cuda:0 under MT_TEST_DEVICES).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { arange, censusTotals, cudaCensus, DTYPES, formatCensus } from '../../src/index.ts';
import { deviceTest } from '../helpers/devices.ts';

deviceTest('arange equals the CPU values for every dtype, including 16-bit rounding past 256', (dev) => {
  for (const dtype of DTYPES) {
    for (const n of [0, 1, 5, 300, 2049]) {
      const got = arange(n, { dtype, device: dev });
      const want = arange(n, { dtype });
      assert.equal(got.shape, [n]);
      assert.is(got.dtype, dtype);
      assert.equal(Array.from(got.toArray() as ArrayLike<number>, Number), Array.from(want.toArray() as ArrayLike<number>, Number), `${dtype} n ${n}`);
    }
  }
});

deviceTest('on a device: one kernel, no host copy', (dev) => {
  if (dev === 'cpu') return;
  const { result, entries } = cudaCensus(() => arange(64, { dtype: 'i32', device: dev }));
  const t = censusTotals(entries);
  assert.is(t.kernel, 1, formatCensus(entries));
  assert.is(t.memcpy, 0, formatCensus(entries));
  result.dispose();
});

test.run();
