/**
 * Layer norm's backward on CUDA (native/cuda/layernorm_onepass.cu: dx and per-block partial dw, db
 * from one read of x and g, rows up to 1024 columns, f64 512; wider rows: layernorm.cu's row
 * kernels and 64-row chunks). Values and gradients against the CPU op within the op suite's
 * tolerances over block edges (32 rows a block), a partial last block, widths that are no whole
 * number of 16-byte vectors, 1 column, each lane's widest (1024; f64 512) and one past it, and
 * large rows (6400, 12288); with and without weight and bias. dw and db match a JS reference of the
 * kernels' summation order bit for bit on the emulated device (it compiles with -ffp-contract=off,
 * so each product and sum rounds alone, as in JS), and two backward runs give the same bits.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { cudaCensus, cudaIsAvailable, type DType, layerNorm, native, noGrad, randn, type Tensor, tidy, zeros } from '../../src/index.ts';
import { assertSameBits } from '../helpers/bits.ts';
import { DEV, maxRelErr, parity, TOL } from '../helpers/cuda_parity.ts';

const EXACT = 'cudaEmuChecks' in native;
/** layernorm_onepass.cu: rows a block (8 warps x 4 rows), and the widest row it takes. */
const ROWS_PER_PART = 32;
const onePassCols = (dtype: DType) => (dtype === 'f64' ? 512 : 1024);
/** columnSums: warps a block, each adding every SLICES-th partial. */
const SLICES = 32;
const CODE: Record<string, number> = { f32: 0, f64: 1 };

const r = (shape: number[], dtype: DType, scale = 1, shift = 0) =>
  noGrad(() => randn(shape).mul(scale).add(shift).to(dtype)).requiresGrad_(true);

/** The kernels `fn` launches, by name. */
function kernelsOf(fn: () => void): string[] {
  return cudaCensus(fn).entries.filter((e) => e.kind === 'kernel').map((e) => e.name.replace(/<T>$/, ''));
}

