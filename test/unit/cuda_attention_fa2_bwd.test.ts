/**
 * The FA2-style attention backward (native/cuda/attention_fa2_bwd.cu, taken under
 * MESHTRAIN_ATTENTION=fa2 for bf16/f16 at head dims 64 and 128): dq, dk, dv of
 * sum(attention(q, k, v) * w) against the tensor-core backward (attention_tc.cu) after the same
 * forward, and both against a CPU f64 reference (composed ops) fed the same rounded inputs.
 * Errors are max |diff| over max(1, max |reference|). Bounds: each backward within 1e-2 of the
 * f64 reference (cuda_attention's bound for the tensor-core kernels), and fa2 no worse than the
 * tensor-core backward's own error + 2e-3 (both round P and dS to the input dtype; fp32 sums in
 * other orders). bf16 and f16, causal and not, T 1, 33, 70, 130, Tq != Tk, batch x heads > 1,
 * q/k/v as strided views of one qkv projection (qkvAttention) and as unaligned narrowed views;
 * gradients written at an odd element offset (the binding called directly) bit for bit as aligned.
 * Every compared backward's launch census shows the family that ran (fa2: two attention_fa2_bwd.cu
 * launches and no attention_tc.cu one; WMMA: the reverse). fa2 and WMMA often agree bit for bit on
 * the emulated device (e.g. every Tq != Tk case here): there they do the same arithmetic (products
 * in k order, P and dS rounded to 16 bits) but for exp2(s·scale·log2e − lse·log2e) against
 * exp(s·scale − lse), whose last-bit differences rarely cross a bf16/f16 rounding boundary at these
 * sizes; the census, not the difference, proves fa2 ran. Every fa2 case also runs the dQ kernel at
 * 32 query rows per warp (MESHTRAIN_FA2_BWD_ROWS=32: two m16 tiles per warp at D 64, 16 rows at
 * D 128): its gradients must equal the 16-row ones bit for bit (each row's sums run in the same
 * order; a 32-row warp only adds masked, exactly zero dS), and the census label must name the
 * variant that ran. Without a usable device: one SKIP line.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  type CensusEntry, cudaCensus, cudaIsAvailable, type DType, manualSeed, mul, native, noGrad, qkvAttention, randn, scaledDotProductAttention, sum,
  type Tensor, tidy, zeros,
} from '../../src/index.ts';
import { kernelsOn } from '../../src/tensor/backend.ts';
import { dtypeCode } from '../../src/tensor/dtype.ts';
import type { Device } from '../../src/tensor/storage.ts';
import { withAttentionFamily, withFa2BwdRows } from '../helpers/attention_family.ts';
import { assertSameNumbers } from '../helpers/bits.ts';
import { maxRelErr } from '../helpers/cuda_parity.ts';

const DEV = 'cuda:0';
const TOL = 1e-2;
const OVER_TC = 2e-3;

type Attn = (...xs: Tensor[]) => Tensor;

/** fa2x32: the fa2 backward with its dQ kernel at 32 query rows per warp (MESHTRAIN_FA2_BWD_ROWS=32). */
type Family = 'fa2' | 'fa2x32' | 'tc';

/**
 * Gradients of sum(f(xs) * w) for leaves made from `base` on `device` in `dtype`, after one forward
 * on the default (tensor-core) kernels: one backward per family in `families`, in order. On
 * cuda:0 each backward's attention launches are checked against its family (census) at head dim `dim`.
 */
function grads(f: Attn, base: Tensor[], w: Tensor, device: Device, dtype: DType, families: Family[], dim = 0): number[][][] {
  const leaves = base.map((x) => noGrad(() => x.to(dtype).to(device)).requiresGrad_(true));
  const y = withAttentionFamily('tc', () => f(...leaves));
  const loss = sum(mul(y, noGrad(() => w.to(dtype).to(device))));
  return families.map((family, n) => {
    for (const x of leaves) x.grad = null;
    const run = () =>
      withFa2BwdRows(family === 'fa2x32' ? '32' : '16', () =>
        withAttentionFamily(family === 'tc' ? 'tc' : 'fa2', () => loss.backward(undefined, { retainGraph: n < families.length - 1 })));
    if (device === 'cpu') run();
    else checkLaunches(family, cudaCensus(run).entries, dim);
    return leaves.map((x) => (x.grad as Tensor).toList() as number[]);
  });
}

