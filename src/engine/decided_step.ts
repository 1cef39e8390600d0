/**
 * The engine's optimizer step decided on the GPU, with no host read (ZeRO stages 0-3 on a CUDA
 * device; stages 1-3 through ZeroOptimizer.stepDecided, without offload; PipelineEngine's plain
 * step through the same DecidedSteps, its sums from grad_sync.ts queuePipelineDecision). The host way
 * (engine.ts) reads the gradients' sum of squares back to decide between a skipped step
 * (bf16/fp16 overflow) and a step with gradScale = 1/lossScale × the clip factor; that read stalls
 * the host mid-step until the device has finished the backward. Here the device decides:
 *
 * 1-2. the sums go into DeviceSums as the host way's GradSquares puts them, and
 *    `cuda.stepDecision` turns them into {skip, gradScale, norm} on the device, by the host way's
 *    arithmetic (src/optim/step_decision.ts);
 * 3. the optimizer's launches read that decision (`Optimizer.stepDecided`; ZeRO's partitions:
 *    `PartitionOptimizer.stepDecided`): a skip writes nothing;
 * 4. an asynchronous copy brings the decision to pinned host memory, read when the engine next
 *    needs it (`settle`): by then the device is usually past it, so nothing waits.
 *
 * The host state moves as if the step ran (optimizer step counts, the lr schedule) and is taken
 * back at `settle` if it was skipped; the loss scaler and the skipped-step count are updated there.
 */
import type { ProcessGroup } from '../dist/process_group.ts';
import { native } from '../native.ts';
import { zeros } from '../ops/create.ts';
import type { Optimizer } from '../optim/optimizer.ts';
import { queueStepDecision } from '../optim/step_decision.ts';
import { keep } from '../tensor/scope.ts';
import type { Device } from '../tensor/storage.ts';
import type { Tensor } from '../tensor/tensor.ts';

/** Test hook: the engine decides on the host (reads the sums back) even where the device could. */
export const engineTesting = { hostDecides: false };

/** What a settled step turned out to be. */
export interface StepOutcome {
  /** False when the gradients overflowed and the step was skipped. */
  stepped: boolean;
  /** The gradient norm before clipping (NaN when skipped or without clipping). */
  norm: number;
}

/** A step queued on the device whose outcome the host has not read yet. */
export class PendingStep {
  private token: number | null;

  constructor(
    token: number,
    private readonly undo: () => void,
  ) {
    this.token = token;
  }

  /** Reads the decision (waiting only if the device has not reached it) and takes a skipped step back on the host. */
  settle(): StepOutcome {
    const token = this.take();
    const [skip, , norm] = new Float64Array(native.cuda.readLaterTake(token));
    const stepped = skip === 0;
    if (!stepped) this.undo();
    return { stepped, norm };
  }

  /** Drops the decision unread (its copy's pinned memory is released once it finishes). */
  drop(): void {
    native.cuda.readLaterDrop(this.take());
  }

  private take(): number {
    const t = this.token;
    if (t === null) throw new Error('PendingStep: already settled');
    this.token = null;
    return t;
  }
}

/** The step's inputs: what the host way's boundaryStep reads from the engine. */
export interface DecidedStepInputs {
  grads: readonly Tensor[];
  /** Groups the overflow sum is all-reduced over (the dp group under bf16/fp16; none in fp32). */
  groups: readonly ProcessGroup[];
  device: Device;
  /** 1/lossScale (1 in fp32 and bf16). */
  unscale: number;
  /** fp16's 1/lossScale on the device, which the decision reads instead (device_loss_scale.ts). */
  unscaleFrom: Tensor | null;
  /** gradient_clipping (0: none). */
  maxNorm: number;
  /** Skip on inf/NaN gradients (bf16/fp16). */
  check: boolean;
  optimizer: Optimizer<{ lr: number }>;
  /** Where {skip, gradScale, norm} go: f64 [3] on `device`, outside any graph's pool (the engine's, made once). */
  decision: Tensor;
}

