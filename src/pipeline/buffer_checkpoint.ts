/**
 * Module buffers (BatchNorm's running_mean / running_var / num_batches_tracked, any persistent
 * buffer) in pipeline checkpoints: saved under the full model's name (the checkpoint key of its
 * layer index and name, as parameters are) and full shape in the same manifest, so a save at one
 * (dp, pp, tp) and stage split loads at any other. Each buffer is written once: by the stage that
 * holds its layer, on dp rank 0 (replicas see other data; DeepSpeed saves rank 0's) and tp rank 0
 * (a buffer is replicated across tp). Loading is strict by default, as DeepSpeed's
 * load_module_strict: a buffer the checkpoint lacks is an error naming it; with
 * `loadModuleStrict: false` (checkpoints saved before buffers were kept) it keeps its value.
 */
import type { TensorRequest } from '../engine/checkpoint/load.ts';
import type { TensorShard } from '../engine/checkpoint/save.ts';
import type { Tensor } from '../tensor/tensor.ts';
import type { PipelineEngine } from './engine.ts';
import type { PipelineModule } from './module.ts';

/** One local buffer: its name in the pipeline module, its full model name, the tensor. */
export interface BufferPlace {
  name: string;
  full: string;
  t: Tensor;
}

/**
 * This rank's persistent buffers (of the layers `mod` holds), each tensor once, named by `key` (layer index, name in the layer).
 * A buffer inside a layer tied across pipeline ranks is refused: every rank's copy trains its own
 * values, so there is no one value to save.
 */
export function bufferPlaces(mod: PipelineModule, key: (index: number, name: string) => string, where: string): BufferPlace[] {
  const params = new Set(mod.parameters());
  // Tied within one pipeline rank, a layer is one module (one value); across ranks, one per rank.
  const tied = new Set(mod.ties.filter((t) => t.ranks.length > 1).map((t) => t.param));
  const seen = new Set<Tensor>();
  const out: BufferPlace[] = [];
  for (const [name, t] of Object.entries(mod.stateDict())) {
    if (params.has(t) || seen.has(t)) continue;
    seen.add(t);
    const dot = name.indexOf('.');
    const index = Number(name.slice(0, dot));
    if (dot < 0 || !Number.isInteger(index)) throw new Error(`${where}: buffer "${name}" of the pipeline module is not under a layer index`);
    const layer = mod.layerModule(index);
    if (layer?.parameters().some((p) => tied.has(p))) {
      throw new Error(`${where}: buffer "${name}" belongs to a layer tied across stages; tied layers' buffers are not checkpointed (each stage's copy has its own values)`);
    }
    out.push({ name, full: key(index, name.slice(dot + 1)), t });
  }
  return out;
}

/**
 * The buffer slices this rank writes: every local buffer whole when it is the writer of its
 * (pp) position (dp rank 0, tp rank 0), else none.
 * @example
 * tensors.push(...bufferShards(engine, key, dpRank === 0 && tpRank === 0, 'saveMeshCheckpoint'));
 */
export function bufferShards(engine: PipelineEngine, key: (index: number, name: string) => string, writer: boolean, where: string): TensorShard[] {
  const places = bufferPlaces(engine.module, key, where);
  if (!writer) return [];
  return places.map(({ full, t }) => ({ name: full, fullShape: [...t.shape], dtype: t.dtype, data: t, group: 'model' }));
}

/**
 * What to read for this rank's buffers from a checkpoint whose tensor names are `saved`: requests
 * (whole tensors, in the buffer's dtype) and the buffers they go into. Strict: a missing buffer
 * throws, naming every one missing; not strict: those keep their values.
 * @example
 * const b = bufferRequests(engine, key, openCheckpoint(dir, tag).tensors, `${dir}/${tag}`, true, 'loadMeshCheckpoint');
 */
export function bufferRequests(
  engine: PipelineEngine, key: (index: number, name: string) => string, saved: Map<string, unknown>, at: string, strict: boolean, where: string,
): { want: TensorRequest[]; into: BufferPlace[] } {
  const places = bufferPlaces(engine.module, key, where);
  const missing = places.filter((b) => !saved.has(b.full));
  if (strict && missing.length > 0) {
    const list = missing.map((b) => `"${b.full}"`).join(', ');
    throw new Error(`${where}: ${at} has no module buffer ${list} (saved before pipeline checkpoints kept buffers?); pass loadModuleStrict: false to keep this model's values`);
  }
  const into = places.filter((b) => saved.has(b.full));
  return { want: into.map((b) => ({ name: b.full, fullShape: [...b.t.shape], dtype: b.t.dtype })), into };
}
