/**
 * Frozen parameters under ZeRO (DeepSpeed trains exactly `model_parameters` with requires_grad):
 * which of a model's parameters train, and, for stages 1/2, the frozen ones of each dtype in a
 * flat buffer partitioned like the trained ones but with no gradient and no optimizer state. Every
 * rank holds them whole (they never change); the partition only says which rank saves which slice
 * of them in a checkpoint, so that checkpoints stay layout-independent.
 */
import type { ProcessGroup } from '../dist/process_group.ts';
import { type FlatParameters, flattenParameters } from '../nn/flat.ts';
import type { Tensor } from '../tensor/tensor.ts';
import { allGatherParams } from './comms.ts';
import { type FlatSlot, type Partition, partition } from './partition.ts';

/** Which parameters train: a set of them, or a predicate on (name, parameter). Default: all. */
export type Trainable = Iterable<Tensor> | ((name: string, p: Tensor) => boolean);

/**
 * Splits `named` into trained and frozen parameters: a parameter trains when `trainable` selects
 * it and it requires a gradient (a parameter with requiresGrad false never gets one). `where`
 * names the caller in errors.
 */
export function splitTrainable(named: [string, Tensor][], trainable: Trainable | undefined, where: string): { trained: [string, Tensor][]; frozen: [string, Tensor][] } {
  let pick: (name: string, p: Tensor) => boolean = () => true;
  if (typeof trainable === 'function') pick = trainable;
  else if (trainable !== undefined) {
    if (typeof (trainable as Iterable<Tensor>)[Symbol.iterator] !== 'function') throw new Error(`${where}: trainable must be an iterable of parameters or a function (name, p) => boolean`);
    const set = new Set(trainable);
    const mine = new Set(named.map(([, p]) => p));
    const foreign = [...set].filter((p) => !mine.has(p));
    if (foreign.length > 0) throw new Error(`${where}: trainable holds ${foreign.length} tensor(s) that are not parameters of the model (first: ${String(foreign[0])})`);
    pick = (_, p) => set.has(p);
  }
  const trained: [string, Tensor][] = [];
  const frozen: [string, Tensor][] = [];
  for (const e of named) (pick(e[0], e[1]) && e[1].requiresGrad ? trained : frozen).push(e);
  if (trained.length === 0) throw new Error(`${where}: no parameter trains (trainable selected none that requires a gradient)`);
  return { trained, frozen };
}

/** One dtype's frozen parameters under stage 1/2: a flat buffer and this rank's (checkpoint) partition of it. */
export interface FrozenGroup {
  dtype: Tensor['dtype'];
  flat: FlatParameters;
  part: Partition;
  slots: (FlatSlot & { param: Tensor })[];
}

/** Flattens `named` (one dtype) into `pg`'s arena, padded to a multiple of the dp size. */
export function buildFrozenGroup(named: [string, Tensor][], pg: ProcessGroup): FrozenGroup {
  const flat = flattenParameters(named.map(([, p]) => p), { padTo: pg.size, allocate: (n, dt) => pg.sharedEmpty([n], { dtype: dt, tag: 'param', device: named[0][1].device }) });
  const numel = named.reduce((n, [, p]) => n + p.numel, 0);
  const part = partition(numel, pg.size, pg.rank);
  const slots = named.map(([name, param], i) => ({ name, param, start: flat.offsets[i], end: flat.offsets[i] + param.numel }));
  return { dtype: named[0][1].dtype, flat, part, slots };
}

/** Every rank's partition gathered into the frozen buffers (after a checkpoint load wrote only this rank's slices). */
export function gatherFrozen(pg: ProcessGroup, groups: readonly FrozenGroup[]): void {
  const works = groups.map((g) => allGatherParams(pg, g.flat.buffer, g.part.start, g.part.size));
  for (const w of works) w.wait();
}
