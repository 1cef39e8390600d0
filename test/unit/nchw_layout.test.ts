/**
 * The image ops' layout helpers (src/ops/nchw.ts), written without allocation for the per-op
 * path, against plain definitions: isChannelsLast over every stride pattern of small shapes
 * (size-1 dims ignored), sameLayout, and pair's accepted values and error message.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { noGrad, randn } from '../../src/index.ts';
import { channelsLastStrides, isChannelsLast, pair, sameLayout } from '../../src/ops/nchw.ts';

const contiguousStrides = (s: number[]) => [s[1] * s[2] * s[3], s[2] * s[3], s[3], 1];

/** The definition: each dim of size > 1 has the channels-last stride. */
function channelsLastRef(shape: number[], strides: number[]): boolean {
  if (shape.length !== 4) return false;
  const want = channelsLastStrides(shape);
  return shape.every((s, i) => s === 1 || strides[i] === want[i]);
}

test('isChannelsLast matches its definition for every small shape and stride pattern', () => {
  let n = 0;
  let yes = 0;
  for (const N of [1, 2]) {
    for (const C of [1, 3]) {
      for (const H of [1, 2]) {
        for (const W of [1, 4]) {
          const shape = [N, C, H, W];
          const patterns = [channelsLastStrides(shape), contiguousStrides(shape), [0, 0, 0, 0], [1, 1, 1, 1]];
          // Each channels-last stride perturbed in turn.
          for (let i = 0; i < 4; i++) patterns.push(channelsLastStrides(shape).map((s, j) => (j === i ? s + 1 : s)));
          for (const strides of patterns) {
            const got = isChannelsLast(shape, strides);
            assert.is(got, channelsLastRef(shape, strides), `[${shape}] strides [${strides}]`);
            n++;
            if (got) yes++;
          }
        }
      }
    }
  }
  assert.ok(n === 128 && yes > 16 && yes < n, `${yes} of ${n} channels-last`);
  assert.is(isChannelsLast([2, 3, 4], [12, 1, 3]), false, 'not 4-D');
});

test('sameLayout: same shape, same strides on dims of size > 1', () => {
  noGrad(() => {
    const a = randn([2, 3, 4, 5]);
    const cl = a.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2]);
    assert.ok(sameLayout(a, randn([2, 3, 4, 5])));
    assert.not.ok(sameLayout(a, cl));
    assert.not.ok(sameLayout(a, randn([2, 3, 4, 6])));
    assert.not.ok(sameLayout(a, randn([2, 3, 20])));
    // Size-1 dims: any stride.
    const b = randn([2, 1, 4, 5]);
    assert.ok(sameLayout(b, b.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])));
    for (const t of [a, cl, b]) t.dispose();
  });
});

test('pair: a number, a pair, or an error naming op, what and the value', () => {
  assert.equal(pair(3, 'conv2d', 'stride', 1), [3, 3]);
  assert.equal(pair([2, 1], 'conv2d', 'stride', 1), [2, 1]);
  assert.equal(pair([0, 0], 'conv2d', 'padding', 0), [0, 0]);
  assert.equal(pair(Int32Array.from([2, 3]) as unknown as number[], 'conv2d', 'stride', 1), [2, 3]);
  const msg = (v: string) => new RegExp(`^conv2d: stride must be an integer >= 1 or a pair of them, got ${v.replace(/[[\]]/g, '\\$&')}$`);
  for (const [v, shown] of [
    [0, '0'],
    [1.5, '1.5'],
    [[1], '[1]'],
    [[1, 2, 3], '[1,2,3]'],
    [[1, 0], '[1,0]'],
    [[1, '2'], '[1,"2"]'],
    ['22', '"22"'],
  ] as const) {
    assert.throws(() => pair(v as unknown as number, 'conv2d', 'stride', 1), (e: Error) => msg(shown).test(e.message));
  }
});

test.run();
