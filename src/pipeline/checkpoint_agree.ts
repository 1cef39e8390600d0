/**
 * The all-rank agreement before a pipeline checkpoint changes any state: each rank has read and
 * verified its part (or failed); one all-reduce over the world tells every rank whether any
 * failed, so a torn file or a missing tensor fails on every rank instead of leaving some loaded
 * and the rest hung in the next collective.
 */
import type { ProcessGroup } from '../dist/process_group.ts';
import { tensor } from '../ops/create.ts';

/**
 * Throws this rank's error, or one saying how many other ranks failed; returns when none did.
 * @example
 * let error: unknown = null;
 * try { plan = read(); } catch (e) { error = e; }
 * agreeToLoad(world, error);       // every rank, before changing state
 */
export function agreeToLoad(world: ProcessGroup, error: unknown): void {
  const flag = tensor([error ? 1 : 0], { dtype: 'f64', tag: 'comm' });
  try {
    if (world.size > 1) world.allReduce(flag, 'sum');
    const failed = flag.item();
    if (error) throw error;
    if (failed > 0) throw new Error(`loadCheckpoint: ${failed} other rank(s) could not read the pipeline checkpoint (see their errors); nothing was loaded`);
  } finally {
    flag.dispose();
  }
}
