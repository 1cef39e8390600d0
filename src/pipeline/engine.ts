/**
 * PipelineEngine: DeepSpeed's PipelineEngine for a PipelineModule. `trainBatch(dataIterator)`
 * runs gradient_accumulation_steps micro-batches through the pipeline by a schedule (GPipe,
 * 1F1B, interleaved 1F1B, ZB-H1 or your own action lists), then — once, after the last
 * micro-batch — sums tied gradients across stages, averages over data-parallel replicas (plain,
 * or ZeRO stage 1, 2 or 3 over the mesh's dp group), clips by the global norm over all stages, and
 * steps. The mean loss is reported to every rank. On a GPU the plain optimizer's step is decided on
 * the device once the optimizer has state (no host read per step: decided_step.ts), and the last
 * stage sums its losses there (loss_sum.ts): a batch reads the device once, for the loss.
 */
import { broadcastState } from '../dist/data_parallel_comms.ts';
import type { ProcessGroup } from '../dist/process_group.ts';
import { addonDecides, DecidedSteps, engineTesting, type UndoableSchedule } from '../engine/decided_step.ts';
import { addonScales, DeviceLossScale } from '../engine/device_loss_scale.ts';
import { DynamicLossScaler, type LossScaler } from '../engine/loss_scaler.ts';
import { tensor } from '../ops/create.ts';
import { Optimizer } from '../optim/optimizer.ts';
import { getRngState, setRngState } from '../tensor/random.ts';
import type { Device } from '../tensor/storage.ts';
import type { Tensor } from '../tensor/tensor.ts';
import { allReduceSequenceParallelGrads, reduceSequenceParallelGradsInBackward } from '../tensor_parallel/sequence_parallel.ts';
import type { ZeroOptimizer } from '../zero/zero_optimizer.ts';
import { allReduceNumber, averageGrads, checkPipelineGrads, queuePipelineDecision, sumTiedGrads } from './grad_sync.ts';
import { pipelineLayerRng } from './layer_rng.ts';
import type { LossSum } from './loss_sum.ts';
import type { PipelineModule } from './module.ts';
import { stepWithGradScale } from './optimizer_step.ts';
import { PipeP2P } from './p2p.ts';
import { act, type Schedule } from './schedule/action.ts';
import { gpipe } from './schedule/gpipe.ts';
import { interleaved1F1B } from './schedule/interleaved.ts';
import { lowerSchedule } from './schedule/lower.ts';
import { oneFOneB } from './schedule/one_f_one_b.ts';
import type { TimedAction } from './schedule/run.ts';
import { validateSchedule } from './schedule/validate.ts';
import { zeroBubbleH1 } from './schedule/zero_bubble.ts';
import { type MicroBatch, runStageActions } from './stage_runtime.ts';
import { installWeightGradDeferral } from './weight_grad.ts';
import { ZeroPipe, type ZeroPipelineOptions } from './zero_pipe.ts';

export type ScheduleName = 'gpipe' | '1f1b' | 'interleaved' | 'zb-h1';

export interface PipelineEngineOptions {
  module: PipelineModule;
  /** Micro-batches per trainBatch (DeepSpeed's gradient_accumulation_steps). */
  microBatches: number;
  /** A generator's name (default '1f1b'; 'interleaved' when the module has several stages per rank) or action lists. */
  schedule?: ScheduleName | Schedule;
  /** The optimizer over `module.parameters()` (plain data parallelism over dpGroup when it has several ranks). */
  optimizer?: { step(): void; zeroGrad(): void };
  /** ZeRO stage 1, 2 or 3 over dpGroup instead of `optimizer`. */
  zero?: ZeroPipelineOptions;
  /**
   * Stepped after every optimizer step. With `snapshot` (LRScheduler's) a step decided on the
   * device may advance it before the outcome is known and take it back on a skip.
   */
  lrScheduler?: { step(): void; snapshot?(): () => void };
  /** The data-parallel group (the mesh's 'dp' group); default: none. */
  dpGroup?: ProcessGroup;
  /**
   * The tensor-parallel group (the mesh's 'tp' group) when the stages' layers are tensor-parallel
   * (e.g. gptTensorParallelPipelineLayers): sequence-parallel gradients are summed over it once
   * per step (stage 3: in each backward), and clipping and the fp16 overflow check span it.
   */
  tpGroup?: ProcessGroup;
  /** Clip the global gradient norm over all stages to this value (0: off). */
  gradientClipping?: number;
  /**
   * fp16 loss scaling (`DynamicLossScaler`, `StaticLossScaler` or `createLossScaler(config.fp16)`):
   * backward is seeded with loss · scale, and a step whose gradients overflowed on any stage or
   * replica is skipped everywhere and the scale updated.
   */
  lossScaler?: LossScaler;
  /**
   * Where this rank's stages compute (default: where their parameters are, 'cpu' without any).
   * Received activations and gradients land there; micro-batches on another device are copied
   * there for the batch (DeepSpeed moves each batch to the local device the same way).
   */
  device?: Device;
}