/** Whether this addon can decide a step on `device` and read the decision back later. */
export function addonDecides(device: Device): boolean {
  return device !== 'cpu' && typeof native.cuda?.stepDecision === 'function' && typeof native.cuda?.readLater === 'function';
}

/** Whether this addon and optimizer can take the step on `device` without a host read. */
export function canDecideOnDevice(device: Device, optimizer: Optimizer<{ lr: number }>): boolean {
  return addonDecides(device) && optimizer.canStepDecided(device);
}

/**
 * Queues the sums, the decision (the norm of this rank's sum, slot 0; the overflow check on every
 * rank's) and the optimizer's launches that obey it (captured, inside captureCudaGraph); returns
 * what takes the optimizer's host advance back. Nothing is read.
 */
export function queueDecidedStep(s: DecidedStepInputs): () => void {
  queueStepDecision({ ...s, norm: 'local' });
  return s.optimizer.stepDecided(s.decision);
}

/** Queues reading `decision` back (after what is queued so far); `undo` takes the step back on the host if it was skipped. */
export function pendingStep(decision: Tensor, undo: () => void): PendingStep {
  return new PendingStep(native.cuda.readLater(decision.id, decision.offset * 8, 3 * 8), undo);
}

/** An lr schedule a decided step can advance now and take back at settle (LRScheduler). */
export interface UndoableSchedule {
  step(): void;
  /** What restores the schedule's position and the lrs it set as they are now. */
  snapshot(): () => void;
}

/**
 * An engine's device-decided steps (Engine, PipelineEngine): the decision's buffer, the step whose
 * decision is not read back yet, and taking that step back on the host when it was a skip. The
 * engine applies the outcome `settle` returns to its own counters and scaler.
 * @example
 * steps.step((d) => { queueDecision(d); return optimizer.stepDecided(d); }, lrScheduler);
 * // ... later, before reading or changing what a skip would take back:
 * const outcome = steps.settle();   // null when nothing is pending
 */
export class DecidedSteps {
  private pending: PendingStep | null = null;
  private buffer: Tensor | null = null;

  constructor(private readonly device: Device) {}

  /** Whether the decision's buffer exists (a captured step needs it made before the capture). */
  get made(): boolean {
    return this.buffer !== null;
  }

  /** Where the device writes {skip, gradScale, norm}: f64 [3], made at first use (outside any graph's pool: call it before a capture). */
  decision(): Tensor {
    this.buffer ??= keep(zeros([3], { dtype: 'f64', device: this.device, tag: 'other' }));
    return this.buffer;
  }

  /**
   * Queues a decided step: `queue(decision)` queues the decision and the optimizer's launches that
   * obey it and returns what takes the optimizer's host advance back. The schedule steps now; both
   * are taken back at settle() if the decision was a skip. Settle the previous step first.
   */
  step(queue: (decision: Tensor) => () => void, schedule: UndoableSchedule | null): void {
    if (this.pending !== null) throw new Error('DecidedSteps.step: the previous step is not settled');
    const undoOptimizer = queue(this.decision());
    const undoSchedule = schedule?.snapshot() ?? null;
    schedule?.step();
    this.expect(() => {
      undoOptimizer();
      undoSchedule?.();
    });
  }

  /** Reads the decision back later (queued after what is queued so far, e.g. a replay's launch); `undo` runs at settle on a skip. */
  expect(undo: () => void): void {
    this.pending = pendingStep(this.decision(), undo);
  }

  /** The outcome of the pending step (taken back on the host if skipped), or null when none is pending. */
  settle(): StepOutcome | null {
    const p = this.pending;
    if (p === null) return null;
    this.pending = null;
    return p.settle();
  }

  /** Frees the buffer (settle first: a pending step's outcome is dropped). */
  dispose(): void {
    this.pending?.drop();
    this.pending = null;
    this.buffer?.dispose();
    this.buffer = null;
  }
}
