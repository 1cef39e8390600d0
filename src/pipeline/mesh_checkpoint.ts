/**
 * Layout-independent checkpoints of a PipelineEngine with ZeRO over dp and, optionally,
 * tensor-parallel stages: the sharded format of engine/checkpoint, every tensor stored under the
 * full model's name and full shape. Each rank's ZeRO partition shards (a flat range of a local
 * tp shard) are translated into the runs of the full tensor they cover (a row-split tensor: one
 * run per stacked block; a column split: one per row), so a (dp, pp, tp) save loads at any other
 * (dp', pp', tp'): each loading rank reads the full-tensor ranges its own partition covers.
 * Every element is written once: parameters every tp rank holds whole by tp rank 0, a weight
 * tied across stages by its owning stage. Optimizer state (`optimizer.<name>.<state>`) travels
 * the same way, so training continues as if uninterrupted. Module buffers (BatchNorm's running
 * statistics) are saved by full name too (buffer_checkpoint.ts). Loading reads and verifies
 * everything, then the ranks agree before any state changes (checkpoint_agree.ts).
 */
import type { ProcessGroup } from '../dist/process_group.ts';
import { type LoadedCheckpoint, loadCheckpoint, type TensorRequest } from '../engine/checkpoint/load.ts';
import { openCheckpoint } from '../engine/checkpoint/reader.ts';
import { saveCheckpoint, type TensorShard } from '../engine/checkpoint/save.ts';
import * as k from '../ops/kernels.ts';
import { numel } from '../tensor/shape.ts';
import type { Tensor } from '../tensor/tensor.ts';
import { colRuns, type Run, rowRuns } from '../tensor_parallel/shard_init.ts';
import { fullShape, shardLayouts } from '../tensor_parallel/shard_layout.ts';
import type { PartitionShard } from '../zero/shards.ts';
import type { ZeroOptimizer } from '../zero/zero_optimizer.ts';
import { type BufferPlace, bufferRequests, bufferShards } from './buffer_checkpoint.ts';
import { agreeToLoad } from './checkpoint_agree.ts';
import type { PipelineEngine } from './engine.ts';

export interface MeshCheckpointOptions {
  /** The full model's name of (layer index, parameter name in the layer), e.g. gptPipelineLayers' `key`. */
  key: (index: number, name: string) => string;
  /** The mesh's tp group when the stages are tensor-parallel. */
  tpGroup?: ProcessGroup | null;
  /** The world (every rank of the mesh): ranks the checkpoint's files and waits for them. */
  world: ProcessGroup;
}

/** Loading options of the mesh checkpoints. */
export interface MeshLoadOptions {
  /** Default: the tag in `dir/latest`. */
  tag?: string;
  /**
   * As DeepSpeed's load_module_strict (default true): a module buffer the checkpoint lacks is an
   * error naming it; false keeps the model's value (checkpoints saved before buffers were kept).
   */
  loadModuleStrict?: boolean;
}

/** Where a local parameter's elements live in the full tensor. */
export interface Placement {
  full: string;
  fullShape: number[];
  runs: Run[];
  /** Whether this rank writes it (one writer per element across tp and tied stages). */
  write: boolean;
}

/**
 * Saves `dir/tag` from every rank of the mesh (each writes its own files; rank 0 `latest`).
 * @example
 * await saveMeshCheckpoint(engine, 'ckpt', 'step100', { key, tpGroup: mesh.group('tp'), world });
 */
