/**
 * The 16-byte paths of the memory-bound kernels (bench/gpu_memory_kernels.ts times them) give the
 * scalar paths' values bit for bit (layer norm on a GPU: within the op suite's TOL, see EXACT):
 * each case runs once with aligned operands (the vector kernel) and once with the same values in
 * views one element off alignment (the scalar kernel), the launch census naming which kernel ran,
 * over every float dtype, odd sizes and repeated ids. Layer norm's dw/db also match a JS
 * reference of the kernels' summation order.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { cat, cudaCensus, cudaIsAvailable, type DType, embedding, layerNorm, native, noGrad, randn, type Tensor, tensor, tidy, zeros } from '../../src/index.ts';
import { assertSameBits } from '../helpers/bits.ts';
import { maxRelErr, TOL } from '../helpers/cuda_parity.ts';

const DEV = 'cuda:0';
/**
 * The emulated device compiles with -ffp-contract=off, so products and sums round alone, as in the
 * JS reference below: exact there. On a GPU nvcc may fuse a multiply-add in one kernel's order and
 * not the other's: layer norm is held to the op suite's TOL there (the embedding kernels only copy
 * and add, so they stay exact everywhere).
 */
const EXACT = 'cudaEmuChecks' in native;
const FLOATS: DType[] = ['f32', 'f64', 'bf16', 'f16'];
/** Elements per 16-byte vector (native/cuda/vec.cuh). */
const VEC: Record<string, number> = { f64: 2, f32: 4, bf16: 8, f16: 8 };

/** x's values in a view one element into a longer buffer: same values, a pointer off 16-byte alignment. */
function misaligned(x: Tensor): Tensor {
  return noGrad(() => {
    const flat = x.reshape([x.numel]);
    return cat([flat.narrow(0, 0, 1), flat], 0).narrow(0, 1, x.numel).view([...x.shape]);
  });
}

/** The kernels `fn` launches, by name. */
function kernelsOf(fn: () => void): string[] {
  return cudaCensus(fn).entries.filter((e) => e.kind === 'kernel').map((e) => e.name.replace(/<T>$/, ''));
}

/** Whether the addon has these kernels: an aligned 16-column bf16 layer norm runs the cached one. */
function addonHasThem(): boolean {
  return tidy(() => {
    const x = noGrad(() => randn([2, 16], { device: DEV }).to('bf16'));
    return kernelsOf(() => void layerNorm(x, 16)).includes('forwardCached');
  });
}

