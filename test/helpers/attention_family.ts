import { withEnv } from './env.ts';

/**
 * Runs `fn` with MESHTRAIN_ATTENTION set to `family` (the addon reads it at every attention call:
 * unset or 'fa2' the mma.sync kernels where they apply, 'tc' the WMMA ones, 'simt', 'cudnn'), restoring the
 * variable after.
 *
 * @example
 * const y = withAttentionFamily('fa2', () => scaledDotProductAttention(q, k, v, { causal: true }));
 */
export function withAttentionFamily<R>(family: string, fn: () => R): R {
  return withEnv({ MESHTRAIN_ATTENTION: family }, fn);
}

/**
 * Runs `fn` with MESHTRAIN_FA2_ROWS set to `rows` (query rows per warp of the fa2 forward, read at
 * every call: '16' the default, '32' two m16 tiles per warp where the head dim allows), restoring
 * the variable after.
 *
 * @example
 * const y = withFa2Rows('32', () => scaledDotProductAttention(q, k, v, { causal: true }));
 */
export function withFa2Rows<R>(rows: string, fn: () => R): R {
  return withEnv({ MESHTRAIN_FA2_ROWS: rows }, fn);
}

/**
 * Runs `fn` with MESHTRAIN_FA2_BWD_ROWS set to `rows` (query rows per warp of the fa2 backward's dQ
 * kernel: '16' the default, '32' at head dim 64), restoring the variable after.
 *
 * @example
 * withFa2BwdRows('32', () => loss.backward());
 */
export function withFa2BwdRows<R>(rows: string, fn: () => R): R {
  return withEnv({ MESHTRAIN_FA2_BWD_ROWS: rows }, fn);
}
