/**
 * Opening a saved checkpoint: every rank's index is read and cross-checked (all ranks present,
 * data files of the recorded size, each tensor's slices agreeing on shape and dtype and covering
 * it entirely) before any tensor is read. Slices are read whole and checked against their SHA-256.
 */
import { createHash } from 'node:crypto';
import { closeSync, existsSync, openSync, readdirSync, readFileSync, readSync, statSync } from 'node:fs';
import path from 'node:path';
import { DTYPES, type DType, itemSize } from '../../tensor/dtype.ts';
import { fmt, numel } from '../../tensor/shape.ts';
import { checkTag, FORMAT, type IndexEntry, indexFileName, LATEST_FILE, type RankIndex } from './format.ts';

/** One saved slice and the file it lives in. */
export interface SavedSlice {
  file: string;
  entry: IndexEntry;
}

/** A full tensor as saved: its metadata and its slices sorted by start. */
export interface SavedTensor {
  name: string;
  fullShape: number[];
  dtype: DType;
  group: string;
  slices: SavedSlice[];
}

export interface OpenCheckpoint {
  dir: string;
  tag: string;
  worldSize: number;
  indexes: RankIndex[];
  tensors: Map<string, SavedTensor>;
}

/** The tag named by `dir/latest`. */
export function readLatestTag(dir: string): string {
  const file = path.join(dir, LATEST_FILE);
  if (!existsSync(file)) throw new Error(`checkpoint: no "${LATEST_FILE}" file in ${dir}; pass a tag or save a checkpoint first`);
  return checkTag(readFileSync(file, 'utf8').trim(), `checkpoint: ${file}`);
}

export function openCheckpoint(dir: string, tag?: string): OpenCheckpoint {
  const t = tag === undefined ? readLatestTag(dir) : checkTag(tag, 'checkpoint');
  const tagDir = path.join(dir, t);
  if (!existsSync(tagDir)) throw new Error(`checkpoint: ${tagDir} does not exist`);
  const first = readIndex(tagDir, 0, t);
  const indexes = [first];
  const missing: number[] = [];
  for (let r = 1; r < first.worldSize; r++) {
    if (!existsSync(path.join(tagDir, indexFileName(r)))) missing.push(r);
    else indexes.push(readIndex(tagDir, r, t));
  }
  if (missing.length) {
    throw new Error(`checkpoint ${tagDir}: saved by ${first.worldSize} ranks but the shard index of rank(s) ${missing.join(', ')} is missing (${missing.map(indexFileName).join(', ')}); the checkpoint is incomplete`);
  }
  for (const ix of indexes) {
    if (ix.worldSize !== first.worldSize) throw new Error(`checkpoint ${tagDir}: ${indexFileName(ix.rank)} says worldSize ${ix.worldSize}, rank 0 says ${first.worldSize}`);
  }
  const extra = readdirSync(tagDir).filter((f) => /^rank_\d+\.json$/.test(f) && Number(f.slice(5, -5)) >= first.worldSize);
  if (extra.length) throw new Error(`checkpoint ${tagDir}: ${extra.join(', ')} beyond worldSize ${first.worldSize} (mixed saves of different layouts under one tag)`);
  return { dir: tagDir, tag: t, worldSize: first.worldSize, indexes, tensors: collectTensors(tagDir, indexes) };
}

function readIndex(tagDir: string, rank: number, tag: string): RankIndex {
  const file = path.join(tagDir, indexFileName(rank));
  if (!existsSync(file)) throw new Error(`checkpoint ${tagDir}: ${indexFileName(rank)} is missing; the checkpoint is incomplete`);
  let ix: RankIndex;
  try {
    ix = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new Error(`checkpoint: ${file} is not valid JSON (${(e as Error).message}); the index is torn`);
  }
  if (ix?.format !== FORMAT || !Array.isArray(ix.entries)) throw new Error(`checkpoint: ${file} is not a ${FORMAT} index`);
  if (ix.rank !== rank || ix.tag !== tag) throw new Error(`checkpoint: ${file} records rank ${ix.rank} of tag "${ix.tag}", expected rank ${rank} of "${tag}"`);
  const dataFile = path.join(tagDir, ix.dataFile);
  if (path.basename(ix.dataFile) !== ix.dataFile || !existsSync(dataFile)) throw new Error(`checkpoint: data file ${dataFile} named by ${file} is missing`);
  const size = statSync(dataFile).size;
  if (size !== ix.dataBytes) {
    throw new Error(`checkpoint: ${dataFile} has ${size} bytes but its index records ${ix.dataBytes}; the shard is ${size < ix.dataBytes ? 'truncated' : 'corrupt'}`);
  }
  for (const e of ix.entries) {
    const w = `checkpoint: ${file}: tensor "${e?.name}"`;
    if (typeof e?.name !== 'string' || !Array.isArray(e.fullShape) || !DTYPES.includes(e.dtype) || !Array.isArray(e.shardRange)) throw new Error(`${w}: malformed entry`);
    const [s, end] = e.shardRange;
    if (!(Number.isInteger(s) && Number.isInteger(end) && s >= 0 && s <= end && end <= numel(e.fullShape))) throw new Error(`${w}: range [${s}, ${end}) outside ${fmt(e.fullShape)}`);
    if (e.byteLength !== (end - s) * itemSize(e.dtype) || e.byteOffset < 0 || e.byteOffset + e.byteLength > ix.dataBytes) {
      throw new Error(`${w}: byte range ${e.byteOffset}+${e.byteLength} does not match its ${end - s} ${e.dtype} elements in ${ix.dataBytes} bytes`);
    }
  }
  return ix;
}

