/**
 * Index checks that run on a CUDA device without a host synchronization: the kernel writes a flag
 * (one i64 on the device: 0 when every index was in range, else n - the first bad position) and
 * the op registers it here with how to describe a failure. The flags are read at the next
 * synchronizing call (reading values, moving a tensor to the CPU, cudaSynchronize), which then
 * throws the op's usual message ("embedding: id 7 at position [0] ... is out of range ...").
 * The flags of one device are first copied side by side on the device and read in one copy, so a
 * GPT step's embedding and cross-entropy checks cost the next `loss.item()` one wait, not one each.
 */
import { native } from '../native.ts';
import * as k from '../ops/kernels.ts';
import { graphCaptureDevice } from './capture_state.ts';
import type { Device } from './storage.ts';
import type { Tensor } from './tensor.ts';

export interface PendingCheck {
  /** The device flag (i64 [1]). */
  flag: Tensor;
  /** The checked indices (an alias kept alive until the check is read). */
  ids: Tensor;
  /** The error message for the index `value` at flat position `pos`. */
  message: (pos: number, value: number) => string;
}

let pending: PendingCheck[] = [];

/** Checks pending beyond this many are read at once (a loop that never synchronizes stays bounded). */
const MAX_PENDING = 256;

/**
 * Registers a device-side index check; takes ownership of `flag` and of `ids` (pass an alias).
 * @example
 * deferIndexCheck(flag, ids.alias(), (pos, v) => `embedding: id ${v} at position ${pos} is out of range`);
 */
export function deferIndexCheck(flag: Tensor, ids: Tensor, message: PendingCheck['message']): void {
  // Owned here, not by the enclosing tidy scope: they must outlive it until read.
  flag.kept = true;
  ids.kept = true;
  pending.push({ flag, ids, message });
  // Reading synchronizes, which a graph's capture cannot; the capture takes its checks instead.
  if (pending.length > MAX_PENDING && graphCaptureDevice() === null) flushDeviceChecks();
}

/** Internal (cuda_graph.ts): the pending checks, handed over; none stay pending. */
export function takePendingChecks(): PendingCheck[] {
  const taken = pending;
  pending = [];
  return taken;
}

/** Internal (cuda_graph.ts): registers a captured check again after a replay rewrote its flag (the check keeps its own tensors). */
export function deferCheckAgain(c: PendingCheck): void {
  deferIndexCheck(c.flag.alias(), c.ids.alias(), c.message);
}

function readI64(t: Tensor, index: number): number {
  const item = t.dtype === 'i32' ? 4 : 8;
  const buf = native.read(t.id, (t.offset + index) * item, item);
  return item === 4 ? new Int32Array(buf)[0] : Number(new BigInt64Array(buf)[0]);
}

/** The flat position in a possibly strided index tensor, as the element's storage index. */
function storageIndex(t: Tensor, pos: number): number {
  let rem = pos;
  let at = 0;
  for (let d = t.ndim - 1; d >= 0; d--) {
    at += (rem % t.shape[d]) * t.strides[d];
    rem = Math.floor(rem / t.shape[d]);
  }
  return at;
}

/** Every check's flag value: per device, the flags copied into one i64 array there (device copies) and read at once. */
function readFlags(checks: PendingCheck[]): number[] {
  const values = new Array<number>(checks.length).fill(0);
  const byDevice = new Map<Device, number[]>();
  checks.forEach((c, i) => {
    const list = byDevice.get(c.flag.device) ?? [];
    list.push(i);
    byDevice.set(c.flag.device, list);
  });
  for (const [dev, idx] of byDevice) {
    if (idx.length === 1) {
      values[idx[0]] = readI64(checks[idx[0]].flag, 0);
      continue;
    }
    const all = k.empty([idx.length], 'i64', 'other', false, dev);
    try {
      idx.forEach((ci, slot) => {
        const dst = all.alias([1], [1], all.offset + slot);
        k.copyInto(checks[ci].flag, dst);
        dst.dispose();
      });
      const read = new BigInt64Array(native.read(all.id, all.offset * 8, idx.length * 8));
      idx.forEach((ci, slot) => {
        values[ci] = Number(read[slot]);
      });
    } finally {
      all.dispose();
    }
  }
  return values;
}

/**
 * Reads every pending flag (one synchronization per device) and throws the first failure's message;
 * the checks are released either way. Called by the synchronizing operations.
 */
export function flushDeviceChecks(): void {
  if (pending.length === 0) return;
  const checks = pending;
  pending = [];
  let error: string | null = null;
  let flags: number[] = [];
  try {
    flags = readFlags(checks);
  } catch (e) {
    for (const c of checks) {
      c.flag.dispose();
      c.ids.dispose();
    }
    throw e;
  }
  for (const [i, c] of checks.entries()) {
    try {
      if (error === null) {
        const v = flags[i];
        if (v !== 0) {
          const pos = c.ids.numel - v;
          error = c.message(pos, readI64(c.ids, storageIndex(c.ids, pos)));
        }
      }
    } finally {
      c.flag.dispose();
      c.ids.dispose();
    }
  }
  if (error !== null) throw new Error(error);
}

/** How many checks wait to be read (for tests). */
export function pendingDeviceChecks(): number {
  return pending.length;
}
