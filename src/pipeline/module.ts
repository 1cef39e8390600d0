/**
 * PipelineModule: a model given as a flat list of layers, cut into contiguous stages by a
 * partitioner. This process builds only the layers of the stages it holds (pipeline rank r of p
 * holds stages r, r + p, ... when there are p·v stages), registered as children named by their
 * index in the list ("3.attn.c_attn.weight"), so optimizers, DataParallel and ZeRO see exactly
 * this rank's parameters.
 */

import { formatPartition, type LayerInfo, partitionLayers, type StagePartition } from '../../partitioners/pipeline.ts';
import { checkpoint } from '../autograd/checkpoint.ts';
import type { ProcessGroup } from '../dist/process_group.ts';
import { withoutInit } from '../nn/init.ts';
import { Module } from '../nn/module.ts';
import { getRngState, setRngState, takeCounters } from '../tensor/random.ts';
import type { Tensor } from '../tensor/tensor.ts';
import { registerExternalParameter } from '../zero/external.ts';
import { LAYER_RNG_STRIDE, type LayerRng } from './layer_rng.ts';
import { LayerSpec, type PipeLayer, TiedLayerSpec } from './layer_spec.ts';

export interface PipelineModuleOptions {
  layers: PipeLayer[];
  /** Model stages in all: pipeline ranks × virtual stages (interleaved schedules). */
  numStages: number;
  /** 'parameters' (default, as DeepSpeed), 'uniform', 'type:<regex>' or 'balanced' (with partitionCosts). */
  partitionMethod?: string;
  /** Per-layer costs for 'balanced' (FLOPs, measured time, ...). */
  partitionCosts?: number[];
  /** The last stage's loss: (output, target) → scalar. */
  lossFn?: (output: Tensor, target: Tensor) => Tensor;
  /** Recompute activations in backward, keeping only every n-th layer's input (0: off, the default). */
  activationCheckpointInterval?: number;
  /** The pipeline group (the mesh's 'pp' group); its rank and size say which stages this process holds. Default: one process holding every stage. */
  group?: ProcessGroup;
}

interface LocalLayer {
  index: number;
  run: (x: Tensor) => Tensor;
  module: Module | null;
}

/** A tie between stages: the key, its parameter here, and the pipeline ranks that hold it. */
export interface Tie {
  key: string;
  /** This rank's copy (null when this rank holds none of the key). */
  param: Tensor | null;
  /** Pipeline ranks holding the key, ascending. */
  ranks: number[];
  /** The rank of the key's first occurrence: its values are broadcast, and its copy counts once in norms. */
  owner: number;
  group: ProcessGroup | null;
}

/**
 * @example
 * const pipe = new PipelineModule({
 *   layers: gptPipelineLayers(gptConfig('tiny')).layers, numStages: 4, partitionMethod: 'uniform',
 *   lossFn: (logits, y) => crossEntropy(logits.reshape([-1, 64]), y.reshape([-1])), group: mesh.group('pp'),
 * });
 * const engine = await PipelineEngine.create({ module: pipe, ... });
 */
export class PipelineModule extends Module {
  readonly numStages: number;
  readonly partition: StagePartition;
  readonly lossFn: ((output: Tensor, target: Tensor) => Tensor) | undefined;
  activationCheckpointInterval: number;
  readonly group: ProcessGroup | null;
  /** Pipeline rank and size; rank r holds stages r, r + ranks, ... */
  readonly pipeRank: number;
  readonly pipeRanks: number;
  readonly layerNames: string[];
  readonly ties: Tie[] = [];
  private readonly local = new Map<number, LocalLayer[]>();
  private tied = false;