/**
 * A backward's kernel launches by attention file: fa2's two (dK/dV, dQ) and no WMMA one, or the
 * reverse; fa2's dQ launch labelled with its rows per warp (32 for fa2x32 at head dim 64).
 */
function checkLaunches(family: Family, entries: CensusEntry[], dim: number): void {
  const at = (file: string) => entries.filter((e) => e.kind === 'kernel' && e.site.replace(/:\d+$/, '') === `cuda/${file}`);
  const count = (file: string) => at(file).reduce((a, e) => a + e.count, 0);
  const [fa2, tc] = [count('attention_fa2_bwd.cu'), count('attention_tc.cu')];
  const want = family === 'tc' ? [0, 2] : [2, 0];
  assert.equal([fa2, tc], want, `${family} backward: ${fa2} attention_fa2_bwd.cu and ${tc} attention_tc.cu launches, expected ${want}`);
  if (family === 'tc') return;
  const rows = family === 'fa2x32' && dim === 64 ? 32 : 16;
  const labels = at('attention_fa2_bwd.cu').map((e) => e.label).sort();
  assert.equal(labels, ['', `${rows} rows/warp`], `${family} backward at D ${dim}: launch labels`);
}

interface Errors {
  fa2: number;
  tc: number;
  apart: number;
}

/**
 * fa2 and tensor-core gradients of f against the f64 CPU reference; asserts the bounds of the
 * header, and fa2 with dQ at 32 rows per warp = fa2, bit for bit. `dim`: the head dim.
 */
function check(name: string, f: Attn, shapes: number[][], outShape: number[], dtype: DType, dim = outShape[3]): Errors {
  return tidy(() => {
    const base = shapes.map((s) => noGrad(() => randn(s).to(dtype)));
    const w = noGrad(() => randn(outShape).to(dtype));
    const [fa2, fa2x32, tc] = grads(f, base, w, DEV, dtype, ['fa2', 'fa2x32', 'tc'], dim);
    fa2x32.forEach((g, i) => assertSameNumbers(`${name} ${dtype}: gradient of input ${i}, dQ at 32 rows per warp vs 16`, g, fa2[i]));
    const [ref] = grads(f, base, w, 'cpu', 'f64', ['tc']);
    const e: Errors = { fa2: 0, tc: 0, apart: 0 };
    ref.forEach((r, i) => {
      const a = maxRelErr(fa2[i], r, 1);
      const b = maxRelErr(tc[i], r, 1);
      e.fa2 = Math.max(e.fa2, a);
      e.tc = Math.max(e.tc, b);
      e.apart = Math.max(e.apart, maxRelErr(fa2[i], tc[i], 1));
      assert.ok(a <= TOL, `${name} ${dtype}: fa2 gradient of input ${i} differs from f64 by ${a} (bound ${TOL})`);
      assert.ok(a <= b + OVER_TC, `${name} ${dtype}: fa2 gradient of input ${i} error ${a} vs tensor cores ${b} (+${OVER_TC})`);
    });
    return e;
  });
}

const sdpa = (causal: boolean, scale?: number): Attn => (q, k, v) => scaledDotProductAttention(q, k, v, { causal, scale });

/** Largest errors over a test's cases, printed once per test. */
function report(label: string, es: Errors[], started: number): void {
  const m = (k: keyof Errors) => Math.max(...es.map((e) => e[k])).toExponential(2);
  const s = ((performance.now() - started) / 1000).toFixed(1);
  console.log(`  ${label}: max error vs f64 fa2 ${m('fa2')}, tensor cores ${m('tc')}; fa2 vs tensor cores ${m('apart')} (${es.length} cases, ${s} s)`);
}

