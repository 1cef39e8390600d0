/**
 * qkvAttention on CUDA (src/ops/attention_qkv.ts): the fused kernels read q, k, v as strided views
 * of one qkv tensor and write dq, dk, dv into their thirds of one gradient buffer. Checked against
 * the old path on the same device (split, heads as views, scaledDotProductAttention, heads merged,
 * whose backward copies each gradient into the qkv buffer): the same kernels on the same values,
 * so values and gradients must be bit for bit equal, every dtype. Against the CPU's composed ops:
 * f64 within 1e-11, f32 1e-5, bf16/f16 1e-2 (of an f32 reference on the same rounded inputs).
 * Strided and unaligned qkv views, rank 2 and 4, finite differences, and the census: the
 * backward queues no copy. Without a usable device the suite prints one SKIP line.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  cudaCensus, cudaIsAvailable, type DType, formatCensus, mul, native, noGrad, qkvAttention, randn, reshape, scaledDotProductAttention,
  split, sum, type Tensor, tidy, transpose,
} from '../../src/index.ts';
import type { Device } from '../../src/tensor/storage.ts';
import { maxRelErr } from '../helpers/cuda_parity.ts';
import { gradcheck } from '../helpers/gradcheck.ts';

const DEV = 'cuda:0';
const TOL: Record<string, number> = { f64: 1e-11, f32: 1e-5, bf16: 1e-2, f16: 1e-2 };
const refDType = (d: DType): DType => (d === 'bf16' || d === 'f16' ? 'f32' : d);

/** What CausalSelfAttention did before qkvAttention: split qkv [..., T, 3C], heads as views, attention, merge. */
function oldPath(qkv: Tensor, H: number, causal: boolean): Tensor {
  const lead = qkv.shape.slice(0, -2);
  const T = qkv.shape[qkv.ndim - 2];
  const C = qkv.shape[qkv.ndim - 1] / 3;
  const heads = (t: Tensor) => transpose(reshape(t, [...lead, T, H, C / H]), -3, -2);
  const [q, k, v] = split(qkv, C, -1).map(heads);
  return reshape(transpose(scaledDotProductAttention(q, k, v, { causal }), -3, -2), [...lead, T, C]);
}

/** Output and qkv gradient of sum(f(qkv) * w), qkv given as `view(leaf)`. */
function run(f: (x: Tensor) => Tensor, base: Tensor, w: Tensor, device: Device, dtype: DType, view = (x: Tensor) => x) {
  const leaf = noGrad(() => base.to(dtype).to(device)).requiresGrad_(true);
  const y = f(view(leaf));
  sum(mul(y, noGrad(() => w.to(dtype).to(device)))).backward();
  return { y: y.toList() as number[], g: (leaf.grad as Tensor).toList() as number[], shape: y.shape };
}

function maxAbsDiff(a: number[], b: number[]): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Number.isNaN(a[i]) !== Number.isNaN(b[i]) ? Infinity : Math.abs(a[i] - b[i]) || 0);
  return m;
}

/**
 * qkvAttention on the device: bit for bit the old path there, and within TOL of the CPU's composed
 * ops (f64 or f32 on the same rounded inputs). `view` turns the leaf into the qkv operand.
 */
function check(name: string, leafShape: number[], H: number, causal: boolean, dtype: DType, view = (x: Tensor) => x): void {
  tidy(() => {
    const base = noGrad(() => randn(leafShape).to(dtype));
    const outShape = noGrad(() => {
      const q = view(base);
      return [...q.shape.slice(0, -1), q.shape[q.ndim - 1] / 3];
    });
    const w = randn(outShape).to(dtype);
    const f = (x: Tensor) => qkvAttention(x, H, { causal });
    const got = run(f, base, w, DEV, dtype, view);
    const old = run((x) => oldPath(x, H, causal), base, w, DEV, dtype, view);
    const ref = run(f, base, w, 'cpu', refDType(dtype), view);
    assert.equal(got.shape, outShape, `${name}: output shape`);
    assert.is(maxAbsDiff(got.y, old.y), 0, `${name} ${dtype}: output differs from the old path`);
    assert.is(maxAbsDiff(got.g, old.g), 0, `${name} ${dtype}: gradient differs from the old path`);
    const ey = maxRelErr(got.y, ref.y, 1);
    const eg = maxRelErr(got.g, ref.g, 1);
    assert.ok(ey <= TOL[dtype], `${name} ${dtype}: output differs from the CPU by ${ey} (tolerance ${TOL[dtype]})`);
    assert.ok(eg <= TOL[dtype], `${name} ${dtype}: gradient differs from the CPU by ${eg} (tolerance ${TOL[dtype]})`);
  });
}

