/**
 * ZeRO stage 3's gradient reduction: as each parameter's gradient becomes ready in backward it is
 * copied, rank-major, into the current bucket of its dtype (rank r's piece at r·stride + at);
 * a full bucket is averaged with one reduce-scatter (asynchronously with overlapComm), and each
 * rank adds the shards it receives into its gradient partition. Buckets fill in the order
 * gradients become ready, which is the same on every rank (same graph), so every rank issues
 * the same collectives.
 */
import type { ProcessGroup } from '../dist/process_group.ts';
import type { Work } from '../dist/work.ts';
import * as k from '../ops/kernels.ts';
import type { DType } from '../tensor/dtype.ts';
import type { Device } from '../tensor/storage.ts';
import type { Tensor } from '../tensor/tensor.ts';
import { flatView } from './comms.ts';
import { bucketPieces, type ParamShard } from './stage3_partition.ts';

/** A parameter's shard and the gradient partition it is added into. */
export interface GradTarget {
  shard: ParamShard;
  /** This rank's gradient partition of the parameter's dtype. */
  partGrad: Tensor;
}

interface Bucket {
  dtype: DType;
  /** [world · stride], rank-major (tag 'grad'). */
  input: Tensor;
  /** [stride]: this rank's segment after the reduce-scatter (tag 'grad'). */
  output: Tensor;
  stride: number;
  used: number;
  entries: { target: GradTarget; at: number }[];
  works: Work[];
}

/**
 * Copies a contiguous gradient `g` into a rank-major bucket as bucketPieces places it, in at most
 * two copies instead of one per rank: the whole pieces (rows of `size`) as one strided copy into
 * rows `stride` apart, then the last, partial piece.
 */
export function fillPieces(g: Tensor, input: Tensor, size: number, world: number, stride: number, at: number): void {
  const pieces = bucketPieces(g.numel, size, world, stride, at);
  const rows = pieces.filter((p) => p.hi - p.lo === size).length;
  const copy = (src: Tensor, dst: Tensor) => {
    k.copyInto(src, dst);
    src.dispose();
    dst.dispose();
  };
  if (rows > 0) copy(g.alias([rows, size], [size, 1], g.offset), input.alias([rows, size], [stride, 1], input.offset + at));
  for (const p of pieces.slice(rows)) copy(flatView(g, p.lo, p.hi - p.lo), flatView(input, p.dst, p.hi - p.lo));
}

/** Stage 3's gradient buckets of one optimizer. */
export class Stage3GradReducer {
  private readonly current = new Map<DType, Bucket>();
  private readonly inFlight: Bucket[] = [];
  private readonly pool: Bucket[] = [];
  /** Bucket buffer pairs allocated so far. */
  bucketsAllocated = 0;

  /**
   * @param stride elements per rank segment of a bucket, per dtype (reduce_bucket_size / world,
   *   capped at the dtype's partition size so a small model is one bucket without waste).
   */
  constructor(
    private readonly pg: ProcessGroup,
    private readonly stride: Map<DType, number>,
    private readonly overlapComm: boolean,
    /** Where the buckets live: the parameters' device. */
    private readonly device: Device = 'cpu',
  ) {}

  /** Copies `grad` (the parameter's full gradient) into its dtype's bucket; launches the bucket when full. */
  add(target: GradTarget, grad: Tensor): void {
    const { shard } = target;
    const dtype = target.partGrad.dtype;
    let b = this.current.get(dtype);
    if (b && b.used + shard.size > b.stride) {
      this.launch(b);
      b = undefined;
    }
    if (!b) {
      b = this.bucket(dtype, Math.max(this.stride.get(dtype) ?? 1, shard.size));
      this.current.set(dtype, b);
    }
    const g = grad.isContiguous && grad.dtype === dtype ? grad : k.copy(grad, dtype);
    try {
      fillPieces(g, b.input, shard.size, this.pg.size, b.stride, b.used);
    } finally {
      if (g !== grad) g.dispose();
    }
    b.entries.push({ target, at: b.used });
    b.used += shard.size;
    if (b.used === b.stride) {
      this.launch(b);
      this.current.delete(dtype);
    }
  }

  /** Launches the partly filled buckets and waits for every reduction, adding the shards into the partitions. */
  finish(): void {
    for (const b of this.current.values()) this.launch(b);
    this.current.clear();
    this.drain(0);
  }

  /** After an error in backward: waits for what was launched (quietly) and drops partly filled buckets. */
  abort(): void {
    for (const b of this.current.values()) this.recycle(b);
    this.current.clear();
    this.drain(0, true);
  }

  /** The pooled bucket buffers (between backward passes every bucket is pooled): dtype and elements of input plus output. */
  pooled(): { dtype: DType; numel: number }[] {
    return this.pool.map((b) => ({ dtype: b.dtype, numel: b.input.numel + b.output.numel }));
  }

  destroy(): void {
    for (const b of this.pool) {
      b.input.dispose();
      b.output.dispose();
    }
    this.pool.length = 0;
  }

  private bucket(dtype: DType, stride: number): Bucket {
    const i = this.pool.findIndex((b) => b.dtype === dtype && b.stride === stride);
    let b: Bucket;
    if (i >= 0) {
      b = this.pool.splice(i, 1)[0];
    } else {
      // Double buffering: one bucket fills while the previous one reduces; rather than allocate a
      // third, wait for the one in flight and reuse it.
      if (this.inFlight.length > 0) {
        this.drain(0);
        return this.bucket(dtype, stride);
      }
      const input = this.pg.sharedEmpty([this.pg.size * stride], { dtype, tag: 'grad', device: this.device });
      const output = this.pg.sharedEmpty([stride], { dtype, tag: 'grad', device: this.device });
      input.kept = true;
      output.kept = true;
      b = { dtype, input, output, stride, used: 0, entries: [], works: [] };
      this.bucketsAllocated++;
    }
    k.fill(b.input, 0);
    return b;
  }

  private launch(b: Bucket): void {
    b.works.push(this.pg.reduceScatter(b.output, b.input, 'avg', { async: true }));
    this.inFlight.push(b);
    if (!this.overlapComm) this.drain(0);
  }

  /** Waits for the oldest buckets until `keep` remain in flight; adds this rank's shards into the partitions. */
  private drain(keep: number, quiet = false): void {
    let error: unknown = null;
    while (this.inFlight.length > keep) {
      const b = this.inFlight.shift() as Bucket;
      for (const w of b.works) {
        try {
          w.wait();
        } catch (e) {
          error ??= e;
        }
      }
      if (!error) {
        for (const { target, at } of b.entries) {
          const n = target.shard.size;
          const src = flatView(b.output, at, n);
          const dst = flatView(target.partGrad, target.shard.offset, n);
          k.axpyInto(dst, src, 1);
          src.dispose();
          dst.dispose();
        }
      }
      this.recycle(b);
    }
    if (error && !quiet) throw error;
  }

  private recycle(b: Bucket): void {
    b.used = 0;
    b.entries = [];
    b.works = [];
    this.pool.push(b);
  }
}
