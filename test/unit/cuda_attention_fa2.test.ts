/**
 * The register-resident tensor-core attention forward (native/cuda/attention_fa2.cu, selected by
 * MESHTRAIN_ATTENTION=fa2) against an f64 reference computed here from the same rounded bf16/f16
 * inputs, and against the WMMA forward (attention_tc.cu, the default) on the same operands. Output
 * within 1e-2 of the f64 reference relative to max(1, its largest value) (the bound the existing
 * kernels are held to in cuda_attention; seen: 3.3e-3 bf16, 4.2e-4 f16, as the WMMA kernel's), and
 * no worse than the WMMA forward's own error plus one output ulp (2^-8 bf16, 2^-11 f16); lse (f32)
 * within 1e-5 · max(1, |lse|) of the f64 one (seen: 5.3e-7).
 * bf16 and f16; head dims 64 and 128 (32 once); causal and not; T 1, 33, 70, 130 (one row, full and
 * partial and empty warps, a second and a third partial key tile; f16 33 and 130); Tq != Tk both
 * ways; batch x heads > 1; q, k, v as the strided thirds of one qkv projection (what GPT's attention passes);
 * unaligned views (element-wise tile loads and stores); no keys at all. Through
 * scaledDotProductAttention too (forward on fa2, its backward on whatever MESHTRAIN_ATTENTION=fa2
 * selects) against the CPU's composed ops. Every fa2 case runs both variants of the forward
 * (MESHTRAIN_FA2_ROWS: 16 query rows per warp, and 32 as two m16 tiles where D <= 64, else 16):
 * their outputs and lse must be equal bit for bit (each row's products, softmax steps and sums run
 * in the same order; a 32-row warp only adds fully masked key columns, exact zeros), and the launch
 * census must name the variant that ran. Tq/Tk off the 128-query blocks: 33, 70, 130, 7/80, 80/7,
 * 200/140, 150/260. Without a usable device one SKIP line.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  cudaCensus, cudaIsAvailable, type DType, mul, native, noGrad, randn, scaledDotProductAttention, split, sum, type Tensor, tidy, transpose, zeros,
} from '../../src/index.ts';
import { kernelsOn } from '../../src/tensor/backend.ts';
import { dtypeCode } from '../../src/tensor/dtype.ts';
import { withAttentionFamily, withFa2Rows } from '../helpers/attention_family.ts';
import { assertSameNumbers } from '../helpers/bits.ts';
import { maxRelErr } from '../helpers/cuda_parity.ts';

const DEV = 'cuda:0';
const OUT_TOL = 1e-2;
const LSE_TOL = 1e-5;
/** One unit in the last place of a value in [1, 2): the output's own rounding. */
const ULP: Record<string, number> = { bf16: 2 ** -8, f16: 2 ** -11 };

/** [B, H, T, D] views with unit stride along D: the kernel's batch, head, position strides. */
const strides3 = (x: Tensor): number[] => [x.strides[0], x.strides[1], x.strides[2]];

/** Rows per warp the fa2 forward runs when MESHTRAIN_FA2_ROWS is `rows`: 32 only up to head dim 64. */
const rowsRun = (rows: string, D: number) => (rows === '32' && D <= 64 ? 32 : 16);

/**
 * The fused forward on `family` (fa2: at `rows` per warp) for q, k, v [B, H, T, D]: o (into `out`,
 * a [B, H, Tq, D] view) and lse.
 */
function forward(family: string, q: Tensor, k: Tensor, v: Tensor, out: Tensor, causal: boolean, scale: number, rows = '16') {
  const [B, H, Tq, D] = q.shape;
  const lse = zeros([B * H * Tq], { device: DEV });
  const { entries } = cudaCensus(() =>
    withFa2Rows(rows, () =>
      withAttentionFamily(family, () =>
        kernelsOn(DEV).attentionForward(dtypeCode(q.dtype), B, H, Tq, k.shape[2], D, scale, causal, q.id, q.offset, strides3(q), k.id,
          k.offset, strides3(k), v.id, v.offset, strides3(v), out.id, out.offset, strides3(out), lse.id))));
  // The family really ran (an addon without the hook would quietly run the WMMA kernel for both),
  // and fa2 in the variant asked for (its launch is labelled with its rows per warp).
  const file = family === 'fa2' ? 'attention_fa2.cu' : 'attention_tc.cu';
  const launches = entries.filter((e) => e.kind === 'kernel' && e.site.includes(file));
  assert.ok(Tq === 0 || launches.length > 0, `${family}: no launch from ${file}`);
  if (family === 'fa2' && Tq > 0) {
    const want = `${rowsRun(rows, D)} rows/warp`;
    assert.equal(launches.map((e) => e.label), [want], `fa2 at MESHTRAIN_FA2_ROWS=${rows}, D ${D}`);
  }
  return { o: out.toList(), lse: lse.toList() };
}

