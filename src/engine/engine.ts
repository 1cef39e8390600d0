/**
 * The training engine `initialize()` returns (DeepSpeed's DeepSpeedEngine): forward, backward with
 * gradient accumulation, and a step that acts only at accumulation boundaries. It drives one of
 * two data-parallel back ends (backend.ts): ZeRO stage 0 (DataParallel + a plain optimizer,
 * clipping with clipGradNorm) or stages 1-3 (ZeroStage12 / ZeroStage3, which clip and step their
 * own partition).
 */
import type { ProcessGroup } from '../dist/process_group.ts';
import { native } from '../native.ts';
import type { Module } from '../nn/module.ts';
import { clipFactor } from '../optim/clip_grad.ts';
import { GradSquares } from '../optim/grad_squares.ts';
import type { LRScheduler, SchedulableOptimizer } from '../optim/lr_schedules/base.ts';
import { graphCaptureDevice, onEachReplay } from '../tensor/capture_state.ts';
import type { Device } from '../tensor/storage.ts';
import type { Tensor } from '../tensor/tensor.ts';
import type { EngineBackend } from './backend.ts';
import type { EngineConfig } from './config_types.ts';
import { addonDecides, canDecideOnDevice, type DecidedStepInputs, DecidedSteps, engineTesting, queueDecidedStep } from './decided_step.ts';
import {
  type LoadEngineCheckpointOptions, type LoadedEngineCheckpoint, loadEngineCheckpoint, type SaveEngineCheckpointOptions, saveEngineCheckpoint,
} from './engine_checkpoint.ts';
import type { LossScaler } from './loss_scaler.ts';
import { formatMemoryReport, type MemoryReport, memoryReport } from './memory_report.ts';
import { Precision } from './precision.ts';
import { DEFAULT_16BIT_FILENAME, save16bitModel } from './save_16bit.ts';
import { formatWallClock, WallClock, type WallClockReport } from './wall_clock.ts';

export type { EngineBackend, EngineZero } from './backend.ts';

export interface EngineParts {
  model: Module;
  config: EngineConfig;
  group: ProcessGroup;
  backend: EngineBackend;
  /** What the LR scheduler drives (stage 0: the optimizer; stages 1-3: the ZeRO hyperparameters). */
  schedulable: SchedulableOptimizer;
  lrScheduler: LRScheduler | null;
  scaler: LossScaler;
  /** bf16 / fp16 (DeepSpeed's modes, see precision.ts); null or absent: fp32. */
  mixed?: 'bf16' | 'f16' | null;
  log: (s: string) => void;
  /** Where the model and the engine's buffers live (default 'cpu'). */
  device?: Device;
}

/**
 * @example
 * const { engine } = await initialize({ model, config });
 * for (const [x, y] of loader) {
 *   const loss = crossEntropy(engine.forward(x), y);
 *   engine.backward(loss);
 *   engine.step();                 // an optimizer step every gradient_accumulation_steps calls
 * }
 */
export class Engine<M extends Module = Module> {
  readonly module: M;
  readonly config: EngineConfig;
  /** The data-parallel group. */
  readonly group: ProcessGroup;
  /** zero_optimization.stage: 0, 1, 2 or 3. */
  readonly stage: 0 | 1 | 2 | 3;
  /** Where the model, gradients and optimizer state live; inputs go there too (`x.to(engine.device)`). */
  readonly device: Device;
  readonly lrScheduler: LRScheduler | null;
  readonly gradientAccumulationSteps: number;
  /** Accumulation boundaries passed, skipped (overflowed) steps included: DeepSpeed's global_steps. */
  globalSteps = 0;
  /** step() calls (micro-batches). */
  microSteps = 0;
  private readonly backend: EngineBackend;
  private readonly schedulable: SchedulableOptimizer;
  private readonly precision: Precision;
  private readonly log: (s: string) => void;
  private destroyed = false;
  /** wall_clock_breakdown: phase timings (null when off). */
  private readonly clock: WallClock | null;
  /** The last wall_clock_breakdown report (null until one is printed or when it is off). */
  lastWallClock: WallClockReport | null = null;
  private gradNorm = Number.NaN;
  /** Steps decided on the device: the decision's buffer and the step whose outcome is not read yet (decided_step.ts). */
  private readonly decided: DecidedSteps;

