/**
 * Runs one rank's lowered action list for one batch: forwards and backwards of this rank's
 * stages, the sends and receives between them, and (split schedules) the deferred weight
 * gradients. Each action is timed; the caller reduces gradients and steps once the list is done.
 */
import { noGrad } from '../autograd/grad_mode.ts';
import type { DeviceLossScale } from '../engine/device_loss_scale.ts';
import type { LossScaler } from '../engine/loss_scaler.ts';
import { tidy } from '../tensor/scope.ts';
import type { Tensor } from '../tensor/tensor.ts';
import type { LayerRng } from './layer_rng.ts';
import { scaledLoss } from './loss_scale.ts';
import { LossSum } from './loss_sum.ts';
import type { PipelineModule } from './module.ts';
import type { PipeP2P } from './p2p.ts';
import { type Action, formatAction, type Schedule } from './schedule/action.ts';
import type { TimedAction } from './schedule/run.ts';
import { runWeightGrads, withDeferredWeightGrads } from './weight_grad.ts';

/** A micro-batch: the first stage's input and the last stage's target. */
export type MicroBatch = [input: Tensor, target: Tensor];

interface MicroState {
  input: Tensor | null;
  output: Tensor | null;
  gradOut: Tensor | null;
  gradIn: Tensor | null;
  jobs: (() => void)[];
}

export interface BatchResult {
  /** Sum of the last stage's micro-batch losses, on its device until taken (0 on other ranks). */
  lossSum: LossSum;
  timeline: TimedAction[];
}

const now = (): number => performance.timeOrigin + performance.now();

/**
 * Executes `schedule.actions[rank]`. `train` false runs forwards only (the schedule has no
 * backward); `data(mb)` is asked only on ranks that hold the first or the last stage.
 */
export function runStageActions(
  module: PipelineModule, schedule: Schedule, p2p: PipeP2P, data: (mb: number) => MicroBatch, train: boolean, scaler: LossScaler | null = null,
  backwardFn: (out: Tensor, grad?: Tensor) => void = (out, grad) => out.backward(grad),
  afterW: (() => void) | null = null,
  /** Per micro-batch, the layers' dropout streams (pipelineLayerRng); none: the running generator. */
  layerRng: ((mb: number) => LayerRng) | null = null,
  /** fp16's dynamic scale kept on the device (the engine's, with gas = m): the loss is scaled there. */
  deviceScale: DeviceLossScale | null = null,
): BatchResult {
  const actions = schedule.actions[module.pipeRank];
  const last = module.numStages - 1;
  const m = schedule.microbatches;
  const split = schedule.splitBackward;
  const states = new Map<string, MicroState>();
  const state = (stage: number, mb: number): MicroState => {
    const key = `${stage}:${mb}`;
    let s = states.get(key);
    if (!s) {
      s = { input: null, output: null, gradOut: null, gradIn: null, jobs: [] };
      states.set(key, s);
    }
    return s;
  };
  const local = (stage: number): boolean => stage >= 0 && stage <= last && module.stageRank(stage) === module.pipeRank;
  const lossSum = new LossSum();
  const timeline: TimedAction[] = [];

  const forward = (a: Action): void => {
    const st = state(a.stage, a.microbatch);
    let x: Tensor;
    if (a.stage === 0) x = data(a.microbatch)[0];
    else if (local(a.stage - 1)) {
      // Same rank: hand the previous stage's output over as a new leaf.
      const prev = state(a.stage - 1, a.microbatch);
      x = (prev.output as Tensor).detach();
      if (!train) prev.output?.dispose();
    } else x = st.input as Tensor;
    if (!x) throw new Error(`pipeline: ${formatAction(a)} has no input (missing RECV_F?)`);
    if (a.stage > 0) {
      x.requiresGrad = train;
      st.input = x;
    }
    const rng = layerRng?.(a.microbatch);
    const run = (): Tensor => module.forwardStage(a.stage, x, rng);
    const out = tidy(() => {
      const y = !train ? noGrad(run) : split ? withDeferredWeightGrads(null, run) : run();
      if (a.stage !== last) return y;
      if (!module.lossFn) throw new Error('pipeline: the last stage needs a lossFn (PipelineModule option)');
      const loss = module.lossFn(y, data(a.microbatch)[1]);
      lossSum.add(loss);
      // Each micro-batch's gradient is 1/m of the batch mean's, as gradient accumulation (times the fp16 loss scale).
      return scaledLoss(loss, m, scaler, deviceScale);
    });
    out.kept = true;
    st.output = out;
    if (!train && a.stage > 0) {
      st.input?.dispose();
      st.input = null;
    }
    if (!train && a.stage === last) {
      out.dispose();
      st.output = null;
    }
  };

  const backward = (a: Action): void => {
    const st = state(a.stage, a.microbatch);
    let g: Tensor | null = null;
    if (a.stage !== last) {
      if (local(a.stage + 1)) {
        const next = state(a.stage + 1, a.microbatch);
        g = next.gradIn;
        next.gradIn = null;
      } else {
        g = st.gradOut;
        st.gradOut = null;
      }
      if (!g) throw new Error(`pipeline: ${formatAction(a)} has no output gradient (missing RECV_B?)`);
    }
    const out = st.output as Tensor;
    const run = (): void => tidy(() => backwardFn(out, g ?? undefined));
    if (split) withDeferredWeightGrads(st.jobs, run);
    else run();
    out.dispose();
    g?.dispose();
    st.output = null;
    if (a.stage > 0 && st.input) {
      st.gradIn = st.input.grad;
      st.input.grad = null;
      st.input.dispose();
      st.input = null;
    }
  };

  try {
    runActions();
  } catch (e) {
    lossSum.dispose();
    throw e;
  } finally {
    // Also after a failed action: nothing this batch held outlives it.
    for (const s of states.values()) for (const t of [s.input, s.output, s.gradOut, s.gradIn]) if (t && !t.disposed) t.dispose();
  }
  for (const [key, s] of states) if (s.jobs.length) throw new Error(`pipeline: weight gradients of ${key} were never computed (no W action)`);
  p2p.finish();
  return { lossSum, timeline };

  function runActions(): void {
  for (const a of actions) {
    if (!train && a.kind === 'REDUCE_GRAD') continue;
    const start = now();
    const cpu0 = process.cpuUsage();
    const st = state(a.stage, a.microbatch);
    switch (a.kind) {
      case 'F':
        forward(a);
        break;
      case 'B':
        backward(a);
        break;
      case 'W':
        runWeightGrads(st.jobs);
        afterW?.();
        break;
      case 'RECV_F':
        st.input = p2p.recv('F', a.stage, a.microbatch, a.peer as number);
        break;
      case 'RECV_B':
        st.gradOut = p2p.recv('B', a.stage, a.microbatch, a.peer as number);
        break;
      case 'SEND_F':
        noGrad(() => p2p.sendActivation(st.output as Tensor, a.stage, a.microbatch, a.peer as number));
        if (!train) {
          st.output?.dispose();
          st.output = null;
        }
        break;
      case 'SEND_B':
        if (st.gradIn) noGrad(() => p2p.sendGrad(st.gradIn as Tensor, a.peer as number));
        else throw new Error(`pipeline: ${formatAction(a)}: the input of stage ${a.stage} got no gradient`);
        st.gradIn.dispose();
        st.gradIn = null;
        break;
      case 'REDUCE_GRAD':
        break;
    }
    const cpu = process.cpuUsage(cpu0);
    timeline.push({ action: a, start, end: now(), cpu: (cpu.user + cpu.system) / 1000 });
    p2p.progress();
  }
  }
}
