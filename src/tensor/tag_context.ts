/** The memory tag given to tensors that ops create; autograd and optimizers switch it. */
import type { MemoryTag } from './storage.ts';

let current: MemoryTag = 'activation';

export function defaultTag(): MemoryTag {
  return current;
}

/**
 * Runs `fn` with new tensors tagged `tag` unless they say otherwise.
 * @example
 * const m = withTag('optim', () => zeros([n]));
 */
export function withTag<T>(tag: MemoryTag, fn: () => T): T {
  const prev = current;
  current = tag;
  try {
    return fn();
  } finally {
    current = prev;
  }
}
