/**
 * ZeRO stage 2's gradient buckets: the per-dtype flat groups' static buckets (contiguous flat
 * ranges in reverse registration order, up to `reduceBucketSize` elements), the pool of bucket
 * buffers, and the launching of complete buckets' reductions onto their owners in order, each
 * rank adding its piece into its partition gradient as the reductions finish. A bucket that takes
 * a buffer before its parameters' gradients arrive (the next one to launch, when a buffer is free)
 * gives them their regions as `.grad`, so their ops write the gradients there (grad_into.ts)
 * instead of into a temporary that the bucket copies.
 */
import { markGradZero } from '../autograd/grad_zero.ts';
import type { ProcessGroup } from '../dist/process_group.ts';
import type { Work } from '../dist/work.ts';
import * as k from '../ops/kernels.ts';
import { contiguousStrides } from '../tensor/shape.ts';
import type { Tensor } from '../tensor/tensor.ts';
import { flatView, reduceBucket } from './comms.ts';
import type { FlatGroup, Slot } from './flat_group.ts';

/** Elements per stage-2 bucket by default. */
export const DEFAULT_REDUCE_BUCKET_SIZE = 500_000;

export interface Bucket {
  /** Flat range [lo, hi) of the group's buffer. */
  lo: number;
  hi: number;
  slots: Slot[];
  pending: number;
  buffer: Tensor | null;
}

/** A stage-2 bucket whose reductions are in flight. */
interface InFlight {
  group: FlatGroup;
  bucket: Bucket;
  mineLo: number;
  mineHi: number;
  works: Work[];
}

/** Frees a parameter's gradient (stage 2 keeps only the partition). */
export function dropGrad(p: Tensor): void {
  if (p.grad && !p.grad.disposed) p.grad.dispose();
  p.grad = null;
}

/** Stage 2's buckets over the flat groups of one ZeRO optimizer, and their reductions during backward. */
export class BucketReducer {
  /** Free bucket buffers per dtype, each `poolSize` elements. */
  private readonly pool = new Map<string, Tensor[]>();
  /** Elements of one bucket buffer (the largest bucket). */
  poolSize = 0;
  /** Bucket buffers allocated so far (each `poolSize` elements, tag 'grad'). */
  buffersAllocated = 0;
  private inFlight: InFlight[] = [];
  private nextBucket: { g: number; b: number } | null = null;
  /** `.grad`s that are regions of a bucket buffer, given before the gradient arrived (presetGrads). */
  private readonly presets = new WeakSet<Tensor>();
  /** Slots whose gradient was handed over in this pass. */
  private readonly done = new Set<Slot>();

  constructor(
    private readonly pg: ProcessGroup,
    private readonly groups: FlatGroup[],
    private readonly overlapComm: boolean,
    private readonly reduceBucketSize: number,
  ) {}

  /** Splits a group's slots into buckets: reverse registration order (about the order gradients become ready), each a contiguous flat range. */
  plan(g: FlatGroup): void {
    let cur: Bucket | null = null;
    for (const s of [...g.slots].reverse()) {
      if (cur && cur.hi - s.start > this.reduceBucketSize) cur = null;
      if (!cur) {
        cur = { lo: s.start, hi: s.end, slots: [], pending: 0, buffer: null };
        g.buckets.push(cur);
      }
      cur.lo = s.start;
      cur.slots.push(s);
      s.bucket = g.buckets.length - 1;
    }
    this.poolSize = Math.max(this.poolSize, ...g.buckets.map((b) => b.hi - b.lo));
  }

  /** Whether a backward pass is running through `run`. */
  get running(): boolean {
    return this.nextBucket !== null;
  }

  /** Runs `backward` with every bucket pending; afterwards launches the rest (parameters without a gradient) and waits for all. */
  run(backward: () => void): void {
    if (this.nextBucket) throw new Error('ZeroStage12.backward: a backward pass is already running');
    for (const g of this.groups) for (const b of g.buckets) b.pending = b.slots.length;
    this.nextBucket = { g: 0, b: 0 };
    this.done.clear();
    try {
      this.prepareNext();
      backward();
      this.launchReady(true);        // buckets with parameters that got no gradient go as they are
      this.drain(0);
    } catch (e) {
      this.drain(0, true);
      throw e;
    } finally {
      this.nextBucket = null;
      for (const g of this.groups) {
        for (const b of g.buckets) {
          this.dropPresets(b);
          this.release(g, b);     // after an error: buckets never launched
        }
      }
    }
  }

  /**
   * The parameter's gradient copied into its bucket (unless it was written there: a preset
   * `.grad`) and freed; full buckets launched in order.
   */
  gradReady(g: FlatGroup, s: Slot): void {
    if (!this.nextBucket) return;          // a backward this optimizer does not run
    const p = s.param;
    const b = g.buckets[s.bucket];
    const fresh = !b.buffer;
    const buf = this.bufferOf(g, b);
    this.done.add(s);
    const grad = p.grad;
    if (grad && !grad.disposed && !this.presets.has(grad)) {
      const view = this.region(buf, b, s);
      k.copyInto(grad, view);
      view.dispose();
    }
    dropGrad(p);
    if (fresh) this.presetGrads(b);
    b.pending--;
    this.launchReady(false);
  }

