/**
 * Closeness at a scaled bound: each element within `ulp` relative of its own value plus `slack`
 * times the largest |value| (a result that is a sum may cancel, so one rounding of each addend is
 * an absolute error at the addends' scale).
 * @example
 * near('y', got, want, 2 ** -7, 2 ** -8);       // the worst element's error x its bound, <= 1
 * closeScaled('x.grad', got, want, 0, 0);        // ulp 0: equal
 */
import * as assert from 'uvu/assert';

/**
 * The largest |got - want| over ulp * |want| + slack * max|want| (+ extra[i], each element's own
 * allowance where given) (<= 1 passes).
 */
export function worst(got: ArrayLike<number>, want: ArrayLike<number>, ulp: number, slack: number, extra?: ArrayLike<number>): number {
  let scale = 0;
  for (let i = 0; i < want.length; i++) scale = Math.max(scale, Math.abs(want[i]));
  let w = 0;
  for (let i = 0; i < want.length; i++) {
    const bound = ulp * Math.abs(want[i]) + slack * scale + (extra ? extra[i] : 0) + 1e-300;
    w = Math.max(w, Math.abs(got[i] - want[i]) / bound);
  }
  return w;
}

/** Asserts worst(...) <= 1 and equal lengths; `what` names any per-element allowance in the message. */
export function near(label: string, got: ArrayLike<number>, want: ArrayLike<number>, ulp: number, slack: number, extra?: ArrayLike<number>, what = ''): void {
  assert.is(got.length, want.length, `${label}: lengths`);
  const r = worst(got, want, ulp, slack, extra);
  assert.ok(r <= 1, `${label}: error ${r.toFixed(3)} x the bound (${ulp} relative + ${slack} of the largest${what})`);
}

/** `near`, except that ulp 0 asks for equality (f64 and exact paths). */
export function closeScaled(label: string, got: number[], want: number[], ulp: number, slack: number): void {
  if (ulp === 0) {
    assert.equal(got, want, label);
    return;
  }
  near(label, got, want, ulp, slack);
}
