/**
 * What happens to a stage's gradients once per step, after its last micro-batch: tied copies
 * summed across the stages that hold them, averaged over data-parallel replicas, and the global
 * norm (over every stage, each tied weight counted once) for clipping.
 */
import type { ProcessGroup } from '../dist/process_group.ts';
import type { Work } from '../dist/work.ts';
import type { LossScaler } from '../engine/loss_scaler.ts';
import { native } from '../native.ts';
import { tensor } from '../ops/create.ts';
import * as k from '../ops/kernels.ts';
import { clipFactor, scaleToMaxNorm } from '../optim/clip_grad.ts';
import { DeviceSums, withDeviceSums } from '../optim/device_sums.ts';
import type { Device } from '../tensor/storage.ts';
import type { Tensor } from '../tensor/tensor.ts';
import { unscaleOrSkip } from './loss_scale.ts';
import type { PipelineModule } from './module.ts';
import { tensorParallelDuplicates } from './tensor_parallel_stage.ts';

/** Sums each tied weight's gradient over the pipeline ranks holding it (a missing gradient counts as zero). */
export function sumTiedGrads(module: PipelineModule): void {
  for (const t of module.ties) {
    if (!t.group || !t.param) continue;
    if (!t.param.grad || t.param.grad.disposed) {
      const z = k.fill(k.empty(t.param.shape, t.param.dtype, 'grad', false, t.param.device), 0);
      z.kept = true;
      t.param.grad = z;
    }
    t.group.allReduce(t.param.grad, 'sum');
  }
}

/** Averages every gradient over the data-parallel group (plain data parallelism: once per step). */
export function averageGrads(params: Tensor[], group: ProcessGroup): void {
  if (group.size === 1) return;
  const works: Work[] = [];
  for (const p of params) {
    if (!p.grad || p.grad.disposed) {
      const z = k.fill(k.empty(p.shape, p.dtype, 'grad', false, p.device), 0);
      z.kept = true;
      p.grad = z;
    }
    works.push(group.allReduce(p.grad, 'avg', { async: true }));
  }
  for (const w of works) w.wait();
}

/** A number summed over each group in turn (f64 all-reduces). */
export function allReduceNumber(value: number, groups: (ProcessGroup | null)[], op: 'sum' | 'avg' = 'sum'): number {
  let v = value;
  for (const g of groups) {
    if (!g || g.size === 1) continue;
    const t = tensor([v], { dtype: 'f64', tag: 'comm' });
    g.allReduce(t, op);
    v = t.item();
    t.dispose();
  }
  return v;
}

/**
 * Parameters whose gradients count in this rank's share of the global norm: tied copies only on
 * their owner; with tensor-parallel layers (`tp`), parameters every tp rank holds whole only on tp rank 0.
 */
export function normParams(module: PipelineModule, tp: ProcessGroup | null = null): Tensor[] {
  const skip = tensorParallelDuplicates(module, tp);
  for (const t of module.ties) if (t.param && t.owner !== module.pipeRank) skip.add(t.param);
  return module.parameters().filter((p) => !skip.has(p));
}

/**
 * Global-norm clipping over the whole pipeline (plain optimizer: gradients already averaged
 * over dp, so the norm is summed over the pipeline group, and tp with tensor-parallel layers). Returns the norm before clipping.
 */
export function clipPipelineGrads(module: PipelineModule, maxNorm: number, tp: ProcessGroup | null = null, device?: Device): number {
  const params = module.parameters();
  const [sq] = withDeviceSums(device ?? params[0]?.device ?? 'cpu', 1, (s) => {
    for (const g of liveGrads(normParams(module, tp))) s.add(g, 2);
    s.allReduce([module.group, tp]);
    return s.read();
  });
  const total = Math.sqrt(sq);
  if (maxNorm > 0) scaleToMaxNorm(liveGrads(params), total, maxNorm);
  return total;
}