/** softmax(scale q kᵀ [causal, top-left]) v and each row's log-sum-exp, in f64 from the operands' values. */
function reference(q: Tensor, k: Tensor, v: Tensor, causal: boolean, scale: number) {
  const [B, H, Tq, D] = q.shape;
  const Tk = k.shape[2];
  const [qa, ka, va] = [q.toList(), k.toList(), v.toList()];
  const o = new Float64Array(B * H * Tq * D);
  const lse = new Float64Array(B * H * Tq);
  const s = new Float64Array(Tk);
  for (let bh = 0; bh < B * H; bh++) {
    for (let i = 0; i < Tq; i++) {
      const qi = (bh * Tq + i) * D;
      const seen = causal ? Math.min(Tk, i + 1) : Tk;
      let m = Number.NEGATIVE_INFINITY;
      for (let j = 0; j < seen; j++) {
        let dot = 0;
        for (let d = 0; d < D; d++) dot += qa[qi + d] * ka[(bh * Tk + j) * D + d];
        s[j] = dot * scale;
        m = Math.max(m, s[j]);
      }
      let l = 0;
      for (let j = 0; j < seen; j++) {
        const p = Math.exp(s[j] - m);
        l += p;
        for (let d = 0; d < D; d++) o[qi + d] += p * va[(bh * Tk + j) * D + d];
      }
      for (let d = 0; d < D; d++) o[qi + d] = l > 0 ? o[qi + d] / l : 0;
      lse[bh * Tq + i] = m + Math.log(l);
    }
  }
  return { o, lse };
}

/** Largest |got - want| over max(1, |want|), per element; equal infinities differ by nothing. */
function lseErr(got: ArrayLike<number>, want: ArrayLike<number>): number {
  let e = 0;
  for (let i = 0; i < want.length; i++) {
    if (got[i] === want[i]) continue;
    const d = Math.abs(got[i] - want[i]) / Math.max(1, Math.abs(want[i]));
    e = Number.isNaN(d) ? Number.POSITIVE_INFINITY : Math.max(e, d);
  }
  return e;
}

interface Operands {
  q: Tensor;
  k: Tensor;
  v: Tensor;
  /** A fresh [B, H, Tq, D] output view per call. */
  out: () => Tensor;
}

/** fa2 vs f64 and vs the WMMA forward on the same operands; fa2 at 32 rows per warp = at 16, bit for bit. */
function check(name: string, x: Operands, causal: boolean, scale = 1 / Math.sqrt(x.q.shape[3])): void {
  tidy(() => {
    const ref = reference(x.q, x.k, x.v, causal, scale);
    const fa2 = forward('fa2', x.q, x.k, x.v, x.out(), causal, scale);
    const fa2x32 = forward('fa2', x.q, x.k, x.v, x.out(), causal, scale, '32');
    const tc = forward('tc', x.q, x.k, x.v, x.out(), causal, scale);
    const tag = `${name} ${x.q.dtype} causal ${causal}`;
    assertSameNumbers(`${tag}: output at 32 rows per warp vs 16`, fa2x32.o, fa2.o);
    assertSameNumbers(`${tag}: lse at 32 rows per warp vs 16`, fa2x32.lse, fa2.lse);
    const e = maxRelErr(fa2.o, ref.o, 1);
    const eTc = maxRelErr(fa2.o, tc.o, 1);
    assert.ok(e <= OUT_TOL, `${tag}: fa2 output differs from f64 by ${e} (tolerance ${OUT_TOL}; WMMA: ${maxRelErr(tc.o, ref.o, 1)})`);
    assert.ok(eTc <= OUT_TOL, `${tag}: fa2 output differs from the WMMA forward by ${eTc}`);
    const eWmma = maxRelErr(tc.o, ref.o, 1);
    assert.ok(e <= eWmma + ULP[x.q.dtype], `${tag}: fa2 error ${e} exceeds the WMMA forward's ${eWmma} by more than an ulp`);
    const el = lseErr(fa2.lse, ref.lse);
    assert.ok(el <= LSE_TOL, `${tag}: fa2 lse differs from f64 by ${el} (tolerance ${LSE_TOL})`);
    assert.ok(lseErr(fa2.lse, tc.lse) <= LSE_TOL, `${tag}: fa2 lse differs from the WMMA forward's`);
  });
}

