/**
 * The collectives ZeRO stages 1 and 2 use: averaging gradients onto their owners (one
 * reduce-scatter of the full flat gradient in stage 1; per bucket, a reduce of each owner's
 * piece in stage 2) and the all-gather of the updated parameter partitions (the clipping norm's
 * all-reduce is src/optim/device_sums.ts). Every rank issues the same sequence.
 */
import type { ProcessGroup } from '../dist/process_group.ts';
import type { Work } from '../dist/work.ts';
import type { Tensor } from '../tensor/tensor.ts';
import { type OwnedPiece, owners } from './partition.ts';

/** A 1-D view of `numel` elements of `flat` from element `at` (relative to the tensor's offset). */
export function flatView(flat: Tensor, at: number, numel: number): Tensor {
  return flat.alias([numel], [1], flat.offset + at);
}

/** Stage 1: `part` (this rank's share) receives the group average of its slice of `full`. */
export function reduceScatterGrads(group: ProcessGroup, part: Tensor, full: Tensor): Work {
  return group.reduceScatter(part, full, 'avg', { async: true });
}

/**
 * Stage 2: a bucket holds the gradients of flat elements [lo, hi) at `buffer[0..)`; each piece
 * owned by one rank is averaged onto that rank with a reduce (the other ranks' copies are left
 * as they were). Returns this rank's piece (null when it owns none) and the works to wait for.
 */
export function reduceBucket(
  group: ProcessGroup, buffer: Tensor, lo: number, hi: number, partSize: number,
): { mine: OwnedPiece | null; works: Work[] } {
  let mine: OwnedPiece | null = null;
  const works: Work[] = [];
  for (const piece of owners(lo, hi, partSize)) {
    const view = flatView(buffer, piece.lo - lo, piece.hi - piece.lo);
    try {
      works.push(group.reduce(view, piece.rank, 'avg', { async: true }));
    } finally {
      view.dispose();        // the work holds the storage while it runs
    }
    if (piece.rank === group.rank) mine = piece;
  }
  return { mine, works };
}

/** Every rank's updated partition of `flat` (this rank's at `start`, `size` elements) gathered into `flat` in place. */
export function allGatherParams(group: ProcessGroup, flat: Tensor, start: number, size: number): Work {
  const mine = flatView(flat, start, size);
  try {
    return group.allGather(flat, mine, { async: true });
  } finally {
    mine.dispose();
  }
}
