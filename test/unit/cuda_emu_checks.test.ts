/**
 * The emulated device's own checks fire (emulation build only, run by cuda_emu.test.ts): an
 * out-of-bounds write (past a cudaMalloc block, and past the used part of a cached block), a
 * write through a freed block, a host pointer given to a kernel, a barrier in divergent code, a
 * shuffle naming an exited lane, bad launch configurations; fresh memory and reads past the end
 * of an allocation give NaN; warp shuffles, ballots, block reductions and dynamic shared memory
 * give known answers; the warp-level mma16816 (mma_sync.cuh) equals a plain product, ldmatrix loads its
 * fragments, cp.async lands only at its wait; the emulated
 * __float2bfloat16_rn equals the CPU's conversion bit for bit on every rounding boundary; the
 * reference cuBLASLt computes a transposed product exactly and rejects what cuBLASLt rejects.
 * Without the emulation build it prints one SKIP line.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { native } from '../../src/index.ts';

interface EmuChecks {
  run(name: string): string | number[] | { checked: number; mismatches: number };
  cublas(): { heuristic: number; matmul: number; values: number[]; smallLd: number; wrongAttributeSize: number; algoReused: number; misaligned: number };
}
const checks = (native as unknown as { cudaEmuChecks?: EmuChecks }).cudaEmuChecks;

if (!checks) {
  test('emulated device checks', () => {
    console.log('SKIP test/unit/cuda_emu_checks: not the emulation build (MESHTRAIN_ADDON=build-emu/Release/meshtrain.node)');
  });
} else {
  const run = (name: string) => checks.run(name) as string;

  test('out-of-bounds writes are reported at the next synchronization, naming the kernel', () => {
    assert.match(run('oobWrite'), /cudaErrorIllegalAddress.*kernel writeAt \(checks\.cu:\d+\).*bytes 0\.\.3 past the end of an allocation of 400 bytes/);
    // A cached block of capacity 512 holding 400 bytes: its tail is guarded too.
    assert.match(run('cachedTailWrite'), /kernel writeAt.*bytes 4\.\.7 past the end of an allocation of 400 bytes/);
    assert.match(run('freedWrite'), /cudaErrorIllegalAddress.*pointer argument 0: .* points into a freed \(cached\) block/);
    assert.match(run('hostPointer'), /cudaErrorIllegalAddress.*is not device memory/);
  });

  test('barriers in divergent code and shuffles with exited lanes are reported, not hung', () => {
    assert.match(run('divergentBarrier'), /cudaErrorLaunchFailure.*__syncthreads at .*checks\.cu:\d+ while other threads .* wait at .*checks\.cu:\d+/);
    assert.match(run('shuffleWithExitedLane'), /cudaErrorLaunchFailure.*deadlocked: 31 live threads: 0 waiting at __syncthreads, 31 at a warp collective/);
  });

  test('bad launch configurations fail at launch', () => {
    assert.match(run('badConfig'), /cudaErrorInvalidConfiguration.*block \(2048,1,1\)/);
    assert.match(run('sharedTooBig'), /cudaErrorInvalidValue.*65536 bytes of dynamic shared memory, more than the 49152 allowed/);
  });

  test('fresh device memory, and reads past the end of an allocation, give NaN', () => {
    const v = checks.run('fresh') as number[];
    assert.ok(v.length === 4 && v.every(Number.isNaN), `fresh memory: ${v}`);
    const r = checks.run('oobRead') as number[];
    assert.ok(r.length === 3 && r.every(Number.isNaN), `reads past the end (f32, f32, f64): ${r}`);
  });

  test('warp shuffles, ballots, block reductions and dynamic shared memory give known answers', () => {
    const v = checks.run('warpMath') as number[];
    const xorSums = v.slice(0, 64);
    assert.ok(xorSums.every((s, i) => s === (i < 32 ? 528 : 1552)), `xor sums ${xorSums}`);
    assert.equal(v.slice(64, 67), [528, 1552, 2080], 'down-shuffle sums, block sum');
    let b0 = 0;
    let b1 = 0;
    for (let t = 0; t < 64; t += 3) {
      if (t < 32) b0 |= 1 << t;
      else b1 |= 1 << (t - 32);
    }
    assert.equal(v.slice(67), [b0 >>> 0, b1 >>> 0], 'ballots');
    const h = checks.run('halfWarps') as number[];
    assert.equal(h, Array.from({ length: 32 }, (_, i) => (i < 16 ? 136 : 392)), 'two half-warp reductions at once');
    const r = checks.run('reverseShared') as number[];
    assert.equal(r, Array.from({ length: 128 }, (_, i) => (i < 64 ? 63 - i : 191 - i)));
  });

  test('mma16816 (mma_sync.cuh) computes c + a·b from the documented fragment layouts, bf16 and f16; ldsm4/ldsm4t load them', () => {
    const r = checks.run('mma16816') as unknown as Record<string, number>;
    assert.is(r.exactBf16, 0, 'quarter-integer inputs: exact');
    assert.is(r.exactF16, 0, 'quarter-integer inputs: exact');
    // Inputs off the 16-bit grids, rounded as pack2 rounds: float sums of 32 exact products (|d| < 40) vs double.
    assert.ok(r.roundedBf16 < 2e-5 && r.roundedF16 < 2e-5, JSON.stringify(r));
    assert.is(checks.run('ldsm') as unknown as number, 0, 'ldsm4 / ldsm4t registers equal the element-wise A and B fragments');
  });

  test('cp.async (cp_async.cuh) lands at the wait covering its group, so reads before it see old shared memory', () => {
    const v = checks.run('cpAsync') as number[];
    assert.ok(Number.isNaN(v[0]), `before any wait: ${v[0]}`);
    assert.is(v[1], 1, 'the first group after wait<1>');
    assert.ok(Number.isNaN(v[2]), `the second group, still open after wait<1>: ${v[2]}`);
    assert.is(v[3], 5, 'the second group after wait<0>');
  });

  test('__float2bfloat16_rn equals the CPU rounding on every boundary and a stride of all floats', () => {
    const r = checks.run('bf16Rounding') as { checked: number; mismatches: number };
    assert.ok(r.checked > 390_000, `${r.checked} checked`);
    assert.is(r.mismatches, 0);
  });

  test('reference cuBLASLt: a transposed product, and the rejections of the real library', () => {
    const r = checks.cublas();
    assert.is(r.heuristic, 0);
    assert.is(r.matmul, 0);
    assert.equal(r.values, [7, 16, 6, 15]);
    const invalid = 7; // CUBLAS_STATUS_INVALID_VALUE
    assert.is(r.smallLd, invalid, 'leading dimension below the rows of a column-major matrix');
    assert.is(r.wrongAttributeSize, invalid, 'BATCH_COUNT is int32');
    assert.is(r.algoReused, invalid, 'an algorithm reused for another layout');
    assert.is(r.misaligned, invalid, 'A below the 256-byte alignment the algorithm was chosen for');
  });
}

test.run();
