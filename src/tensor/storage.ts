/**
 * Native storage with reference counts. Tensors and views share one storage; the native
 * buffer is freed as soon as the last holder releases it, never by garbage collection
 * alone (finalizers do not run inside a synchronous training loop).
 */
import { native } from '../native.ts';

/** What an allocation is for; `memoryStats()` reports bytes per tag and device. */
export type MemoryTag = 'param' | 'grad' | 'optim' | 'activation' | 'comm' | 'other';
export const MEMORY_TAGS: readonly MemoryTag[] = ['param', 'grad', 'optim', 'activation', 'comm', 'other'];
const TAG_CODES: Record<MemoryTag, number> = { param: 0, grad: 1, optim: 2, activation: 3, comm: 4, other: 5 };

/** `cpu` or `cuda:N`. */
export type Device = 'cpu' | `cuda:${number}`;

/** Codes of the CUDA device names seen so far: every allocation asks, and a slice + Number each shows per op. */
const cudaCodes = new Map<string, number>();

export function deviceCode(d: Device): number {
  if (d === 'cpu') return 0;
  let c = cudaCodes.get(d);
  if (c === undefined) {
    c = 1 + Number(d.slice(5));
    cudaCodes.set(d, c);
  }
  return c;
}

/**
 * The native accounting code of the CPU offload pool (native/tensor/storage.h kCpuOffloadPool):
 * host memory that `memoryStats()` reports under `'cpu-offload'` instead of `'cpu'`.
 */
const CPU_OFFLOAD_CODE = 9;

/** The `memoryStats()` key of host memory that ZeRO's optimizer offload holds. */
export const CPU_OFFLOAD_POOL = 'cpu-offload';

function deviceName(code: number): string {
  if (code === CPU_OFFLOAD_CODE) return CPU_OFFLOAD_POOL;
  return code === 0 ? 'cpu' : `cuda:${code - 1}`;
}

export function tagCode(tag: MemoryTag): number {
  return TAG_CODES[tag];
}

export function checkTag(tag: unknown, where: string): MemoryTag {
  if (typeof tag === 'string' && tag in TAG_CODES) return tag as MemoryTag;
  throw new Error(`${where}: unknown memory tag ${JSON.stringify(tag)} (expected one of ${MEMORY_TAGS.join(', ')})`);
}

export class Storage {
  private refs = 1;
  readonly id: number;

  constructor(
    readonly nbytes: number,
    readonly tag: MemoryTag,
    readonly device: Device,
    zero: boolean,
    /** A storage the native side already allocated elsewhere (e.g. a shared-memory arena). */
    existingId?: number,
  ) {
    this.id = existingId ?? native.alloc(nbytes, TAG_CODES[tag], deviceCode(device), zero);
  }

  /**
   * CPU memory accounted in the offload pool (`memoryStats()['cpu-offload']`), not under `cpu`;
   * tensors over it are ordinary CPU tensors.
   */
  static inOffloadPool(nbytes: number, tag: MemoryTag, zero: boolean): Storage {
    return new Storage(nbytes, tag, 'cpu', zero, native.alloc(nbytes, TAG_CODES[tag], CPU_OFFLOAD_CODE, zero));
  }

  /** Takes ownership of native storage `id` (freed, through its own allocator, on release). */
  static adopt(id: number, nbytes: number, tag: MemoryTag, device: Device): Storage {
    return new Storage(nbytes, tag, device, false, id);
  }

  get alive(): boolean {
    return this.refs > 0;
  }

  /** Tensor handles sharing this memory (the autograd engine adopts a gradient only it holds). */
  get holders(): number {
    return this.refs;
  }

  retain(): void {
    if (this.refs <= 0) throw new Error(`storage ${this.id} was already freed`);
    this.refs++;
  }

  release(): void {
    if (this.refs <= 0) return;
    if (--this.refs === 0) native.free(this.id);
  }
}

/** Current and peak bytes of one tag on one device. */
export interface MemoryCounter {
  current: number;
  peak: number;
}

/**
 * `{ cpu: { param: {current, peak}, activation: {...}, ... } }`; every tag is present. Host memory
 * of ZeRO's CPU optimizer offload appears under `'cpu-offload'` once used.
 */
export type MemoryStats = Record<string, Record<MemoryTag, MemoryCounter>>;

/**
 * Bytes allocated per device and tag, now and at peak since the last reset.
 * @example
 * const before = memoryStats().cpu.activation.peak;
 */
export function memoryStats(): MemoryStats {
  const out: MemoryStats = {};
  const blank = () =>
    Object.fromEntries(MEMORY_TAGS.map((t) => [t, { current: 0, peak: 0 }])) as Record<MemoryTag, MemoryCounter>;
  out.cpu = blank();
  for (const [tag, dev, current, peak] of native.memoryStats()) {
    const name = deviceName(dev);
    out[name] ??= blank();
    out[name][MEMORY_TAGS[tag]] = { current, peak };
  }
  return out;
}

/** Starts a new peak window: every peak becomes the current value. */
export function resetPeakMemoryStats(): void {
  native.resetPeakMemoryStats();
}

/** The CPU block cache: bytes held for reuse (not in any tag's count), hits and misses, the limit. */
export interface AllocatorStats {
  cachedBytes: number;
  hits: number;
  misses: number;
  limit: number;
}

/**
 * Freed blocks are cached by size class for reuse, since fresh large blocks pay first-touch page
 * faults and small ones glibc's aligned allocation (each class below 256 KiB keeps a bounded
 * list); `MESHTRAIN_CPU_CACHE_BYTES` (default 4 GiB) bounds the cache.
 */
export function allocatorStats(): AllocatorStats {
  return native.allocatorStats();
}

/** Returns every cached block to the system. */
export function emptyCache(): void {
  native.emptyCache();
}

/** Sets the most bytes the block cache keeps (0 disables it). */
export function setCacheLimit(bytes: number): void {
  if (!Number.isSafeInteger(bytes) || bytes < 0) throw new Error(`setCacheLimit: bytes must be a non-negative integer, got ${bytes}`);
  native.setCacheLimit(bytes);
}

/** The number of native buffers alive, for leak tests. */
export function liveStorages(): number {
  return native.liveStorages();
}
