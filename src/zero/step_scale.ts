/**
 * What a ZeRO stage's partition update multiplies the gradients by: `beforeUpdate`'s unscale
 * factor (mixed precision: 1/lossScale, the gradients stay scaled in their 16-bit dtype) times
 * the clip factor of the unscaled global norm. The fused kernel applies it in f32 as it reads the
 * gradient (DeepSpeed's combined scale), so no 16-bit gradient is multiplied in place.
 */
import { clipFactor } from '../optim/clip_grad.ts';
import type { GradSquares } from '../optim/grad_squares.ts';

/**
 * `verdict`: beforeUpdate's answer (false: skip, null returned; true: gradients as they are; a
 * number: the factor that unscales them). `squares`: the partitions' squares over the dp group
 * (present when clipping). `norm` is the global norm of the unscaled gradients (NaN without clipping).
 * @example
 * const s = stepScale(beforeUpdate?.(parts, squares) ?? true, squares, 1.0);
 * if (s) opt.step(param, grad, steps, s.gradScale);
 */
export function stepScale(
  verdict: boolean | number, squares: GradSquares | undefined, maxNorm: number,
): { gradScale: number; norm: number } | null {
  if (verdict === false) return null;
  const unscale = verdict === true ? 1 : verdict;
  if (!squares || maxNorm <= 0) return { gradScale: unscale, norm: Number.NaN };
  const norm = Math.sqrt(squares.global()) * Math.abs(unscale);
  return { gradScale: unscale * clipFactor(norm, maxNorm), norm };
}
