/**
 * The fused CUDA attention (native/cuda/attention.cu) against the CPU's composed ops (matmul,
 * scaled causal softmax, matmul), values and gradients of sum(out * w): f64 within 1e-11 and f32
 * within 1e-5 of the largest reference value (at least 1); bf16/f16 within 1e-2 of an f32 CPU reference fed
 * the same rounded inputs. Causal and not, T not a multiple of the tiles, Tq != Tk, strided heads,
 * head dims 32/64/128; finite differences on the fused f64 path; no [T, T] buffer allocated.
 * bf16/f16 run the tensor-core kernels (attention_tc.cu), f32/f64 the SIMT ones (attention.cu);
 * MESHTRAIN_ATTENTION=simt runs bf16/f16 on the SIMT kernels too.
 * Without a usable device the suite prints one SKIP line with the reason.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  cudaIsAvailable, type DType, memoryStats, mul, native, nn, noGrad, randn, resetPeakMemoryStats, scaledDotProductAttention, split, sum, type Tensor,
  tidy, transpose,
} from '../../src/index.ts';
import { maxRelErr as relErr } from '../helpers/cuda_parity.ts';
import { gradcheck } from '../helpers/gradcheck.ts';

const DEV = 'cuda:0';
const TOL: Record<string, number> = { f64: 1e-11, f32: 1e-5, bf16: 1e-2, f16: 1e-2 };

/**
 * Max error relative to the largest reference value, floored at 1 (the inputs' scale): with one
 * visible key the q and k gradients are exactly 0 and the device's are rounding noise of O(1) terms.
 */
const maxRelErr = (got: ArrayLike<number>, want: ArrayLike<number>): number => relErr(got, want, 1);

/** 16-bit inputs are checked against f32 math on the same (rounded) values. */
const refDType = (d: DType): DType => (d === 'bf16' || d === 'f16' ? 'f32' : d);

/** f on CUDA (dtype) against f on the CPU (reference dtype) from the same inputs: output and input gradients. */
function parity(name: string, f: (...xs: Tensor[]) => Tensor, shapes: number[][], dtype: DType): void {
  tidy(() => {
    const base = shapes.map((s) => randn(s, { dtype }));
    const cpuIn = base.map((x) => noGrad(() => x.to(refDType(dtype))).requiresGrad_(true));
    const gpuIn = base.map((x) => noGrad(() => x.to(DEV)).requiresGrad_(true));
    const cpuOut = f(...cpuIn);
    const gpuOut = f(...gpuIn);
    assert.is(gpuOut.device, DEV, `${name}: output device`);
    assert.is(gpuOut.dtype, dtype, `${name}: output dtype`);
    assert.equal(gpuOut.shape, cpuOut.shape, `${name}: shape`);
    const t = TOL[dtype];
    const e = maxRelErr(gpuOut.toList(), cpuOut.toList());
    assert.ok(e <= t, `${name} ${dtype}: output differs by ${e} (tolerance ${t})`);
    const w = randn([...cpuOut.shape], { dtype });
    sum(mul(cpuOut, w.to(refDType(dtype)))).backward();
    sum(mul(gpuOut, w.to(DEV))).backward();
    cpuIn.forEach((x, i) => {
      const g = gpuIn[i].grad;
      assert.ok(x.grad && g, `${name}: input ${i} has no gradient`);
      assert.is(g.device, DEV);
      const eg = maxRelErr(g.toList(), x.grad.toList());
      assert.ok(eg <= t, `${name} ${dtype}: gradient of input ${i} differs by ${eg} (tolerance ${t})`);
    });
  });
}

const sdpa = (causal: boolean, scale?: number) => (q: Tensor, k: Tensor, v: Tensor) => scaledDotProductAttention(q, k, v, { causal, scale });

