/**
 * Which ids fall in this rank's vocabulary slice, computed where the tensors live (the native
 * vocabRange: a CPU loop, or a CUDA kernel) so that vocab-parallel embedding and cross-entropy never
 * read ids on the host. On the CPU a bad id throws at once; on a device the kernel raises a flag that
 * is read at the next synchronization (tensor/device_checks.ts) and then throws the same message.
 */
import { native } from '../native.ts';
import * as k from '../ops/kernels.ts';
import { kernelsOn } from '../tensor/backend.ts';
import { deferIndexCheck } from '../tensor/device_checks.ts';
import { type DType, dtypeCode } from '../tensor/dtype.ts';
import type { Device } from '../tensor/storage.ts';
import type { Tensor } from '../tensor/tensor.ts';

/** The local index of an ignored id: the ignore value to give the cross-entropy kernels. */
export const LOCAL_IGNORE = -1;
/** "No ignore value": -2^63, which no i32 or i64 id in [0, V) can equal (native kNoIgnore). */
const NO_IGNORE = -(2 ** 63);

export interface VocabSliceOptions {
  /** This rank's rows are [start, start + size) of a `vocab`-row vocabulary. */
  start: number;
  size: number;
  vocab: number;
  /** Ids equal to this are skipped: local LOCAL_IGNORE, here 0, valid 0 (default: none). */
  ignoreIndex?: number;
  /** The masks' dtype (floating point). */
  maskDType: DType;
  /** Also return the valid mask (1 for ids in [0, vocab) not ignored). */
  valid?: boolean;
  /** Where the outputs live; ids elsewhere are copied there first. */
  device: Device;
  /** The error message for the bad id `value` at flat position `pos` of the ids. */
  describe: (pos: number, value: number) => string;
}

/** Per id: `local` i32 (id - start in the slice, 0 held elsewhere or bad, LOCAL_IGNORE ignored), `here` and `valid` masks (ids' shape). */
export interface VocabSliceIndex {
  local: Tensor;
  here: Tensor;
  valid: Tensor | null;
}

/**
 * Local indices and masks of `ids` (i32/i64, any shape) for one vocabulary slice, on `o.device`.
 * Ids outside [0, vocab) that are not ignored throw `o.describe(pos, value)`: at once on the CPU,
 * at the next synchronization on a device (with where it was checked appended).
 * @example
 * const { local, here } = vocabSliceIndex(ids, { start: 0, size: 8, vocab: 16, maskDType: 'f32', device: 'cpu', describe });
 */
export function vocabSliceIndex(ids: Tensor, o: VocabSliceOptions): VocabSliceIndex {
  if (ids.dtype !== 'i32' && ids.dtype !== 'i64') throw new Error(`vocabSliceIndex: ids must be i32 or i64, got ${ids.dtype}`);
  if (!(Number.isSafeInteger(o.start) && Number.isSafeInteger(o.size) && Number.isSafeInteger(o.vocab) && o.start >= 0 && o.size >= 0 && o.start + o.size <= o.vocab)) {
    throw new Error(`vocabSliceIndex: slice [${o.start}, ${o.start + o.size}) is not inside [0, ${o.vocab})`);
  }
  if (o.ignoreIndex !== undefined && !Number.isSafeInteger(o.ignoreIndex)) throw new Error(`vocabSliceIndex: ignoreIndex must be an integer, got ${o.ignoreIndex}`);
  const dev = o.device;
  const moved = ids.device === dev ? k.asContiguous(ids) : k.toDevice(ids, dev);
  const n = ids.numel;
  const shape = [...ids.shape];
  const local = k.empty(shape, 'i32', undefined, false, dev);
  const here = k.empty(shape, o.maskDType, undefined, false, dev);
  const valid = o.valid ? k.empty(shape, o.maskDType, undefined, false, dev) : null;
  const args = [dtypeCode(ids.dtype), moved.id, moved.offset, n, o.start, o.size, o.vocab, o.ignoreIndex ?? NO_IGNORE, local.id, dtypeCode(o.maskDType), here.id, valid?.id ?? 0] as const;
  if (dev === 'cpu') {
    const bad = native.vocabRange(...args, 0) as number;
    if (bad >= 0) {
      const value = Number(moved.toList()[bad]);
      for (const t of [local, here, valid]) t?.dispose();
      if (moved !== ids) moved.dispose();
      throw new Error(o.describe(bad, value));
    }
  } else {
    const flag = k.empty([1], 'i64', 'other', false, dev);
    kernelsOn(dev).vocabRange(...args, flag.id);
    deferIndexCheck(flag, moved.alias(), (pos, value) => `${o.describe(pos, value)} (checked on ${dev}, reported at the next synchronization)`);
  }
  if (moved !== ids) moved.dispose();
  return { local, here, valid };
}