  constructor(parts: EngineParts) {
    this.module = parts.model as M;
    this.config = parts.config;
    this.group = parts.group;
    this.backend = parts.backend;
    this.stage = parts.backend.stage;
    this.device = parts.device ?? 'cpu';
    this.schedulable = parts.schedulable;
    this.lrScheduler = parts.lrScheduler;
    this.precision = new Precision(parts.mixed ?? null, parts.scaler, parts.group, this.device);
    this.log = parts.log;
    this.gradientAccumulationSteps = parts.config.gradient_accumulation_steps;
    this.clock = parts.config.wall_clock_breakdown ? new WallClock() : null;
    this.decided = new DecidedSteps(this.device);
  }

  /** Runs the model's forward. */
  forward(...args: Parameters<M['forward']>): ReturnType<M['forward']> {
    this.live();
    const run = () => this.module.forward(...args) as ReturnType<M['forward']>;
    return this.clock ? this.clock.time('forward', run) : run();
  }

  /**
   * Backward of `loss / gradient_accumulation_steps` (DeepSpeed's scaling, so that accumulated
   * micro-batches average), times the loss scale under fp16 (the loss cast to f32 first). Stage 0
   * communicates only on the boundary micro-batch (noSync before); stages 1-3 reduce as their
   * ZeRO optimizer does. Returns the loss it differentiated (the caller's when
   * no division was needed).
   */
  backward(loss: Tensor): Tensor {
    this.live();
    if (this.clock) return this.clock.time('backward', () => this.backwardImpl(loss));
    return this.backwardImpl(loss);
  }

  private backwardImpl(loss: Tensor): Tensor {
    // fp16's dynamic scale: kept on the GPU, the loss scale needs no read; on the host, the last step must be settled.
    const onDevice = this.precision.deviceScale !== null ||
      (!engineTesting.hostDecides && graphCaptureDevice() === null && this.precision.useDeviceScale(this.device, this.gradientAccumulationSteps));
    if (this.precision.scaler.dynamic && !onDevice) this.settle();
    const scaled = this.precision.lossForBackward(loss, this.gradientAccumulationSteps);
    const b = this.backend;
    if (b.stage === 0) {
      if (this.isGradientAccumulationBoundary()) b.dp.backward(scaled);
      else b.dp.noSync(() => b.dp.backward(scaled));
    } else {
      b.zero.backward(scaled);
    }
    return scaled;
  }

  /** True when the next step() call is the last micro-batch of an accumulation window (it steps the optimizer). */
  isGradientAccumulationBoundary(): boolean {
    return (this.microSteps + 1) % this.gradientAccumulationSteps === 0;
  }

  /**
   * Call after every backward. At an accumulation boundary: clipping (gradient_clipping),
   * the optimizer step, the LR scheduler step, and zeroed gradients; otherwise only counts.
   * bf16/fp16: when the gradients overflowed on any rank the optimizer and scheduler steps are
   * skipped (skippedSteps counts them; globalSteps still advances, as DeepSpeed's), and the loss
   * scaler is updated; otherwise the gradients are unscaled before clipping.
   */
  step(): void {
    this.live();
    if (graphCaptureDevice() !== null) {
      this.captureStep();
      return;
    }
    const boundary = this.isGradientAccumulationBoundary();
    this.microSteps++;
    if (!boundary) return;
    if (this.clock) {
      this.clock.time('step', () => this.boundaryStep());
      this.clock.stepped();
    } else {
      this.boundaryStep();
    }
    this.report();
  }

