/**
 * The on-disk checkpoint layout. A checkpoint is a folder `dir/tag/` holding, per saving rank r,
 * `rank_0000r.bin` (the raw little-endian bytes of every slice that rank holds, back to back) and
 * `rank_0000r.json` (its index: each slice's full tensor name, full shape, dtype, flat element range,
 * byte offset, byte length and SHA-256, plus the rank's plain state). `dir/latest` names the newest
 * complete tag. Tensors are stored by full name and full shape, so any layout can load any other's.
 */
import type { DType } from '../../tensor/dtype.ts';

export const FORMAT = 'meshtrain-checkpoint';
export const FORMAT_VERSION = 1;
export const LATEST_FILE = 'latest';

/** One slice of a tensor as recorded in a rank's index. */
export interface IndexEntry {
  name: string;
  fullShape: number[];
  dtype: DType;
  /** Flat element range [start, end) of the full tensor held in this slice. */
  shardRange: [number, number];
  /** Where the slice's bytes start in the rank's data file, and how many there are. */
  byteOffset: number;
  byteLength: number;
  /** Hex SHA-256 of the slice's bytes. */
  sha256: string;
  /** What the tensor belongs to ('model' unless given; `exportSafetensors` writes 'model' only). */
  group: string;
}

/** The index file of one rank. Its presence under its final name marks the rank's shard complete. */
export interface RankIndex {
  format: typeof FORMAT;
  version: number;
  tag: string;
  rank: number;
  worldSize: number;
  dataFile: string;
  dataBytes: number;
  dataSha256: string;
  entries: IndexEntry[];
  /** The rank's plain state (client state, optimizer and scheduler state), typed arrays encoded. */
  state: unknown;
}

export function dataFileName(rank: number): string {
  return `rank_${String(rank).padStart(5, '0')}.bin`;
}

export function indexFileName(rank: number): string {
  return `rank_${String(rank).padStart(5, '0')}.json`;
}

/** Tags become folder names: keep them to one plain path component. */
export function checkTag(tag: unknown, where: string): string {
  if (typeof tag !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(tag) || tag === LATEST_FILE) {
    throw new Error(`${where}: tag must be a plain name (letters, digits, . _ -), got ${JSON.stringify(tag)}`);
  }
  return tag;
}

export function checkRank(rank: unknown, worldSize: unknown, where: string): void {
  if (!Number.isInteger(worldSize) || (worldSize as number) < 1) throw new Error(`${where}: worldSize must be a positive integer, got ${worldSize}`);
  if (!Number.isInteger(rank) || (rank as number) < 0 || (rank as number) >= (worldSize as number)) {
    throw new Error(`${where}: rank must be an integer in [0, ${worldSize}), got ${rank}`);
  }
}