/**
 * @example
 * const mesh = await DeviceMesh.init({ pp: 4 });
 * const pipe = new PipelineModule({ layers, numStages: 4, partitionMethod: 'uniform', lossFn, group: mesh.group('pp') });
 * const engine = await PipelineEngine.create({ module: pipe, microBatches: 8, schedule: '1f1b', optimizer: new AdamW(pipe.parameters()) });
 * for (let step = 0; step < steps; step++) console.log(engine.trainBatch(loaderIterator));  // the batch's mean loss, on every rank
 */
export class PipelineEngine {
  readonly module: PipelineModule;
  readonly microBatches: number;
  /** The lowered schedule every rank runs. */
  readonly schedule: Schedule;
  readonly dpGroup: ProcessGroup | null;
  readonly tpGroup: ProcessGroup | null;
  readonly gradientClipping: number;
  /** Where this rank's stages compute. */
  readonly device: Device;
  /** Batches trained (optimizer steps, skipped ones included, as DeepSpeed counts). */
  globalSteps = 0;
  /** This rank's actions of the last batch with their start and end (epoch ms). */
  timeline: TimedAction[] = [];
  private skipped = 0;
  private gradNorm = Number.NaN;
  private readonly optimizer: { step(): void; zeroGrad(): void } | null;
  private readonly zeroPipe: ZeroPipe | null;
  private readonly lrScheduler: { step(): void; snapshot?(): () => void } | null;
  private readonly lossScaler: LossScaler | null;
  private readonly p2p: PipeP2P;
  private evalRun: { schedule: Schedule; p2p: PipeP2P } | null = null;
  /** Why an earlier batch failed part-way: the engine refuses further batches. */
  private failure: string | null = null;
  /** Plain steps decided on the device: the decision's buffer and the step not read back yet (settle). */
  private readonly decided: DecidedSteps;
  /** fp16's dynamic scale kept on the device once a batch on a GPU made it (the host scaler follows at settle). */
  private deviceScale: DeviceLossScale | null = null;

  private constructor(opts: PipelineEngineOptions, schedule: Schedule) {
    this.module = opts.module;
    this.microBatches = opts.microBatches;
    this.schedule = schedule;
    this.dpGroup = opts.dpGroup ?? null;
    this.tpGroup = opts.tpGroup && opts.tpGroup.size > 1 ? opts.tpGroup : null;
    this.gradientClipping = opts.gradientClipping ?? 0;
    this.device = stageDevice(opts.module, opts.device);
    this.optimizer = opts.optimizer ?? null;
    this.lrScheduler = opts.lrScheduler ?? null;
    this.lossScaler = opts.lossScaler ?? null;
    this.zeroPipe = opts.zero ? new ZeroPipe(this.module, opts.zero, this.dpGroup, this.gradientClipping, this.tpGroup) : null;
    this.p2p = new PipeP2P(this.module.group ?? fakeGroup(), schedule, this.module.pipeRank, this.device);
    if (schedule.splitBackward) installWeightGradDeferral(this.module);
    this.decided = new DecidedSteps(this.device);
  }

