/**
 * Runs `fn` with environment variables set (undefined: unset), putting back what they were after,
 * also when `fn` throws. For switches the addon or our code read at each call (MESHTRAIN_ATTENTION,
 * MESHTRAIN_CUDA_EMU_SCHEDULE, cuDNN plan switches, ...).
 *
 * @example
 * const y = withEnv({ MESHTRAIN_ATTENTION: 'fa2' }, () => scaledDotProductAttention(q, k, v));
 */
export function withEnv<T>(vars: Record<string, string | undefined>, fn: () => T): T {
  const saved = Object.fromEntries(Object.keys(vars).map((k) => [k, process.env[k]]));
  const set = (e: Record<string, string | undefined>) => {
    for (const [k, v] of Object.entries(e)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  };
  set(vars);
  try {
    return fn();
  } finally {
    set(saved);
  }
}