/** Contiguous [B, H, T, D] operands; the output laid out [B, T, H, D] as the op allocates it. */
function dense(B: number, H: number, Tq: number, Tk: number, D: number, dtype: DType): Operands {
  const on = (s: number[]) => noGrad(() => randn(s).to(dtype).to(DEV));
  return {
    q: on([B, H, Tq, D]),
    k: on([B, H, Tk, D]),
    v: on([B, H, Tk, D]),
    out: () => transpose(zeros([B, Tq, H, D], { dtype, device: DEV }), 1, 2),
  };
}

if (!cudaIsAvailable()) {
  test('CUDA fa2 attention forward', () => {
    const info = native.deviceInfo();
    console.log(`SKIP test/unit/cuda_attention_fa2: no usable CUDA device (${info.cudaCompiled ? info.cudaStatus : 'built without CUDA'})`);
  });
} else {
  /**
   * f16 runs the same template as bf16 with another element type: T 33 and 130 (partial warps, a
   * third partial tile). Emulated time goes by blocks x tiles x D, not rows; a block finds its batch
   * and head once, before the tiles (headOf, the same code at both D), so [2, 3] (B != H tells b from
   * h) runs at D 64 and T <= 64 only; D 128 and longer T take [1, 2] (a head offset, then the tiles
   * at D 64), D 128 past one tile [1, 1].
   */
  const lengths: Record<string, number[]> = { bf16: [1, 33, 70, 130], f16: [33, 130] };
  for (const dtype of ['bf16', 'f16'] as DType[]) {
    test(`fa2 forward = f64 reference and WMMA forward, ${dtype}: head dims 64/128, T ${lengths[dtype].join('/')}, causal and not`, () => {
      for (const D of [64, 128]) {
        for (const T of lengths[dtype]) {
          const [B, H] = T > 64 && D > 64 ? [1, 1] : T > 64 || D > 64 ? [1, 2] : [2, 3];
          const x = dense(B, H, T, T, D, dtype);
          for (const causal of [true, false]) check(`[${B}, ${H}, ${T}, ${D}]`, x, causal);
        }
      }
    });
  }

  test('fa2 forward: head dim 32, Tq != Tk both ways, custom scale, no keys', () => {
    check('D 32', dense(2, 2, 45, 45, 32, 'bf16'), true);
    for (const causal of [true, false]) {
      check('Tq 7 < Tk 80', dense(1, 2, 7, 80, 64, 'bf16'), causal);
      check('Tq 80 > Tk 7', dense(1, 2, 80, 7, 64, 'f16'), causal);
    }
    check('scale 0.3', dense(1, 2, 50, 50, 128, 'f16'), true, 0.3);
    tidy(() => {
      const x = dense(1, 2, 5, 0, 64, 'bf16');
      for (const rows of ['16', '32']) {
        const r = forward('fa2', x.q, x.k, x.v, x.out(), true, 0.125, rows);
        assert.ok(r.o.every((y) => y === 0), `no keys, ${rows} rows: zeros`);
        assert.ok(r.lse.every((y) => y === Number.NEGATIVE_INFINITY), `no keys, ${rows} rows: lse -inf, got ${r.lse}`);
      }
    });
  });

  test('fa2 forward, Tq and Tk off the 128-query blocks of the 32-row variant: a partial last block, warps past Tq, key tiles past the diagonal', () => {
    for (const causal of [true, false]) {
      check('Tq 200 > Tk 140', dense(1, 1, 200, 140, 32, 'bf16'), causal);
      check('Tq 150 < Tk 260', dense(1, 1, 150, 260, 64, 'f16'), causal);
    }
  });

  for (const dtype of ['bf16', 'f16'] as DType[]) {
    test(`fa2 forward on q, k, v split from one qkv projection (strided, 16-byte aligned), ${dtype}`, () => {
      for (const [T, D] of [[70, 64], [33, 128]]) {
        const [B, H] = [2, 2];
        const C = H * D;
        const qkv = noGrad(() => randn([B, T, 3 * C]).to(dtype).to(DEV));
        const [q, k, v] = split(qkv, C, -1).map((t) => transpose(t.reshape([B, T, H, D]), 1, 2));
        const x = { q, k, v, out: () => transpose(zeros([B, T, H, D], { dtype, device: DEV }), 1, 2) };
        for (const causal of [true, false]) check(`qkv [${B}, ${T}, 3x${C}]`, x, causal);
      }
    });
  }

  test('fa2 forward on unaligned views (element-wise tile loads and stores), bf16', () => {
    // Head dim 32 cut from 33-wide rows at offset 1: no stride is a multiple of 8, nothing 16-byte aligned.
    const cut = (t: Tensor) => t.narrow(-1, 1, 32);
    const [B, H, T] = [2, 2, 37];
    const on = () => noGrad(() => randn([B, H, T, 33]).to('bf16').to(DEV));
    const x = { q: cut(on()), k: cut(on()), v: cut(on()), out: () => cut(zeros([B, H, T, 33], { dtype: 'bf16', device: DEV })) };
    for (const causal of [true, false]) check('narrowed', x, causal);
  });

  test('scaledDotProductAttention under MESHTRAIN_ATTENTION=fa2 = composed CPU ops (f32 on the rounded inputs): values and gradients', () => {
    for (const dtype of ['bf16', 'f16'] as DType[]) {
      tidy(() => {
        const s = [1, 2, 70, 64];
        const base = [randn(s), randn(s), randn(s)].map((t) => noGrad(() => t.to(dtype)));
        const cpu = base.map((t) => noGrad(() => t.to('f32')).requiresGrad_(true));
        const dev = base.map((t) => noGrad(() => t.to(DEV)).requiresGrad_(true));
        const w = randn(s);
        const yc = scaledDotProductAttention(cpu[0], cpu[1], cpu[2], { causal: true });
        sum(mul(yc, w)).backward();
        withAttentionFamily('fa2', () => {
          const yd = scaledDotProductAttention(dev[0], dev[1], dev[2], { causal: true });
          sum(mul(yd, noGrad(() => w.to(dtype).to(DEV)))).backward();
          const e = maxRelErr(yd.toList(), yc.toList(), 1);
          assert.ok(e <= OUT_TOL, `${dtype}: output differs by ${e}`);
          const y32 = withFa2Rows('32', () => scaledDotProductAttention(dev[0], dev[1], dev[2], { causal: true }));
          assertSameNumbers(`${dtype}: the op's output at 32 rows per warp vs 16`, y32.toList(), yd.toList());
        });
        dev.forEach((t, i) => {
          const eg = maxRelErr((t.grad as Tensor).toList(), (cpu[i].grad as Tensor).toList(), 1);
          assert.ok(eg <= OUT_TOL, `${dtype}: gradient of input ${i} differs by ${eg}`);
        });
      });
    }
  });

  test('an unknown MESHTRAIN_ATTENTION is an error naming the variable and the families; the next call with a known one runs', () => {
    tidy(() => {
      const [q, k, v] = [0, 1, 2].map(() => randn([1, 2, 33, 64], { device: DEV }).to('bf16'));
      assert.throws(
        () => withAttentionFamily('fa3', () => scaledDotProductAttention(q, k, v, { causal: true })),
        /MESHTRAIN_ATTENTION: unknown kernel family 'fa3' \(tc, simt, fa2 or cudnn\)/,
      );
      const y = withAttentionFamily('fa2', () => scaledDotProductAttention(q, k, v, { causal: true }));
      const yTc = withAttentionFamily('tc', () => scaledDotProductAttention(q, k, v, { causal: true }));
      assert.ok(maxRelErr(y.toList(), yTc.toList(), 1) <= OUT_TOL);
    });
  });

  test('an unknown MESHTRAIN_FA2_ROWS is an error naming the variable and the choices', () => {
    tidy(() => {
      const [q, k, v] = [0, 1, 2].map(() => randn([1, 2, 33, 64], { device: DEV }).to('bf16'));
      assert.throws(
        () => withFa2Rows('64', () => withAttentionFamily('fa2', () => scaledDotProductAttention(q, k, v, { causal: true }))),
        /MESHTRAIN_FA2_ROWS: unknown rows per warp '64' \(16 or 32\)/,
      );
    });
  });
}

test.run();
