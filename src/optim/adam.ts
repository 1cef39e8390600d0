/** Adam (L2 weight decay in the gradient) and AdamW (decoupled weight decay), as torch.optim. */

import { adamMulti, adamMultiApplies } from './adam_multi.ts';
import { checkBool, checkRange } from './checks.ts';
import { type AdamScalars, adamStep } from './fused.ts';
import type { ScalarSlots } from './graph_step.ts';
import { Optimizer, type ParamGroup, type ParamsInput, type Run, type RunState } from './optimizer.ts';

export interface AdamOptions {
  /** Learning rate (default 1e-3). */
  lr: number;
  /** Decay rates of the first and second moment averages (default [0.9, 0.999]). */
  betas: [number, number];
  /** Added to the denominator outside the square root, as PyTorch (default 1e-8). */
  eps: number;
  /** Adam: L2 penalty added to the gradient; AdamW: decoupled decay `p *= 1 - lr * weightDecay`. */
  weightDecay: number;
  /** Ascend instead of descend (default false). */
  maximize: boolean;
}

function checkAdam(h: AdamOptions, where: string): void {
  checkRange(h.lr, 'lr', where, 0);
  if (!Array.isArray(h.betas) || h.betas.length !== 2) throw new Error(`${where}: betas must be [beta1, beta2], got ${JSON.stringify(h.betas)}`);
  checkRange(h.betas[0], 'betas[0]', where, 0, 1, true);
  checkRange(h.betas[1], 'betas[1]', where, 0, 1, true);
  checkRange(h.eps, 'eps', where, 0);
  checkRange(h.weightDecay, 'weightDecay', where, 0);
  checkBool(h.maximize, 'maximize', where);
}

/** Shared by Adam and AdamW: the same fused kernel, with or without decoupled decay. */
abstract class AdamBase extends Optimizer<AdamOptions> {
  protected abstract readonly decoupled: boolean;

  protected checkHyper(h: AdamOptions, where: string): void {
    checkAdam(h, where);
  }

  protected activeState(): readonly string[] {
    return ['expAvg', 'expAvgSq'];
  }

  private scalars(group: ParamGroup<AdamOptions>): AdamScalars {
    return {
      lr: group.lr, beta1: group.betas[0], beta2: group.betas[1], eps: group.eps,
      weightDecay: group.weightDecay, decoupled: this.decoupled, maximize: group.maximize, gradScale: this.gradScale,
    };
  }

  protected update(group: ParamGroup<AdamOptions>, run: Run, state: RunState): void {
    adamStep(run.param, run.grad, state.dtype, state.ref('expAvg'), state.ref('expAvgSq'), run.master, run.n, this.scalars(group), run.step);
  }

  /** On a CUDA device, many runs per launch (adam_multi.ts; always in a CUDA graph); elsewhere one call per run. */
  protected override updateRuns(group: ParamGroup<AdamOptions>, runs: { run: Run; state: RunState }[], slots: ScalarSlots | null): void {
    if (slots !== null || adamMultiApplies(runs)) adamMulti(runs, this.scalars(group), slots);
    else super.updateRuns(group, runs, null);
  }
}

/**
 * Adam as torch.optim.Adam (no amsgrad): `g = grad + weightDecay * p`; `m = b1*m + (1-b1)*g`;
 * `v = b2*v + (1-b2)*g²`; `p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps)`. One fused
 * native pass per parameter (or flat run); states `expAvg`, `expAvgSq` in flat buffers tagged `optim`.
 * @example
 * const opt = new Adam(model.parameters(), { lr: 3e-4 });
 */
export class Adam extends AdamBase {
  protected readonly decoupled = false;
  constructor(params: ParamsInput<AdamOptions>, opts: Partial<AdamOptions> = {}) {
    super('Adam', params, { lr: 1e-3, betas: [0.9, 0.999], eps: 1e-8, weightDecay: 0, maximize: false }, opts, ['expAvg', 'expAvgSq']);
  }
}

/**
 * AdamW as torch.optim.AdamW: the weight first decays, `p *= 1 - lr * weightDecay`, then the
 * Adam update runs on the plain gradient (default weightDecay 1e-2).
 * @example
 * const opt = new AdamW([
 *   { params: decayed, weightDecay: 0.1 },
 *   { params: norms, weightDecay: 0 },
 * ], { lr: 6e-4, betas: [0.9, 0.95] });
 */
export class AdamW extends AdamBase {
  protected readonly decoupled = true;
  constructor(params: ParamsInput<AdamOptions>, opts: Partial<AdamOptions> = {}) {
    super('AdamW', params, { lr: 1e-3, betas: [0.9, 0.999], eps: 1e-8, weightDecay: 1e-2, maximize: false }, opts, ['expAvg', 'expAvgSq']);
  }
}
