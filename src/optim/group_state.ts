/**
 * An optimizer group's state: one flat buffer per state name (tag `optim`, allocated on first
 * use) with each parameter at an offset, plus an fp32/f64 master copy of 16-bit parameters.
 */
import { native } from '../native.ts';
import * as k from '../ops/kernels.ts';
import { deviceOf } from '../tensor/backend.ts';
import { type DType, itemSize } from '../tensor/dtype.ts';
import { keep } from '../tensor/scope.ts';
import type { Device } from '../tensor/storage.ts';
import { Tensor } from '../tensor/tensor.ts';
import { SLOT_F64 } from './graph_step.ts';

export type StateDType = 'f32' | 'f64';

/** A parameter's place in its group's flat state. */
export interface Slot {
  param: Tensor;
  numel: number;
  /** Element offset into the group's state buffers. */
  offset: number;
  /** Element offset into the group's master buffer, or -1 when the param is its own weight. */
  masterOffset: number;
  /** Updates applied so far (PyTorch's state['step']). */
  step: number;
  /** Names of the state buffers that hold values for this parameter. */
  has: Set<string>;
}

export class GroupState {
  readonly slots: Slot[] = [];
  readonly numel: number;
  readonly masterNumel: number;
  readonly buffers = new Map<string, Tensor>();
  private master: Tensor | null = null;
  private scalars: Tensor | null = null;
  /** f64 when any parameter is f64 (gradient checks), else f32. */
  readonly dtype: StateDType;

  /** Where the parameters, and so the state buffers, live. */
  readonly device: Device;

  constructor(params: readonly Tensor[]) {
    this.dtype = params.some((p) => p.dtype === 'f64') ? 'f64' : 'f32';
    this.device = deviceOf('optimizer', ...params);
    let off = 0;
    let moff = 0;
    for (const param of params) {
      const numel = param.numel;
      const low = param.dtype === 'bf16' || param.dtype === 'f16';
      this.slots.push({ param, numel, offset: off, masterOffset: low ? moff : -1, step: 0, has: new Set() });
      off += numel;
      if (low) moff += numel;
    }
    this.numel = off;
    this.masterNumel = moff;
  }

  /** The flat buffer of state `name`, zero-filled when first asked for. */
  buffer(name: string): Tensor {
    let b = this.buffers.get(name);
    if (!b) {
      b = keep(Tensor.empty([this.numel], { dtype: this.dtype, tag: 'optim', zero: true, device: this.device }));
      this.buffers.set(name, b);
    }
    return b;
  }

  masterBuffer(): Tensor {
    this.master ??= keep(Tensor.empty([this.masterNumel], { dtype: this.dtype, tag: 'optim', zero: true, device: this.device }));
    return this.master;
  }

  /**
   * Device memory for the step scalars of a CUDA graph's step (graph_step.ts): f64[16] per
   * parameter (a native call per run at most), made at an eager step (`make`), so never a block
   * of a graph's pool, which the graph's own nodes reuse. Null on the CPU and until made.
   */
  scalarSlots(make: boolean): Tensor | null {
    if (make && this.scalars === null && this.device !== 'cpu') {
      this.scalars = keep(Tensor.empty([this.slots.length * SLOT_F64], { dtype: 'f64', tag: 'optim', device: this.device }));
    }
    return this.scalars;
  }

  /** The state tensors allocated so far (the buffers in creation order, the master copy, the scalar slots). */
  stateTensors(): Tensor[] {
    const all = [...this.buffers.values()];
    if (this.master) all.push(this.master);
    if (this.scalars) all.push(this.scalars);
    return all;
  }

  /** Forgets every value: steps to 0, buffers zeroed (kept allocated). */
  clear(): void {
    for (const b of this.buffers.values()) k.fill(b, 0);
    for (const s of this.slots) {
      s.step = 0;
      s.has.clear();
    }
  }

  dispose(): void {
    for (const b of this.buffers.values()) b.dispose();
    this.buffers.clear();
    this.master?.dispose();
    this.master = null;
    this.scalars?.dispose();
    this.scalars = null;
    for (const s of this.slots) {
      s.step = 0;
      s.has.clear();
    }
  }
}

/** Copies a contiguous tensor's values into `dst` (flat) at element `off`, converting dtype. */
export function copyFlat(src: Tensor, dst: Tensor, off: number): void {
  const s = src.alias([src.numel], [1], src.offset);
  const d = dst.alias([src.numel], [1], dst.offset + off);
  try {
    k.copyInto(s, d);
  } finally {
    s.dispose();
    d.dispose();
  }
}

/** A copy of `n` values of a flat buffer from element `off`. */
export function readFlat(buf: Tensor, off: number, n: number): Float32Array | Float64Array {
  const v = buf.alias([n], [1], buf.offset + off);
  try {
    return v.toArray() as Float32Array | Float64Array;
  } finally {
    v.dispose();
  }
}

export function writeFlat(buf: Tensor, off: number, data: ArrayLike<number>): void {
  const typed = buf.dtype === 'f64' ? Float64Array.from(data) : Float32Array.from(data);
  if (buf.device === 'cpu') {
    native.write(buf.id, (buf.offset + off) * itemSize(buf.dtype as DType), typed);
    return;
  }
  // Device state (a GPU's optimizer): the values go through a host tensor.
  const host = Tensor.empty([typed.length], { dtype: buf.dtype });
  const d = buf.alias([typed.length], [1], buf.offset + off);
  try {
    native.write(host.id, 0, typed);
    k.copyInto(host, d);
  } finally {
    host.dispose();
    d.dispose();
  }
}