if (!cudaIsAvailable()) {
  test('memory-bound kernels', () => {
    const info = native.deviceInfo();
    console.log(`SKIP test/unit/cuda_memory_kernels: no usable CUDA device (${info.cudaCompiled ? info.cudaStatus : 'built without CUDA'})`);
  });
} else if (!addonHasThem()) {
  test('memory-bound kernels', () => {
    console.log('SKIP test/unit/cuda_memory_kernels: the addon predates the 16-byte layer norm / embedding kernels: rebuild it');
  });
} else {
  test('embedding backward: the vector kernel equals the scalar one bit for bit (fresh and added into .grad)', () => {
    for (const dtype of FLOATS) {
      // D 24 is a whole number of vectors for every dtype (2, 4 or 8 elements); D 13 never is.
      for (const D of [24, 13]) {
        tidy(() => {
          const V = 37;
          const n = 61;
          const ids = tensor(Array.from({ length: n }, (_, i) => (i * 17 + (i % 3)) % V), { dtype: 'i64', device: DEV });
          const g = noGrad(() => randn([n, D], { device: DEV }).to(dtype));
          const gOff = misaligned(g);
          const run = (gy: Tensor) => {
            const w = noGrad(() => randn([V, D], { device: DEV }).to(dtype)).requiresGrad_(true);
            const names: string[] = [];
            // Twice: the second backward adds into the .grad the first left (the kernel's `add`).
            for (let k = 0; k < 2; k++) names.push(...kernelsOf(() => embedding(ids, w).backward(gy)));
            return { grad: w.grad as Tensor, names };
          };
          const vec = run(g);
          const scalar = run(gOff);
          const want = D % VEC[dtype] === 0 ? 'scatterSumVec' : 'scatterSum';
          assert.ok(vec.names.includes(want), `${dtype} D ${D}: aligned ran ${vec.names.join(', ')}, want ${want}`);
          assert.ok(scalar.names.includes('scatterSum') && !scalar.names.includes('scatterSumVec'), `${dtype} D ${D}: misaligned ran ${scalar.names.join(', ')}`);
          assertSameBits(`embedding backward ${dtype} D ${D}`, vec.grad, scalar.grad);
        });
      }
    }
  });

  test('embedding forward: the vector gather equals the scalar one bit for bit, bad ids flagged alike', () => {
    for (const dtype of FLOATS) {
      for (const D of [24, 13]) {
        tidy(() => {
          const V = 29;
          const w = noGrad(() => randn([V, D], { device: DEV }).to(dtype));
          const wOff = misaligned(w);
          const ids = tensor(Array.from({ length: 45 }, (_, i) => (i * 11) % V), { dtype: 'i32', device: DEV });
          const names: string[][] = [];
          const out = [w, wOff].map((wt) => {
            let y: Tensor | undefined;
            names.push(kernelsOf(() => {
              y = embedding(ids, wt);
            }));
            return y as Tensor;
          });
          const what = `${dtype} D ${D}`;
          assert.is(names[0].includes('gatherVec'), D % VEC[dtype] === 0, `${what}: aligned ran ${names[0].join(', ')}`);
          assert.ok(!names[1].includes('gatherVec'), `${what}: misaligned ran ${names[1].join(', ')}`);
          assertSameBits(`embedding ${what}`, out[0], out[1]);
          // An id out of range: the same error (first bad position) from either kernel.
          const bad = tensor([3, 1, V + 2, 0, -1], { dtype: 'i64', device: DEV });
          for (const wt of [w, wOff]) assert.throws(() => embedding(bad, wt).toList(), /id 31 at position \[2\]/);
        });
      }
    }
  });

  test('layer norm forward and backward: the register-cached vector kernels equal the scalar ones bit for bit', () => {
    // [rows, cols, dtypes]: whole vectors (up to 4 a lane: the N = 4 kernels), the widest rows cached
    // (8 a lane: N = 8), a bf16 row one vector wider (scalar kernels), columns never whole vectors.
    const shapes: [number, number, DType[]][] = [
      [37, 48, FLOATS],
      [5, 2048, ['bf16', 'f16']],
      [4, 1000, ['f32']],
      [3, 2056, ['bf16']],
      [9, 13, FLOATS],
    ];
    for (const [rows, cols, dtypes] of shapes) {
      for (const dtype of dtypes) {
        tidy(() => {
          const make = (shape: number[], scale = 1, shift = 0) => noGrad(() => randn(shape, { device: DEV }).mul(scale).add(shift).to(dtype));
          // A large mean (the two-pass variance's reason) and a small spread.
          const x = make([rows, cols], 0.5, 3);
          const w = make([cols]);
          const b = make([cols]);
          const g = make([rows, cols]);
          const run = (xin: Tensor) => {
            const xl = xin.requiresGrad_(true);
            const wl = w.detach().requiresGrad_(true);
            const bl = b.detach().requiresGrad_(true);
            let y: Tensor | undefined;
            const fwd = kernelsOf(() => {
              y = layerNorm(xl, cols, wl, bl);
            });
            const bwd = kernelsOf(() => (y as Tensor).backward(g));
            return { y: y as Tensor, dx: xl.grad as Tensor, dw: wl.grad as Tensor, db: bl.grad as Tensor, names: [...fwd, ...bwd] };
          };
          const vec = run(x.detach());
          const scalar = run(misaligned(x));
          const cached = cols % VEC[dtype] === 0 && cols / VEC[dtype] <= 256;
          const what = `${dtype} [${rows}, ${cols}]`;
          assert.is(vec.names.includes('forwardCached') && vec.names.includes('backwardCached'), cached, `${what}: aligned ran ${vec.names.join(', ')}`);
          assert.ok(!scalar.names.some((n) => n.endsWith('Cached')), `${what}: misaligned ran ${scalar.names.join(', ')}`);
          for (const k of ['y', 'dx', 'dw', 'db'] as const) {
            // The double sums of 16-bit and f32 values come out the same in either order here; f64's
            // own last bits move with the order, so f64 is held to the op suite's tolerance (TOL).
            if (dtype !== 'f64' && EXACT) assertSameBits(`layerNorm ${k} ${what}`, vec[k], scalar[k]);
            else assert.ok(maxRelErr(vec[k].toList() as number[], scalar[k].toList() as number[]) <= TOL[dtype], `layerNorm ${k} ${what}`);
          }
        });
      }
    }
  });

  test('layer norm dw, db: sums over each 64-row chunk in row order, then over chunks in order, bit for bit (f32, f64)', () => {
    // The reference below repeats layernorm.cu's order in JS doubles (the emulation compiles with
    // -ffp-contract=off, so each product and sum rounds alone, as here): any change to that order
    // shows in the last bits. 600 rows: nine whole chunks and a part (more than one group of
    // kAhead = 8 loads in both kernels); the second backward adds into .grad.
    const rows = 600;
    const cols = 37;
    const per = 64;
    for (const dtype of ['f32', 'f64'] as DType[]) {
      tidy(() => {
        const x = noGrad(() => randn([rows, cols], { device: DEV }).mul(0.5).add(3).to(dtype));
        const g = noGrad(() => randn([rows, cols], { device: DEV }).to(dtype));
        const mean = zeros([rows], { dtype, device: DEV });
        const rstd = zeros([rows], { dtype, device: DEV });
        const y = zeros([rows, cols], { dtype, device: DEV });
        native.cuda.layerNormForward(dtype === 'f32' ? 0 : 1, x.id, x.offset, 0, 0, 0, 0, y.id, 0, mean.id, rstd.id, rows, cols, 1e-5);
        const [xs, gs] = [x, g].map((t) => t.toList()); // flat, row-major
        const [ms, rs] = [mean, rstd].map((t) => t.toList() as number[]);
        const round = dtype === 'f32' ? Math.fround : (v: number) => v;
        const want = (grad: boolean, j: number) => {
          let total = 0;
          for (let c0 = 0; c0 < rows; c0 += per) {
            let part = 0;
            for (let r = c0; r < Math.min(rows, c0 + per); r++) part += grad ? gs[r * cols + j] * ((xs[r * cols + j] - ms[r]) * rs[r]) : gs[r * cols + j];
            total += part;
          }
          return total;
        };
        const w = zeros([cols], { dtype, device: DEV }).add(1).requiresGrad_(true);
        const b = zeros([cols], { dtype, device: DEV }).requiresGrad_(true);
        layerNorm(x, cols, w, b).backward(g);
        const dw1 = (w.grad as Tensor).toList() as number[];
        const db1 = (b.grad as Tensor).toList() as number[];
        layerNorm(x, cols, w, b).backward(g);
        const dw2 = (w.grad as Tensor).toList() as number[];
        const db2 = (b.grad as Tensor).toList() as number[];
        const wants = Array.from({ length: cols }, (_, j) => [want(true, j), want(false, j)]);
        if (!EXACT) {
          const close = (got: number[], k: 0 | 1, scale: number) => maxRelErr(got, wants.map((v) => scale * v[k])) <= TOL[dtype];
          assert.ok(close(dw1, 0, 1) && close(db1, 1, 1) && close(dw2, 0, 2) && close(db2, 1, 2), `${dtype}: dw, db within ${TOL[dtype]}`);
          return;
        }
        for (let j = 0; j < cols; j++) {
          const [sw, sb] = wants[j];
          assert.ok(Object.is(dw1[j], round(sw)) && Object.is(db1[j], round(sb)), `${dtype} column ${j}: dw ${dw1[j]} vs ${round(sw)}, db ${db1[j]} vs ${round(sb)}`);
          assert.ok(Object.is(dw2[j], round(sw + dw1[j])) && Object.is(db2[j], round(sb + db1[j])), `${dtype} column ${j}: added into .grad`);
        }
      });
    }
  });
}

test.run();