  constructor(opts: PipelineModuleOptions) {
    super();
    const known = ['layers', 'numStages', 'partitionMethod', 'partitionCosts', 'lossFn', 'activationCheckpointInterval', 'group'];
    for (const k of Object.keys(opts)) if (!known.includes(k)) throw new Error(`PipelineModule: unknown option "${k}" (known: ${known.join(', ')})`);
    const { layers, numStages } = opts;
    if (!Array.isArray(layers) || layers.length === 0) throw new Error('PipelineModule: layers must be a non-empty array');
    layers.forEach((l, i) => {
      if (!(l instanceof Module) && !(l instanceof LayerSpec) && typeof l !== 'function') {
        throw new Error(`PipelineModule: layers[${i}] must be a Module, a LayerSpec, a TiedLayerSpec or a function, got ${l === null ? 'null' : typeof l}`);
      }
    });
    this.group = opts.group ?? null;
    this.pipeRank = this.group?.rank ?? 0;
    this.pipeRanks = this.group?.size ?? 1;
    if (!Number.isInteger(numStages) || numStages < 1 || numStages % this.pipeRanks !== 0) {
      throw new Error(`PipelineModule: numStages must be a positive multiple of the pipeline ranks (${this.pipeRanks}), got ${numStages}`);
    }
    this.numStages = numStages;
    this.lossFn = opts.lossFn;
    this.activationCheckpointInterval = opts.activationCheckpointInterval ?? 0;
    if (!Number.isInteger(this.activationCheckpointInterval) || this.activationCheckpointInterval < 0) {
      throw new Error(`PipelineModule: activationCheckpointInterval must be a non-negative integer, got ${opts.activationCheckpointInterval}`);
    }
    this.layerNames = layers.map((l) => (l instanceof LayerSpec ? l.name : l instanceof Module ? l.constructor.name : l.name || 'function'));
    const method = opts.partitionMethod ?? 'parameters';
    const infos: LayerInfo[] = layers.map((l, i) => ({ name: this.layerNames[i], type: this.layerNames[i], params: method === 'parameters' ? countParams(l) : undefined }));
    this.partition = partitionLayers(method, infos, numStages, opts.partitionCosts);
    this.buildLocal(layers);
  }

  /** The stages this process holds, ascending. */
  get stages(): number[] {
    return Array.from({ length: this.numStages / this.pipeRanks }, (_, c) => this.pipeRank + c * this.pipeRanks);
  }

  /** Layer indices [lo, hi) of a stage. */
  stageRange(stage: number): [number, number] {
    this.checkStage(stage);
    return [this.partition.boundaries[stage], this.partition.boundaries[stage + 1]];
  }

  /** The pipeline rank that holds a stage. */
  stageRank(stage: number): number {
    return stage % this.pipeRanks;
  }

  /**
   * Runs one of this process's stages; with activationCheckpointInterval n > 0, every n layers
   * run under checkpoint() and only their input is kept for backward. With `rng`, each layer
   * starts from `rng(its global index)` (PipelineEngine's partition-independent dropout streams);
   * checkpoint() replays the same states in recomputation.
   */
  forwardStage(stage: number, x: Tensor, rng?: LayerRng): Tensor {
    const layers = this.local.get(stage);
    if (!layers) throw new Error(`PipelineModule: stage ${stage} is not held by pipeline rank ${this.pipeRank} (it holds ${this.stages.join(', ')})`);
    const n = this.activationCheckpointInterval;
    let h = x;
    for (let i = 0; i < layers.length; i += n > 0 ? n : layers.length) {
      const chunk = layers.slice(i, n > 0 ? i + n : layers.length);
      const run = (t: Tensor): Tensor => chunk.reduce((acc, l) => (rng ? runSeeded(l, acc, rng) : l.run(acc)), t);
      h = n > 0 ? checkpoint(run, h) : run(h);
    }
    return h;
  }

  /** Forward of every stage in order: only when this process holds them all (one pipeline rank). */
  override forward(x: Tensor): Tensor {
    if (this.pipeRanks !== 1) throw new Error(`PipelineModule.forward: this process holds stages ${this.stages.join(', ')} of ${this.numStages}; use a PipelineEngine`);
    let h = x;
    for (let s = 0; s < this.numStages; s++) h = this.forwardStage(s, h);
    return h;
  }

  /** The module of layer `index` when this process holds it. */
  layerModule(index: number): Module | null {
    for (const ls of this.local.values()) for (const l of ls) if (l.index === index) return l.module;
    return null;
  }

  /**
   * Creates one group per tied key held on several pipeline ranks and broadcasts each tied
   * weight from its owner. Every rank of the pipeline group calls it (PipelineEngine does).
   */
  async tie(): Promise<void> {
    if (this.tied) return;
    this.tied = true;
    for (const t of this.ties) {
      if (t.ranks.length < 2 || !this.group) continue;
      t.group = await this.group.newGroup(t.ranks, { name: `tied(${t.key})` });
    }
    for (const t of this.ties) if (t.group && t.param) t.group.broadcast(t.param, t.ranks.indexOf(t.owner));
  }

  /** One line per stage (its layers, cost), and where each tied key lives. */
  describe(): string {
    const lines = [formatPartition(this.partition, this.layerNames)];
    for (const t of this.ties) lines.push(`  tied '${t.key}': pipeline ranks ${t.ranks.join(', ')} (owner ${t.owner})`);
    return lines.join('\n');
  }

  // ---- internals ---------------------------------------------------------------------------

