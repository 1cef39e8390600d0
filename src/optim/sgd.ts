/** Stochastic gradient descent with momentum, dampening, Nesterov and weight decay, as torch.optim.SGD. */
import { checkBool, checkRange } from './checks.ts';
import { NONE, sgdStep } from './fused.ts';
import type { ScalarSlots } from './graph_step.ts';
import { Optimizer, type ParamGroup, type ParamsInput, type Run, type RunState } from './optimizer.ts';
import { sgdMulti, sgdMultiApplies } from './sgd_multi.ts';

export interface SGDOptions {
  /** Learning rate (default 1e-3). */
  lr: number;
  /** Momentum factor (default 0: no momentum buffer). */
  momentum: number;
  /** Dampening of the gradient added to the momentum buffer (default 0). */
  dampening: number;
  /** L2 penalty added to the gradient: g + weightDecay * p (default 0). */
  weightDecay: number;
  /** Nesterov momentum; needs momentum > 0 and dampening 0 (default false). */
  nesterov: boolean;
  /** Ascend instead of descend (default false). */
  maximize: boolean;
}

const DEFAULTS: SGDOptions = { lr: 1e-3, momentum: 0, dampening: 0, weightDecay: 0, nesterov: false, maximize: false };

/**
 * SGD with PyTorch's semantics, one fused native pass per parameter (or per flat run; on a CUDA
 * device many parameters per launch, sgd_multi.ts):
 * `g = grad + weightDecay * p`; with momentum, `buf = g` on a parameter's first step, then
 * `buf = momentum * buf + (1 - dampening) * g`, and `g = nesterov ? g + momentum * buf : buf`;
 * finally `p -= lr * g`. The momentum buffer lives in flat buffers tagged `optim`.
 * @example
 * const opt = new SGD(model.parameters(), { lr: 0.1, momentum: 0.9, weightDecay: 5e-4 });
 * loss.backward();
 * opt.step();
 * opt.zeroGrad();
 */
export class SGD extends Optimizer<SGDOptions> {
  constructor(params: ParamsInput<SGDOptions>, opts: Partial<SGDOptions> = {}) {
    super('SGD', params, DEFAULTS, opts, ['momentumBuffer']);
  }

  protected checkHyper(h: SGDOptions, where: string): void {
    checkRange(h.lr, 'lr', where, 0);
    checkRange(h.momentum, 'momentum', where, 0);
    checkRange(h.dampening, 'dampening', where, Number.NEGATIVE_INFINITY);
    checkRange(h.weightDecay, 'weightDecay', where, 0);
    checkBool(h.nesterov, 'nesterov', where);
    checkBool(h.maximize, 'maximize', where);
    if (h.nesterov && (h.momentum <= 0 || h.dampening !== 0)) {
      throw new Error(`${where}: Nesterov momentum needs momentum > 0 and dampening 0 (got momentum ${h.momentum}, dampening ${h.dampening})`);
    }
  }

  protected activeState(group: ParamGroup<SGDOptions>): readonly string[] {
    return group.momentum !== 0 ? ['momentumBuffer'] : [];
  }

  protected update(group: ParamGroup<SGDOptions>, run: Run, state: RunState): void {
    const useBuf = group.momentum !== 0;
    const buf = useBuf ? state.ref('momentumBuffer') : NONE;
    sgdStep(run.param, run.grad, state.dtype, buf, run.master, run.n, { ...group, gradScale: this.gradScale }, useBuf && run.fresh('momentumBuffer'));
  }

  /** On a CUDA device, many runs per launch (sgd_multi.ts; always in a CUDA graph); elsewhere one call per run. */
  protected override updateRuns(group: ParamGroup<SGDOptions>, runs: { run: Run; state: RunState }[], slots: ScalarSlots | null): void {
    if (slots !== null || sgdMultiApplies(runs)) sgdMulti(runs, { ...group, gradScale: this.gradScale }, slots);
    else super.updateRuns(group, runs, null);
  }
}