function collectTensors(tagDir: string, indexes: RankIndex[]): Map<string, SavedTensor> {
  const tensors = new Map<string, SavedTensor>();
  for (const ix of indexes) {
    const file = path.join(tagDir, ix.dataFile);
    for (const entry of ix.entries) {
      const t = tensors.get(entry.name);
      if (!t) {
        tensors.set(entry.name, { name: entry.name, fullShape: entry.fullShape, dtype: entry.dtype, group: entry.group ?? 'model', slices: [{ file, entry }] });
        continue;
      }
      if (fmt(t.fullShape) !== fmt(entry.fullShape) || t.dtype !== entry.dtype) {
        throw new Error(`checkpoint ${tagDir}: tensor "${entry.name}" is ${fmt(entry.fullShape)} ${entry.dtype} in ${indexFileName(ix.rank)} but ${fmt(t.fullShape)} ${t.dtype} elsewhere`);
      }
      t.slices.push({ file, entry });
    }
  }
  for (const t of tensors.values()) {
    t.slices.sort((a, b) => a.entry.shardRange[0] - b.entry.shardRange[0]);
    const gap = firstGap(t.slices, 0, numel(t.fullShape));
    if (gap !== null) throw new Error(`checkpoint ${tagDir}: tensor "${t.name}" ${fmt(t.fullShape)} has no saved slice for element ${gap}; the checkpoint is incomplete`);
  }
  return tensors;
}

/** The first element of [start, end) that no slice covers, or null (slices sorted by start). */
export function firstGap(slices: SavedSlice[], start: number, end: number): number | null {
  let covered = start;
  for (const { entry } of slices) {
    if (covered >= end) break;
    if (entry.shardRange[0] > covered) return covered;
    covered = Math.max(covered, entry.shardRange[1]);
  }
  return covered < end ? covered : null;
}

/** Reads a slice's bytes and checks them against the recorded SHA-256. */
export function readSlice(slice: SavedSlice): Uint8Array {
  const { file, entry } = slice;
  const bytes = new Uint8Array(entry.byteLength);
  const fd = openSync(file, 'r');
  try {
    let done = 0;
    while (done < bytes.byteLength) {
      const n = readSync(fd, bytes, done, bytes.byteLength - done, entry.byteOffset + done);
      if (n === 0) throw new Error(`checkpoint: ${file} ends inside tensor "${entry.name}"; the shard is truncated`);
      done += n;
    }
  } finally {
    closeSync(fd);
  }
  const digest = createHash('sha256').update(bytes).digest('hex');
  if (digest !== entry.sha256) {
    throw new Error(`checkpoint: checksum mismatch in ${file} for tensor "${entry.name}" range [${entry.shardRange[0]}, ${entry.shardRange[1]}) (SHA-256 ${digest.slice(0, 12)}…, recorded ${String(entry.sha256).slice(0, 12)}…); the shard is corrupt`);
  }
  return bytes;
}

/**
 * The bytes of elements [start, end) of a saved tensor, assembled from whichever slices overlap it.
 * `cache` keeps verified slices so that each is read and checked once.
 */
export function readRange(t: SavedTensor, start: number, end: number, cache: Map<SavedSlice, Uint8Array>): Uint8Array {
  const size = itemSize(t.dtype);
  const out = new Uint8Array((end - start) * size);
  let at = start;
  for (const slice of t.slices) {
    const [s, e] = slice.entry.shardRange;
    if (at >= end) break;
    if (e <= at || s > at) continue;
    let bytes = cache.get(slice);
    if (!bytes) {
      bytes = readSlice(slice);
      cache.set(slice, bytes);
    }
    const upto = Math.min(e, end);
    out.set(bytes.subarray((at - s) * size, (upto - s) * size), (at - start) * size);
    at = upto;
  }
  if (at < end) throw new Error(`checkpoint: tensor "${t.name}" has no saved slice for element ${at}`);
  return out;
}
