/**
 * A ZeRO step (stages 1-3) decided on the device, with no host read: the engine's device-decided
 * step (src/engine/decided_step.ts) for partitioned optimizers. The host way (stepPartition) reads
 * the partitions' Σg² (GradSquares) or an overflow flag (hasOverflowAcross) back, then stepScale
 * turns them into the gradient multiplier. Here the partitions' Σg², all-reduced over the dp group,
 * go to cuda.stepDecision with ZeRO's norm, sqrt(global)·unscale (stepScale's, both indices on the
 * all-reduced sum), and each partition's update obeys the decision (PartitionOptimizer.stepDecided).
 * With clipping off and the check on, the skip is hasOverflowAcross's: a sum of |g| and a sum of g²
 * (in f64, of f32/bf16/f16 values, which cannot overflow it) are non-finite exactly when some g is.
 */
import type { FlatRef } from '../optim/fused.ts';
import { decisionRef } from '../optim/graph_step.ts';
import { queueStepDecision } from '../optim/step_decision.ts';
import type { Tensor } from '../tensor/tensor.ts';
import type { PartitionOptimizer } from './partition_optimizer.ts';
import type { ZeroOptimizer } from './zero_optimizer.ts';

/** What ZeroOptimizer.stepDecided takes from the engine. */
export interface DecidedZeroStep {
  /** 1/lossScale (1 in fp32 and bf16). */
  unscale: number;
  /** fp16's 1/lossScale on the device, which the decision reads instead (src/engine/device_loss_scale.ts). */
  unscaleFrom?: Tensor | null;
  /** Skip on inf/NaN gradients on any rank (bf16/fp16). */
  check: boolean;
  /** Where {skip, gradScale, norm} go: f64 [3] on the partitions' CUDA device, outside any graph's pool. */
  decision: Tensor;
}

/** One dtype's trained partition as a decided step updates it. */
export interface DecidedPartition {
  dtype: string;
  opt: PartitionOptimizer;
  /** Where the partition's parameters start (device memory). */
  param: () => FlatRef;
  /** The averaged gradient partition. */
  grad: Tensor;
}

/** Why a decided step cannot update `parts` now, naming the partition (null: it can). */
export function decidedRefusal(parts: readonly DecidedPartition[]): string | null {
  for (const p of parts) {
    const why = p.opt.decidedRefusal();
    if (why !== null) return `the ${p.dtype} partition: ${why}`;
  }
  return null;
}

/** What a ZeRO stage's `stepDecided` reads and moves (ZeroStage12, ZeroStage3). */
type DecidedZero = Pick<ZeroOptimizer, 'group' | 'gradientClipping' | 'steps' | 'lastGradNorm' | 'allGatherParameters'>;

/**
 * A ZeRO stage's `stepDecided` (named `op`): checks the decision and every partition before
 * anything is queued, runs `reduce` (stage 1's reduce-scatter), queues the decision and every
 * partition's update obeying it as the next step, advances `z.steps` as if the step ran and gathers
 * the parameters. Nothing is read; the returned function takes the step count back (a skip).
 */
export function stepPartitionsDecided(z: DecidedZero, op: string, parts: readonly DecidedPartition[], o: DecidedZeroStep, reduce?: () => void): () => void {
  const dec = decisionRef(o.decision, op);
  const refusal = decidedRefusal(parts);
  if (refusal !== null) throw new Error(`${op}: ${refusal}`);
  reduce?.();
  z.lastGradNorm = Number.NaN;
  queueStepDecision({
    grads: parts.map((p) => p.grad), groups: [z.group], device: o.decision.device, unscale: o.unscale, unscaleFrom: o.unscaleFrom,
    maxNorm: z.gradientClipping, check: o.check, norm: 'global', decision: o.decision,
  });
  const stepNo = z.steps + 1;
  for (const p of parts) p.opt.stepDecided(p.param(), { dtype: p.grad.dtype, id: p.grad.id, off: p.grad.offset }, stepNo, dec);
  z.steps++;
  z.allGatherParameters();
  return () => {
    z.steps--;
  };
}
