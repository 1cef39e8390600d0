/**
 * Uniform samples are low + (high - low)·(1 - u) with ONE rounding of the product-sum (an explicit
 * fused multiply-add), whatever the build: before, the CPU contracted it at -O2 and not at -O1
 * (the emulated-device build), and the real GPU rounded twice, so an H200 draw differed from the
 * CPU's in the last bit for 38% of the f64 elements. The reference is an exact fma in BigInt; the
 * same draw with low 0, high 1 gives 1 - u exactly. Runs on the CPU and, where present, cuda:0.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { manualSeed, rand } from '../../src/index.ts';
import { deviceTest } from '../helpers/devices.ts';

/** x = m · 2^e with m an integer (finite x). */
function dyadic(x: number): { m: bigint; e: number } {
  const v = new DataView(new ArrayBuffer(8));
  v.setFloat64(0, x);
  const bits = v.getBigUint64(0);
  const sign = bits >> 63n ? -1n : 1n;
  const exp = Number((bits >> 52n) & 0x7ffn);
  const frac = bits & ((1n << 52n) - 1n);
  return exp === 0 ? { m: sign * frac, e: -1074 } : { m: sign * (frac | (1n << 52n)), e: exp - 1075 };
}

/** x·y + z rounded once to the nearest double (results in the normal range). */
function exactFma(x: number, y: number, z: number): number {
  const a = dyadic(x);
  const b = dyadic(y);
  const c = dyadic(z);
  const ep = a.e + b.e;
  const e = Math.min(ep, c.e);
  const sum = ((a.m * b.m) << BigInt(ep - e)) + (c.m << BigInt(c.e - e));
  return Number(sum) * 2 ** e; // Number(bigint) rounds to nearest; scaling by 2^e is exact here
}

deviceTest('rand: low + (high - low)·(1 - u) rounded once, on every build and device', (dev) => {
  for (const [low, high] of [[-2, 3], [0.1, 0.7], [-1e3, 1e-3]]) {
    manualSeed(77);
    const oneMinusU = rand([4001], { dtype: 'f64', device: dev }).toList();
    manualSeed(77);
    const got = rand([4001], { dtype: 'f64', device: dev, low, high }).toList();
    let twice = 0;
    for (let i = 0; i < got.length; i++) {
      const want = exactFma(high - low, oneMinusU[i], low);
      assert.is(got[i], want, `${dev} [${low}, ${high}) element ${i}: ${got[i]} != fma ${want}`);
      if (low + (high - low) * oneMinusU[i] !== want) twice++;
    }
    // The check can tell: rounding twice gives another value for many elements.
    assert.ok(twice > 100, `[${low}, ${high}): only ${twice} of 4001 elements tell one rounding from two`);
  }
});
test.run();
