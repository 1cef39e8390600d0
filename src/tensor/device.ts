/**
 * Devices by name: 'cpu' and 'cuda:N'. What this process can use is asked of the addon: whether
 * it was built with CUDA, how many devices the driver shows, and which of CUDA's optional
 * libraries (cuBLASLt, NCCL) were found at run time.
 */
import { native } from '../native.ts';
import { flushDeviceChecks } from './device_checks.ts';
import type { Device } from './storage.ts';

/** CUDA ordinals go up to 7 (native/tensor/storage.h kMaxCudaDevices). */
const MAX_CUDA_DEVICES = 8;

/** Device names already accepted: every new tensor is checked, and a regular expression per tensor shows in a step's host time. */
const accepted = new Set<unknown>(['cpu']);

/** Checks a device name; throws naming `where` and the accepted forms. */
export function checkDevice(device: unknown, where: string): Device {
  if (accepted.has(device)) return device as Device;
  if (typeof device === 'string') {
    const m = /^cuda:(\d+)$/.exec(device);
    if (m && Number(m[1]) < MAX_CUDA_DEVICES) {
      accepted.add(device);
      return device as Device;
    }
  }
  throw new Error(`${where}: unknown device ${JSON.stringify(device)} (expected 'cpu' or 'cuda:N' with N from 0 to ${MAX_CUDA_DEVICES - 1})`);
}

/** A found library: where and which version; a missing one: the loader's message. */
export type LibraryStatus = { found: true; path: string; version: string } | { found: false; error: string };

/** What CUDA's run-time-loaded libraries look like from this process. */
export interface CudaLibraries {
  /** Folders searched before the loader's default path (MESHTRAIN_CUDA_LIB_PATH first). */
  searchDirs: string[];
  cublasLt: LibraryStatus;
  nccl: LibraryStatus;
}

/**
 * Loads (once) and reports cuBLASLt and NCCL. They are opened with dlopen on first use, so the
 * addon loads without them; set MESHTRAIN_CUDA_LIB_PATH to a folder holding them, or install
 * NVIDIA's Python wheels (nvidia-cublas, nvidia-nccl), whose lib folders are searched.
 * @example
 * const libs = cudaLibraries();
 * if (!libs.cublasLt.found) console.log(libs.cublasLt.error);   // "missing libcublasLt (libcublasLt.so.13): ..."
 */
export function cudaLibraries(): CudaLibraries {
  return native.cudaLibraries();
}

/** The number of CUDA devices this process can use (0 without a GPU, driver, or CUDA build). */
export function cudaDeviceCount(): number {
  return native.deviceInfo().cudaDevices;
}

/**
 * True when at least one CUDA device can be used.
 * @example
 * const device = cudaIsAvailable() ? 'cuda:0' : 'cpu';
 */
export function cudaIsAvailable(): boolean {
  return cudaDeviceCount() > 0;
}

/** The CUDA caching allocator of one device: bytes cached for reuse and reserved from the driver. */
export interface CudaAllocatorStats {
  cachedBytes: number;
  reservedBytes: number;
  hits: number;
  misses: number;
  /** Free blocks that CUDA graphs hold for their replays (cuda_graph.ts): not reusable until the graph is disposed. */
  graphBytes: number;
}

function cudaOrdinal(device: Device, where: string): number {
  const d = checkDevice(device, where);
  if (d === 'cpu') throw new Error(`${where}: needs a CUDA device, got 'cpu'`);
  if (!native.cuda) throw new Error(`${where}: this addon was built without CUDA`);
  return Number(d.slice(5));
}

/** Statistics of `device`'s caching allocator (see allocatorStats() for the CPU's). */
export function cudaAllocatorStats(device: Device = 'cuda:0'): CudaAllocatorStats {
  return native.cudaAllocatorStats(cudaOrdinal(device, 'cudaAllocatorStats'));
}

/** Returns `device`'s cached blocks to the driver (after its queued work finishes). */
export function cudaEmptyCache(device: Device = 'cuda:0'): void {
  native.cudaEmptyCache(cudaOrdinal(device, 'cudaEmptyCache'));
}

/**
 * Waits for every kernel queued on `device`; a failed kernel's error is thrown here. Reading
 * values (toArray, item) synchronizes by itself.
 */
export function cudaSynchronize(device: Device = 'cuda:0'): void {
  native.cudaSynchronize(cudaOrdinal(device, 'cudaSynchronize'));
  flushDeviceChecks();
}

/**
 * How many times the host has waited for `device` so far: counted by meshtrain's own code at each
 * wait (a copy to the host such as `toArray`/`item`, a blocking copy from the host, a stream or
 * event synchronization, a staged collective's copy out), not by the driver, so it means the same
 * on a GPU and on the emulated device. A training step's gradient norm and overflow check cost one
 * (see docs/gpu.md); take differences around the code you measure.
 * @example
 * const before = cudaSyncCount('cuda:0');
 * engine.step();
 * console.log(cudaSyncCount('cuda:0') - before);   // 1 at a boundary with clipping or fp16/bf16
 */
export function cudaSyncCount(device: Device = 'cuda:0'): number {
  return native.cudaSyncCount(cudaOrdinal(device, 'cudaSyncCount'));
}

/** What the driver says of one device. */
export interface CudaDeviceProperties {
  name: string;
  /** Compute capability, e.g. 9.0 for Hopper. */
  major: number;
  minor: number;
  multiProcessors: number;
  totalMemory: number;
  freeMemory: number;
  l2CacheBytes: number;
}

/**
 * Name, compute capability, multiprocessors and memory of `device`.
 * @example
 * if (cudaIsAvailable()) console.log(cudaDeviceProperties('cuda:0').name);
 */
export function cudaDeviceProperties(device: Device = 'cuda:0'): CudaDeviceProperties {
  const n = cudaOrdinal(device, 'cudaDeviceProperties');
  if (n >= cudaDeviceCount()) throw new Error(`cudaDeviceProperties: ${device} is not available (${cudaDeviceCount()} CUDA device(s))`);
  return native.cudaDeviceProperties(n);
}
