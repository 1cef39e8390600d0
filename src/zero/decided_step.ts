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
import type { ProcessGroup } from '../dist/process_group.ts';
import type { FlatRef } from '../optim/fused.ts';
import { decisionRef, type FlatF64 } from '../optim/graph_step.ts';
import { queueStepDecision } from '../optim/step_decision.ts';
import type { Tensor } from '../tensor/tensor.ts';
import type { PartitionOptimizer } from './partition_optimizer.ts';

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

/** `o.decision` as the launches take it; throws naming `op` when it or a partition cannot take a decided step. */
export function checkDecided(op: string, parts: readonly DecidedPartition[], o: DecidedZeroStep): FlatF64 {
  const dec = decisionRef(o.decision, op);
  const refusal = decidedRefusal(parts);
  if (refusal !== null) throw new Error(`${op}: ${refusal}`);
  return dec;
}

/** Queues the decision and every partition's update obeying it (`dec`: checkDecided's), as step `stepNo`. Nothing is read. */
export function queueDecidedPartitions(parts: readonly DecidedPartition[], group: ProcessGroup, maxNorm: number, o: DecidedZeroStep, dec: FlatF64, stepNo: number): void {
  queueStepDecision({
    grads: parts.map((p) => p.grad), groups: [group], device: o.decision.device, unscale: o.unscale, unscaleFrom: o.unscaleFrom, maxNorm, check: o.check, norm: 'global', decision: o.decision,
  });
  for (const p of parts) p.opt.stepDecided(p.param(), { dtype: p.grad.dtype, id: p.grad.id, off: p.grad.offset }, stepNo, dec);
}
