/**
 * The safetensors format: an 8-byte little-endian header length, a JSON header mapping each
 * tensor name to {dtype, shape, data_offsets [begin, end) relative to the data}, plus an optional
 * "__metadata__" of strings, then the raw little-endian data. PyTorch's `safetensors` reads it.
 */
import { closeSync, openSync, readSync, statSync } from 'node:fs';
import { type DType, itemSize } from '../../tensor/dtype.ts';
import { fmt, numel } from '../../tensor/shape.ts';
import type { Tensor } from '../../tensor/tensor.ts';
import { writeAtomically } from './files.ts';
import { openCheckpoint, readRange, type SavedSlice } from './reader.ts';
import { tensorFromBytes } from './tensor_bytes.ts';

const CODES: Record<DType, string> = { f32: 'F32', f64: 'F64', bf16: 'BF16', f16: 'F16', i32: 'I32', i64: 'I64' };
const FROM_CODE = new Map(Object.entries(CODES).map(([d, c]) => [c, d as DType]));
const MAX_HEADER = 100 * 1024 * 1024;

export interface SafetensorsEntry {
  name: string;
  dtype: DType;
  shape: number[];
}

/**
 * Writes a safetensors file atomically; `bytesOf(i)` is called once per entry, in order, so large
 * files stream tensor by tensor.
 */
export function writeSafetensors(file: string, entries: SafetensorsEntry[], bytesOf: (i: number) => Uint8Array, metadata: Record<string, string> = {}): void {
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length) header.__metadata__ = metadata;
  let offset = 0;
  for (const e of entries) {
    if (e.name === '__metadata__' || e.name in header) throw new Error(`writeSafetensors: duplicate or reserved tensor name "${e.name}"`);
    const n = numel(e.shape) * itemSize(e.dtype);
    header[e.name] = { dtype: CODES[e.dtype], shape: e.shape, data_offsets: [offset, offset + n] };
    offset += n;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (Buffer.byteLength(json) % 8)) % 8); // the data starts 8-byte aligned
  const head = Buffer.alloc(8);
  head.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
  writeAtomically(file, (write) => {
    write(head);
    write(Buffer.from(json, 'utf8'));
    entries.forEach((e, i) => {
      const bytes = bytesOf(i);
      if (bytes.byteLength !== numel(e.shape) * itemSize(e.dtype)) throw new Error(`writeSafetensors: "${e.name}" gave ${bytes.byteLength} bytes for ${fmt(e.shape)} ${e.dtype}`);
      write(bytes);
    });
  });
}

export interface SafetensorsFile {
  metadata: Record<string, string>;
  tensors: Map<string, SafetensorsEntry & { bytes: Uint8Array }>;
}

/** Reads and checks a whole safetensors file (dtypes, shapes, offsets contiguous and in bounds). */
export function readSafetensors(file: string): SafetensorsFile {
  const size = statSync(file).size;
  const fd = openSync(file, 'r');
  try {
    const read = (pos: number, n: number): Buffer => {
      const b = Buffer.alloc(n);
      let done = 0;
      while (done < n) {
        const k = readSync(fd, b, done, n - done, pos + done);
        if (k === 0) throw new Error(`readSafetensors: ${file} is truncated`);
        done += k;
      }
      return b;
    };
    if (size < 8) throw new Error(`readSafetensors: ${file} is too short`);
    const hlen = Number(read(0, 8).readBigUInt64LE());
    if (hlen > MAX_HEADER || 8 + hlen > size) throw new Error(`readSafetensors: ${file} has a bad header length ${hlen}`);
    const header = JSON.parse(read(8, hlen).toString('utf8')) as Record<string, unknown>;
    const dataStart = 8 + hlen;
    const metadata = (header.__metadata__ ?? {}) as Record<string, string>;
    const tensors: SafetensorsFile['tensors'] = new Map();
    for (const [name, v] of Object.entries(header)) {
      if (name === '__metadata__') continue;
      const { dtype: code, shape, data_offsets: off } = v as { dtype: string; shape: number[]; data_offsets: [number, number] };
      const dtype = FROM_CODE.get(code);
      if (!dtype) throw new Error(`readSafetensors: ${file}: tensor "${name}" has unsupported dtype ${code}`);
      if (!Array.isArray(off) || off[1] - off[0] !== numel(shape) * itemSize(dtype) || dataStart + off[1] > size) {
        throw new Error(`readSafetensors: ${file}: tensor "${name}" has bad data_offsets ${JSON.stringify(off)}`);
      }
      tensors.set(name, { name, dtype, shape, bytes: new Uint8Array(read(dataStart + off[0], off[1] - off[0])) });
    }
    return { metadata, tensors };
  } finally {
    closeSync(fd);
  }
}

/** A tensor from a read safetensors entry. */
export function safetensorToTensor(e: SafetensorsEntry & { bytes: Uint8Array }): Tensor {
  return tensorFromBytes(e.bytes, e.shape, e.dtype);
}

export interface ExportOptions {
  /** Default: the tag in `dir/latest`. */
  tag?: string;
  /** Tensor groups to write (default ['model']: parameters and buffers, no optimizer state). */
  groups?: string[];
}

/**
 * Consolidates checkpoint `dir/tag` (saved under any layout) into one safetensors file, verifying
 * every slice's checksum on the way; tensors are written in name order.
 * @returns the tag and the number of tensors written
 */
export function exportSafetensors(dir: string, opts: ExportOptions, outFile: string): { tag: string; count: number } {
  const ck = openCheckpoint(dir, opts.tag);
  const groups = new Set(opts.groups ?? ['model']);
  const saved = [...ck.tensors.values()].filter((t) => groups.has(t.group)).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  writeSafetensors(
    outFile,
    saved.map((t) => ({ name: t.name, dtype: t.dtype, shape: t.fullShape })),
    (i) => readRange(saved[i], 0, numel(saved[i].fullShape), new Map<SavedSlice, Uint8Array>()),
    { format: 'pt', source: 'meshtrain', tag: ck.tag, saved_world_size: String(ck.worldSize) },
  );
  return { tag: ck.tag, count: saved.length };
}
