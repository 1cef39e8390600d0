/**
 * Tensor: a shape and strides over a reference-counted native storage, plus autograd links.
 * Memory is released by `dispose()` or by the enclosing `tidy()` scope, deterministically.
 */

import type { Node } from '../autograd/node.ts';
import { native } from '../native.ts';
import * as ops from '../ops/index.ts';
import { checkDevice } from './device.ts';
import { flushDeviceChecks } from './device_checks.ts';
import { checkDType, type DType, dtypeCode, itemSize } from './dtype.ts';
import { track } from './scope.ts';
import { contiguousStrides, fmt, isContiguous, numel, type Shape } from './shape.ts';
import { type Device, type MemoryTag, Storage } from './storage.ts';
import { defaultTag } from './tag_context.ts';

/** Frees storages of tensors that were neither disposed nor scoped: a safety net only. */
const finalizer = new FinalizationRegistry<Storage>((s) => s.release());

/**
 * Unscoped tensors wait here before joining the registry: most are disposed within the same
 * synchronous run (an op's result, a backward seed), and a register + unregister pair costs more
 * host time than such an op's own TypeScript. They join at the next microtask checkpoint, which
 * comes before any finalizer can run (those are tasks), or every NET_BATCH tensors in a long
 * synchronous loop, which bounds what this list holds.
 */
const awaitingNet: Tensor[] = [];
const NET_BATCH = 1024;
let netFlushQueued = false;

/** Where a tensor stands with the finalizer's safety net: not in it, in awaitingNet, registered. */
const NET_NONE = 0;
const NET_AWAITING = 1;
const NET_REGISTERED = 2;

export interface TensorOptions {
  dtype?: DType;
  device?: Device;
  tag?: MemoryTag;
  requiresGrad?: boolean;
}

export class Tensor {
  readonly shape: readonly number[];
  readonly strides: readonly number[];
  readonly offset: number;
  readonly dtype: DType;
  requiresGrad = false;
  /** Accumulated gradient of a leaf after `backward()`. */
  grad: Tensor | null = null;
  /** The tape node that produced this tensor; null for leaves. */
  gradFn: Node | null = null;
  /** Set by `keep()`: scopes leave this tensor alone. */
  kept = false;
  private _gradReadyHooks: ((t: Tensor) => void)[] | null = null;
  private _storage: Storage | null;
  private net = NET_NONE;

  /** Hooks run when this leaf's gradient for the current backward pass is complete. */
  get gradReadyHooks(): ((t: Tensor) => void)[] {
    // Made on first use: most tensors never get a hook, and an array each is garbage per op.
    this._gradReadyHooks ??= [];
    return this._gradReadyHooks;
  }

  /** True when some gradient-ready hook is registered (reads without making the list). */
  get hasGradReadyHooks(): boolean {
    return this._gradReadyHooks !== null && this._gradReadyHooks.length > 0;
  }

  escaped(): void {
    if (this.net !== NET_NONE || this._storage === null) return;
    this.awaitNet();
  }

  private awaitNet(): void {
    this.net = NET_AWAITING;
    awaitingNet.push(this);
    if (awaitingNet.length >= NET_BATCH) Tensor.flushNet();
    else if (!netFlushQueued) {
      netFlushQueued = true;
      queueMicrotask(Tensor.flushNet);
    }
  }

  /** Registers the waiting tensors that are still alive (see awaitingNet). */
  private static flushNet(): void {
    netFlushQueued = false;
    for (const t of awaitingNet) {
      if (t.net !== NET_AWAITING) continue;
      if (t._storage === null) {
        t.net = NET_NONE;
        continue;
      }
      finalizer.register(t, t._storage, t);
      t.net = NET_REGISTERED;
    }
    awaitingNet.length = 0;
  }

  /** Wraps a storage (its reference is taken over by this tensor). Use factories instead. */
  constructor(storage: Storage, shape: Shape, strides: readonly number[], offset: number, dtype: DType) {
    this._storage = storage;
    this.shape = shape;
    this.strides = strides;
    this.offset = offset;
    this.dtype = dtype;
    // A scoped tensor is freed by its scope; only unscoped ones need the (costly) safety net.
    if (!track(this)) this.awaitNet();
  }

