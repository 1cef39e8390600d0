/**
 * Closeness at a scaled bound: each element within `ulp` relative of its own value plus `slack`
 * times the largest |value| (a result that is a sum may cancel, so one rounding of each addend is
 * an absolute error at the addends' scale).
 * @example
 * near('y', got, want, 2 ** -7, 2 ** -8);       // the worst element's error x its bound, <= 1
 * closeScaled('x.grad', got, want, 0, 0);        // ulp 0: equal
 */
import * as assert from 'uvu/assert';

/** The largest |got - want| over ulp * |want| + slack * max|want| (<= 1 passes). */
export function worst(got: ArrayLike<number>, want: ArrayLike<number>, ulp: number, slack: number): number {
  let scale = 0;
  for (let i = 0; i < want.length; i++) scale = Math.max(scale, Math.abs(want[i]));
  let w = 0;
  for (let i = 0; i < want.length; i++) w = Math.max(w, Math.abs(got[i] - want[i]) / (ulp * Math.abs(want[i]) + slack * scale + 1e-300));
  return w;
}

/** Asserts worst(...) <= 1 and equal lengths. */
export function near(label: string, got: ArrayLike<number>, want: ArrayLike<number>, ulp: number, slack: number): void {
  assert.is(got.length, want.length, `${label}: lengths`);
  const r = worst(got, want, ulp, slack);
  assert.ok(r <= 1, `${label}: error ${r.toFixed(3)} x the bound (${ulp} relative + ${slack} of the largest)`);
}

/** `near`, except that ulp 0 asks for equality (f64 and exact paths). */
export function closeScaled(label: string, got: number[], want: number[], ulp: number, slack: number): void {
  if (ulp === 0) {
    assert.equal(got, want, label);
    return;
  }
  near(label, got, want, ulp, slack);
}