  /** The optimizer step at an accumulation boundary (clip, step, schedule, zero the gradients). */
  private boundaryStep(): void {
    this.settle();
    const b = this.backend;
    const clip = this.config.gradient_clipping;
    const check = this.precision.dtype !== null;
    let stepped: boolean;
    if (b.stage === 0) {
      const grads = this.stageZeroGrads();
      if ((check || clip > 0) && !engineTesting.hostDecides && canDecideOnDevice(this.device, b.optimizer)) {
        this.decidedStep((decision) => queueDecidedStep(this.decidedInputs(grads, decision)));
        return;
      }
      // Made now, outside any graph: a step captured later decides into it.
      if ((check || clip > 0) && this.device !== 'cpu' && native.cuda?.optimDecision === true) this.decided.decision();
      // One read for the overflow check (all-reduced over dp) and the norm (local: DataParallel averaged the gradients).
      const squares = new GradSquares(grads, check ? [this.group] : [], this.device);
      const unscale = this.precision.prepare(grads, squares);
      stepped = unscale !== false;
      this.gradNorm = Number.NaN;
      let gradScale = unscale || 1;
      if (stepped && clip > 0) {
        // The norm of the unscaled gradients; the clip factor joins the unscale factor (applied in f32 by the kernel).
        this.gradNorm = Math.sqrt(squares.local()) * gradScale;
        gradScale *= clipFactor(this.gradNorm, clip);
      }
      if (stepped) b.optimizer.step({ gradScale });
    } else {
      const zero = b.zero;
      if ((check || clip > 0) && !engineTesting.hostDecides && addonDecides(this.device) && zero.stepDecided && zero.canStepDecided?.() === true) {
        // Stages 1-3 as stage 0: no host read (the partitions' own launches obey the decision, then the gather).
        const step = zero.stepDecided.bind(zero);
        this.decidedStep((decision) => step({ unscale: this.precision.unscale(), unscaleFrom: this.precision.deviceScale?.unscale, check, decision }));
        return;
      }
      stepped = zero.step((grads, squares) => this.precision.prepare(grads, squares));
      this.gradNorm = zero.lastGradNorm;
    }
    this.precision.finish(stepped);
    this.precision.reseedDeviceScale(); // decided on the host: the device's copy of the scale follows
    if (stepped) this.lrScheduler?.step();
    this.zeroGrad();
    this.globalSteps++;
  }

  /**
   * The rest of a boundary step decided on the device (no host read): `queue` queues the decision
   * into the engine's buffer and the optimizer's launches obeying it, returning what takes the
   * optimizer's host advance back. The schedule steps now; both are taken back at the next settle()
   * if the decision was a skip, which also updates the scaler and the norm.
   */
  private decidedStep(queue: (decision: Tensor) => () => void): void {
    this.decided.step((decision) => {
      const undo = queue(decision);
      this.precision.deviceScale?.update(decision);
      return undo;
    }, this.lrScheduler);
    this.zeroGrad();
    this.globalSteps++;
  }

  /** Stage 0's gradients to check and clip: on a GPU the flat buckets (fewer, larger reductions than one per parameter). */
  private stageZeroGrads(): Tensor[] {
    const b = this.backend;
    const flat = this.device !== 'cpu' && b.stage === 0 ? b.dp.gradBuffers() : null;
    return flat ?? this.module.parameters().flatMap((p) => (p.grad && !p.grad.disposed ? [p.grad] : []));
  }

  /** What queueDecidedStep needs from this engine (stage 0). */
  private decidedInputs(grads: Tensor[], decision: Tensor): DecidedStepInputs {
    const b = this.backend;
    if (b.stage !== 0) throw new Error('Engine: a device-decided step is stage 0 only');
    const check = this.precision.dtype !== null;
    return {
      grads, groups: check ? [this.group] : [], device: this.device, unscale: this.precision.unscale(), unscaleFrom: this.precision.deviceScale?.unscale ?? null,
      maxNorm: this.config.gradient_clipping, check, optimizer: b.optimizer, decision,
    };
  }

