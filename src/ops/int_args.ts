/**
 * Integer lists (strides, shapes) for the native bindings as reused Float64Arrays: the addon reads
 * a typed array in one N-API call (argInts), where a JS array costs an element read per entry
 * (~0.1-0.2 µs each: 6 per matmul, 8 per conv, up to 21 per attention backward). The addon copies
 * a list before it returns and never calls back into JS meanwhile, so one buffer per (length,
 * slot) is reused call after call; a call passes each list in a slot of its own.
 *
 * @example
 * kern.matmul(code, a.id, a.off, intArg(0, a.s), b.id, b.off, intArg(1, b.s), ...);
 */

/** Slots per length: the most lists one binding call takes of one length. */
const SLOTS = 4;
/** Lengths served from buffers: longer lists (rare) get a fresh array. */
const MAX_LEN = 8;

const buffers: Float64Array[][] = Array.from({ length: MAX_LEN + 1 }, (_, n) => Array.from({ length: SLOTS }, () => new Float64Array(n)));

/**
 * `v` in the reused buffer of its length for `slot` (0 to 3); valid until the next call with the
 * same slot and length, so pass it straight to the binding.
 */
export function intArg(slot: number, v: readonly number[]): Float64Array {
  const n = v.length;
  if (n > MAX_LEN) return Float64Array.from(v);
  const b = buffers[n][slot];
  for (let i = 0; i < n; i++) b[i] = v[i];
  return b;
}
