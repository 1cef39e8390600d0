/**
 * Integer-list arguments of the addon (native/util/args.h argInts) read a Float64Array, Int32Array
 * or BigInt64Array in one go as well as a plain array, with the same values: a strided CPU add
 * given its shape and strides each way gives the same bytes, another typed array is refused naming
 * the accepted ones, and on a CUDA device (real or emulated) adamMulti's refs as a Float64Array
 * update parameters and moments bit for bit as the plain array does.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { AdamW, cudaIsAvailable, manualSeed, native, randn, type Tensor, tensor } from '../../src/index.ts';

const shape = [2, 3];
const strides = [1, 2]; // a transposed [3, 2] buffer read as [2, 3]

function addWith(convert: (xs: number[]) => unknown): number[] {
  const a = tensor([1, 2, 3, 4, 5, 6]);
  const b = tensor([10, 20, 30, 40, 50, 60]);
  const out = tensor([0, 0, 0, 0, 0, 0]);
  const binary = native.binary as (...args: unknown[]) => void; // typed arrays where Native says number[]
  binary(0, 0, a.id, 0, convert(strides), b.id, 0, convert([3, 1]), out.id, 0, convert(shape));
  const v = Array.from(out.toArray() as Float32Array);
  for (const t of [a, b, out]) t.dispose();
  return v;
}

// An addon built before argInts read typed arrays refuses them as "must be an array": say so once.
const stale = (() => {
  try {
    addWith((xs) => Float64Array.from(xs));
    return false;
  } catch (e) {
    return /must be an array$/.test(String(e));
  }
})();

if (stale) {
  test('typed integer arguments', () => {
    console.log('SKIP test/unit/native_typed_ints: this addon predates typed-array integer arguments; rebuild it (npm run build)');
  });
} else {
  test('shapes and strides as arrays, Float64Array, Int32Array and BigInt64Array agree', () => {
    const plain = addWith((xs) => xs);
    assert.equal(plain, [11, 23, 35, 42, 54, 66]);
    assert.equal(addWith((xs) => Float64Array.from(xs)), plain);
    assert.equal(addWith((xs) => Int32Array.from(xs)), plain);
    assert.equal(addWith((xs) => BigInt64Array.from(xs.map(BigInt))), plain);
  });

  test('other typed arrays are refused, naming the accepted ones', () => {
    assert.throws(() => addWith((xs) => Float32Array.from(xs)), /Float64Array, Int32Array or BigInt64Array/);
  });

  if (cudaIsAvailable()) {
    test('adamMulti: refs as a Float64Array update bit for bit as a plain array', () => {
      const run = (typed: boolean): number[][] => {
        manualSeed(5);
        const params: Tensor[] = [7, 300, 33].map((n) => randn([n], { device: 'cuda:0' }).to('bf16').requiresGrad_(true));
        const opt = new AdamW(params, { lr: 1e-2, weightDecay: 0.1 });
        const saved = native.cuda.adamMultiTypedRefs;
        native.cuda.adamMultiTypedRefs = typed;
        try {
          for (let s = 0; s < 2; s++) {
            for (const p of params) p.grad = randn([...p.shape], { device: 'cuda:0' }).to('bf16');
            opt.step();
          }
        } finally {
          native.cuda.adamMultiTypedRefs = saved;
        }
        return params.map((p) => Array.from(p.to('f32').toArray() as Float32Array));
      };
      assert.equal(run(true), run(false));
    });
  }
}

test.run();
