/**
 * The training engine `initialize()` returns (DeepSpeed's DeepSpeedEngine): forward, backward with
 * gradient accumulation, and a step that acts only at accumulation boundaries. It drives one of
 * two data-parallel back ends (backend.ts): ZeRO stage 0 (DataParallel + a plain optimizer,
 * clipping with clipGradNorm) or stages 1-3 (ZeroStage12 / ZeroStage3, which clip and step their
 * own partition).
 */
import type { ProcessGroup } from '../dist/process_group.ts';
import type { Module } from '../nn/module.ts';
import { clipFactor } from '../optim/clip_grad.ts';
import { GradSquares } from '../optim/grad_squares.ts';
import type { LRScheduler, SchedulableOptimizer } from '../optim/lr_schedules/base.ts';
import type { Device } from '../tensor/storage.ts';
import type { Tensor } from '../tensor/tensor.ts';
import type { EngineBackend } from './backend.ts';
import type { EngineConfig } from './config_types.ts';
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
  /** The global gradient norm of the last optimizer step before clipping (NaN when clipping is off). */
  lastGradNorm = Number.NaN;
  private readonly backend: EngineBackend;
  private readonly schedulable: SchedulableOptimizer;
  private readonly precision: Precision;
  private readonly log: (s: string) => void;
  private destroyed = false;
  /** wall_clock_breakdown: phase timings (null when off). */
  private readonly clock: WallClock | null;
  /** The last wall_clock_breakdown report (null until one is printed or when it is off). */
  lastWallClock: WallClockReport | null = null;

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
    const b = this.backend;
    const clip = this.config.gradient_clipping;
    let stepped: boolean;
    if (b.stage === 0) {
      // On a GPU the flat buckets: fewer, larger reductions than one per parameter.
      const flat = this.device !== 'cpu' ? b.dp.gradBuffers() : null;
      const grads = flat ?? this.module.parameters().flatMap((p) => (p.grad && !p.grad.disposed ? [p.grad] : []));
      // One read for the overflow check (all-reduced over dp) and the norm (local: DataParallel averaged the gradients).
      const squares = new GradSquares(grads, this.precision.dtype ? [this.group] : [], this.device);
      const unscale = this.precision.prepare(grads, squares);
      stepped = unscale !== false;
      this.lastGradNorm = Number.NaN;
      let gradScale = unscale || 1;
      if (stepped && clip > 0) {
        // The norm of the unscaled gradients; the clip factor joins the unscale factor (applied in f32 by the kernel).
        this.lastGradNorm = Math.sqrt(squares.local()) * gradScale;
        gradScale *= clipFactor(this.lastGradNorm, clip);
      }
      if (stepped) b.optimizer.step({ gradScale });
    } else {
      stepped = b.zero.step((grads, squares) => this.precision.prepare(grads, squares));
      this.lastGradNorm = b.zero.lastGradNorm;
    }
    this.precision.finish(stepped);
    if (stepped) this.lrScheduler?.step();
    this.zeroGrad();
    this.globalSteps++;
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
    return this.schedulable.paramGroups.map((g) => g.lr);
  }

  /** Sets the learning rate of each parameter group (checkpoint loading). */
  setLrs(lrs: number[]): void {
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
    return saveEngineCheckpoint(this, this.backend, dir, opts);
  }

  /** Restores a checkpoint saved by saveCheckpoint (any dp size); call on every rank. Returns its clientState. */
  loadCheckpoint(dir: string, opts: LoadEngineCheckpointOptions = {}): LoadedEngineCheckpoint {
    this.live();
    return loadEngineCheckpoint(this, this.backend, dir, opts);
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
    return this.precision.scaler.lossScale;
  }

  /** Boundaries whose step was skipped because the gradients overflowed (bf16/fp16). */
  get skippedSteps(): number {
    return this.precision.skippedSteps;
  }

  set skippedSteps(n: number) {
    this.precision.skippedSteps = n;
  }

  /** The loss scaler (fp16: dynamic or static; otherwise a static scale of 1). */
  get lossScaler(): LossScaler {
    return this.precision.scaler;
  }

  /** Removes the back end's hooks and frees its buffers; the parameters keep their values. */
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    const b = this.backend;
    if (b.stage === 0) b.dp.destroy();
    else b.zero.destroy();
  }

  private live(): void {
    if (this.destroyed) throw new Error('Engine: this engine was destroyed');
  }
}
