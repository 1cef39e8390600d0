/**
 * Sums of |x|^p over many tensors, accumulated in f64 slots on the tensors' device (normPowInto),
 * all-reduced as one small tensor and read once. On a GPU every per-tensor `normPow` is a host
 * wait; a step's gradient norm and overflow check go through one of these instead, so the step
 * reads the device once (cudaSyncCount counts it). On the CPU the same path runs the same
 * fixed-order reduction, adding each tensor's sum in the order given: bit for bit the per-tensor sums.
 */
import type { ProcessGroup } from '../dist/process_group.ts';
import { native } from '../native.ts';
import { zeros } from '../ops/create.ts';
import * as k from '../ops/kernels.ts';
import type { Device } from '../tensor/storage.ts';
import { withTag } from '../tensor/tag_context.ts';
import type { Tensor } from '../tensor/tensor.ts';
import { normPowInto } from './fused.ts';

const FLOAT_DTYPES = new Set(['f32', 'f64', 'bf16', 'f16']);

/**
 * `slots` f64 accumulators on `device`, zero to start. A slot holds a sum of |x|^p, or for
 * p = Infinity a max; NaN and infinity propagate through both.
 * @example
 * const sums = new DeviceSums(grads[0].device);
 * for (const g of grads) sums.add(g, 2);        // queued on the device, nothing read
 * sums.allReduce([dpGroup]);                     // one collective of one f64
 * const [sq] = sums.read();                      // the one host read
 * sums.dispose();
 */
export class DeviceSums {
  /** The accumulators: f64 [slots] on `device` (tag 'other'). */
  readonly values: Tensor;

  constructor(
    readonly device: Device,
    readonly slots = 1,
  ) {
    if (!Number.isInteger(slots) || slots < 1) throw new Error(`DeviceSums: slots must be a positive integer, got ${String(slots)}`);
    this.values = zeros([slots], { dtype: 'f64', device, tag: 'other' });
  }

  /** slot += sum |t|^p over every element (p = Infinity: slot = max(slot, max |t|)); any layout. */
  add(t: Tensor, p: number, slot = 0): void {
    if (!FLOAT_DTYPES.has(t.dtype)) throw new Error(`DeviceSums.add: ${t.dtype} tensor of shape [${t.shape.join(', ')}] is not a floating-point tensor`);
    if (t.device !== this.device) {
      throw new Error(`DeviceSums.add: the tensor [${t.shape.join(', ')}] is on ${t.device}, the sums on ${this.device}`);
    }
    if (!(p > 0)) throw new Error(`DeviceSums.add: p must be positive, got ${String(p)}`);
    this.checkSlot(slot, 'add');
    if (t.numel === 0) return;
    // A strided gradient goes through a contiguous copy, freed once the reduction is queued (stream order keeps it alive).
    const src = t.isContiguous ? t : withTag('grad', () => k.copy(t));
    try {
      normPowInto({ dtype: src.dtype, id: src.id, off: src.offset }, src.numel, p, { id: this.values.id, off: this.values.offset + slot });
    } finally {
      if (src !== t) src.dispose();
    }
  }

  /** Every slot `from` ... `from + count - 1` summed over each group in turn (groups of one and null are skipped). */
  allReduce(groups: (ProcessGroup | null)[], from = 0, count = this.slots - from): void {
    this.checkSlot(from, 'allReduce');
    if (!Number.isInteger(count) || count < 1 || from + count > this.slots) {
      throw new Error(`DeviceSums.allReduce: slots ${from}..${from + count - 1} are outside the ${this.slots} slot(s)`);
    }
    const live = groups.filter((g): g is ProcessGroup => g !== null && g.size > 1);
    if (live.length === 0) return;
    const view = from === 0 && count === this.slots ? this.values : this.values.alias([count], [1], this.values.offset + from);
    try {
      for (const g of live) g.allReduce(view, 'sum');
    } finally {
      if (view !== this.values) view.dispose();
    }
  }

  /** slot `to` = slot `from`, on the device (e.g. to keep a local sum beside its all-reduced copy). */
  copySlot(from: number, to: number): void {
    this.checkSlot(from, 'copySlot');
    this.checkSlot(to, 'copySlot');
    const a = this.values.alias([1], [1], this.values.offset + from);
    const b = this.values.alias([1], [1], this.values.offset + to);
    try {
      k.copyInto(a, b);
    } finally {
      a.dispose();
      b.dispose();
    }
  }

  /**
   * Every slot's value: the one host read (a synchronization on a GPU). The device-side index
   * checks still pending stay pending (device_checks.ts): they are read, a wait each, at the
   * caller's next reading of values (the loss's item()), not charged to the optimizer step.
   */
  read(): number[] {
    const buf = native.read(this.values.id, this.values.offset * 8, this.slots * 8);
    return Array.from(new Float64Array(buf));
  }

  dispose(): void {
    this.values.dispose();
  }

  private checkSlot(slot: number, where: string): void {
    if (!Number.isInteger(slot) || slot < 0 || slot >= this.slots) {
      throw new Error(`DeviceSums.${where}: slot ${String(slot)} is outside the ${this.slots} slot(s)`);
    }
  }
}

/**
 * Runs `fn` with fresh sums on `device` and disposes them after, whatever happens.
 * @example
 * const [sq] = withDeviceSums('cuda:0', 1, (s) => { for (const g of grads) s.add(g, 2); return s.read(); });
 */
export function withDeviceSums<R>(device: Device, slots: number, fn: (sums: DeviceSums) => R): R {
  const sums = new DeviceSums(device, slots);
  try {
    return fn(sums);
  } finally {
    sums.dispose();
  }
}
