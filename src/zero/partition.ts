/**
 * Flat-buffer partitioning for ZeRO: the parameters of one dtype live in one flat buffer whose
 * length is padded up to a multiple of the dp size, and dp rank r owns the equal slice
 * [r * size, (r + 1) * size). These are pure functions of offsets and sizes (no tensors), so
 * the arithmetic is testable on its own.
 */

/** A parameter's place in the flat buffer: elements [start, end). */
export interface FlatSlot {
  name: string;
  start: number;
  end: number;
}

/** One rank's share of a flat buffer. */
export interface Partition {
  /** Elements in the flat buffer, padding included (a multiple of `world`). */
  padded: number;
  /** Elements per rank: padded / world. */
  size: number;
  rank: number;
  world: number;
  /** This rank's range [start, end) in the flat buffer. */
  start: number;
  end: number;
}

/** `numel` rounded up to a multiple of `world` (the padding is at most world - 1 elements). */
export function paddedNumel(numel: number, world: number): number {
  if (!Number.isSafeInteger(numel) || numel < 0) throw new Error(`paddedNumel: numel must be a non-negative integer, got ${numel}`);
  if (!Number.isSafeInteger(world) || world < 1) throw new Error(`paddedNumel: world must be a positive integer, got ${world}`);
  return Math.ceil(numel / world) * world;
}

/** Rank `rank`'s partition of a flat buffer of `numel` elements (before padding) over `world` ranks. */
export function partition(numel: number, world: number, rank: number): Partition {
  const padded = paddedNumel(numel, world);
  if (!Number.isSafeInteger(rank) || rank < 0 || rank >= world) throw new Error(`partition: rank ${rank} is not in 0..${world - 1}`);
  const size = padded / world;
  return { padded, size, rank, world, start: rank * size, end: (rank + 1) * size };
}

/** The part of a slot that falls into a range: flat elements [lo, hi). */
export interface SlotPiece {
  name: string;
  lo: number;
  hi: number;
  /** Offset of `lo` inside the parameter (element of its flattened values). */
  paramOffset: number;
}

/** The parameters (or their slices) that fall into [start, end), in buffer order. */
export function slotsInRange(slots: readonly FlatSlot[], start: number, end: number): SlotPiece[] {
  const out: SlotPiece[] = [];
  for (const s of slots) {
    const lo = Math.max(s.start, start);
    const hi = Math.min(s.end, end);
    if (lo < hi) out.push({ name: s.name, lo, hi, paramOffset: lo - s.start });
  }
  return out;
}

/** A piece of a flat range owned by one rank. */
export interface OwnedPiece {
  rank: number;
  lo: number;
  hi: number;
}

/** Splits the flat range [lo, hi) at partition boundaries of `size` elements: which rank owns which piece. */
export function owners(lo: number, hi: number, size: number): OwnedPiece[] {
  if (!(size > 0)) throw new Error(`owners: partition size must be positive, got ${size}`);
  const out: OwnedPiece[] = [];
  for (let a = lo; a < hi;) {
    const rank = Math.floor(a / size);
    const b = Math.min(hi, (rank + 1) * size);
    out.push({ rank, lo: a, hi: b });
    a = b;
  }
  return out;
}