/** Gradients that exist (not null, not disposed). */
function liveGrads(params: Tensor[]): Tensor[] {
  return params.flatMap((p) => (p.grad && !p.grad.disposed ? [p.grad] : []));
}

/**
 * A plain (non-ZeRO) pipeline step's loss-scale check and clipping from one host read: slot 0 of
 * one device tensor sums every gradient's squares (all-reduced over the pipeline, tp and dp
 * groups: non-finite exactly when some rank overflowed), slot 1 the squares of the norm's share
 * (`normParams`, over the pipeline and tp groups). With `scaler`, an overflow skips (ok false),
 * else `gradScale` holds 1/scale; with maxNorm > 0 it also holds the clip factor of the global
 * norm (that of the unscaled gradients: slot 1 / scale²). The gradients are left as they are: the
 * optimizer multiplies them by `gradScale` in f32. norm is NaN without clipping or on a skip.
 * Call on every rank.
 */
export function checkPipelineGrads(
  module: PipelineModule, scaler: LossScaler | null, maxNorm: number, dp: ProcessGroup | null, tp: ProcessGroup | null, device?: Device,
): { ok: boolean; norm: number; gradScale: number } {
  if (!scaler && maxNorm <= 0) return { ok: true, norm: Number.NaN, gradScale: 1 };
  const params = module.parameters();
  const [all, mine] = withDeviceSums(device ?? params[0]?.device ?? 'cpu', 2, (s) => {
    pipelineGradSums(s, module, scaler !== null, maxNorm, dp, tp);
    return s.read();
  });
  const unscale = scaler ? unscaleOrSkip(liveGrads(params), scaler, [], !Number.isFinite(all)) : 1;
  if (unscale === false) return { ok: false, norm: Number.NaN, gradScale: 1 };
  if (maxNorm <= 0) return { ok: true, norm: Number.NaN, gradScale: unscale };
  const total = Math.sqrt(mine) * unscale;
  return { ok: true, norm: total, gradScale: unscale * clipFactor(total, maxNorm) };
}

/**
 * checkPipelineGrads decided on the device, nothing read: the same two slots go to
 * `cuda.stepDecision` (global 0, local 1), which writes {skip, gradScale, norm} into `decision`
 * (f64 [3] on `device`) by the host's arithmetic. `unscale` is 1/scale (1 without a scaler).
 */
export function queuePipelineDecision(
  module: PipelineModule, check: boolean, unscale: number, maxNorm: number, dp: ProcessGroup | null, tp: ProcessGroup | null, device: Device, decision: Tensor,
  /** fp16's 1/scale on the device (DeviceLossScale.unscale), read instead of `unscale` when the decision runs. */
  unscaleFrom: Tensor | null = null,
): void {
  const s = new DeviceSums(device, 2);
  try {
    pipelineGradSums(s, module, check, maxNorm, dp, tp);
    const v = s.values;
    const from = unscaleFrom ? [unscaleFrom.id, unscaleFrom.offset] : [];
    native.cuda.stepDecision(v.id, v.offset, 0, 1, unscale, maxNorm, check, decision.id, decision.offset, ...from);
  } finally {
    // Back to the cache once queued: the next user of the block is ordered after these launches on the stream.
    s.dispose();
  }
}

/** checkPipelineGrads' two slots: 0 every gradient's squares over pipe, tp and dp (with `check`), 1 the norm's share over pipe and tp (maxNorm > 0). */
function pipelineGradSums(s: DeviceSums, module: PipelineModule, check: boolean, maxNorm: number, dp: ProcessGroup | null, tp: ProcessGroup | null): void {
  if (check) for (const g of liveGrads(module.parameters())) s.add(g, 2, 0);
  if (maxNorm > 0) for (const g of liveGrads(normParams(module, tp))) s.add(g, 2, 1);
  s.allReduce([module.group, tp]);
  if (check) s.allReduce([dp], 0, 1);
}
