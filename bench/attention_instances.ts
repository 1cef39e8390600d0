/**
 * Every fused attention kernel instance on cuda:0, once each, at tiny shapes: the mma.sync kernels
 * (attention_fa2*.cu, MESHTRAIN_ATTENTION=fa2) and the WMMA ones (attention_tc.cu), forward and
 * backward, bf16 and f16, head dims 32, 64 and 128 (fa2's backward stops at 64/128: 32 takes
 * WMMA's). Twelve cases, GPT-2's first: q, k, v as the thirds of one qkv projection (what GPT runs:
 * 16-byte copies, cp.async), dense [B, H, T, D] with Tq != Tk both ways (key tiles no query of a
 * causal mask reaches), and narrowed unaligned views (element-wise tile loads); causal and not;
 * ragged T 70 (a partial second tile). Sizes keep each operand a whole number of the allocator's
 * 512-byte blocks where they can, so a read past a tensor's end leaves its cudaMalloc block
 * (what compute-sanitizer's memcheck sees). Each case checks in the launch census that the family
 * asked for ran, and (with values) that fa2's output and gradients are finite and within 2e-2 of
 * WMMA's (a sanity check: cuda_attention_fa2*.test.ts hold the real bounds). Run by
 * bench/gpu_attention_sanitize.ts under compute-sanitizer and by test/unit/cuda_attention_instances.
 */
import {
  cudaCensus, type DType, manualSeed, noGrad, qkvAttention, randn, scaledDotProductAttention, type Tensor, tidy,
} from '../src/index.ts';
import { withAttentionFamily } from '../test/helpers/attention_family.ts';

const DEV = 'cuda:0';
/** fa2 vs WMMA, relative to max(1, max |WMMA|): both round P and dS to 16 bits, sums in other orders. */
const APART_TOL = 2e-2;

export type Family = 'fa2' | 'tc';
export type Layout = 'qkv' | 'dense' | 'narrow';

/** One shape: a [1, heads, tq, dim] attention (qkv: tq = tk). */
export interface AttnCase {
  layout: Layout;
  dtype: DType;
  dim: number;
  heads: number;
  tq: number;
  tk: number;
  causal: boolean;
}

/** The cases, GPT-2's (bf16, head dim 64, causal, from a qkv projection) first. */
export const CASES: AttnCase[] = [
  { layout: 'qkv', dtype: 'bf16', dim: 64, heads: 2, tq: 70, tk: 70, causal: true },
  { layout: 'qkv', dtype: 'bf16', dim: 128, heads: 2, tq: 70, tk: 70, causal: true },
  { layout: 'qkv', dtype: 'f16', dim: 64, heads: 2, tq: 70, tk: 70, causal: true },
  { layout: 'qkv', dtype: 'f16', dim: 128, heads: 2, tq: 70, tk: 70, causal: true },
  { layout: 'dense', dtype: 'bf16', dim: 64, heads: 2, tq: 40, tk: 70, causal: true },
  { layout: 'dense', dtype: 'bf16', dim: 128, heads: 2, tq: 70, tk: 40, causal: false },
  { layout: 'dense', dtype: 'f16', dim: 64, heads: 2, tq: 70, tk: 40, causal: true },
  { layout: 'dense', dtype: 'f16', dim: 128, heads: 2, tq: 40, tk: 70, causal: false },
  { layout: 'qkv', dtype: 'bf16', dim: 32, heads: 4, tq: 70, tk: 70, causal: true },
  { layout: 'dense', dtype: 'f16', dim: 32, heads: 4, tq: 40, tk: 70, causal: false },
  { layout: 'narrow', dtype: 'bf16', dim: 64, heads: 2, tq: 37, tk: 37, causal: true },
  { layout: 'narrow', dtype: 'f16', dim: 128, heads: 2, tq: 37, tk: 37, causal: false },
];

/** 'qkv bf16 D64 causal T70' or 'dense f16 D128 Tq40 Tk70'. */
export function caseName(c: AttnCase): string {
  const t = c.tq === c.tk ? `T${c.tq}` : `Tq${c.tq} Tk${c.tk}`;
  return `${c.layout} ${c.dtype} D${c.dim}${c.causal ? ' causal' : ''} ${t}`;
}

/** The instances a case launches on `family`: 'fa2 forward bf16 D64', 'tc backward f16 D32', ... */
export function instancesOf(c: AttnCase, family: Family): string[] {
  const bwd = family === 'fa2' && c.dim !== 32 ? 'fa2' : 'tc';
  return [`${family} forward ${c.dtype} D${c.dim}`, `${bwd} backward ${c.dtype} D${c.dim}`];
}

/** Every instance the kernels compile (forward: both families at 32/64/128; backward: fa2 at 64/128, WMMA at all three). */
export function allInstances(): string[] {
  const out: string[] = [];
  for (const dtype of ['bf16', 'f16']) {
    for (const dim of [32, 64, 128]) {
      out.push(`fa2 forward ${dtype} D${dim}`, `tc forward ${dtype} D${dim}`, `tc backward ${dtype} D${dim}`);
      if (dim !== 32) out.push(`fa2 backward ${dtype} D${dim}`);
    }
  }
  return out.sort();
}

