/**
 * The plain (non-ZeRO) pipeline's optimizer step with a gradient multiplier (1/lossScale × clip
 * factor): a fused Optimizer applies it in f32 as its kernel reads the gradients, so 16-bit
 * gradients are never unscaled in their own dtype; any other optimizer object (it only has
 * `step()`) gets the gradients multiplied in place first, as it cannot take the factor.
 */
import { noGrad } from '../autograd/grad_mode.ts';
import { scaleInPlace } from '../optim/clip_grad.ts';
import { Optimizer } from '../optim/optimizer.ts';
import type { Tensor } from '../tensor/tensor.ts';

/**
 * One optimizer step over gradients to be multiplied by `gradScale`.
 * @example
 * const r = checkPipelineGrads(module, scaler, clip, dp, tp);
 * if (r.ok) stepWithGradScale(optimizer, module.parameters(), r.gradScale);
 */
export function stepWithGradScale(optimizer: { step(): void }, params: readonly Tensor[], gradScale: number): void {
  if (optimizer instanceof Optimizer) {
    optimizer.step({ gradScale });
    return;
  }
  if (gradScale !== 1) noGrad(() => {
    for (const p of params) if (p.grad && !p.grad.disposed) scaleInPlace(p.grad, gradScale);
  });
  optimizer.step();
}