export async function saveMeshCheckpoint(engine: PipelineEngine, dir: string, tag: string, opts: MeshCheckpointOptions & { clientState?: unknown }): Promise<void> {
  const zero = needZero(engine, 'saveMeshCheckpoint');
  const places = placements(engine, opts);
  const shards = zero.partitionShards();
  const tensors: TensorShard[] = [];
  for (const s of shards) {
    const { place, full } = lookup(places, s, 'saveMeshCheckpoint');
    if (!place.write) continue;
    for (const piece of pieces(place.runs, s.shardRange)) {
      tensors.push({ name: full, fullShape: place.fullShape, dtype: s.dtype, shardRange: piece.fullRange, data: s.data.narrow(0, piece.at, piece.n), group: s.group });
    }
  }
  try {
    // Written once per pp position: by dp rank 0's tp rank 0.
    const tpRank = opts.tpGroup && opts.tpGroup.size > 1 ? opts.tpGroup.rank : 0;
    const buffers = bufferShards(engine, opts.key, (engine.dpGroup?.rank ?? 0) === 0 && tpRank === 0, 'saveMeshCheckpoint');
    await saveCheckpoint(dir, tag, {
      rank: opts.world.rank, worldSize: opts.world.size, tensors: [...tensors, ...buffers], barrier: () => {
        opts.world.barrier();
      },
      clientState: { zeroSteps: zero.steps, globalSteps: engine.globalSteps, skippedSteps: engine.skippedSteps, user: opts.clientState ?? null },
    });
  } finally {
    for (const t of tensors) t.data.dispose();
    for (const s of shards) s.data.dispose();
    zero.flushOffload?.();          // nvme offload (hand-built engines): free what the save read in
  }
}

/**
 * Loads `dir/tag` (default: latest), saved at any mesh, into this engine's ZeRO partitions,
 * optimizer state and module buffers; returns the clientState given at save. Call on every rank:
 * each reads and verifies its part, then all agree before anything changes.
 * @example
 * const client = loadMeshCheckpoint(engine, 'ckpt', { key, tpGroup: mesh.group('tp'), world });
 */
export function loadMeshCheckpoint(engine: PipelineEngine, dir: string, opts: MeshCheckpointOptions & MeshLoadOptions): unknown {
  const where = 'loadMeshCheckpoint';
  const zero = needZero(engine, where);
  const places = placements(engine, opts);
  const shards = zero.partitionShards();
  const plan: { s: PartitionShard; full: string; cover: [number, number]; place: Placement }[] = [];
  let ck: LoadedCheckpoint | null = null;
  let buffers: BufferPlace[] = [];
  let error: unknown = null;
  try {
    const want: TensorRequest[] = [];
    for (const s of shards) {
      const { place, full } = lookup(places, s, where);
      const ps = pieces(place.runs, s.shardRange);
      if (ps.length === 0) continue;
      const cover: [number, number] = [Math.min(...ps.map((p) => p.fullRange[0])), Math.max(...ps.map((p) => p.fullRange[1]))];
      if (want.some((w) => w.name === full)) throw new Error(`${where}: "${full}" is held twice in this rank's partition`);
      want.push({ name: full, fullShape: place.fullShape, dtype: s.dtype, shardRange: cover });
      plan.push({ s, full, cover, place });
    }
    const opened = openCheckpoint(dir, opts.tag);
    const b = bufferRequests(engine, opts.key, opened.tensors, `${dir}/${opened.tag}`, opts.loadModuleStrict ?? true, where);
    buffers = b.into;
    ck = loadCheckpoint(dir, { tag: opened.tag, rank: opts.world.rank, worldSize: opts.world.size, want: [...want, ...b.want] });
    const c = ck.clientState as { zeroSteps?: unknown } | null;
    if (!c || typeof c !== 'object' || !Number.isInteger(c.zeroSteps)) throw new Error(`${where}: ${dir}/${ck.tag} was not saved by a pipeline engine's saveCheckpoint (no step counts in its state)`);
  } catch (e) {
    error = e;
  }
  try {
    agreeToLoad(opts.world, error);
    const loaded = ck as LoadedCheckpoint;
    zero.clearOptimizerState();
    for (const { s, full, cover, place } of plan) {
      const src = loaded.tensors.get(full) as Tensor;
      for (const piece of pieces(place.runs, s.shardRange)) {
        const from = src.alias([piece.n], [1], src.offset + piece.fullRange[0] - cover[0]);
        const to = s.data.narrow(0, piece.at, piece.n);
        k.copyInto(from, to);
        from.dispose();
        to.dispose();
      }
    }
    for (const b of buffers) k.copyInto(loaded.tensors.get(b.full) as Tensor, b.t);
    const c = loaded.clientState as { zeroSteps: number; globalSteps: number; skippedSteps: number; user: unknown };
    zero.steps = c.zeroSteps;
    zero.allGatherParameters();
    engine.globalSteps = c.globalSteps;
    engine.skippedSteps = c.skippedSteps;
    return c.user;
  } finally {
    if (ck) for (const t of ck.tensors.values()) t.dispose();
    for (const s of shards) s.data.dispose();
  }
}

