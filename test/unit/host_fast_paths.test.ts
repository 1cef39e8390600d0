/**
 * The host-cost fast paths of the tensor core, each against the general code it short-cuts, where
 * a mistake would go unnoticed otherwise: isDense's sort-free chain, copyInto's flat copy of two
 * contiguous tensors, the cached device codes, the innermost-scope pointer of tidy (after a throw),
 * and the backward pass's doubled leaf counts (a gradient-ready hook fires once, after the last use).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { add, mul, native, noGrad, randn, sum, type Tensor, tensor, tidy, zeros } from '../../src/index.ts';
import { copyInto } from '../../src/ops/kernels.ts';
import { kernelsOn } from '../../src/tensor/backend.ts';
import { isContiguous, isDense } from '../../src/tensor/shape.ts';
import { deviceCode, liveStorages } from '../../src/tensor/storage.ts';

/** isDense as it was written before the chain: contiguous, else sort the non-1 dims by stride and check from the smallest. */
function isDenseBySort(shape: readonly number[], strides: readonly number[]): boolean {
  if (isContiguous(shape, strides)) return true;
  const order = shape.map((_, i) => i).filter((i) => shape[i] !== 1);
  order.sort((a, b) => strides[b] - strides[a]);
  let acc = 1;
  for (let k = order.length - 1; k >= 0; k--) {
    if (strides[order[k]] !== acc) return false;
    acc *= shape[order[k]];
  }
  return true;
}

/** copyInto's runs as computed before the insertion sort: [src strides, dst strides, shape]. */
function mergedRuns(src: Tensor, dst: Tensor): number[][] {
  const dims = dst.shape.map((_, i) => i).filter((i) => dst.shape[i] !== 1);
  dims.sort((a, b) => dst.strides[b] - dst.strides[a] || src.strides[b] - src.strides[a]);
  const shape: number[] = [];
  const ss: number[] = [];
  const ds: number[] = [];
  for (const i of dims) {
    const k = shape.length - 1;
    const n = dst.shape[i];
    if (k >= 0 && ds[k] === dst.strides[i] * n && ss[k] === src.strides[i] * n) {
      shape[k] *= n;
      ds[k] = dst.strides[i];
      ss[k] = src.strides[i];
    } else {
      shape.push(n);
      ss.push(src.strides[i]);
      ds.push(dst.strides[i]);
    }
  }
  return [ss, ds, shape];
}

/** A small deterministic generator (xorshift), so a failure names a reproducible case. */
function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 2 ** 32;
  };
}

test('isDense agrees with the sorting definition on 20000 layouts (permutations, gaps, ties, size 0 and 1)', () => {
  const r = rng(7);
  const pick = <T>(xs: readonly T[]) => xs[Math.floor(r() * xs.length)];
  let dense = 0;
  for (let c = 0; c < 20000; c++) {
    const nd = Math.floor(r() * 7);
    const shape = Array.from({ length: nd }, () => pick([1, 1, 2, 3, 4, 5, 0]));
    // A dense layout in a random dim order, then sometimes spoiled: a gap, a tie, a size-1 dim's stride.
    const order = shape.map((_, i) => i).sort(() => r() - 0.5);
    const strides = new Array<number>(nd).fill(0);
    let acc = 1;
    for (let k = order.length - 1; k >= 0; k--) {
      strides[order[k]] = acc;
      acc *= shape[order[k]];
    }
    const spoil = r();
    if (nd > 0 && spoil < 0.2) strides[Math.floor(r() * nd)] *= 2;
    else if (nd > 1 && spoil < 0.35) strides[0] = strides[1];
    else if (nd > 0 && spoil < 0.5) strides[Math.floor(r() * nd)] = pick([0, 7, 99]);
    const want = isDenseBySort(shape, strides);
    assert.is(isDense(shape, strides), want, `shape [${shape}] strides [${strides}]`);
    if (want) dense++;
  }
  assert.ok(dense > 5000 && dense < 18000, `both answers are exercised (${dense} dense)`);
});

test('copyInto of contiguous tensors (the flat fast path) matches the strided copy, across dtypes and size-1 strides', () => {
  tidy(() => {
    const x = noGrad(() => randn([2, 1, 3, 4]));
    const want = x.toList();
    for (const dtype of ['f32', 'f64', 'bf16'] as const) {
      // A destination whose size-1 dim has an odd stride is still contiguous.
      const flat = zeros([24], { dtype });
      const dst = flat.alias([2, 1, 3, 4], [12, 99, 4, 1], 0);
      copyInto(x, dst);
      const back = zeros([2, 1, 3, 4]);
      copyInto(dst, back);
      const tol = dtype === 'bf16' ? 1e-2 : 0;
      back.toList().forEach((v, i) => assert.ok(Math.abs(v - want[i]) <= tol * Math.abs(want[i]), `${dtype} element ${i}`));
      // A non-contiguous source still takes the strided path and lands in order.
      const t = zeros([4, 3, 1, 2]);
      copyInto(x.permute([3, 2, 1, 0]), t);
      assert.equal(t.toList(), x.permute([3, 2, 1, 0]).contiguous().toList());
    }
    const one = zeros([1]);
    copyInto(tensor([5]), one);
    assert.equal(one.toList(), [5], 'one element (not the fast path)');
  });
});