  private checkStage(stage: number): void {
    if (!Number.isInteger(stage) || stage < 0 || stage >= this.numStages) throw new Error(`PipelineModule: stage ${stage} is outside 0..${this.numStages - 1}`);
  }

  private stageOfLayer(i: number): number {
    const b = this.partition.boundaries;
    let s = 0;
    while (b[s + 1] <= i) s++;
    return s;
  }

  private buildLocal(layers: PipeLayer[]): void {
    const mine = new Set(this.stages);
    const tiedModules = new Map<string, Module>();
    const tieInfo = new Map<string, { ranks: Set<number>; owner: number; attr: string }>();
    // The first occurrence of a tied key draws its random numbers; later ones take the owner's values.
    const firstOfKey = (l: PipeLayer, i: number): boolean =>
      !(l instanceof TiedLayerSpec) || layers.findIndex((o) => o instanceof TiedLayerSpec && o.key === l.key) === i;
    layers.forEach((l, i) => {
      const stage = this.stageOfLayer(i);
      const rank = this.stageRank(stage);
      if (l instanceof TiedLayerSpec) {
        const info = tieInfo.get(l.key) ?? { ranks: new Set<number>(), owner: rank, attr: l.tiedWeightAttr };
        info.ranks.add(rank);
        tieInfo.set(l.key, info);
      }
      if (!mine.has(stage)) {
        // Keep the generator where a single-process build would have it.
        if (l instanceof LayerSpec && l.rngDraws && firstOfKey(l, i)) takeCounters(l.rngDraws);
        return;
      }
      let module: Module | null = null;
      let run: (x: Tensor) => Tensor;
      if (l instanceof TiedLayerSpec) {
        if (!tiedModules.has(l.key)) {
          const built: Module = firstOfKey(l, i) ? l.build() : withoutInit(() => l.build());
          tiedModules.set(l.key, built);
          this.registerModule(String(i), built);
        }
        const m = tiedModules.get(l.key) as Module;
        module = m;
        const fn = l.forwardFn;
        if (fn) {
          // A module around forwardFn, so ZeRO-3 gathers the tied weight for it (an external parameter).
          const wrapper = this.registerModule(`${i}_forward`, new TiedForward(m, fn));
          registerExternalParameter(wrapper, m.getParameter(l.tiedWeightAttr));
          run = (x) => wrapper.forward(x);
        } else run = (x) => m.forward(x) as Tensor;
      } else if (l instanceof LayerSpec) {
        const m = l.build();
        this.registerModule(String(i), m);
        module = m;
        run = (x) => m.forward(x) as Tensor;
      } else if (l instanceof Module) {
        this.registerModule(String(i), l);
        module = l;
        run = (x) => l.forward(x) as Tensor;
      } else {
        run = l;
      }
      const list = this.local.get(stage) ?? [];
      list.push({ index: i, run, module });
      this.local.set(stage, list);
    });
    for (const s of mine) if (!this.local.has(s)) this.local.set(s, []);
    // Every rank lists every tie held on several ranks (newGroup is collective), in key order.
    for (const [key, info] of [...tieInfo].sort(([a], [b]) => (a < b ? -1 : 1))) {
      const m = tiedModules.get(key);
      if (!m && info.ranks.size < 2) continue;
      const ranks = [...info.ranks].sort((a, b) => a - b);
      this.ties.push({ key, param: m ? m.getParameter(info.attr) : null, ranks, owner: info.owner, group: null });
    }
  }
}

/** One layer from its own generator state; it must stay within its counter range. */
function runSeeded(l: LocalLayer, x: Tensor, rng: LayerRng): Tensor {
  const s = rng(l.index);
  setRngState(s);
  const y = l.run(x);
  const drawn = getRngState().offset - s.offset;
  if (drawn > LAYER_RNG_STRIDE) throw new Error(`PipelineModule: layer ${l.index} drew ${drawn} random numbers in one forward, more than ${LAYER_RNG_STRIDE}`);
  return y;
}

/** Runs a tied occurrence's forwardFn as a module of its own (its hooks fire; it owns no parameters). */
class TiedForward extends Module {
  constructor(
    private readonly tied: Module,
    private readonly fn: (module: Module, x: Tensor) => Tensor,
  ) {
    super();
  }

  override forward(x: Tensor): Tensor {
    return this.fn(this.tied, x);
  }
}

/** Parameters of a layer without keeping it (a LayerSpec is built without drawing random numbers, then freed). */
function countParams(l: PipeLayer): number {
  if (l instanceof Module) return l.numParameters();
  if (l instanceof LayerSpec) {
    const m = withoutInit(() => l.build());
    const n = m.numParameters();
    m.dispose();
    return n;
  }
  return 0;
}