  /**
   * step() inside captureCudaGraph (stage 0, one optimizer step per call): the step is captured
   * as the device-decided step, so nothing is read; each replay first settles the previous step
   * and advances the counters, the optimizer's step counts and the lr schedule, then reads its
   * own decision back after the launch (settled later, as an eager decided step).
   */
  private captureStep(): void {
    const op = 'engine.step() inside captureCudaGraph';
    const b = this.backend;
    const gas = this.gradientAccumulationSteps;
    if (gas !== 1) {
      throw new Error(`${op}: gradient_accumulation_steps is ${gas}, but every replay repeats the same work, so a graph cannot step only every ${gas}th call; capture forward and backward and call step() outside the graph`);
    }
    if (b.stage !== 0) {
      throw new Error(`${op}: ZeRO stage ${b.stage}'s step is not captured (stage 0 only: across ranks its gather is a collective, which a capture refuses); capture forward and backward and call step() outside the graph`);
    }
    if (this.precision.scaler.dynamic && this.precision.deviceScale === null) {
      throw new Error(`${op}: fp16 dynamic loss scaling changes the scale between steps, and this engine keeps it on the host (run one eager step first on a GPU, whose addon has cuda.lossScalerUpdate); use bf16 or a static loss_scale otherwise`);
    }
    const check = this.precision.dtype !== null;
    const decided = check || this.config.gradient_clipping > 0;
    if (decided && (!this.decided.made || !canDecideOnDevice(this.device, b.optimizer))) {
      throw new Error(`${op}: run one eager engine.step() first (the optimizer's state and the step's decision buffer are made then, outside the graph)${!this.decided.made ? '' : `; ${b.optimizer.constructor.name} cannot step from a device decision here (each parameter on ${this.device}, with a contiguous gradient)`}`);
    }
    let undoOptimizer = () => {};
    let undoSchedule: (() => void) | null = null;
    onEachReplay(() => () => {
      this.settle();
      this.precision.deviceScale?.followHost(); // a scale set on the host since: before the graph reads it
      undoSchedule = this.lrScheduler?.snapshot() ?? null;
      this.microSteps++;
      this.globalSteps++;
      return () => {
        if (decided) {
          this.decided.expect(() => {
            undoOptimizer();
            undoSchedule?.();
          });
        }
        this.report();
      };
    });
    const grads = this.stageZeroGrads();
    if (decided) {
      const decision = this.decided.decision();
      undoOptimizer = queueDecidedStep(this.decidedInputs(grads, decision));
      this.precision.deviceScale?.update(decision);
    } else {
      b.optimizer.step();
    }
    this.lrScheduler?.step();
    this.zeroGrad();
  }

  /** Learns the outcome of a step decided on the device: takes it back on the host if skipped, updates the scaler. */
  private settle(): void {
    const outcome = this.decided.settle();
    if (outcome === null) return;
    this.gradNorm = outcome.norm;
    this.precision.finish(outcome.stepped);
  }

  /**
   * The global gradient norm of the last optimizer step before clipping (NaN when clipping is off
   * or the step was skipped). On a GPU it may wait for the device to finish that step's check.
   */
  get lastGradNorm(): number {
    this.settle();
    return this.gradNorm;
  }

  /** steps_per_print, memory_breakdown and wall_clock_breakdown lines on rank 0. */
  private report(): void {
    const every = this.config.steps_per_print;
    if (every !== null && this.globalSteps % every === 0 && this.group.rank === 0) {
      this.log(`[engine] step ${this.globalSteps}: lr ${this.getLr().map((v) => v.toPrecision(4)).join(', ')}, loss scale ${this.lossScale}`);
    }
    // DeepSpeed's memory_breakdown: the memory report beside the progress line (rank 0 only).
    const due = every === null || this.globalSteps % every === 0;
    if (this.config.memory_breakdown && this.group.rank === 0 && due) this.log(formatMemoryReport(this.memoryReport()));
    // DeepSpeed's wall_clock_breakdown: phase times per optimizer step since the last line (every rank keeps them).
    if (this.clock && due) {
      this.lastWallClock = this.clock.report();
      if (this.group.rank === 0) this.log(`[engine] step ${this.globalSteps} time: ${formatWallClock(this.lastWallClock)}`);
    }
  }