  /** Every rank of the pipeline (and dp) group calls it: validates the schedule, ties weights, broadcasts dp replicas. */
  static async create(opts: PipelineEngineOptions): Promise<PipelineEngine> {
    const known = ['module', 'microBatches', 'schedule', 'optimizer', 'zero', 'lrScheduler', 'dpGroup', 'tpGroup', 'gradientClipping', 'lossScaler', 'device'];
    for (const k of Object.keys(opts)) if (!known.includes(k)) throw new Error(`PipelineEngine: unknown option "${k}" (known: ${known.join(', ')})`);
    const { module: mod, microBatches: m } = opts;
    if (!Number.isInteger(m) || m < 1) throw new Error(`PipelineEngine: microBatches must be a positive integer, got ${m}`);
    if (!opts.optimizer === !opts.zero) throw new Error('PipelineEngine: give exactly one of optimizer and zero');
    const clip = opts.gradientClipping ?? 0;
    if (!(clip >= 0)) throw new Error(`PipelineEngine: gradientClipping must be >= 0, got ${clip}`);
    stageDevice(mod, opts.device);
    const schedule = lowerSchedule(makeSchedule(opts.schedule, mod, m));
    validateSchedule(schedule);
    await mod.tie();
    // dp replicas start from dp rank 0's weights (ZeroStage12 broadcasts on its own).
    if (opts.dpGroup && !opts.zero) broadcastState(mod, opts.dpGroup, true);
    // Stage 3 takes each backward's gradients: sequence-parallel sums go in before its hooks (registered next).
    if (opts.tpGroup && opts.tpGroup.size > 1 && opts.zero?.stage === 3) reduceSequenceParallelGradsInBackward(mod, opts.tpGroup);
    return new PipelineEngine(opts, schedule);
  }

  /** Batches whose step was skipped because fp16 gradients overflowed (settles the last step). */
  get skippedSteps(): number {
    this.settle();
    return this.skipped;
  }

  set skippedSteps(n: number) {
    this.settle();
    this.skipped = n;
  }

  /** The global gradient norm of the last step (NaN when clipping is off or the step was skipped; settles it). */
  get lastGradNorm(): number {
    this.settle();
    return this.gradNorm;
  }

  /**
   * Learns the outcome of a step decided on the device (a plain optimizer on a GPU reads nothing
   * per step): a skip takes back the optimizer's step counts and the lr schedule, counts in
   * skippedSteps and updates the loss scaler. The engine's getters and checkpoints call it; call
   * it before reading the optimizer's or the schedule's state yourself. May wait for the device.
   */
  settle(): void {
    const outcome = this.decided.settle();
    if (outcome === null) return;
    this.gradNorm = outcome.norm;
    if (!outcome.stepped) this.skipped++;
    this.lossScaler?.update(!outcome.stepped);
    this.deviceScale?.hostFollowed();
  }

  /** Settles the last step and frees the engine's device buffers (the ZeRO optimizer has its own destroy). */
  destroy(): void {
    try {
      this.settle();
    } finally {
      this.decided.dispose();
      this.deviceScale?.dispose();
      this.deviceScale = null;
    }
  }

  /** The loss scaler's state was changed on the host (a checkpoint load): the device's copy of the scale follows. */
  lossScalerChanged(): void {
    this.settle();
    this.deviceScale?.seed();
  }

  /** The ZeRO optimizer of this stage (zero option), e.g. to change `hyper.lr` between steps; null otherwise. */
  get zero(): ZeroOptimizer | null {
    return this.zeroPipe?.zero ?? null;
  }

  /** Runs one batch (microBatches micro-batches from `data`) and one optimizer step; returns the mean loss on every rank. */
  trainBatch(data: Iterator<MicroBatch> | Iterable<MicroBatch> | null): number {
    this.checkData(data);
    return this.guard('trainBatch', () => this.withBatch(data, (fetch) => this.train(fetch)));
  }