  /** A new uninitialized (or zeroed) contiguous tensor. */
  static empty(shape: Shape, opts: TensorOptions & { zero?: boolean } = {}): Tensor {
    const t = Tensor.emptyOf(shape, opts.dtype, opts.tag, opts.zero ?? false, opts.device);
    if (opts.requiresGrad) t.requiresGrad = true;
    return t;
  }

  /** Internal: `empty` without an options object, for the kernels' outputs (one per op). Same checks. */
  static emptyOf(shape: Shape, dtype: DType | undefined, tag: MemoryTag | undefined, zero: boolean, device: Device | undefined): Tensor {
    const dt = checkDType(dtype ?? 'f32', 'empty');
    const dev = device === undefined ? 'cpu' : checkDevice(device, 'empty');
    const storage = new Storage(numel(shape) * itemSize(dt), tag ?? defaultTag(), dev, zero);
    return new Tensor(storage, [...shape], contiguousStrides(shape), 0, dt);
  }

  /** A new tensor with the given strides (they must describe a dense layout, e.g. channels-last). */
  static emptyStrided(shape: Shape, strides: readonly number[], opts: TensorOptions = {}): Tensor {
    const dtype = checkDType(opts.dtype ?? 'f32', 'empty');
    const device = opts.device === undefined ? 'cpu' : checkDevice(opts.device, 'empty');
    const storage = new Storage(numel(shape) * itemSize(dtype), opts.tag ?? defaultTag(), device, false);
    return new Tensor(storage, [...shape], [...strides], 0, dtype);
  }

  get storage(): Storage {
    if (this._storage === null) throw new Error(`tensor ${fmt(this.shape)} ${this.dtype} was disposed`);
    return this._storage;
  }

  /** The storage id, checked alive: what kernels receive. */
  get id(): number {
    return this.storage.id;
  }

  get disposed(): boolean {
    return this._storage === null;
  }

  get device(): Device {
    return this.storage.device;
  }

  get ndim(): number {
    return this.shape.length;
  }

  get numel(): number {
    return numel(this.shape);
  }

  get isLeaf(): boolean {
    return this.gradFn === null;
  }

  get isContiguous(): boolean {
    return isContiguous(this.shape, this.strides);
  }

  /** Releases this handle's storage reference and its autograd node. Idempotent. */
  dispose(): void {
    if (this._storage === null) return;
    if (this.net === NET_REGISTERED) finalizer.unregister(this);
    this._storage.release();
    this._storage = null;
    if (this.gradFn) {
      this.gradFn.release();
      this.gradFn = null;
    }
    if (this.grad && !this.grad.disposed) this.grad.dispose();
    this.grad = null;
  }

  /**
   * Internal, for flat parameter buffers (`flattenParameters`, ZeRO): re-points this tensor at
   * `storage` from element `offset`, laid out contiguously, keeping the object itself so that
   * modules, optimizers and autograd edges holding it stay valid. Takes over one reference of
   * `storage` (retain it first if you keep yours) and releases the old one. Shape and dtype stay;
   * no values are copied. Views made earlier keep the old memory.
   */
  rebind(storage: Storage, offset: number): void {
    const bytes = this.numel * itemSize(this.dtype);
    if (!storage.alive) throw new Error(`rebind: the new storage of ${this} was already freed`);
    if (!Number.isSafeInteger(offset) || offset < 0 || (offset + this.numel) * itemSize(this.dtype) > storage.nbytes) {
      throw new Error(`rebind: ${this} (${bytes} bytes) at element ${offset} does not fit a storage of ${storage.nbytes} bytes`);
    }
    const old = this.storage;
    // offset and strides are fixed for everyone else; only rebind moves them.
    const self = this as { offset: number; strides: readonly number[] };
    self.offset = offset;
    self.strides = contiguousStrides(this.shape);
    this._storage = storage;
    // A tensor still awaiting the net joins it with whatever storage it has then.
    if (this.net === NET_REGISTERED) {
      finalizer.unregister(this);
      finalizer.register(this, storage, this);
    }
    old.release();
  }

  /** Another handle on the same memory with no autograd history (a view that shares storage). */
  alias(shape: Shape = this.shape, strides: readonly number[] = this.strides, offset = this.offset): Tensor {
    const s = this.storage;
    s.retain();
    return new Tensor(s, shape, strides, offset, this.dtype);
  }