  /** Zeros the accumulated gradients (done by step() at each boundary). */
  zeroGrad(): void {
    this.live();
    const b = this.backend;
    if (b.stage === 0) b.dp.zeroGrad();
    else b.zero.zeroGrad();
  }

  /** Training mode (dropout on). */
  train(mode = true): this {
    this.module.train(mode);
    return this;
  }

  /** Evaluation mode. */
  eval(): this {
    this.module.eval();
    return this;
  }

  /** The learning rate of each parameter group now. */
  getLr(): number[] {
    this.settle();
    return this.schedulable.paramGroups.map((g) => g.lr);
  }

  /** Sets the learning rate of each parameter group (checkpoint loading). */
  setLrs(lrs: number[]): void {
    this.settle();
    this.schedulable.paramGroups.forEach((g, i) => {
      g.lr = lrs[i];
    });
  }

  /**
   * Saves a layout-independent checkpoint `dir/tag` (default tag `global_step<N>`); call on every
   * rank of the dp group. Returns the tag.
   */
  saveCheckpoint(dir: string, opts: SaveEngineCheckpointOptions = {}): Promise<string> {
    this.live();
    this.settle();
    return saveEngineCheckpoint(this, this.backend, dir, opts);
  }

  /** Restores a checkpoint saved by saveCheckpoint (any dp size); call on every rank. Returns its clientState. */
  loadCheckpoint(dir: string, opts: LoadEngineCheckpointOptions = {}): LoadedEngineCheckpoint {
    this.live();
    this.settle();
    const loaded = loadEngineCheckpoint(this, this.backend, dir, opts);
    this.precision.reseedDeviceScale();
    return loaded;
  }

  /**
   * The full model weights in the training dtype (bf16/f16 under mixed precision, else f32) as one
   * safetensors file `dir/filename` that PyTorch's safetensors reads, written by rank 0 (stage 3
   * gathers the partitions first; needs zero_optimization.stage3_gather_16bit_weights_on_model_save).
   * Call on every rank. Returns the file's path on rank 0, null elsewhere.
   * @example
   * const file = engine.save16bitModel('out');   // out/pytorch_model.safetensors on rank 0
   */
  save16bitModel(dir: string, filename = DEFAULT_16BIT_FILENAME): string | null {
    this.live();
    return save16bitModel(this, this.backend, dir, filename);
  }

  /**
   * This rank's memory by tag (current and peak) next to ZeRO's formula for the stage and the
   * named buffers the implementation adds (memory_report.ts); print it with formatMemoryReport.
   * @example
   * console.log(formatMemoryReport(engine.memoryReport()));
   */
  memoryReport(): MemoryReport {
    this.live();
    return memoryReport(this, this.backend);
  }

  /** The current loss scale (1 without fp16). */
  get lossScale(): number {
    this.settle();
    return this.precision.scaler.lossScale;
  }

  /** Boundaries whose step was skipped because the gradients overflowed (bf16/fp16). */
  get skippedSteps(): number {
    this.settle();
    return this.precision.skippedSteps;
  }

  set skippedSteps(n: number) {
    this.settle();
    this.precision.skippedSteps = n;
  }

  /** The loss scaler (fp16: dynamic or static; otherwise a static scale of 1). */
  get lossScaler(): LossScaler {
    this.settle();
    return this.precision.scaler;
  }

  /** Removes the back end's hooks and frees its buffers; the parameters keep their values. */
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    const b = this.backend;
    try {
      this.settle(); // the host state (step counts, lr, scaler) as the device left it
    } finally {
      this.decided.dispose();
      this.precision.dispose();
      if (b.stage === 0) b.dp.destroy();
      else b.zero.destroy();
    }
  }

  private live(): void {
    if (this.destroyed) throw new Error('Engine: this engine was destroyed');
  }
}
