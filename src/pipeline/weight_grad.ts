/**
 * Zero-bubble's split backward: B computes only input gradients, W the weight gradients later.
 * The autograd engine runs a node's whole backward at once, so the split is made where the
 * weight-gradient work is: every Linear (and `deferrableLinear`, e.g. a tied head) records its
 * op without the weight, and an identity node after it saves the input; in B that node queues
 * gW = gᵀx and gb = Σg for the W action. Other parameters (layer norms, embeddings) still get
 * their gradients in B: a small share of the FLOPs.
 */
import { isGradEnabled, noGrad } from '../autograd/grad_mode.ts';
import { Linear } from '../nn/linear.ts';
import type { Module, RemovableHandle } from '../nn/module.ts';
import { accumulateInto, record } from '../ops/autograd_support.ts';
import { linear, matmul } from '../ops/matmul.ts';
import { sum } from '../ops/reduce.ts';
import { reshape, transpose } from '../ops/view.ts';
import { tidy } from '../tensor/scope.ts';
import { withTag } from '../tensor/tag_context.ts';
import type { Tensor } from '../tensor/tensor.ts';

type Job = () => void;

/** While true, linears record without their weights (set by the stage runtime around F and B). */
let deferring = false;
/** Where B's weight-gradient jobs go (the micro-batch whose backward runs). */
let queue: Job[] | null = null;

/** Runs `fn` with weight gradients deferred, queuing the jobs that B produces into `jobs`. */
export function withDeferredWeightGrads<T>(jobs: Job[] | null, fn: () => T): T {
  const [d, q] = [deferring, queue];
  deferring = true;
  queue = jobs;
  try {
    return fn();
  } finally {
    deferring = d;
    queue = q;
  }
}

let jobsRun = 0;

/** Runs queued weight-gradient jobs (the W action), in the order B queued them. */
export function runWeightGrads(jobs: Job[]): void {
  for (const job of jobs.splice(0)) {
    job();
    jobsRun++;
  }
}

/** Weight-gradient jobs run by W actions in this process so far (tests: the split really happened). */
export function deferredWeightGradsRun(): number {
  return jobsRun;
}

/**
 * `linear(x, weight, bias)` whose weight gradient is deferred to the W action under a split
 * (ZB-H1) schedule; elsewhere the plain op. For layers that call `linear` directly, e.g. a tied head.
 * @example
 * new TiedLayerSpec('wte', Embedding, [V, C], { forwardFn: (m, x) => deferrableLinear(x, m.weight) });
 */
export function deferrableLinear(x: Tensor, weight: Tensor, bias: Tensor | null = null): Tensor {
  if (!deferring || !isGradEnabled() || !x.requiresGrad || !weight.requiresGrad) return linear(x, weight, bias);
  const params = [weight, bias].filter((p): p is Tensor => p?.requiresGrad === true);
  for (const p of params) p.requiresGrad = false;
  let out: Tensor;
  try {
    out = linear(x, weight, bias);
  } finally {
    for (const p of params) p.requiresGrad = true;
  }
  return deferWeightGrad(out, x, weight, bias?.requiresGrad ? bias : null);
}

/** Makes every Linear under `module` defer its weight gradient while deferring is on. */
export function installWeightGradDeferral(module: Module): RemovableHandle {
  const handles: RemovableHandle[] = [];
  for (const m of module.modules()) {
    if (!(m instanceof Linear)) continue;
    const lin = m;
    const saved = new WeakMap<unknown[], { params: Tensor[]; defer: (y: Tensor) => Tensor; activated: boolean; before: Linear['beforeActivation'] }>();
    handles.push(lin.registerForwardPreHook((_, args) => {
      const x = args[0] as Tensor;
      if (!deferring || !isGradEnabled() || !x?.requiresGrad) return undefined;
      const params = [lin.weight, lin.bias].filter((p): p is Tensor => p?.requiresGrad === true);
      for (const p of params) p.requiresGrad = false;
      const [w, b] = [params.includes(lin.weight) ? lin.weight : null, lin.bias && params.includes(lin.bias) ? lin.bias : null];
      const defer = (y: Tensor) => deferWeightGrad(y, x, w, b);
      // The weight gradient needs the gradient of the product itself: the deferral node goes between
      // the product and the activation, which stays fused (one rounding in bf16/f16, as without the split).
      const activated = lin.activation !== null;
      saved.set(args, { params, defer, activated, before: lin.beforeActivation });
      if (activated) lin.beforeActivation = defer;
      return undefined;
    }));
    handles.push(lin.registerForwardHook((_, args, out) => {
      const s = saved.get(args);
      if (!s) return undefined;
      saved.delete(args);
      for (const p of s.params) p.requiresGrad = true;
      if (!s.activated) return s.defer(out as Tensor);
      lin.beforeActivation = s.before;
      return undefined;
    }));
  }
  return { remove: () => { for (const h of handles) h.remove(); } };
}

/** An identity node after a linear recorded without its weight: its backward queues the weight gradient. */
function deferWeightGrad(out: Tensor, x: Tensor, weight: Tensor | null, bias: Tensor | null): Tensor {
  if (!weight && !bias) return out;
  return record('deferredWeightGrad', [out], out.alias(), () => {
    const xs = x.alias();
    xs.kept = true;
    return (g) => {
      const gs = g.alias();
      gs.kept = true;
      const job = (): void => {
        tidy(() => withTag('grad', () => noGrad(() => {
          const inF = x.shape[x.ndim - 1];
          const outF = out.shape[out.ndim - 1];
          const g2 = reshape(gs, [-1, outF]);
          if (weight) accumulateLeaf(weight, matmul(transpose(g2, 0, 1), reshape(xs, [-1, inF])));
          if (bias) accumulateLeaf(bias, sum(g2, 0));
        })));
        gs.dispose();
        xs.dispose();
      };
      if (queue) queue.push(job);
      else job();
      return [g];
    };
  });
}

function accumulateLeaf(p: Tensor, g: Tensor): void {
  if (p.grad && !p.grad.disposed) {
    accumulateInto(p.grad, g);
    return;
  }
  g.kept = true;
  p.grad = g;
}
