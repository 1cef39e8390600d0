/**
 * intArg (src/ops/int_args.ts): integer lists for the bindings in reused Float64Arrays, one per
 * (length, slot), holding exactly the list; lists in different slots of one call never share a
 * buffer; long lists get a fresh array. And the addon reads such a list as it reads the JS array.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { matmul, noGrad, randn } from '../../src/index.ts';
import { intArg } from '../../src/ops/int_args.ts';

test('one buffer per length and slot, holding exactly the list', () => {
  const a = intArg(0, [6, 3, 1]);
  assert.equal([...a], [6, 3, 1]);
  const b = intArg(1, [0, 1, 7]);
  assert.is.not(a, b, 'two slots of one call');
  assert.equal([...a], [6, 3, 1], 'slot 1 leaves slot 0 alone');
  assert.is(intArg(0, [2, 2, 2]), a, 'slot 0 reused');
  assert.equal([...a], [2, 2, 2]);
  const four = intArg(0, [24, 1, 6, 2]);
  assert.is.not(four, a, 'lengths have buffers of their own');
  assert.is(four.length, 4);
  assert.is(intArg(0, []).length, 0);
  const long = [1, 2, 3, 4, 5, 6, 7, 8, 9];
  assert.is.not(intArg(0, long), intArg(0, long), 'long lists are fresh');
  assert.equal([...intArg(0, long)], long);
});

test('products through the reused stride buffers equal the reference, transposed operands included', () => {
  noGrad(() => {
    const a = randn([3, 5], { dtype: 'f64' });
    const b = randn([4, 5], { dtype: 'f64' });
    // Flat row-major values: y [3, 4], a [3, 5], b [4, 5].
    const y = matmul(a, b.transpose(0, 1)).toList() as number[];
    const A = a.toList() as number[];
    const B = b.toList() as number[];
    for (let i = 0; i < 3; i++) {
      for (let j = 0; j < 4; j++) {
        let want = 0;
        for (let kk = 0; kk < 5; kk++) want += A[i * 5 + kk] * B[j * 5 + kk];
        assert.ok(Math.abs(y[i * 4 + j] - want) <= 1e-12 * Math.max(1, Math.abs(want)), `[${i}, ${j}]`);
      }
    }
    for (const t of [a, b]) t.dispose();
  });
});

test.run();