if (!cudaIsAvailable()) {
  test('CUDA qkvAttention', () => {
    const info = native.deviceInfo();
    console.log(`SKIP test/unit/cuda_attention_qkv: no usable CUDA device (${info.cudaCompiled ? info.cudaStatus : 'built without CUDA'})`);
  });
} else {
  for (const dtype of ['f64', 'f32', 'bf16', 'f16'] as DType[]) {
    test(`qkvAttention = old path bit for bit and the CPU within ${TOL[dtype]}, ${dtype}: head dims 32/64/128`, () => {
      // Batch 2 at head dim 32 (and T 1): the batch stride is the same host code at every D, and emulated time goes by blocks x D.
      for (const D of [32, 64, 128]) {
        const B = D > 32 ? 1 : 2;
        check(`[${B}, 33, 3 x 2 x ${D}]`, [B, 33, 3 * 2 * D], 2, true, dtype);
      }
      check('T 70 > one tile, not causal', [1, 70, 3 * 2 * 64], 2, false, dtype);
      check('T 1', [2, 1, 3 * 3 * 32], 3, true, dtype);
    });
  }

  test('qkvAttention on strided, unaligned and copied qkv views (f32, bf16)', () => {
    for (const dtype of ['f32', 'bf16'] as DType[]) {
      const [B, T, H, D] = [2, 21, 2, 32];
      const W = 3 * H * D;
      // Rows W + 3 apart, starting 1 in: no 16-byte alignment (element-wise tile loads).
      check('narrowed rows', [B, T, W + 3], H, true, dtype, (x) => x.narrow(-1, 1, W));
      // [T, B, W] seen as [B, T, W]: batch stride W, position stride B * W, read in place.
      check('transposed batch and time', [T, B, W], H, true, dtype, (x) => transpose(x, 0, 1));
      // Lead dims that do not merge into one batch stride: copied first.
      check('rank 4, unmergeable lead', [2, T, 2, W], H, true, dtype, (x) => x.permute([0, 2, 1, 3]));
      // A non-unit stride along the last dim: copied first.
      check('last dim strided', [B, W, T], H, false, dtype, (x) => transpose(x, 1, 2));
      check('rank 2 [T, 3C]', [T, W], H, true, dtype);
    }
  });

  test('qkvAttention gradients match finite differences (f64, on the device)', () => {
    tidy(() => {
      const x = randn([1, 3, 3 * 2 * 32], { dtype: 'f64', device: DEV }).requiresGrad_(true);
      gradcheck('qkvAttention causal', (t) => qkvAttention(t, 2, { causal: true }), [x]);
      const y = randn([2, 2, 3 * 32], { dtype: 'f64', device: DEV }).requiresGrad_(true);
      gradcheck('qkvAttention', (t) => qkvAttention(t, 1, { scale: 0.7 }), [y]);
    });
  });

  test('census: the backward writes dq, dk, dv into the qkv gradient without a copy (the old path copied 3 times)', () => {
    tidy(() => {
      const [B, T, H, D] = [2, 40, 2, 64];
      const copies = (f: (x: Tensor) => Tensor) => {
        const x = randn([B, T, 3 * H * D], { device: DEV }).to('bf16').requiresGrad_(true);
        const y = f(x);
        const g = randn([B, T, H * D], { device: DEV }).to('bf16');
        const fwd = cudaCensus(() => f(x.detach())).entries;
        const bwd = cudaCensus(() => y.backward(g)).entries;
        // Layout copies and zero fills; not the flat copy that hands the leaf its gradient (qkv is a leaf here, not in GPT).
        const isCopy = (e: { kind: string; name: string }) => e.kind === 'kernel' && /copyStrided|fill/i.test(e.name);
        const count = (es: typeof fwd) => es.filter(isCopy).reduce((n, e) => n + e.count, 0);
        return { fwd: count(fwd), bwd: count(bwd), text: `forward:\n${formatCensus(fwd)}\nbackward:\n${formatCensus(bwd)}` };
      };
      const now = copies((x) => qkvAttention(x, H, { causal: true }));
      const before = copies((x) => oldPath(x, H, true));
      console.log(`  layout copies and fills around attention: forward ${before.fwd} -> ${now.fwd}, backward ${before.bwd} -> ${now.bwd}`);
      assert.is(now.fwd, 0, now.text);
      assert.is(now.bwd, 0, now.text);
      assert.is(before.bwd, 3, before.text);
    });
  });

  test('qkvAttention errors name the op and the shapes', () => {
    tidy(() => {
      const x = randn([2, 4, 96], { device: DEV });
      assert.throws(() => qkvAttention(x, 5), /qkvAttention: qkv's last dim 96 \(of \[2, 4, 96\]\) is not 3 \* heads \(5\)/);
      assert.throws(() => qkvAttention(x, 0), /qkvAttention: heads must be a positive integer, got 0/);
      assert.throws(() => qkvAttention(randn([96], { device: DEV }), 1), /qkvAttention: qkv must be \[\.\.\., T, 3 \* heads \* D\], got \[96\]/);
    });
  });
}

test.run();
