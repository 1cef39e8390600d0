/**
 * Broadcast binary ops whose operands are rows (native/cuda/elementwise.cu's binaryRows): each
 * operand dense or one row repeated over the leading dims, as GPT's token + position embedding add
 * ([B, T, C] + [T, C]) and a bias add ([.., C] + [C]). Values equal the CPU's bit for bit (add, sub,
 * mul, div: one IEEE operation per element, 16-bit types in f32 rounded once, on both), for f64, f32,
 * bf16 and f16; rows a multiple of the 16-byte vector (vector loads), rows that are not (element
 * loop), an operand one element off its storage's start (element loop), the broadcast operand first,
 * size-1 dims. Layouts that are not rows (a middle broadcast dim, a transposed operand) still run
 * binaryStrided, with the same values. The launch census names the kernel each case ran. Without a
 * device one SKIP line.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { add, cat, cudaCensus, cudaIsAvailable, type DType, div, mul, native, randn, sub, type Tensor, tidy, zeros } from '../../src/index.ts';
import { assertSameBits } from '../helpers/bits.ts';

const DEV = 'cuda:0';

/** x's values (contiguous) on the device, one element past its storage's start (off the 16-byte grid). */
const offGrid = (x: Tensor): Tensor => {
  const flat = cat([zeros([1], { dtype: x.dtype }), x.contiguous().reshape([x.numel])]).to(DEV);
  return flat.narrow(0, 1, x.numel).reshape([...x.shape]);
};

interface Case {
  name: string;
  a: number[];
  b: number[];
  kernel: 'binaryRows' | 'binaryStrided';
  /** How the CUDA operands are made from the CPU ones (a view one element in, a transpose). */
  prep?: (a: Tensor, b: Tensor) => [Tensor, Tensor];
}

const CASES: Case[] = [
  { name: 'GPT embeddings [B, T, C] + [T, C]', a: [3, 10, 24], b: [10, 24], kernel: 'binaryRows' },
  { name: 'bias [.., 12] + [12]', a: [5, 7, 12], b: [12], kernel: 'binaryRows' },
  { name: 'odd rows [4, 13] + [13]', a: [4, 13], b: [13], kernel: 'binaryRows' },
  { name: 'broadcast operand first [16] + [6, 16]', a: [16], b: [6, 16], kernel: 'binaryRows' },
  { name: 'size-1 dims [3, 1, 16] + [1, 1, 16]', a: [3, 1, 16], b: [1, 1, 16], kernel: 'binaryRows' },
  { name: 'middle broadcast dim [2, 3, 16] + [2, 1, 16]', a: [2, 3, 16], b: [2, 1, 16], kernel: 'binaryStrided' },
  { name: 'transposed operand [8, 16]ᵀ + [16]', a: [16, 8], b: [16], kernel: 'binaryStrided', prep: (a, b) => [a.transpose(0, 1), b] },
];

if (!cudaIsAvailable()) {
  test('binaryRows', () => {
    const info = native.deviceInfo();
    console.log(`SKIP test/unit/cuda_binary_rows: no usable CUDA device (${info.cudaCompiled ? info.cudaStatus : 'built without CUDA'})`);
  });
} else {
  for (const dtype of ['f64', 'f32', 'bf16', 'f16'] as DType[]) {
    test(`row-broadcast binary ops = the CPU bit for bit, ${dtype}`, () => {
      for (const c of CASES) {
        // Off the grid: a's layout becomes contiguous, so only for cases without a view of their own.
        for (const off of c.prep ? [false] : [false, true]) {
          tidy(() => {
            const name = `${c.name}${off ? ', a off the grid' : ''} ${dtype}`;
            const a = randn(c.a, { dtype });
            const b = randn(c.b, { dtype });
            const [pa, pb] = c.prep ? c.prep(a, b) : [a, b];
            const [ga, gb] = off ? [offGrid(a), b.to(DEV)] : c.prep ? c.prep(a.to(DEV), b.to(DEV)) : [a.to(DEV), b.to(DEV)];
            for (const [op, f] of [['add', add], ['sub', sub], ['mul', mul], ['div', div]] as const) {
              const { result, entries } = cudaCensus(() => f(ga, gb));
              const kernels = entries.filter((e) => e.kind === 'kernel').map((e) => e.name.replace(/<.*$/, ''));
              assert.equal(kernels, [c.kernel], `${name} ${op}: kernels`);
              assertSameBits(`${name} ${op}`, result, f(pa, pb));
            }
          });
        }
      }
    });
  }
}

test.run();