  /** Forward only over microBatches micro-batches; returns the mean loss on every rank. */
  evalBatch(data: Iterator<MicroBatch> | Iterable<MicroBatch> | null): number {
    this.checkData(data);
    return this.guard('evalBatch', () => this.withBatch(data, (fetch) => this.evaluate(fetch)));
  }

  /** Refused before anything runs (the engine stays usable). */
  private checkData(data: unknown): void {
    const needs = this.module.stages.some((s) => s === 0 || s === this.module.numStages - 1);
    if (needs && !data) throw new Error(`PipelineEngine: pipeline rank ${this.module.pipeRank} holds the first or last stage and needs a data iterator`);
  }

  /**
   * A batch that throws part-way leaves activations and partial gradients behind and messages in
   * flight between ranks (the other ranks fail or time out waiting), so no later batch could be
   * trusted: the engine refuses them, naming the first failure.
   */
  private guard(what: string, fn: () => number): number {
    if (this.failure) {
      throw new Error(`PipelineEngine.${what}: an earlier batch failed part-way (${this.failure}); gradients, optimizer state and the messages between pipeline ranks may be inconsistent, so this engine runs no more batches: create a new PipelineEngine and load the last checkpoint`);
    }
    try {
      return fn();
    } catch (e) {
      this.failure = e instanceof Error ? e.message : String(e);
      throw e;
    }
  }

  /** Runs `fn` with the batch's fetcher, then frees the copies it made on the device. */
  private withBatch(data: Iterator<MicroBatch> | Iterable<MicroBatch> | null, fn: (fetch: (mb: number) => MicroBatch) => number): number {
    const copies: Tensor[] = [];
    try {
      return fn(this.fetcher(data, copies));
    } finally {
      for (const t of copies) t.dispose();
    }
  }

  private train(fetch: (mb: number) => MicroBatch): number {
    this.module.train();
    const params = this.module.parameters();
    const z = this.zeroPipe?.perMicroBatch ? this.zeroPipe : null;
    // Gradients are reduced once per step, below: no per-micro-batch hooks (DataParallel, ZeRO-2) fire. ZeRO-3 reduces in each backward.
    const hooks = params.map((p) => (z ? [] : p.gradReadyHooks.splice(0)));
    let lossSum: LossSum;
    // Dropout draws from per-layer streams (layer_rng.ts); the global generator is left where it was.
    const rng0 = getRngState();
    const rng = pipelineLayerRng(rng0.seed, this.globalSteps, this.microBatches);
    const layers = this.module.layerNames.length;
    try {
      const r = runStageActions(
        this.module, this.schedule, this.p2p, fetch, true, this.lossScaler, z ? (out, g) => z.backward(out, g) : undefined,
        z && this.schedule.splitBackward ? () => z.reduceWeightGrads() : null, (mb) => rng(mb, layers), this.useDeviceScale(),
      );
      lossSum = r.lossSum;
      this.timeline = r.timeline;
    } finally {
      setRngState(rng0);
      params.forEach((p, i) => p.gradReadyHooks.push(...hooks[i]));
    }
    try {
      this.step(params, z !== null);
      return this.reportLoss(lossSum.take());
    } finally {
      lossSum.dispose(); // unread only when the step failed
    }
  }

  /** After the batch's last action: gradients summed and averaged once, checked, clipped, and the optimizer step. */
  private step(params: Tensor[], zeroReducedInBackward: boolean): void {
    this.settle(); // the previous step's outcome (long decided by now: this batch's work is queued after it)
    if (this.tpGroup && !zeroReducedInBackward) allReduceSequenceParallelGrads(this.module, this.tpGroup);
    sumTiedGrads(this.module);
    let ok: boolean;
    if (this.zeroPipe) {
      // ZeRO under a pipeline decides on the host (one read per step).
      ok = this.zeroPipe.step(this.lossScaler);
      this.gradNorm = this.zeroPipe.lastGradNorm;
    } else {
      if (this.dpGroup) averageGrads(params, this.dpGroup);
      const optimizer = this.decidingOptimizer();
      if (optimizer) {
        this.decidedStep(optimizer);
        return;
      }
      // The overflow check and the clipping norm from one host read.
      const r = checkPipelineGrads(this.module, this.lossScaler, this.gradientClipping, this.dpGroup, this.tpGroup, this.device);
      ok = r.ok;
      this.gradNorm = r.norm;
      if (ok && this.optimizer) stepWithGradScale(this.optimizer, params, r.gradScale);
      this.optimizer?.zeroGrad();
    }
    this.globalSteps++;
    if (ok) this.lrScheduler?.step();
    else this.skipped++;
    this.lossScaler?.update(!ok);
    this.deviceScale?.seed(); // decided on the host: the device's copy of the scale follows
  }

