/**
 * bf16/f16 rounding in f64 arithmetic, for references that round once: `round16(v, dtype)` is v
 * rounded to nearest-even in the dtype (subnormals included, no overflow handling: test values
 * are small), and `ulps(a, b, dtype)` counts the dtype's representable values between two of
 * them (0 = bit for bit, +0 and -0 equal).
 * @example
 * round16(1 + 2 ** -9, 'bf16'); // 1 (a tie, to even)
 * ulps(1, 1 + 2 ** -7, 'bf16'); // 1
 */

/** Significant bits and the smallest normal exponent of each 16-bit float. */
const FORMAT = { bf16: { bits: 8, emin: -126 }, f16: { bits: 11, emin: -14 } } as const;

export type Float16 = keyof typeof FORMAT;

/** The exponent e with 2^e <= |v| < 2^(e+1), for v != 0 (log2 alone can be off by one at powers of two). */
function exponent(a: number): number {
  let e = Math.floor(Math.log2(a));
  while (2 ** e > a) e--;
  while (2 ** (e + 1) <= a) e++;
  return e;
}

/** v rounded to nearest-even in `dtype`. */
export function round16(v: number, dtype: Float16): number {
  const { bits, emin } = FORMAT[dtype];
  if (v === 0 || !Number.isFinite(v)) return v;
  const q = 2 ** (Math.max(exponent(Math.abs(v)), emin) - bits + 1); // the spacing at v
  const r = v / q;
  const f = Math.floor(r);
  const d = r - f;
  return (d > 0.5 || (d === 0.5 && f % 2 !== 0) ? f + 1 : f) * q;
}

/** The position of a `dtype` value among the dtype's values (0 at zero, negative below). */
function position(v: number, dtype: Float16): number {
  const { bits, emin } = FORMAT[dtype];
  const a = Math.abs(v);
  if (a === 0) return 0;
  const step = 2 ** (bits - 1);
  const e = exponent(a);
  const n = e < emin ? a / 2 ** (emin - bits + 1) : (e - emin + 1) * step + (a / 2 ** e - 1) * step;
  return v < 0 ? -n : n;
}

/** How many `dtype` values apart two `dtype` values are. */
export function ulps(a: number, b: number, dtype: Float16): number {
  return Math.abs(position(a, dtype) - position(b, dtype));
}