/** Launches per attention source file that one forward + backward on `family` must show in the census. */
function expectedLaunches(c: AttnCase, family: Family): Record<string, number> {
  const fwd = family === 'fa2' ? 'attention_fa2.cu' : 'attention_tc.cu';
  const bwd = family === 'fa2' && c.dim !== 32 ? 'attention_fa2_bwd.cu' : 'attention_tc.cu';
  const want: Record<string, number> = { 'attention.cu': 1, 'attention_fa2.cu': 0, 'attention_fa2_bwd.cu': 0, 'attention_tc.cu': 0 };
  want[fwd] += 1;
  want[bwd] += 2; // dK/dV and dQ
  return want;
}

/** The case's f32 operands on the device: qkv [1, T, 3HD], or q [1, H, Tq, D(+1)], k, v [1, H, Tk, D(+1)]. */
function operands(c: AttnCase): Tensor[] {
  const w = c.layout === 'narrow' ? c.dim + 1 : c.dim;
  if (c.layout === 'qkv') return [randn([1, c.tq, 3 * c.heads * c.dim], { device: DEV })];
  return [c.tq, c.tk, c.tk].map((t) => randn([1, c.heads, t, w], { device: DEV }));
}

function attend(c: AttnCase, xs: Tensor[]): Tensor {
  if (c.layout === 'qkv') return qkvAttention(xs[0], c.heads, { causal: c.causal });
  // Narrow: one element in, rows D + 1 apart: no operand 16-byte aligned, no stride a multiple of 8.
  const [q, k, v] = c.layout === 'narrow' ? xs.map((x) => x.narrow(-1, 1, c.dim)) : xs;
  return scaledDotProductAttention(q, k, v, { causal: c.causal });
}

/** The output's shape: [1, T, H·D] from a qkv projection, [1, H, Tq, D] otherwise. */
function outShape(c: AttnCase): number[] {
  return c.layout === 'qkv' ? [1, c.tq, c.heads * c.dim] : [1, c.heads, c.tq, c.dim];
}

/**
 * One family's output and input gradients (f32 copies) for case `c`, inputs drawn with `seed`.
 * @example
 * const [y, dqkv] = familyValues(CASES[0], 'fa2', 0);
 */
export function familyValues(c: AttnCase, family: Family, seed: number): Float32Array[] {
  return tidy(() => {
    manualSeed(seed);
    const base = operands(c);
    return runFamily(c, base, randn(outShape(c), { device: DEV }), family, true).arrays;
  });
}

/** Output and input gradients as f32 arrays, and the census of the forward and backward. */
function runFamily(c: AttnCase, base: Tensor[], dy: Tensor, family: Family, values: boolean) {
  return tidy(() => {
    const leaves = base.map((x) => noGrad(() => x.to(c.dtype)).requiresGrad_(true));
    const g = noGrad(() => dy.to(c.dtype));
    const { result: y, entries } = withAttentionFamily(family, () =>
      cudaCensus(() => {
        const out = attend(c, leaves);
        out.backward(g);
        return out;
      }),
    );
    const arrays = values ? [y, ...leaves.map((x) => x.grad as Tensor)].map((t) => Float32Array.from(t.to('f32').toArray() as Float32Array)) : [];
    return { entries, arrays };
  });
}

/** max |a - b| over max(1, max |b|); Infinity where a is not finite. */
function apart(a: Float32Array, b: Float32Array): number {
  let d = 0;
  let m = 1;
  for (let i = 0; i < a.length; i++) {
    if (!Number.isFinite(a[i])) return Number.POSITIVE_INFINITY;
    d = Math.max(d, Math.abs(a[i] - b[i]));
    m = Math.max(m, Math.abs(b[i]));
  }
  return d / m;
}

export interface CaseResult {
  name: string;
  instances: string[];
  /** Max fa2-vs-WMMA difference over output and gradients (NaN without values). */
  apart: number;
  /** What went wrong (empty: nothing). */
  errors: string[];
  seconds: number;
}

/**
 * Runs one case on both families from the same inputs (seeded by `seed`): the census must show
 * each family's kernels, and with `values` fa2 must match WMMA within 2e-2.
 * @example
 * const r = runCase(CASES[0], 0, true); // r.errors [] when all is well
 */
export function runCase(c: AttnCase, seed: number, values: boolean): CaseResult {
  const started = performance.now();
  const name = caseName(c);
  return tidy(() => {
    manualSeed(seed);
    const base = operands(c);
    const dy = randn(outShape(c), { device: DEV });
    const errors: string[] = [];
    const runs = (['fa2', 'tc'] as Family[]).map((family) => {
      const r = runFamily(c, base, dy, family, values);
      const got: Record<string, number> = {};
      for (const e of r.entries) {
        const file = e.site.replace(/^cuda\//, '').replace(/:\d+$/, '');
        if (e.kind === 'kernel' && /^attention/.test(file)) got[file] = (got[file] ?? 0) + e.count;
      }
      for (const [file, n] of Object.entries(expectedLaunches(c, family))) {
        if ((got[file] ?? 0) !== n) errors.push(`${family}: ${got[file] ?? 0} launches from ${file}, expected ${n} (census ${JSON.stringify(got)})`);
      }
      return r.arrays;
    });
    let worst = Number.NaN;
    if (values) {
      worst = Math.max(...runs[0].map((a, i) => apart(a, runs[1][i])));
      if (!(worst <= APART_TOL)) errors.push(`fa2 vs WMMA ${worst} over output and gradients (bound ${APART_TOL})`);
    }
    return { name, instances: [...instancesOf(c, 'fa2'), ...instancesOf(c, 'tc')], apart: worst, errors, seconds: (performance.now() - started) / 1000 };
  });
}
