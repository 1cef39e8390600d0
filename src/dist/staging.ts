/**
 * Collectives on device tensors over a host backend (shm, gloo): the backend only reads and
 * writes host memory, so each device storage the operands touch is staged through one pinned host
 * buffer (pinned.ts). Inputs are copied in when the operation is issued (a snapshot, as NCCL reads
 * after the compute stream's queued kernels), the backend runs on host twins that keep the
 * operands' offsets and strides (so in-place forms such as an all-gather whose input is a view of
 * its output stay aliased), and outputs are copied back when it completes: at once when
 * synchronous, in wait() when asynchronous. The backend reduces the device's exact bytes, so the
 * result equals the CPU path bit for bit.
 */
import { itemSize } from '../tensor/dtype.ts';
import { pinnedEmpty, stageBytes } from '../tensor/pinned.ts';
import type { Storage } from '../tensor/storage.ts';
import { Tensor } from '../tensor/tensor.ts';
import type { Communicator, PendingOp } from './communicator.ts';

/** The device kinds a backend accepts in place: its `devices`, or the CPU alone. */
export function acceptsDevice(comm: Communicator, device: Tensor['device']): boolean {
  const kinds = comm.devices ?? ['cpu'];
  return kinds.includes(device === 'cpu' ? 'cpu' : 'cuda');
}

/**
 * Whether staging applies: a CUDA operand on a backend that reads host memory only, or (tests and
 * debugging: MESHTRAIN_STAGE_HOST=1) any operand of a host backend, so the staging path runs on
 * CPU-only machines. Host operands of a device-only backend are its own to refuse.
 */
export function needsStaging(comm: Communicator, tensors: readonly Tensor[]): boolean {
  if (!acceptsDevice(comm, 'cpu') || tensors.length === 0) return false;
  if (process.env.MESHTRAIN_STAGE_HOST === '1') return true;
  return tensors.some((t) => !acceptsDevice(comm, t.device));
}

/** One staged storage: the bytes [lo, hi) of `storage` live at host[0..hi-lo). */
interface Span {
  storage: Storage;
  source: Tensor;
  lo: number;
  hi: number;
  host: Tensor | null;
}

/** First and one-past-last byte of a dense tensor (non-negative strides: its elements fill [offset, offset + numel)). */
function byteRange(t: Tensor): [number, number] {
  const item = itemSize(t.dtype);
  return [t.offset * item, (t.offset + t.numel) * item];
}

/**
 * Runs `run` on host twins of `operands` (in the same order). `inputs` and `outputs` name which
 * operands are read and written (by index). Returns the backend's op, wrapped so that its
 * completion copies the outputs back and frees the staging buffers.
 */
export function runStaged(
  operands: Tensor[], inputs: number[], outputs: number[], async: boolean, run: (twins: Tensor[]) => PendingOp | null,
): PendingOp | null {
  const spans = new Map<Storage, Span>();
  for (const t of operands) {
    const [lo, hi] = byteRange(t);
    const s = spans.get(t.storage);
    if (s) {
      s.lo = Math.min(s.lo, lo);
      s.hi = Math.max(s.hi, hi);
    } else {
      spans.set(t.storage, { storage: t.storage, source: t, lo, hi, host: null });
    }
  }
  // What the copies need, taken now: callers may dispose their operand views once an async op is
  // issued (the Work keeps the storages alive, not the tensor objects).
  const copies = operands.map((t) => {
    const [lo, hi] = byteRange(t);
    return { id: t.id, lo, hi, span: spans.get(t.storage) as Span };
  });
  const twins: Tensor[] = [];
  try {
    // Every operand of a collective has one dtype (ProcessGroup checks it).
    // Kept out of tidy scopes: an async operation may complete after the scope that issued it.
    for (const s of spans.values()) {
      s.host = pinnedEmpty([(s.hi - s.lo) / itemSize(s.source.dtype)], { dtype: s.source.dtype, tag: 'comm' });
      s.host.kept = true;
    }
    for (const i of inputs) {
      const c = copies[i];
      stageBytes(c.id, c.lo, (c.span.host as Tensor).id, c.lo - c.span.lo, c.hi - c.lo);
    }
    for (const t of operands) {
      const s = spans.get(t.storage) as Span;
      const host = s.host as Tensor;
      host.storage.retain();
      const twin = new Tensor(host.storage, t.shape, t.strides, (t.offset * itemSize(t.dtype) - s.lo) / itemSize(t.dtype), t.dtype);
      twin.kept = true;
      twins.push(twin);
    }
  } catch (e) {
    free(twins, spans);
    throw e;
  }
  // A failed operation leaves its outputs undefined: they are not copied back.
  const finish = (ok: boolean) => {
    try {
      if (ok) for (const i of outputs) {
        const c = copies[i];
        stageBytes((c.span.host as Tensor).id, c.lo - c.span.lo, c.id, c.lo, c.hi - c.lo);
      }
    } finally {
      free(twins, spans);
    }
  };
  let op: PendingOp | null;
  try {
    op = run(twins);
  } catch (e) {
    free(twins, spans);
    throw e;
  }
  if (!async || op === null) {
    finish(true);
    return null;
  }
  return new StagedOp(op, finish);
}

function free(twins: Tensor[], spans: Map<Storage, Span>): void {
  for (const t of twins) if (!t.disposed) t.dispose();
  for (const s of spans.values()) {
    if (s.host && !s.host.disposed) s.host.dispose();
    s.host = null;
  }
  twins.length = 0;
}

/** An asynchronous staged operation: completion copies the outputs back to the device, once. */
class StagedOp implements PendingOp {
  private finished = false;
  constructor(
    private readonly inner: PendingOp,
    private readonly finish: (ok: boolean) => void,
  ) {}

  wait(): void {
    if (this.finished) return;
    this.finished = true;
    try {
      this.inner.wait();
    } catch (e) {
      this.finish(false);
      throw e;
    }
    this.finish(true);
  }

  test(): boolean {
    return this.finished || this.inner.test();
  }
}