if (!cudaIsAvailable()) {
  test('FA2 attention backward', () => {
    const info = native.deviceInfo();
    console.log(`SKIP test/unit/cuda_attention_fa2_bwd: no usable CUDA device (${info.cudaCompiled ? info.cudaStatus : 'built without CUDA'})`);
  });
} else {
  manualSeed(3);
  /**
   * Lengths per dtype: 1 (one row and key), 33 (full, partial and idle warps), 70 (a partial second
   * tile), 130 (three tiles: causal skips and the per-warp diagonal steps). f16 differs from bf16
   * only in the element type of the same code, so it takes 33 and 130. Emulated time goes by blocks
   * x tiles x D, not rows: a block finds its batch and head once (headOf, the same code at both D),
   * so batch and head offsets ([2, 3]: B != H tells b from h) run at D 64 and T <= 64; D 128 there
   * takes [1, 2] (a head offset), as T 70 does; [1, 1] at 130. (T 70 at D 128 on [1, 1] draws inputs
   * whose bf16 gradients sit at 9e-3 of the 1e-2 bound, for both kernels alike: kept on [1, 2].)
   */
  const lengths: Record<string, number[]> = { bf16: [1, 33, 70, 130], f16: [33, 130] };
  const lead = (D: number, T: number): number[] => (T > 128 ? [1, 1] : T > 64 || D > 64 ? [1, 2] : [2, 3]);
  for (const dtype of ['bf16', 'f16'] as DType[]) {
    test(`fa2 backward = tensor-core backward and f64, ${dtype}: head dims 64/128, T ${lengths[dtype]}, causal and not`, () => {
      const es: Errors[] = [];
      const started = performance.now();
      for (const D of [64, 128]) {
        for (const T of lengths[dtype]) {
          const s = [...lead(D, T), T, D];
          for (const causal of [true, false]) es.push(check(`[${s}] causal ${causal}`, sdpa(causal), [s, s, s], s, dtype));
        }
      }
      report(dtype, es, started);
    });
  }

  test('fa2 backward with Tq != Tk and a custom scale (bf16)', () => {
    const es: Errors[] = [];
      const started = performance.now();
    for (const causal of [true, false]) {
      es.push(check(`Tq 40 < Tk 70, causal ${causal}`, sdpa(causal), [[1, 2, 40, 64], [1, 2, 70, 64], [1, 2, 70, 64]], [1, 2, 40, 64], 'bf16'));
      es.push(check(`Tq 70 > Tk 7, causal ${causal}`, sdpa(causal), [[1, 2, 70, 64], [1, 2, 7, 64], [1, 2, 7, 64]], [1, 2, 70, 64], 'bf16'));
    }
    es.push(check('scale 0.3', sdpa(true, 0.3), [[1, 2, 45, 128], [1, 2, 45, 128], [1, 2, 45, 128]], [1, 2, 45, 128], 'bf16'));
    report('Tq != Tk', es, started);
  });

  test('fa2 backward, Tq and Tk off the 128-query blocks of the 32-row dQ kernel (bf16, D 64)', () => {
    const es: Errors[] = [];
    const started = performance.now();
    for (const causal of [true, false]) {
      es.push(check(`Tq 150 > Tk 90, causal ${causal}`, sdpa(causal), [[1, 1, 150, 64], [1, 1, 90, 64], [1, 1, 90, 64]], [1, 1, 150, 64], 'bf16'));
      es.push(check(`Tq 100 < Tk 200, causal ${causal}`, sdpa(causal), [[1, 1, 100, 64], [1, 1, 200, 64], [1, 1, 200, 64]], [1, 1, 100, 64], 'bf16'));
    }
    report('off the 128-query blocks', es, started);
  });

  test('an unknown MESHTRAIN_FA2_BWD_ROWS is an error naming the variable and the choices', () => {
    tidy(() => {
      const q = randn([1, 2, 20, 64], { device: DEV }).to('bf16').requiresGrad_(true);
      const y = scaledDotProductAttention(q, q, q, { causal: true });
      assert.throws(
        () => withFa2BwdRows('8', () => withAttentionFamily('fa2', () => sum(y).backward())),
        /MESHTRAIN_FA2_BWD_ROWS: unknown rows per warp '8' \(16 or 32\)/,
      );
    });
  });

  test('fa2 backward through qkvAttention: q, k, v strided views of one [B, T, 3C] projection, gradients into its thirds', () => {
    const es: Errors[] = [];
      const started = performance.now();
    for (const dtype of ['bf16', 'f16'] as DType[]) {
      const [B, T, H, D] = [2, 37, 2, 64];
      const f = (x: Tensor) => qkvAttention(x, H, { causal: true });
      es.push(check(`qkv [${B}, ${T}, 3 x ${H} x ${D}]`, f, [[B, T, 3 * H * D]], [B, T, H * D], dtype, D));
    }
    // Rows 3C + 3 apart, starting 1 in: nothing 16-byte aligned (element-wise tile loads).
    const [B, T, H, D] = [1, 21, 2, 64];
    const W = 3 * H * D;
    const narrowed = (x: Tensor) => qkvAttention(x.narrow(-1, 1, W), H, { causal: true });
    es.push(check('narrowed qkv rows', narrowed, [[B, T, W + 3]], [B, T, H * D], 'bf16', D));
    report('qkv views', es, started);
  });

  test('fa2 backward into outputs at an odd element offset (2-byte stores) equals it into aligned ones, bit for bit', () => {
    tidy(() => {
      const [B, H, T, D] = [1, 2, 33, 64];
      const n = B * H * T * D;
      const st = [H * T * D, T * D, D];
      const geom = [B, H, T, T, D, 1 / Math.sqrt(D), true] as const;
      const code = dtypeCode('bf16');
      const cuda = kernelsOn(DEV);
      const [q, kk, v, dO] = [0, 1, 2, 3].map(() => randn([B, H, T, D], { device: DEV }).to('bf16'));
      const o = zeros([B, H, T, D], { dtype: 'bf16', device: DEV });
      const lse = zeros([B * H * T], { device: DEV });
      const at = (t: Tensor) => [t.id, t.offset, st] as const;
      cuda.attentionForward(code, ...geom, ...at(q), ...at(kk), ...at(v), ...at(o), lse.id);
      // Three gradients in one flat buffer each, starting `shift` elements in.
      const backward = (shift: number) => {
        const outs = [0, 1, 2].map(() => zeros([n + 1], { dtype: 'bf16', device: DEV }));
        withAttentionFamily('fa2', () =>
          cuda.attentionBackward(code, ...geom, ...at(q), ...at(kk), ...at(v), ...at(o), ...at(dO), lse.id,
            ...outs.flatMap((t) => [t.id, t.offset + shift, st])),
        );
        return outs.map((t) => t.narrow(0, shift, n).toList() as number[]);
      };
      const [aligned, odd] = [backward(0), backward(1)];
      aligned.forEach((g, i) => {
        assert.ok(g.some((x) => x !== 0), `gradient ${i} is all zeros`);
        assert.equal(odd[i], g, `gradient ${i} written at an odd offset differs`);
      });
    });
  });

  test('census: MESHTRAIN_ATTENTION=fa2 runs the fa2 backward at head dims 64/128, the tensor-core one at 32', () => {
    tidy(() => {
      const sites = (D: number, family: 'fa2' | 'tc') => {
        const q = randn([1, 2, 20, D], { device: DEV }).to('bf16').requiresGrad_(true);
        const y = scaledDotProductAttention(q, q, q, { causal: true });
        const es = withAttentionFamily(family, () => cudaCensus(() => sum(y).backward()).entries);
        return es.filter((e) => e.kind === 'kernel').map((e) => e.site.replace(/:\d+$/, ''));
      };
      for (const D of [64, 128]) {
        const fa2 = sites(D, 'fa2');
        assert.is(fa2.filter((s) => s === 'cuda/attention_fa2_bwd.cu').length, 2, `D ${D} fa2: ${fa2}`);
        assert.not.ok(fa2.includes('cuda/attention_tc.cu'), `D ${D} fa2: ${fa2}`);
        assert.ok(sites(D, 'tc').includes('cuda/attention_tc.cu'), `D ${D} tc`);
      }
      assert.not.ok(sites(32, 'fa2').includes('cuda/attention_fa2_bwd.cu'), 'D 32 falls back to the tensor-core kernels');
    });
  });
}

test.run();