  /** A view of the same values that does not track gradients. */
  detach(): Tensor {
    return this.alias();
  }

  /** Copies the values out as a typed array (16-bit floats widen to Float32Array). */
  toArray(): Float32Array | Float64Array | Int32Array | BigInt64Array {
    if (this.dtype === 'bf16' || this.dtype === 'f16') {
      const f = ops.cast(this, 'f32', { track: false });
      try {
        return f.toArray();
      } finally {
        f.dispose();
      }
    }
    const t = this.isContiguous ? this : ops.contiguous(this);
    try {
      // Reading device values synchronizes: the deferred device-side index checks are read too.
      if (t.device !== 'cpu') flushDeviceChecks();
      const bytes = native.read(t.id, t.offset * itemSize(t.dtype), t.numel * itemSize(t.dtype));
      switch (t.dtype) {
        case 'f64':
          return new Float64Array(bytes);
        case 'i32':
          return new Int32Array(bytes);
        case 'i64':
          return new BigInt64Array(bytes);
        default:
          return new Float32Array(bytes);
      }
    } finally {
      if (t !== this) t.dispose();
    }
  }

  /** The values as a flat array of numbers. */
  toList(): number[] {
    const a = this.toArray();
    return a instanceof BigInt64Array ? Array.from(a, Number) : Array.from(a);
  }

  /** The single value of a one-element tensor. */
  item(): number {
    if (this.numel !== 1) throw new Error(`item: the tensor has ${this.numel} elements ${fmt(this.shape)}, not 1`);
    return this.toList()[0];
  }

  /** Sets requiresGrad on a leaf; returns this. */
  requiresGrad_(flag = true): this {
    if (!this.isLeaf && !flag) throw new Error('requiresGrad_: only leaves can stop requiring gradients; use detach()');
    if (flag && !(this.dtype === 'f32' || this.dtype === 'f64' || this.dtype === 'bf16' || this.dtype === 'f16')) {
      throw new Error(`requiresGrad_: only floating-point tensors can require gradients, not ${this.dtype}`);
    }
    this.requiresGrad = flag;
    return this;
  }

  /** Runs backpropagation from this tensor (a scalar unless `grad` is given). */
  backward(grad?: Tensor, opts: { retainGraph?: boolean } = {}): void {
    ops.backward(this, grad, opts);
  }

  toString(): string {
    return `Tensor(${fmt(this.shape)}, ${this.dtype}${this.requiresGrad ? ', requiresGrad' : ''})`;
  }

  // Method forms of the common ops; the functions in src/ops are the reference.
  add(o: Tensor | number): Tensor {
    return ops.add(this, o);
  }
  sub(o: Tensor | number): Tensor {
    return ops.sub(this, o);
  }
  mul(o: Tensor | number): Tensor {
    return ops.mul(this, o);
  }
  div(o: Tensor | number): Tensor {
    return ops.div(this, o);
  }
  neg(): Tensor {
    return ops.neg(this);
  }
  matmul(o: Tensor): Tensor {
    return ops.matmul(this, o);
  }
  sum(dims?: number | number[], keepDim = false): Tensor {
    return ops.sum(this, dims, keepDim);
  }
  mean(dims?: number | number[], keepDim = false): Tensor {
    return ops.mean(this, dims, keepDim);
  }
  reshape(shape: number[]): Tensor {
    return ops.reshape(this, shape);
  }
  view(shape: number[]): Tensor {
    return ops.view(this, shape);
  }
  transpose(d0: number, d1: number): Tensor {
    return ops.transpose(this, d0, d1);
  }
  permute(dims: number[]): Tensor {
    return ops.permute(this, dims);
  }
  contiguous(): Tensor {
    return ops.contiguous(this);
  }
  narrow(dim: number, start: number, length: number): Tensor {
    return ops.narrow(this, dim, start, length);
  }
  /** A cast (`'bf16'`) or a copy to another device (`'cuda:0'`, `'cpu'`); both differentiable. */
  to(target: DType | Device): Tensor {
    return target === 'cpu' || target.startsWith('cuda') ? ops.toDevice(this, target as Device) : ops.cast(this, target as DType);
  }
  clone(): Tensor {
    return ops.clone(this);
  }
}

export { dtypeCode };
