/**
 * The CUDA caching allocator's size-class free lists (native/cuda/block_lists.h): every request
 * rounds to its class (512-byte steps below 1 MiB, eighths of a power of two above), a freed block
 * serves any later request of its class, across the 1 MiB boundary and in the large classes, and
 * emptying the cache gives every cached block back. Counted by cudaAllocatorStats.
 * Without a usable device the suite prints one SKIP line with the reason.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { cudaAllocatorStats, cudaEmptyCache, cudaIsAvailable, native, type Tensor } from '../../src/index.ts';
import * as k from '../../src/ops/kernels.ts';

const DEV = 'cuda:0';

/** The allocator's rounding, written out independently of the native code. */
function sizeClass(bytes: number): number {
  if (bytes === 0) return 512;
  if (bytes < 2 ** 20) return Math.ceil(bytes / 512) * 512;
  const step = 2 ** Math.floor(Math.log2(bytes)) / 8;
  return Math.ceil(bytes / step) * step;
}

/** f32 element counts: the smallest class, a class edge, one over it, the 1 MiB edge from below and above, large classes. */
const SIZES = [1, 128, 129, 129, 129, 200_000, 262_016, 262_144, 262_145, 300_000, 1_500_000, 5_000_000];

const alloc = (n: number): Tensor => k.empty([n], 'f32', undefined, false, DEV);

if (!cudaIsAvailable()) {
  test('CUDA allocator size classes', () => {
    const info = native.deviceInfo();
    console.log(`SKIP test/unit/cuda_block_lists: no usable CUDA device (${info.cudaCompiled ? info.cudaStatus : 'built without CUDA'})`);
  });
} else {
  test('freed blocks serve requests of their class; emptying the cache returns them all', () => {
    cudaEmptyCache(DEV);
    const s0 = cudaAllocatorStats(DEV);
    const caps = SIZES.reduce((sum, n) => sum + sizeClass(4 * n), 0);
    const first = SIZES.map(alloc);
    const s1 = cudaAllocatorStats(DEV);
    assert.is(s1.misses - s0.misses, SIZES.length, 'an empty cache misses every request');
    assert.is(s1.reservedBytes - s0.reservedBytes, caps, 'each block holds its class size');
    for (const t of first) t.dispose();
    assert.is(cudaAllocatorStats(DEV).cachedBytes, caps);
    // The same requests in another order: every one a hit, the cache drained.
    const again = [...SIZES].reverse().map(alloc);
    const s2 = cudaAllocatorStats(DEV);
    assert.is(s2.hits - s1.hits, SIZES.length);
    assert.is(s2.misses, s1.misses);
    assert.is(s2.cachedBytes, 0);
    for (const t of again) t.dispose();
    cudaEmptyCache(DEV);
    const s3 = cudaAllocatorStats(DEV);
    assert.is(s3.cachedBytes, 0);
    assert.is(s3.reservedBytes, s0.reservedBytes, 'emptying the cache frees every cached block');
  });

  test('a request takes a cached block of its class, not a larger one', () => {
    cudaEmptyCache(DEV);
    // 1 MiB + 4 bytes rounds to 1 MiB + 128 KiB: a request of exactly that size reuses it.
    const a = alloc(262_145);
    const capA = sizeClass(4 * 262_145);
    assert.is(capA, 2 ** 20 + 2 ** 17);
    a.dispose();
    const s0 = cudaAllocatorStats(DEV);
    const b = alloc(capA / 4);
    assert.is(cudaAllocatorStats(DEV).hits, s0.hits + 1);
    // One element more is the next class: a miss, the cached block stays.
    b.dispose();
    const c = alloc(capA / 4 + 1);
    const s1 = cudaAllocatorStats(DEV);
    assert.is(s1.misses, s0.misses + 1);
    assert.is(s1.cachedBytes, capA);
    c.dispose();
    cudaEmptyCache(DEV);
  });
}

test.run();