  /** Slot `s`'s region of bucket `b`'s buffer, in the parameter's shape. */
  private region(buf: Tensor, b: Bucket, s: Slot): Tensor {
    return buf.alias(s.param.shape, contiguousStrides(s.param.shape), buf.offset + s.start - b.lo);
  }

  /**
   * Gives each parameter of bucket `b` (its buffer just taken, zero-filled) whose gradient has not
   * arrived and that has no `.grad` yet its region as `.grad`, marked zero: its ops then write the
   * gradient there (grad_into.ts) and gradReady copies nothing.
   */
  private presetGrads(b: Bucket): void {
    const buf = b.buffer as Tensor;
    for (const s of b.slots) {
      const p = s.param;
      if (this.done.has(s) || (p.grad && !p.grad.disposed)) continue;
      const view = this.region(buf, b, s);
      view.kept = true;
      markGradZero(view);
      this.presets.add(view);
      p.grad = view;
    }
  }

  /** Drops the preset `.grad`s of bucket `b` that got no gradient (before it launches or is given up). */
  private dropPresets(b: Bucket): void {
    for (const s of b.slots) if (s.param.grad && this.presets.has(s.param.grad)) dropGrad(s.param);
  }

  /**
   * Takes a buffer for the next bucket to launch and presets its parameters' `.grad`s, when a free
   * buffer is at hand (never waiting for a reduction in flight: that would cost the overlap).
   */
  private prepareNext(): void {
    const nb = this.nextBucket;
    if (!nb) return;
    let { g: gi, b: bi } = nb;
    while (gi < this.groups.length && bi >= this.groups[gi].buckets.length) {
      gi++;
      bi = 0;
    }
    if (gi >= this.groups.length) return;
    const g = this.groups[gi];
    const b = g.buckets[bi];
    if (b.buffer) return;
    if ((this.pool.get(g.dtype)?.length ?? 0) === 0 && this.inFlight.length > 0) return;
    this.bufferOf(g, b);
    this.presetGrads(b);
  }

  /** Frees the pooled buffers. */
  destroy(): void {
    for (const free of this.pool.values()) for (const t of free) t.dispose();
  }

  /** A zeroed buffer from the pool (waiting for the oldest bucket in flight when the pool is empty). */
  private bufferOf(g: FlatGroup, b: Bucket): Tensor {
    if (b.buffer) return b.buffer;
    const free = this.pool.get(g.dtype) ?? [];
    this.pool.set(g.dtype, free);
    if (free.length === 0 && this.inFlight.length > 0) this.drain(this.inFlight.length - 1);
    let buf = free.pop();
    if (!buf) {
      buf = this.pg.sharedEmpty([this.poolSize], { dtype: g.dtype, tag: 'grad', device: g.flat.buffer.device });
      buf.kept = true;
      this.buffersAllocated++;
    }
    k.fill(buf, 0);
    b.buffer = buf;
    return buf;
  }

  private release(g: FlatGroup, b: Bucket): void {
    if (!b.buffer) return;
    this.pool.get(g.dtype)?.push(b.buffer);
    b.buffer = null;
  }

  /** Launches buckets in order (groups, then buckets) while they are complete, or all of them (`all`). */
  private launchReady(all: boolean): void {
    const nb = this.nextBucket;
    if (!nb) return;
    while (nb.g < this.groups.length) {
      const g = this.groups[nb.g];
      if (nb.b >= g.buckets.length) {
        nb.g++;
        nb.b = 0;
        continue;
      }
      const b = g.buckets[nb.b];
      if (!all && b.pending > 0) return;
      nb.b++;
      const buf = this.bufferOf(g, b);
      this.dropPresets(b);
      const { mine, works } = reduceBucket(this.pg, buf, b.lo, b.hi, g.part.size);
      this.inFlight.push({ group: g, bucket: b, mineLo: mine?.lo ?? 0, mineHi: mine?.hi ?? 0, works });
      if (!this.overlapComm) this.drain(0);
      if (!all) this.prepareNext();
    }
  }

  /** Waits for the buckets in flight until `keep` remain: adds this rank's pieces into its partition, returns buffers to the pool. */
  private drain(keep: number, quiet = false): void {
    let error: unknown = null;
    while (this.inFlight.length > keep) {
      const f = this.inFlight.shift() as InFlight;
      for (const w of f.works) {
        try {
          w.wait();
        } catch (e) {
          error ??= e;
        }
      }
      const buf = f.bucket.buffer as Tensor;
      if (!error && f.mineHi > f.mineLo) {
        const n = f.mineHi - f.mineLo;
        const src = flatView(buf, f.mineLo - f.bucket.lo, n);
        const dst = flatView(f.group.partGrad, f.mineLo - f.group.part.start, n);
        k.axpyInto(dst, src, 1);
        src.dispose();
        dst.dispose();
      }
      this.release(f.group, f.bucket);
    }
    if (error && !quiet) throw error;
  }
}
