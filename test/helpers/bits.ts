/** Bit-level comparisons of tensors for the tests that claim "bit for bit". */
import * as assert from 'uvu/assert';
import { native, type Tensor } from '../../src/index.ts';

const ITEM: Record<string, number> = { f64: 8, f32: 4, bf16: 2, f16: 2, i64: 8, i32: 4 };

/** The raw bytes of a contiguous tensor's elements (on any device). */
export function tensorBytes(t: Tensor): Buffer {
  const c = t.to('cpu');
  const item = ITEM[c.dtype] ?? 4;
  const b = Buffer.from(native.read(c.id, c.offset * item, c.numel * item));
  if (c !== t) c.dispose();
  return b;
}

/** Asserts that two tensors hold the same values bit for bit (NaN equals NaN, -0 differs from 0), naming the first difference. */
export function assertSameBits(what: string, got: Tensor, want: Tensor): void {
  const g = got.to('cpu').contiguous().toList() as number[];
  const w = want.to('cpu').contiguous().toList() as number[];
  const i = g.length === w.length ? g.findIndex((v, j) => !Object.is(v, w[j])) : 0;
  assert.is(i, -1, `${what}: element ${i} is ${g[i]}, want ${w[i]}`);
}

/**
 * Asserts that two arrays hold the same numbers (NaN equals NaN; -0 equals 0, the sign an exact zero
 * added to a sum may take either way), naming the first difference.
 */
export function assertSameNumbers(what: string, got: ArrayLike<number>, want: ArrayLike<number>): void {
  assert.is(got.length, want.length, `${what}: length`);
  for (let i = 0; i < want.length; i++) {
    if (got[i] === want[i] || (Number.isNaN(got[i]) && Number.isNaN(want[i]))) continue;
    assert.unreachable(`${what}: element ${i} is ${got[i]}, want ${want[i]}`);
  }
}
