/** Saving one rank's part of a sharded checkpoint; rank 0 publishes the tag as `latest` last. */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { checkDType, type DType, itemSize } from '../../tensor/dtype.ts';
import { fmt, numel } from '../../tensor/shape.ts';
import type { Tensor } from '../../tensor/tensor.ts';
import { writeAtomically, writeFileAtomically } from './files.ts';
import { checkRank, checkTag, dataFileName, FORMAT, FORMAT_VERSION, type IndexEntry, indexFileName, LATEST_FILE, type RankIndex } from './format.ts';
import { encodePlain } from './plain_state.ts';
import { tensorBytes } from './tensor_bytes.ts';

/** A slice of a full tensor that this rank holds. */
export interface TensorShard {
  /** The full tensor's name (e.g. `blocks.0.attn.qkv.weight`), the same in every layout. */
  name: string;
  fullShape: number[];
  dtype: DType;
  /** Flat element range [start, end) of the full tensor held in `data` (default: all of it). */
  shardRange?: [number, number];
  /** The slice's values: `end - start` elements of `dtype`, any shape. */
  data: Tensor;
  /** What the tensor belongs to: 'model' (default; exported to safetensors), 'optimizer', ... */
  group?: string;
}

export interface SaveCheckpointOptions {
  rank?: number;
  worldSize?: number;
  tensors: TensorShard[];
  clientState?: unknown;
  /** Plain optimizer / scheduler state of this rank (typed arrays are kept exactly). */
  optimizer?: unknown;
  scheduler?: unknown;
  /** Waits for every rank (the process group's barrier); rank 0 writes `latest` after it. */
  barrier?: () => Promise<void> | void;
}

export interface SavedCheckpoint {
  tag: string;
  dir: string;
  dataFile: string;
  indexFile: string;
}

/** Checks a shard entry and returns its resolved range. */
export function checkShard(t: { name: unknown; fullShape: unknown; dtype: unknown; shardRange?: unknown }, where: string): [number, number] {
  if (typeof t.name !== 'string' || t.name.length === 0) throw new Error(`${where}: tensor name must be a non-empty string`);
  const w = `${where}: tensor "${t.name}"`;
  if (!Array.isArray(t.fullShape) || t.fullShape.some((d) => !Number.isInteger(d) || d < 0)) {
    throw new Error(`${w}: fullShape must be an array of non-negative integers, got ${JSON.stringify(t.fullShape)}`);
  }
  checkDType(t.dtype, w);
  const total = numel(t.fullShape);
  const range = (t.shardRange ?? [0, total]) as [number, number];
  if (!Array.isArray(range) || range.length !== 2 || !Number.isInteger(range[0]) || !Number.isInteger(range[1]) || range[0] < 0 || range[0] > range[1] || range[1] > total) {
    throw new Error(`${w}: shardRange must be [start, end) within [0, ${total}] of ${fmt(t.fullShape)}, got ${JSON.stringify(t.shardRange)}`);
  }
  return [range[0], range[1]];
}

/**
 * Writes this rank's shard of checkpoint `tag` under `dir/tag/`: the data file, then the index,
 * each under a temporary name, fsynced and renamed only when complete. After `barrier`, rank 0
 * checks that every rank's index exists and writes `dir/latest` (atomically, last); a second
 * `barrier` holds every rank until it is written.
 * @example
 * await saveCheckpoint('ckpt', 'step100', { rank, worldSize, tensors, clientState: { step: 100 }, barrier: () => pg.barrier() });
 */
export async function saveCheckpoint(dir: string, tag: string, opts: SaveCheckpointOptions): Promise<SavedCheckpoint> {
  const where = 'saveCheckpoint';
  checkTag(tag, where);
  const rank = opts.rank ?? 0;
  const worldSize = opts.worldSize ?? 1;
  checkRank(rank, worldSize, where);
  if (!Array.isArray(opts.tensors)) throw new Error(`${where}: tensors must be an array`);
  const ranges = opts.tensors.map((t) => {
    const r = checkShard(t, where);
    if (!t.data || typeof t.data.numel !== 'number') throw new Error(`${where}: tensor "${t.name}" has no data tensor`);
    if (t.data.numel !== r[1] - r[0]) throw new Error(`${where}: tensor "${t.name}" holds ${t.data.numel} elements for range [${r[0]}, ${r[1]})`);
    if (t.data.dtype !== t.dtype) throw new Error(`${where}: tensor "${t.name}" is ${t.data.dtype}, declared ${t.dtype}`);
    return r;
  });
  checkNoOverlap(opts.tensors, ranges, where);
  const state = encodePlain({ clientState: opts.clientState ?? null, optimizer: opts.optimizer ?? null, scheduler: opts.scheduler ?? null });

  const tagDir = path.join(dir, tag);
  mkdirSync(tagDir, { recursive: true });
  const dataFile = path.join(tagDir, dataFileName(rank));
  const indexFile = path.join(tagDir, indexFileName(rank));
  // Re-saving a tag: drop the old index first so no reader pairs it with the new data.
  rmSync(indexFile, { force: true });

  const entries: IndexEntry[] = [];
  const whole = createHash('sha256');
  let offset = 0;
  writeAtomically(dataFile, (write) => {
    opts.tensors.forEach((t, i) => {
      const bytes = tensorBytes(t.data);
      const expected = (ranges[i][1] - ranges[i][0]) * itemSize(t.dtype);
      if (bytes.byteLength !== expected) throw new Error(`${where}: tensor "${t.name}" gave ${bytes.byteLength} bytes, expected ${expected}`);
      write(bytes);
      whole.update(bytes);
      entries.push({
        name: t.name,
        fullShape: [...t.fullShape],
        dtype: t.dtype,
        shardRange: ranges[i],
        byteOffset: offset,
        byteLength: bytes.byteLength,
        sha256: createHash('sha256').update(bytes).digest('hex'),
        group: t.group ?? 'model',
      });
      offset += bytes.byteLength;
    });
  });
  const index: RankIndex = {
    format: FORMAT,
    version: FORMAT_VERSION,
    tag,
    rank,
    worldSize,
    dataFile: path.basename(dataFile),
    dataBytes: offset,
    dataSha256: whole.digest('hex'),
    entries,
    state,
  };
  writeFileAtomically(indexFile, `${JSON.stringify(index)}\n`);

  await opts.barrier?.();
  let failure: Error | null = null;
  if (rank === 0) {
    const missing = Array.from({ length: worldSize }, (_, r) => r).filter((r) => !existsSync(path.join(tagDir, indexFileName(r))));
    if (missing.length) {
      failure = new Error(`${where}: rank(s) ${missing.join(', ')} of ${worldSize} have not finished writing ${tagDir}; "${LATEST_FILE}" not updated (pass a barrier)`);
    } else {
      writeFileAtomically(path.join(dir, LATEST_FILE), `${tag}\n`);
    }
  }
  // No rank returns before `latest` names this tag: a load right after the save (any rank) must find it.
  await opts.barrier?.();
  if (failure) throw failure;
  return { tag, dir: tagDir, dataFile, indexFile };
}

function checkNoOverlap(tensors: TensorShard[], ranges: [number, number][], where: string): void {
  const byName = new Map<string, [number, number][]>();
  tensors.forEach((t, i) => {
    const list = byName.get(t.name) ?? [];
    for (const r of list) {
      if (r[0] < ranges[i][1] && ranges[i][0] < r[1]) throw new Error(`${where}: tensor "${t.name}" is given twice for overlapping ranges`);
    }
    list.push(ranges[i]);
    byName.set(t.name, list);
  });
}