test('copyInto between random permuted and narrowed layouts lands every element where the index arithmetic says', () => {
  const r = rng(11);
  for (let c = 0; c < 60; c++) {
    tidy(() => {
      const nd = 1 + Math.floor(r() * 4);
      const full = Array.from({ length: nd }, () => 1 + Math.floor(r() * 4));
      const base = tensor(Array.from({ length: full.reduce((a, b) => a * b, 1) }, (_, i) => i));
      // The source: a permuted view of base, sometimes narrowed in one dim.
      const perm = full.map((_, i) => i).sort(() => r() - 0.5);
      let src = base.view(full).permute(perm);
      const d = Math.floor(r() * nd);
      if (src.shape[d] > 1 && r() < 0.5) src = src.narrow(d, 1, src.shape[d] - 1);
      // The destination: dense in another random dim order (channels-last-like), ties of size 1 included.
      const order = src.shape.map((_, i) => i).sort(() => r() - 0.5);
      const strides = new Array<number>(nd).fill(0);
      let acc = 1;
      for (let k = order.length - 1; k >= 0; k--) {
        strides[order[k]] = acc;
        acc *= src.shape[order[k]];
      }
      const flat = zeros([acc]);
      const dst = flat.alias(src.shape, strides, 0);
      const calls: unknown[][] = [];
      const saved = native.copyStrided;
      native.copyStrided = (...a: unknown[]) => {
        // Lists may arrive in reused Float64Arrays (src/ops/int_args.ts): copied as they were.
        calls.push(a.map((x) => (x instanceof Float64Array ? Array.from(x) : x)));
        return saved(...(a as Parameters<typeof saved>));
      };
      try {
        copyInto(src, dst);
      } finally {
        native.copyStrided = saved;
      }
      // The runs handed to the kernel are the ones the sorting code made.
      assert.equal(calls.length, 1);
      assert.equal(calls[0].slice(3, 4).concat(calls[0].slice(7)), mergedRuns(src, dst), `runs for shape [${src.shape}]`);
      const got = flat.toList();
      const idx = new Array<number>(nd).fill(0);
      for (let e = 0; e < acc; e++) {
        let so = src.offset;
        let doff = 0;
        for (let i = 0; i < nd; i++) {
          so += idx[i] * src.strides[i];
          doff += idx[i] * strides[i];
        }
        assert.is(got[doff], so, `shape [${src.shape}] src strides [${src.strides}] dst strides [${strides}] at [${idx}]`);
        for (let i = nd - 1; i >= 0; i--) {
          if (++idx[i] < src.shape[i]) break;
          idx[i] = 0;
        }
      }
    });
  }
});

test("the CUDA kernel table reads native.cuda at each access (swapped kernels are seen) and names a missing op", () => {
  const kern = kernelsOn('cuda:0') as unknown as Record<string, unknown>;
  const table = native.cuda as Record<string, unknown> | undefined;
  const throwsNaming = (name: string) => {
    const f = kern[name] as () => void;
    assert.type(f, 'function');
    assert.throws(f, table ? new RegExp(`^${name}: no CUDA kernel yet`) : new RegExp(`^${name}: this addon was built without CUDA`));
  };
  throwsNaming('noSuchKernelEver');
  throwsNaming('noSuchKernelEver'); // the stand-in is made once, and still throws
  if (!table) return;
  const name = 'binaryFlat';
  const saved = table[name];
  assert.is(kern[name], saved);
  const swapped = () => 'swapped';
  try {
    table[name] = swapped;
    assert.is(kern[name], swapped);
    table[name] = undefined;
    throwsNaming(name);
  } finally {
    table[name] = saved;
  }
  assert.is(kern[name], saved);
  // A name the addon gains later reaches the fallback, which reads the table too.
  try {
    table.lateKernel = swapped;
    assert.is(kern.lateKernel, swapped);
  } finally {
    delete table.lateKernel;
  }
  throwsNaming('lateKernel');
});

test('device codes are cached by name and stay what the addon expects', () => {
  for (let k = 0; k < 2; k++) {
    assert.is(deviceCode('cpu'), 0);
    assert.is(deviceCode('cuda:0'), 1);
    assert.is(deviceCode('cuda:7'), 8);
  }
});

test('after a throw in an inner tidy, new tensors are tracked by the outer scope again', () => {
  const before = liveStorages();
  let kept: Tensor | null = null;
  tidy(() => {
    try {
      tidy(() => {
        zeros([2]);
        throw new Error('inner');
      });
    } catch {
      // the inner scope freed its tensor
    }
    zeros([3]); // must belong to the outer scope, not to the popped inner one
    kept = zeros([1]);
    return kept;
  });
  assert.is(liveStorages(), before + 1, 'only the returned tensor survives');
  (kept as Tensor | null)?.dispose();
  assert.is(liveStorages(), before);
});

test('a leaf used three times gets one gradient-ready call, after its last use, with the summed gradient', () => {
  const w = tensor([2, 3], { requiresGrad: true });
  const other = tensor([1, 1], { requiresGrad: true });
  const seen: number[][] = [];
  w.gradReadyHooks.push((t) => seen.push((t.grad as Tensor).toList()));
  let otherCalls = 0;
  other.gradReadyHooks.push(() => otherCalls++);
  tidy(() => {
    const y = add(add(mul(w, w), w), mul(w, other)); // dy/dw = 2w + 1 + other
    sum(y).backward();
  });
  assert.equal(seen, [[6, 8]]);
  assert.is(otherCalls, 1);
  w.dispose();
  other.dispose();
});

test.run();
