/**
 * Page-locked (pinned) host memory for copies to and from CUDA devices: staging buffers of
 * collectives over host transports and ZeRO's CPU/NVMe offload. Blocks come from a caching pool
 * over cudaHostAlloc (native/cuda/pinned_pool.cc) and are ordinary CPU tensors, counted in
 * `memoryStats()` under `'cpu'` (or `'cpu-offload'` for offloaded state) with their tag. Where
 * pinning is impossible (an addon without CUDA, no device, or the limit of lockable memory)
 * the same calls give ordinary host memory, so callers need no second path.
 */
import { native } from '../native.ts';
import { type DType, itemSize } from './dtype.ts';
import { contiguousStrides, numel } from './shape.ts';
import { type MemoryTag, Storage, tagCode } from './storage.ts';
import { Tensor } from './tensor.ts';

/** native/tensor/storage.h kCpuOffloadPool: host memory reported under 'cpu-offload'. */
const CPU_OFFLOAD_CODE = 9;

export interface PinnedOptions {
  dtype?: DType;
  tag?: MemoryTag;
  /** Count it under 'cpu-offload' instead of 'cpu' (ZeRO's offloaded partitions). */
  offloadPool?: boolean;
  zero?: boolean;
}

/**
 * A contiguous CPU tensor in pinned memory when the addon can pin, else in ordinary memory.
 * @example
 * const host = pinnedEmpty([1 << 20], { dtype: 'bf16', tag: 'comm' });
 * isPinned(host);   // true on a CUDA machine
 */
export function pinnedEmpty(shape: number[], opts: PinnedOptions = {}): Tensor {
  const dtype = opts.dtype ?? 'f32';
  const tag = opts.tag ?? 'comm';
  const bytes = numel(shape) * itemSize(dtype);
  const zero = opts.zero ?? false;
  const id = typeof native.pinnedAlloc === 'function' ? (native.pinnedAlloc(bytes, tagCode(tag), opts.offloadPool ? CPU_OFFLOAD_CODE : 0, zero) as number) : -1;
  let storage: Storage;
  if (id >= 0) {
    storage = Storage.adopt(id, bytes, tag, 'cpu');
    pinned.add(storage);
  } else {
    storage = opts.offloadPool ? Storage.inOffloadPool(bytes, tag, zero) : new Storage(bytes, tag, 'cpu', zero);
  }
  return new Tensor(storage, [...shape], contiguousStrides(shape), 0, dtype);
}

/** The storages handed out pinned. */
const pinned = new WeakSet<Storage>();

/** Whether `t` lives in pinned memory. */
export function isPinned(t: Tensor): boolean {
  return pinned.has(t.storage);
}

/** The pinned pool: bytes cached for reuse, bytes pinned in all, cache hits and misses (zeros without CUDA). */
export function pinnedPoolStats(): { cachedBytes: number; reservedBytes: number; hits: number; misses: number } {
  return typeof native.pinnedPoolStats === 'function' ? native.pinnedPoolStats() : { cachedBytes: 0, reservedBytes: 0, hits: 0, misses: 0 };
}

/** Unpins and frees the pool's cached blocks. */
export function pinnedEmptyCache(): void {
  if (typeof native.pinnedEmptyCache === 'function') native.pinnedEmptyCache();
}

/**
 * Copies `bytes` between a device storage and a host one on the device's communication stream,
 * after the compute stream's queued work (native stageCopy); the host side holds the bytes on
 * return when copying to the host. Host to host (forced staging) and an addon without stageCopy
 * use copyBytes.
 */
export function stageBytes(srcId: number, srcByte: number, dstId: number, dstByte: number, bytes: number): void {
  const device = native.cuda && (native.storageIsCuda(srcId) || native.storageIsCuda(dstId));
  if (device && typeof native.stageCopy === 'function') native.stageCopy(srcId, srcByte, dstId, dstByte, bytes);
  else native.copyBytes(srcId, srcByte, dstId, dstByte, bytes);
}
