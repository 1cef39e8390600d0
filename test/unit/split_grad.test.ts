/**
 * split()'s gradients meet in one buffer (src/ops/split_views.ts): each piece copies its gradient
 * into its region, regions no gradient reached are zeroed, and nothing is summed. Gradients equal
 * the analytic ones exactly (pieces used once, twice, not at all, through a non-leaf input, over
 * two passes with retainGraph), and on a device the backward of a split whose pieces all get
 * gradients queues no fill and no addition. Per device (CPU, and cuda:0 under MT_TEST_DEVICES).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { add, type CensusEntry, censusTotals, cudaCensus, formatCensus, mul, narrow, randn, split, sum, type Tensor } from '../../src/index.ts';
import { deviceTest } from '../helpers/devices.ts';

const arr = (t: { toArray(): unknown } | null | undefined) => Array.from((t?.toArray() ?? []) as Float32Array);

/** x [2, 3, 6] split in 3 along the last dim; the expected gradient puts coef[i] (or 0) in piece i's columns. */
function expected(coefs: (number[] | null)[]): number[] {
  const out: number[] = [];
  for (let r = 0; r < 6; r++) for (let p = 0; p < 3; p++) for (let c = 0; c < 2; c++) out.push(coefs[p]?.[r * 2 + c] ?? 0);
  return out;
}

deviceTest('pieces used once each, one twice, one not at all: exact gradients', (dev) => {
  const x = randn([2, 3, 6], { requiresGrad: true, device: dev });
  const a = randn([2, 3, 2], { device: dev });
  const b = randn([2, 3, 2], { device: dev });
  const [q, k, v] = split(x, 2, -1);
  add(sum(mul(q, a)), add(sum(mul(k, b)), sum(v))).backward();
  assert.equal(arr(x.grad), expected([arr(a), arr(b), new Array(12).fill(1)]));
  x.grad = null;
  const [q2, , v2] = split(x, 2, -1);
  add(sum(mul(q2, a)), add(sum(mul(q2, a)), sum(mul(v2, b)))).backward();
  assert.equal(arr(x.grad), expected([arr(a).map((t) => Math.fround(t + t)), null, arr(b)]));
  x.grad = null;
  const [, k3] = split(x, [2, 2, 2], 2);
  sum(mul(k3, b)).backward();
  assert.equal(arr(x.grad), expected([null, arr(b), null]));
});

deviceTest('through a non-leaf input, twice with retainGraph (accumulated)', (dev) => {
  const w = randn([2, 3, 6], { requiresGrad: true, device: dev });
  const s = randn([2, 3, 6], { device: dev });
  const a = randn([2, 3, 2], { device: dev });
  const [q, k] = split(mul(w, s), [2, 4], -1);
  const loss = add(sum(mul(q, a)), sum(k));
  loss.backward(undefined, { retainGraph: true });
  const sv = arr(s);
  const av = arr(a);
  const once = sv.map((v, i) => {
    const col = i % 6;
    return col < 2 ? Math.fround(av[Math.floor(i / 6) * 2 + col] * v) : v;
  });
  assert.equal(arr(w.grad), once);
  loss.backward();
  assert.equal(arr(w.grad), once.map((v) => Math.fround(v + v)));
});

deviceTest('on a device, a split into 3 pieces that all get gradients: 3 fills and 2 additions fewer than narrow() pieces', (dev) => {
  if (dev === 'cpu') return;
  const x = randn([4, 12], { requiresGrad: true, device: dev });
  const census = (pieces: (h: Tensor) => Tensor[]) => {
    x.grad = null; // both runs start without a gradient: the first is adopted, not added (grad_adopt.ts)
    const [q, k, v] = pieces(mul(x, x)); // non-leaf: the gradient reaching x's node is the gathered one
    const loss = add(sum(mul(q, q)), add(sum(mul(k, v)), sum(v)));
    return cudaCensus(() => loss.backward()).entries;
  };
  const viaSplit = census((h) => split(h, 4, 1));
  const viaNarrow = census((h) => [0, 4, 8].map((at) => narrow(h, 1, at, 4)));
  const zeroFills = (es: CensusEntry[]) => es.filter((e) => e.name.startsWith('fill') && e.label.endsWith('zeros')).length;
  assert.is(zeroFills(viaSplit), 0, formatCensus(viaSplit));
  assert.is(zeroFills(viaNarrow), 1, formatCensus(viaNarrow));
  assert.is(censusTotals(viaSplit).deviceOps, censusTotals(viaNarrow).deviceOps - 5, `${formatCensus(viaSplit)}\n${formatCensus(viaNarrow)}`);
});

test.run();
