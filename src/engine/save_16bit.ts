/**
 * `engine.save16bitModel` (DeepSpeed's save_16bit_model): the model's full weights, in the dtype
 * the model trains in (bf16/f16 under mixed precision, f32 otherwise), as one safetensors file
 * written by rank 0 under the state-dict names. Below stage 3 every rank already holds the full
 * weights; at stage 3 the partitions are gathered onto rank 0 first, which DeepSpeed does only
 * with zero_optimization.stage3_gather_16bit_weights_on_model_save (else it skips the save; we
 * refuse with an error so that a missing file is never a surprise).
 */
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { tensor } from '../ops/index.ts';
import type { Tensor } from '../tensor/tensor.ts';
import type { EngineBackend } from './backend.ts';
import { writeSafetensors } from './checkpoint/safetensors.ts';
import { tensorBytes } from './checkpoint/tensor_bytes.ts';
import type { Engine } from './engine.ts';
import { gatherFromShards } from './gather_shards.ts';

/** DeepSpeed's default file name for the consolidated weights. */
export const DEFAULT_16BIT_FILENAME = 'pytorch_model.safetensors';

/**
 * Writes `dir/filename` on rank 0 of the engine's dp group (atomically: a temporary name, then a
 * rename); call on every rank. Returns the path on rank 0 and null on the others; throws on every
 * rank when any rank failed.
 */
export function save16bitModel(engine: Engine, backend: EngineBackend, dir: string, filename = DEFAULT_16BIT_FILENAME): string | null {
  const where = 'save16bitModel';
  if (typeof dir !== 'string' || dir === '') throw new Error(`${where}: dir must be a non-empty string`);
  if (typeof filename !== 'string' || filename === '' || filename !== path.basename(filename)) {
    throw new Error(`${where}: filename must be a plain file name, got ${JSON.stringify(filename)}`);
  }
  const z = engine.config.zero_optimization;
  if (backend.stage === 3 && !z.stage3_gather_16bit_weights_on_model_save) {
    throw new Error(`${where}: zero_optimization.stage3_gather_16bit_weights_on_model_save is false, so the stage-3 partitions are not gathered to save the model (DeepSpeed skips the save); set it to true, or use saveCheckpoint + 'meshtrain export'`);
  }
  const group = engine.group;
  const named = engine.module.namedParameters();
  let gathered = new Map<string, Tensor>();
  let file: string | null = null;
  let error: unknown = null;
  try {
    if (backend.stage === 3) {
      const shards = backend.zero.partitionShards({ optimizer: false });
      try {
        gathered = gatherFromShards(group, named, shards);
      } finally {
        for (const s of shards) s.data.dispose();
        backend.zero.flushOffload?.();        // nvme param offload: the partitions read for the save are freed
      }
    }
    if (group.rank === 0) {
      const full = new Map(named.map(([n, p]) => [p, gathered.get(n) ?? p]));
      const entries = Object.entries(engine.module.stateDict()).map(([name, t]) => ({ name, t: full.get(t) ?? t }));
      mkdirSync(dir, { recursive: true });
      file = path.join(dir, filename);
      writeSafetensors(
        file,
        entries.map((e) => ({ name: e.name, dtype: e.t.dtype, shape: [...e.t.shape] })),
        (i) => tensorBytes(entries[i].t),
        { format: 'pt', source: 'meshtrain', zero_stage: String(backend.stage), global_step: String(engine.globalSteps) },
      );
    }
  } catch (e) {
    error = e;
  } finally {
    for (const t of gathered.values()) t.dispose();
  }
  agreeOnWrite(engine, error, where);
  return file;
}

/** Every rank learns whether the write failed (rank 0 rethrows its own error). */
function agreeOnWrite(engine: Engine, error: unknown, where: string): void {
  const flag = tensor([error ? 1 : 0], { dtype: 'f64' });
  try {
    engine.group.allReduce(flag, 'sum');
    if (error) throw error;
    if (flag.item() > 0) throw new Error(`${where}: ${flag.item()} other rank(s) of the dp group failed (see their errors); no file was written`);
  } finally {
    flag.dispose();
  }
}
