import { withEnv } from './env.ts';

/**
 * Runs `fn` with MESHTRAIN_ATTENTION set to `family` (the addon reads it at every attention call:
 * unset or 'tc' the WMMA kernels, 'simt', 'fa2'), restoring the variable after.
 *
 * @example
 * const y = withAttentionFamily('fa2', () => scaledDotProductAttention(q, k, v, { causal: true }));
 */
export function withAttentionFamily<R>(family: string, fn: () => R): R {
  return withEnv({ MESHTRAIN_ATTENTION: family }, fn);
}