if (!cudaIsAvailable()) {
  test('CUDA attention', () => {
    const info = native.deviceInfo();
    console.log(`SKIP test/unit/cuda_attention: no usable CUDA device (${info.cudaCompiled ? info.cudaStatus : 'built without CUDA'})`);
  });
} else {
  /**
   * Sequence lengths per dtype. The SIMT kernels (f32/f64) tile 16 query by 32 key rows, so every T
   * matters. The tensor-core ones (bf16/f16) tile 64 rows as 4 warps of 16 and bound rows and keys
   * element-wise: T 1 (one row and key), 33 (full, partial and empty warps, keys in both lanes'
   * halves) and 70 (a second, partial tile) reach every case 5 and 16 did. f16 runs the same
   * template as bf16 with another element type, so it takes 33 and 70 (every head dim, both masks).
   * Emulated time goes by blocks x tiles x D, not rows: a block finds its head once, before the
   * tiles (attention_common.cuh's headOf, the same code at every D), so batch and head offsets
   * ([2, 3]: B != H tells b from h) run at D 32; D 64 and 128 take [1, 2] (a head offset, a third
   * of the blocks). T 70 runs [1, 2] at D 32 (the second tile after a head offset), [1, 1] above.
   */
  const tcKernels = process.env.MESHTRAIN_ATTENTION !== 'simt';
  const tc = (d: DType): boolean => tcKernels && (d === 'bf16' || d === 'f16');
  const lengths = (d: DType): number[] => (!tc(d) ? [1, 5, 16, 33, 70] : d === 'f16' ? [33, 70] : [1, 33, 70]);
  const lead = (d: DType, D: number, T: number): number[] => (!tc(d) ? [2, 3] : T > 64 && D > 32 ? [1, 1] : T > 64 || D > 32 ? [1, 2] : [2, 3]);

  for (const dtype of ['f64', 'f32', 'bf16', 'f16'] as DType[]) {
    test(`fused attention = composed ops, ${dtype}: head dims, T off the tiles, causal and not`, () => {
      for (const D of [32, 64, 128]) {
        for (const T of lengths(dtype)) {
          const s = [...lead(dtype, D, T), T, D];
          for (const causal of [true, false]) parity(`[${s}] causal ${causal}`, sdpa(causal), [s, s, s], dtype);
        }
      }
    });
  }

  test('fused attention: longer sequences, Tq != Tk, other ranks, custom scale (f32)', () => {
    const d = 'f32';
    for (const T of [130, 257]) parity(`T ${T}`, sdpa(true), [[1, 2, T, 64], [1, 2, T, 64], [1, 2, T, 64]], d);
    for (const causal of [true, false]) {
      parity(`Tq 7 < Tk 40, causal ${causal}`, sdpa(causal), [[2, 2, 7, 32], [2, 2, 40, 32], [2, 2, 40, 32]], d);
      parity(`Tq 40 > Tk 7, causal ${causal}`, sdpa(causal), [[2, 2, 40, 32], [2, 2, 7, 32], [2, 2, 7, 32]], d);
    }
    parity('rank 3 [heads, T, D]', sdpa(true), [[4, 19, 64], [4, 19, 64], [4, 19, 64]], d);
    parity('rank 2 [T, D]', sdpa(false), [[21, 32], [21, 32], [21, 32]], d);
    parity('rank 5', sdpa(true), [[2, 2, 3, 9, 32], [2, 2, 3, 9, 32], [2, 2, 3, 9, 32]], d);
    parity('scale 0.3', sdpa(true, 0.3), [[1, 3, 45, 128], [1, 3, 45, 128], [1, 3, 45, 128]], d);
    parity('head dim 48 (composed ops on CUDA)', sdpa(true), [[1, 2, 9, 48], [1, 2, 9, 48], [1, 2, 9, 48]], d);
  });

  for (const dtype of ['f32', 'bf16'] as DType[]) {
    test(`fused attention on strided heads split from one qkv projection (as CausalSelfAttention), ${dtype}`, () => {
      const [B, T, H, D] = [2, 37, 4, 32];
      const C = H * D;
      parity('split qkv', (x) => {
        const heads = (t: Tensor) => transpose(t.reshape([B, T, H, D]), 1, 2);
        const [q, k, v] = split(x, C, -1).map(heads);
        const y = scaledDotProductAttention(q, k, v, { causal: true });
        return transpose(y, 1, 2).reshape([B, T, C]);
      }, [[B, T, 3 * C]], dtype);
    });
  }

  test('tensor-core attention on unaligned views (element-wise tile loads), bf16', () => {
    // Head dim 32 cut from 33-wide rows at offset 1: no stride is a multiple of 8, nothing is 16-byte aligned.
    const cut = (x: Tensor) => x.narrow(-1, 1, 32);
    for (const causal of [true, false]) {
      parity(`narrowed causal ${causal}`, (q, k, v) => scaledDotProductAttention(cut(q), cut(k), cut(v), { causal }),
        [[2, 2, 21, 33], [2, 2, 21, 33], [2, 2, 21, 33]], 'bf16');
    }
  });

  test('fused attention gradients match finite differences (f64, on the device)', () => {
    tidy(() => {
      const leafOn = (s: number[]) => randn(s, { dtype: 'f64', device: DEV }).requiresGrad_(true);
      gradcheck('fused causal', sdpa(true), [leafOn([1, 2, 3, 32]), leafOn([1, 2, 3, 32]), leafOn([1, 2, 3, 32])]);
      gradcheck('fused', sdpa(false), [leafOn([1, 1, 2, 32]), leafOn([1, 1, 3, 32]), leafOn([1, 1, 3, 32])]);
    });
  });

  test('fused attention output is laid out [B, T, H, D] (merging heads needs no copy)', () => {
    tidy(() => {
      const q = randn([2, 3, 10, 32], { device: DEV });
      const y = scaledDotProductAttention(q, q, q, { causal: true });
      assert.ok(transpose(y, 1, 2).isContiguous, `strides ${y.strides}`);
    });
  });

  // T 1024, not 2048: the bound (T² / 4 of f32) shrinks faster than the O(T) activations (measured 0.13 of it), so a [T, T] buffer still fails.
  test('fused attention never allocates the [T, T] scores (T 1024: peak activation < 1/4 of one score matrix)', () => {
    tidy(() => {
      const [H, T, D] = [1, 1024, 32];
      const mk = () => randn([1, H, T, D], { device: DEV }).requiresGrad_(true);
      const [q, k, v] = [mk(), mk(), mk()];
      resetPeakMemoryStats();
      const before = memoryStats()[DEV].activation.current;
      const y = scaledDotProductAttention(q, k, v, { causal: true });
      sum(y).backward();
      const peak = memoryStats()[DEV].activation.peak - before;
      const scores = H * T * T * 4;
      assert.ok(peak < scores / 4, `peak activation ${peak} bytes vs one score matrix ${scores}`);
    });
  });

  test('CausalSelfAttention on CUDA (fused path) equals the CPU module, f32', () => {
    tidy(() => {
      const cpu = new nn.CausalSelfAttention({ nEmbd: 128, nHead: 2 });
      const gpu = new nn.CausalSelfAttention({ nEmbd: 128, nHead: 2 });
      gpu.loadStateDict(cpu.stateDict());
      nn.moduleToDevice(gpu, DEV);
      const x = randn([2, 33, 128]);
      const a = cpu.forward(x);
      const b = gpu.forward(x.to(DEV));
      const e = maxRelErr(b.toList(), a.toList());
      assert.ok(e <= 1e-5, `output differs by ${e}`);
    });
  });

  test('fused attention errors name the op and the devices', () => {
    tidy(() => {
      const q = randn([1, 1, 4, 32], { device: DEV });
      const c = randn([1, 1, 4, 32]);
      assert.throws(() => scaledDotProductAttention(q, c, q), /scaledDotProductAttention: operands on different devices/);
      assert.throws(() => scaledDotProductAttention(q, q.to('bf16'), q), /scaledDotProductAttention: q, k, v must share one dtype/);
    });
  });
}

test.run();