function needZero(engine: PipelineEngine, where: string): ZeroOptimizer {
  if (!engine.zero) throw new Error(`${where}: the engine has no ZeRO optimizer (give PipelineEngine the zero option, stage 1, 2 or 3)`);
  return engine.zero;
}

/** Each local parameter's full name, full shape and runs, by its name in the pipeline module. */
export function placements(engine: PipelineEngine, opts: MeshCheckpointOptions): Map<string, Placement> {
  const mod = engine.module;
  const tp = opts.tpGroup && opts.tpGroup.size > 1 ? opts.tpGroup : null;
  const [rank, size] = [tp?.rank ?? 0, tp?.size ?? 1];
  const layouts = shardLayouts(mod);
  const tiedCopies = new Set(mod.ties.filter((t) => t.param && t.owner !== mod.pipeRank).map((t) => t.param as Tensor));
  const out = new Map<string, Placement>();
  for (const [name, p] of mod.namedParameters()) {
    const dot = name.indexOf('.');
    const full = opts.key(Number(name.slice(0, dot)), name.slice(dot + 1));
    const layout = tp ? (layouts.get(name) ?? null) : null;
    const shape = fullShape(p.shape, layout, size);
    let runs: Run[];
    if (!layout) runs = [{ at: 0, length: p.numel, start: 0 }];
    else if (layout.dim === 0) runs = rowRuns(shape[0], numel(shape) / shape[0], layout.blocks, rank, size);
    else if (layout.dim === 1 && shape.length === 2) runs = colRuns(shape[0], shape[1], rank, size);
    else throw new Error(`mesh checkpoint: "${name}" is split along dim ${layout.dim} of ${shape.length}, which has no run layout`);
    out.set(name, { full, fullShape: shape, runs, write: !tiedCopies.has(p) && (layout !== null || rank === 0) });
  }
  return out;
}

/** A partition shard's placement and full name (`optimizer.<param>.<state>` for optimizer state). */
function lookup(places: Map<string, Placement>, s: PartitionShard, where: string): { place: Placement; full: string } {
  let param = s.name;
  let state: string | null = null;
  if (s.group === 'optimizer') {
    const last = s.name.lastIndexOf('.');
    param = s.name.slice('optimizer.'.length, last);
    state = s.name.slice(last + 1);
  }
  const place = places.get(param);
  if (!place) throw new Error(`${where}: the ZeRO partition holds "${s.name}", which is not a parameter of the pipeline module`);
  return { place, full: state ? `optimizer.${place.full}.${state}` : place.full };
}

/** The parts of local flat range [a, b) in each run: local offset from a, length, full-tensor range. */
export function pieces(runs: Run[], [a, b]: [number, number]): { at: number; n: number; fullRange: [number, number] }[] {
  const out: { at: number; n: number; fullRange: [number, number] }[] = [];
  for (const r of runs) {
    const lo = Math.max(a, r.at);
    const hi = Math.min(b, r.at + r.length);
    if (lo < hi) out.push({ at: lo - a, n: hi - lo, fullRange: [r.start + lo - r.at, r.start + hi - r.at] });
  }
  return out;
}
