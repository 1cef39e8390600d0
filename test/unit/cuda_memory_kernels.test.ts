/**
 * The 16-byte paths of the memory-bound kernels (bench/gpu_memory_kernels.ts times them) give the
 * scalar paths' values bit for bit (layer norm on a GPU: within the op suite's TOL, see EXACT):
 * each case runs once with aligned operands (the vector kernel) and once with the same values in
 * views one element off alignment (the scalar kernel), the launch census naming which kernel ran,
 * over every float dtype, odd sizes and repeated ids. Layer norm's backward summation order is
 * test/unit/cuda_layernorm_onepass's.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { cat, cudaCensus, cudaIsAvailable, type DType, embedding, layerNorm, native, noGrad, randn, type Tensor, tensor, tidy } from '../../src/index.ts';
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

  test('layer norm forward and backward: the 16-byte kernels equal the scalar ones bit for bit', () => {
    // [rows, cols, dtypes]: whole vectors (up to 4 a lane: the N = 4 forward, the one-pass backward),
    // bf16 rows of 1024 (the one-pass backward's widest, a partial last block of 32 rows), the widest
    // rows cached (8 a lane: N = 8; the backward's wide-row kernels), a bf16 row one vector wider
    // (scalar kernels), columns never whole vectors.
    const shapes: [number, number, DType[]][] = [
      [37, 48, FLOATS],
      [33, 1024, ['bf16']],
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
            return { y: y as Tensor, dx: xl.grad as Tensor, dw: wl.grad as Tensor, db: bl.grad as Tensor, fwd, bwd };
          };
          const vec = run(x.detach());
          const scalar = run(misaligned(x));
          const whole = cols % VEC[dtype] === 0;
          const cached = whole && cols / VEC[dtype] <= 256;
          const onePass = cols <= (dtype === 'f64' ? 512 : 1024);
          const what = `${dtype} [${rows}, ${cols}]`;
          const ran = (k: { fwd: string[]; bwd: string[] }) => `ran ${[...k.fwd, ...k.bwd].join(', ')}`;
          assert.is(vec.fwd.includes('forwardCached'), cached, `${what}: aligned ${ran(vec)}`);
          assert.is(vec.bwd.includes('backwardOnePassVec'), onePass && whole, `${what}: aligned ${ran(vec)}`);
          assert.is(vec.bwd.includes('backwardCached'), !onePass && cached, `${what}: aligned ${ran(vec)}`);
          assert.is(scalar.bwd.includes('backwardOnePassScalar'), onePass, `${what}: misaligned ${ran(scalar)}`);
          assert.ok(![...scalar.fwd, ...scalar.bwd].some((n) => n.endsWith('Cached') || n.endsWith('Vec')), `${what}: misaligned ${ran(scalar)}`);
          for (const k of ['y', 'dx', 'dw', 'db'] as const) {
            // The double sums of 16-bit and f32 values come out the same in either order here; f64's
            // own last bits move with the order, so f64 is held to the op suite's tolerance (TOL).
            // dw and db take the rows in the same order in both kernels (layernorm_onepass.cu).
            if (dtype !== 'f64' && EXACT) assertSameBits(`layerNorm ${k} ${what}`, vec[k], scalar[k]);
            else assert.ok(maxRelErr(vec[k].toList() as number[], scalar[k].toList() as number[]) <= TOL[dtype], `layerNorm ${k} ${what}`);
          }
        });
      }
    }
  });
}

test.run();
