/**
 * Element-wise closeness for gradients that are sums: each element within `ulp` relative of its
 * own value plus `slack` times the largest |value| (a sum may cancel, so one rounding of each addend
 * is an absolute error at the addends' scale); ulp 0 asks for equality.
 * @example
 * closeScaled('x.grad', got, want, 2 ** -7, 2 ** -7);
 */
import * as assert from 'uvu/assert';

export function closeScaled(label: string, got: number[], want: number[], ulp: number, slack: number): void {
  if (ulp === 0) {
    assert.equal(got, want, label);
    return;
  }
  assert.is(got.length, want.length, `${label}: length`);
  let scale = 0;
  for (const v of want) scale = Math.max(scale, Math.abs(v));
  got.forEach((v, i) => assert.ok(Math.abs(v - want[i]) <= ulp * Math.abs(want[i]) + slack * scale, `${label}[${i}]: ${v} vs ${want[i]}`));
}
