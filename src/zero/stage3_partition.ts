/**
 * ZeRO stage 3's per-parameter partitioning, as pure arithmetic (no tensors): each parameter of
 * n elements is padded to N·s with s = ceil(n / N), and rank r owns its elements [r·s, (r+1)·s).
 * A rank's shards of all parameters of one dtype are packed, in registration order, into one
 * flat partition buffer; a gradient bucket lays shards out rank-major so that one
 * reduce-scatter hands every rank the shards it owns.
 */

/** One parameter's shard on one rank, and where it sits in that rank's partition buffer. */
export interface ParamShard {
  name: string;
  numel: number;
  /** Elements per rank: ceil(numel / world). */
  size: number;
  /** numel padded to world · size. */
  padded: number;
  /** First element of this rank's shard in the parameter's flattened values: rank · size. */
  paramStart: number;
  /** Elements of this rank's shard that are real values, not padding (0 ≤ valid ≤ size). */
  valid: number;
  /** Offset of the shard in this rank's partition buffer. */
  offset: number;
}

/** One rank's partition buffer of one dtype: the shards of every parameter, packed. */
export interface Stage3Partition {
  /** Elements of the partition buffer (the sum of the shard sizes). */
  numel: number;
  shards: ParamShard[];
}

function checkInt(v: number, what: string, min: number): void {
  if (!Number.isSafeInteger(v) || v < min) throw new Error(`ZeRO stage 3: ${what} must be an integer ≥ ${min}, got ${v}`);
}

/** Rank `rank`'s shard of one parameter of `numel` elements over `world` ranks (offset 0). */
export function paramShard(name: string, numel: number, world: number, rank: number): ParamShard {
  checkInt(numel, `numel of "${name}"`, 0);
  checkInt(world, 'world', 1);
  if (!Number.isSafeInteger(rank) || rank < 0 || rank >= world) throw new Error(`ZeRO stage 3: rank ${rank} is not in 0..${world - 1}`);
  const size = Math.ceil(numel / world);
  const paramStart = rank * size;
  const valid = Math.max(0, Math.min(size, numel - paramStart));
  return { name, numel, size, padded: size * world, paramStart, valid, offset: 0 };
}

/** The partition buffer of `rank`: every parameter's shard, packed in the order given. */
export function planPartition(params: readonly { name: string; numel: number }[], world: number, rank: number): Stage3Partition {
  let at = 0;
  const shards = params.map(({ name, numel }) => {
    const s = paramShard(name, numel, world, rank);
    s.offset = at;
    at += s.size;
    return s;
  });
  return { numel: at, shards };
}

/**
 * Where a parameter's gradient goes in a rank-major bucket of `world` segments of `stride`
 * elements, the shard sizes before it in the bucket summing to `at`: rank r's piece, elements
 * [r·size, min(numel, (r+1)·size)) of the gradient, lands at r·stride + at. Padding stays zero.
 */
export function bucketPieces(numel: number, size: number, world: number, stride: number, at: number): { rank: number; lo: number; hi: number; dst: number }[] {
  if (at + size > stride) throw new Error(`ZeRO stage 3: internal: a shard of ${size} at ${at} overflows a bucket stride of ${stride}`);
  const out: { rank: number; lo: number; hi: number; dst: number }[] = [];
  for (let r = 0; r < world; r++) {
    const lo = r * size;
    const hi = Math.min(numel, lo + size);
    if (hi > lo) out.push({ rank: r, lo, hi, dst: r * stride + at });
  }
  return out;
}