  /**
   * fp16's dynamic scale on the device (the plain optimizer on a GPU whose addon updates a scale
   * there): made from the host scaler at the first such batch, then kept. The next batch's backward
   * reads the scale an overflow sets, so with it on the host a decided step would have to be read.
   */
  private useDeviceScale(): DeviceLossScale | null {
    const s = this.lossScaler;
    this.deviceScale?.followHost();
    if (this.deviceScale || !(s instanceof DynamicLossScaler) || engineTesting.hostDecides || this.zeroPipe) return this.deviceScale;
    if (!(this.optimizer instanceof Optimizer) || !addonDecides(this.device) || !addonScales(this.device)) return null;
    this.deviceScale = new DeviceLossScale(s, this.microBatches, this.device);
    return this.deviceScale;
  }

  /**
   * The plain optimizer when this step can be decided on the device (a CUDA addon with
   * stepDecision, an Optimizer with state there, something to decide: a static loss scale or
   * clipping; an lr schedule that can be taken back; fp16's dynamic scale only when kept on the
   * device, useDeviceScale); null: the host decides.
   */
  private decidingOptimizer(): Optimizer<{ lr: number }> | null {
    const opt = this.optimizer;
    const s = this.lossScaler;
    if (engineTesting.hostDecides || !(opt instanceof Optimizer) || (!s && this.gradientClipping <= 0) || (s?.dynamic && !this.deviceScale)) return null;
    if (this.lrScheduler && typeof this.lrScheduler.snapshot !== 'function') return null;
    return addonDecides(this.device) && opt.canStepDecided(this.device) ? (opt as Optimizer<{ lr: number }>) : null;
  }

  /** checkPipelineGrads and the optimizer step decided on the device: nothing read; settle() learns the outcome. */
  private decidedStep(optimizer: Optimizer<{ lr: number }>): void {
    const s = this.lossScaler;
    const ds = this.deviceScale;
    this.decided.step((decision) => {
      queuePipelineDecision(
        this.module, s !== null, s ? 1 / s.lossScale : 1, this.gradientClipping, this.dpGroup, this.tpGroup, this.device, decision, ds?.unscale ?? null,
      );
      const undo = optimizer.stepDecided(decision);
      ds?.update(decision); // the scale the next batch's backward reads, from this decision
      return undo;
    }, this.lrScheduler as UndoableSchedule | null);
    optimizer.zeroGrad();
    this.globalSteps++;
  }

  private evaluate(fetch: (mb: number) => MicroBatch): number {
    this.module.eval();
    if (!this.evalRun) {
      const s = this.schedule;
      const fwd: Schedule = {
        ...s, name: `${s.name}-eval`, splitBackward: false, lowered: false,
        actions: s.actions.map((_, r) => {
          const row = [];
          for (let mb = 0; mb < s.microbatches; mb++) for (let st = r; st < s.stages; st += s.ranks) row.push(act(st, 'F', mb));
          return row;
        }),
      };
      const lowered = lowerSchedule(fwd);
      this.evalRun = { schedule: lowered, p2p: new PipeP2P(this.module.group ?? fakeGroup(), lowered, this.module.pipeRank, this.device) };
    }
    const r = runStageActions(this.module, this.evalRun.schedule, this.evalRun.p2p, fetch, false);
    this.timeline = r.timeline;
    return this.reportLoss(r.lossSum.take());
  }

