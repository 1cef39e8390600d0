/**
 * Full parameters on one rank from every rank's partition shards, whatever the partitioning
 * (ZeRO 1/2 flat ranges, ZeRO 3 per-parameter ranges): the ranks exchange which slices they
 * hold, then each sends its slices, packed per dtype, to the destination rank, which places them.
 * Values move bit for bit (no arithmetic), and the slices must tile each parameter exactly.
 */
import type { ProcessGroup } from '../dist/process_group.ts';
import { tensor } from '../ops/index.ts';
import * as k from '../ops/kernels.ts';
import { Tensor } from '../tensor/tensor.ts';
import { flatView } from '../zero/comms.ts';
import type { PartitionShard } from '../zero/shards.ts';

/** Numbers per slice in the exchanged table: parameter index, start, end. */
const FIELDS = 3;

/**
 * Every parameter of `named` in full on group rank `dst` (a new contiguous tensor of the
 * parameter's shape and dtype, tag 'other'; the caller disposes them), from the model slices of
 * `shards` (this rank's `partitionShards({ optimizer: false })`). Call on every rank of `group`;
 * the other ranks get an empty map.
 */
export function gatherFromShards(group: ProcessGroup, named: [string, Tensor][], shards: PartitionShard[], dst = 0): Map<string, Tensor> {
  const index = new Map(named.map(([n], i) => [n, i]));
  const mine = shards.filter((s) => s.group === 'model').map((s) => {
    const i = index.get(s.name);
    if (i === undefined) throw new Error(`gatherFromShards: shard "${s.name}" is not a parameter of the model`);
    return { i, lo: s.shardRange[0], hi: s.shardRange[1], data: s.data };
  });
  const tables = exchangeTables(group, mine.map((s) => [s.i, s.lo, s.hi]));
  checkTiling(named, tables);      // on every rank, before any send: all fail alike, none waits
  const dtypes = [...new Set(named.map(([, p]) => p.dtype))].sort();
  if (group.rank !== dst) {
    for (const dtype of dtypes) {
      const pieces = mine.filter((s) => named[s.i][1].dtype === dtype);
      const n = pieces.reduce((a, s) => a + s.hi - s.lo, 0);
      if (n === 0) continue;
      const packed = Tensor.empty([n], { dtype, tag: 'comm' });
      let at = 0;
      for (const s of pieces) {
        const v = flatView(packed, at, s.hi - s.lo);
        k.copyInto(s.data, v);
        v.dispose();
        at += s.hi - s.lo;
      }
      try {
        group.send(packed, dst);
      } finally {
        packed.dispose();
      }
    }
    return new Map();
  }

  const full = named.map(([, p]) => Tensor.empty([...p.shape], { dtype: p.dtype, tag: 'other' }));
  try {
    for (const s of mine) {
      const v = flatView(full[s.i], s.lo, s.hi - s.lo);
      k.copyInto(s.data, v);
      v.dispose();
    }
    tables.forEach((table, r) => {
      if (r === dst) return;
      for (const dtype of dtypes) {
        const pieces = table.filter(([i]) => named[i][1].dtype === dtype);
        const n = pieces.reduce((a, [, lo, hi]) => a + hi - lo, 0);
        if (n === 0) continue;
        const packed = Tensor.empty([n], { dtype, tag: 'comm' });
        try {
          group.recv(packed, r);
          let at = 0;
          for (const [i, lo, hi] of pieces) {
            const from = flatView(packed, at, hi - lo);
            const into = flatView(full[i], lo, hi - lo);
            k.copyInto(from, into);
            from.dispose();
            into.dispose();
            at += hi - lo;
          }
        } finally {
          packed.dispose();
        }
      }
    });
  } catch (e) {
    for (const t of full) t.dispose();
    throw e;
  }
  return new Map(named.map(([n], i) => [n, full[i]]));
}

/** Every rank's list of [param, lo, hi] slices, through two all-gathers (counts, then the padded tables). */
function exchangeTables(group: ProcessGroup, rows: number[][]): number[][][] {
  const size = group.size;
  const count = tensor([rows.length], { dtype: 'f64', tag: 'comm' });
  const counts = Tensor.empty([size], { dtype: 'f64', tag: 'comm' });
  let most: number[];
  try {
    group.allGather(counts, count);
    most = counts.toList() as number[];
  } finally {
    count.dispose();
    counts.dispose();
  }
  const width = Math.max(1, ...most) * FIELDS;
  const flat = new Float64Array(width);
  rows.forEach((r, j) => flat.set(r, j * FIELDS));
  const mineT = tensor(flat, { dtype: 'f64', tag: 'comm' });
  const all = Tensor.empty([size * width], { dtype: 'f64', tag: 'comm' });
  try {
    group.allGather(all, mineT);
    const v = all.toArray() as Float64Array;
    return most.map((c, r) => Array.from({ length: c }, (_, j) => Array.from(v.subarray(r * width + j * FIELDS, r * width + (j + 1) * FIELDS))));
  } finally {
    mineT.dispose();
    all.dispose();
  }
}

/** The slices of all ranks cover each parameter exactly once (else the partitioning is inconsistent). */
function checkTiling(named: [string, Tensor][], tables: number[][][]): void {
  const by = named.map(() => [] as [number, number][]);
  for (const table of tables) for (const [i, lo, hi] of table) by[i].push([lo, hi]);
  by.forEach((ranges, i) => {
    ranges.sort((a, b) => a[0] - b[0]);
    let at = 0;
    for (const [lo, hi] of ranges) {
      if (lo !== at) break;
      at = hi;
    }
    const [name, p] = named[i];
    if (at !== p.numel) {
      throw new Error(`gatherFromShards: the ranks' slices of "${name}" (${p.numel} elements) do not tile it: ${JSON.stringify(ranges)}`);
    }
  });
}