if (!cudaIsAvailable()) {
  test('layer norm backward', () => {
    const info = native.deviceInfo();
    console.log(`SKIP test/unit/cuda_layernorm_onepass: no usable CUDA device (${info.cudaCompiled ? info.cudaStatus : 'built without CUDA'})`);
  });
} else {
  test('values and gradients = the CPU op (block edges, odd widths, the widest one-pass rows and past them), every dtype', () => {
    // [rows, cols]: one row of one column; a block less one row and an odd width; exactly one block;
    // one row into the next block (a partial last block); several blocks of GPT-2's width; the widest
    // one-pass rows (f64: the widest of its own) and one column past them; large rows.
    const shapes: [number, number][] = [[1, 1], [31, 33], [32, 40], [33, 768], [100, 13], [65, 1024], [9, 1025], [3, 6400], [2, 12288]];
    for (const dtype of ['f32', 'f64', 'bf16', 'f16'] as DType[]) {
      const extra: [number, number][] = dtype === 'f64' ? [[40, 512], [7, 514]] : [];
      for (const [rows, cols] of [...shapes, ...extra]) {
        const what = `${dtype} [${rows}, ${cols}]`;
        // f32's gradients sum over rows in another order than the CPU's: the op suite's 2e-5 for that.
        const tol = dtype === 'f32' ? 2e-5 : undefined;
        parity(`layerNorm affine ${what}`, (x, w, b) => layerNorm(x, cols, w, b), () => [r([rows, cols], dtype, 0.5, 3), r([cols], dtype), r([cols], dtype)], tol);
        parity(`layerNorm plain ${what}`, (x) => layerNorm(x, cols), () => [r([rows, cols], dtype)], tol);
      }
    }
  });

  test('weight only, bias only, and no input gradient (dw, db alone)', () => {
    for (const dtype of ['f32', 'bf16'] as DType[]) {
      for (const [rows, cols] of [[45, 96], [6, 1100]] as [number, number][]) {
        const tol = dtype === 'f32' ? 2e-5 : undefined;
        parity(`weight only ${dtype} [${rows}, ${cols}]`, (x, w) => layerNorm(x, cols, w), () => [r([rows, cols], dtype), r([cols], dtype)], tol);
        parity(`bias only ${dtype} [${rows}, ${cols}]`, (x, b) => layerNorm(x, cols, null, b), () => [r([rows, cols], dtype), r([cols], dtype)], tol);
        const frozen = (t: Tensor) => noGrad(() => t.detach());
        parity(`x frozen ${dtype} [${rows}, ${cols}]`, (x, w, b) => layerNorm(x, cols, w, b), () => [frozen(r([rows, cols], dtype)), r([cols], dtype), r([cols], dtype)], tol);
      }
    }
  });

  test('two backward runs give the same bits (dx, dw, db), one-pass and wide rows', () => {
    for (const [dtype, rows, cols] of [['bf16', 300, 768], ['f32', 300, 37], ['bf16', 130, 2048]] as [DType, number, number][]) {
      tidy(() => {
        const x = r([rows, cols], dtype, 0.5, 3);
        const w = r([cols], dtype);
        const b = r([cols], dtype);
        const g = noGrad(() => randn([rows, cols], { device: DEV }).to(dtype));
        const [xd, wd, bd] = [x, w, b].map((t) => noGrad(() => t.to(DEV)));
        const run = () => {
          const leaves = [xd, wd, bd].map((t) => t.detach().requiresGrad_(true));
          layerNorm(leaves[0], cols, leaves[1], leaves[2]).backward(g);
          return leaves.map((t) => t.grad as Tensor);
        };
        const one = run();
        const two = run();
        ['dx', 'dw', 'db'].forEach((k, i) => assertSameBits(`${k} ${dtype} [${rows}, ${cols}]`, one[i], two[i]));
      });
    }
  });

  test('dw, db: the kernels summation order, bit for bit (f32, f64; one-pass rows and wide rows)', () => {
    // One-pass: a block's 8 warps each add its rows (block * 32 + i * 8 + warp, i < 4) in order in
    // the compute type, the warps' sums are added in warp order (the partial); columnSums adds
    // every 32nd partial in order in double (32 slices), then the slices in order, then what .grad
    // held, rounding once. Wide rows: each 64-row chunk in row order in double, then the same
    // columnSums. 8453 rows: 265 partials, more than 32 slices x 8 loads ahead; the second backward
    // adds into .grad.
    const cases: [DType, number, number, string][] = [
      ['f32', 8453, 37, 'backwardOnePassScalar'],
      ['f32', 8453, 40, 'backwardOnePassVec'],
      ['f64', 1000, 37, 'backwardOnePassScalar'],
      ['f32', 2200, 1030, 'backwardChunks'],
    ];
    for (const [dtype, rows, cols, kernel] of cases) {
      tidy(() => {
        const x = noGrad(() => randn([rows, cols], { device: DEV }).mul(0.5).add(3).to(dtype));
        const g = noGrad(() => randn([rows, cols], { device: DEV }).to(dtype));
        const mean = zeros([rows], { dtype, device: DEV });
        const rstd = zeros([rows], { dtype, device: DEV });
        const y = zeros([rows, cols], { dtype, device: DEV });
        native.cuda.layerNormForward(CODE[dtype], x.id, x.offset, 0, 0, 0, 0, y.id, 0, mean.id, rstd.id, rows, cols, 1e-5);
        const [xs, gs] = [x, g].map((t) => t.toList() as number[]); // flat, row-major
        const [ms, rs] = [mean, rstd].map((t) => t.toList() as number[]);
        const fr = dtype === 'f32' ? Math.fround : (v: number) => v;
        const onePass = cols <= onePassCols(dtype);
        // The partials, [parts][2][cols].
        const parts: number[][][] = [];
        if (onePass) {
          for (let b0 = 0; b0 < rows; b0 += ROWS_PER_PART) {
            const part = [new Array(cols).fill(0), new Array(cols).fill(0)];
            for (let warp = 0; warp < 8; warp++) {
              const acc = [new Array(cols).fill(0), new Array(cols).fill(0)];
              for (let i = 0; i < 4; i++) {
                const row = b0 + i * 8 + warp;
                if (row >= rows) break;
                for (let j = 0; j < cols; j++) {
                  const gv = gs[row * cols + j];
                  const xhat = fr(fr(xs[row * cols + j] - ms[row]) * rs[row]);
                  acc[0][j] = fr(acc[0][j] + fr(gv * xhat));
                  acc[1][j] = fr(acc[1][j] + gv);
                }
              }
              for (let k = 0; k < 2; k++) for (let j = 0; j < cols; j++) part[k][j] = warp === 0 ? acc[k][j] : fr(part[k][j] + acc[k][j]);
            }
            parts.push(part);
          }
        } else {
          for (let c0 = 0; c0 < rows; c0 += 64) {
            const part = [new Array(cols).fill(0), new Array(cols).fill(0)];
            for (let row = c0; row < Math.min(rows, c0 + 64); row++) {
              for (let j = 0; j < cols; j++) {
                const gv = gs[row * cols + j];
                part[0][j] += gv * ((xs[row * cols + j] - ms[row]) * rs[row]);
                part[1][j] += gv;
              }
            }
            parts.push(part);
          }
        }
        const total = (k: number, j: number) => {
          let t = 0;
          for (let s = 0; s < SLICES; s++) {
            let sum = 0;
            for (let p = s; p < parts.length; p += SLICES) sum += parts[p][k][j];
            t += sum;
          }
          return t;
        };
        const w = zeros([cols], { dtype, device: DEV }).add(1).requiresGrad_(true);
        const b = zeros([cols], { dtype, device: DEV }).requiresGrad_(true);
        const names = kernelsOf(() => layerNorm(x, cols, w, b).backward(g));
        assert.ok(names.includes(kernel), `${dtype} [${rows}, ${cols}] ran ${names.join(', ')}, want ${kernel}`);
        const dw1 = (w.grad as Tensor).toList() as number[];
        const db1 = (b.grad as Tensor).toList() as number[];
        layerNorm(x, cols, w, b).backward(g);
        const dw2 = (w.grad as Tensor).toList() as number[];
        const db2 = (b.grad as Tensor).toList() as number[];
        const wants = Array.from({ length: cols }, (_, j) => [total(0, j), total(1, j)]);
        const what = `${dtype} [${rows}, ${cols}]`;
        if (!EXACT) {
          // On a GPU nvcc may fuse a multiply-add the JS above rounds twice: held to TOL there.
          const close = (got: number[], k: 0 | 1, scale: number) => maxRelErr(got, wants.map((v) => scale * v[k])) <= TOL[dtype];
          assert.ok(close(dw1, 0, 1) && close(db1, 1, 1) && close(dw2, 0, 2) && close(db2, 1, 2), `${what}: dw, db within ${TOL[dtype]}`);
          return;
        }
        for (let j = 0; j < cols; j++) {
          const [sw, sb] = wants[j];
          assert.ok(Object.is(dw1[j], fr(sw)) && Object.is(db1[j], fr(sb)), `${what} column ${j}: dw ${dw1[j]} vs ${fr(sw)}, db ${db1[j]} vs ${fr(sb)}`);
          assert.ok(Object.is(dw2[j], fr(sw + dw1[j])) && Object.is(db2[j], fr(sb + db1[j])), `${what} column ${j}: added into .grad`);
        }
      });
    }
  });
}

test.run();