  /** Micro-batch i of this batch, pulled in order on the ranks that need data, on the engine's device (copies go to `copies`). */
  private fetcher(data: Iterator<MicroBatch> | Iterable<MicroBatch> | null, copies: Tensor[]): (mb: number) => MicroBatch {
    const got: MicroBatch[] = [];
    let it: Iterator<MicroBatch> | null = null;
    return (mb) => {
      if (!data) throw new Error(`PipelineEngine: pipeline rank ${this.module.pipeRank} holds the first or last stage and needs a data iterator`);
      it ??= Symbol.iterator in data ? (data as Iterable<MicroBatch>)[Symbol.iterator]() : (data as Iterator<MicroBatch>);
      while (got.length <= mb) {
        const n = it.next();
        if (n.done) throw new Error(`PipelineEngine: the data iterator ended after ${got.length} of ${this.microBatches} micro-batches`);
        if (!Array.isArray(n.value) || n.value.length < 2) throw new Error('PipelineEngine: each micro-batch must be [input, target]');
        const here = (t: Tensor): Tensor => {
          if (t.device === this.device) return t;
          const c = t.to(this.device);
          copies.push(c);
          return c;
        };
        got.push([here(n.value[0]), here(n.value[1])]);
      }
      return got[mb];
    };
  }

  /** The last stage's mean loss, broadcast over the pipeline and averaged over dp. */
  private reportLoss(lossSum: number): number {
    let loss = lossSum / this.microBatches;
    const g = this.module.group;
    if (g && g.size > 1) {
      const t = tensor([loss], { dtype: 'f64', tag: 'comm' });
      g.broadcast(t, g.size - 1);
      loss = t.item();
      t.dispose();
    }
    return allReduceNumber(loss, [this.dpGroup], 'avg');
  }
}

function makeSchedule(s: ScheduleName | Schedule | undefined, mod: PipelineModule, m: number): Schedule {
  const p = mod.pipeRanks;
  const v = mod.numStages / p;
  const name = s ?? (v > 1 ? 'interleaved' : '1f1b');
  if (typeof name !== 'string') {
    if (name.ranks !== p || name.stages !== mod.numStages || name.microbatches !== m) {
      throw new Error(`PipelineEngine: the schedule '${name.name}' is for ${name.ranks} ranks, ${name.stages} stages and ${name.microbatches} micro-batches; the module has ${p} ranks, ${mod.numStages} stages and microBatches is ${m}`);
    }
    return name;
  }
  if (!['gpipe', '1f1b', 'interleaved', 'zb-h1'].includes(name)) throw new Error(`PipelineEngine: unknown schedule '${String(name)}' (gpipe, 1f1b, interleaved, zb-h1)`);
  if (name === 'interleaved') return interleaved1F1B(p, m, v);
  if (v !== 1) throw new Error(`PipelineEngine: schedule '${name}' runs one stage per rank, but the module has ${v} stages per rank; use 'interleaved'`);
  if (name === 'gpipe') return gpipe(p, m);
  if (name === '1f1b') return oneFOneB(p, m);
  return zeroBubbleH1(p, m);
}

/** The device of `module`'s parameters (one, or `want` when given and every parameter is there); refuses a mix. */
function stageDevice(module: PipelineModule, want: Device | undefined): Device {
  const tensors = [...module.parameters(), ...module.buffers()];
  const other = tensors.find((t) => t.device !== (want ?? tensors[0].device));
  if (other && want) throw new Error(`PipelineEngine: device ${want}, but pipeline rank ${module.pipeRank}'s stages hold a ${other.dtype} ${JSON.stringify(other.shape)} tensor on ${other.device}; move the module first (nn.moduleToDevice)`);
  if (other) throw new Error(`PipelineEngine: pipeline rank ${module.pipeRank}'s stages hold tensors on ${tensors[0].device} and ${other.device}; move the module to one device first (nn.moduleToDevice)`);
  return want ?? tensors[0]?.device ?? 'cpu';
}

/** One process holding every stage sends nothing: a group that is never used. */
function fakeGroup(): ProcessGroup {
  return { rank: 0, size: 1 } as ProcessGroup;
}

export type { MicroBatch, Tensor };
