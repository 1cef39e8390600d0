// The caching allocator over cudaMalloc (no managed memory). Freed blocks are kept per device in
// size classes and handed out again: cudaMalloc and cudaFree synchronize the device and cost
// tens of microseconds, and a training step frees and re-allocates the same sizes every
// iteration. Reuse is safe without events because every kernel runs on the device's one compute
// stream, in order: a block freed after its last kernel was queued is reused by kernels queued
// later. (A block used on the communication stream must be freed only after that stream's work
// is ordered before the compute stream's; the NCCL communicator will own that.) CUDA builds only.
#ifdef MESHTRAIN_CUDA
#include "cuda/device_memory.h"

#include <array>
#include <map>
#include <mutex>
#include <unordered_map>
#include <vector>
#include "cuda/block_lists.h"
#include "cuda/census.h"
#include "cuda/host_sync.h"
#include "cuda/runtime.h"
#include "tensor/storage.h"

namespace mt {
namespace {

// Every block a multiple of 512 bytes (so 512-byte aligned: vector loads never straddle).
size_t sizeClass(size_t bytes) { return BlockLists::sizeClass(bytes); }

struct DeviceCache {
  BlockLists free;
  DeviceCacheStats stats;
  int64_t capturing = 0;  // the graph pool being captured on this device (0: none)
};

// A graph's blocks (device_memory.h, "Graph pools").
struct Pool {
  int dev = 0;
  std::multimap<size_t, void*> free;  // its free blocks: written by replays, handed out only during its capture
  bool released = false;
  int64_t owned = 0;  // blocks of blockPool() that name this pool
};
std::unordered_map<int64_t, Pool>& pools() {
  static std::unordered_map<int64_t, Pool> p;
  return p;
}
// Every block a pool owns (allocated during its capture, or freed during it), by address.
std::unordered_map<void*, int64_t>& blockPool() {
  static std::unordered_map<void*, int64_t> m;
  return m;
}
// Block p now belongs to pool `id` (its entry and the pool's count move together).
std::unordered_map<void*, int64_t>::iterator joinPool(void* p, int64_t id) {
  pools().at(id).owned++;
  return blockPool().emplace(p, id).first;
}

std::mutex& cacheMutex() {
  static std::mutex m;
  return m;
}
std::array<DeviceCache, kMaxCudaDevices>& caches() {
  static std::array<DeviceCache, kMaxCudaDevices> c;
  return c;
}

DeviceCache& cacheOf(int dev) {
  MT_CHECK(dev >= 0 && dev < kMaxCudaDevices, "cuda:", dev, " is out of range");
  return caches()[size_t(dev)];
}

void releaseAll(int dev, DeviceCache& c) {
  cudaUseDevice(dev);
  c.free.drain([&](size_t cap, void* p) {
    cudaFree(p);
    c.stats.reservedBytes -= int64_t(cap);
  });
  c.stats.cachedBytes = 0;
}

}  // namespace

int cudaDeviceCountCached() {
  static int n = [] {
    int k = 0;
    if (cudaGetDeviceCount(&k) != cudaSuccess) {
      cudaGetLastError();
      return 0;
    }
    return k;
  }();
  return n;
}

void* cudaAllocBlock(int dev, size_t bytes, size_t* capacity) {
  int n = cudaDeviceCountCached();
  MT_CHECK(dev >= 0 && dev < n, "cuda:", dev, " is not available: this process sees ", n, " CUDA device(s)",
           n == 0 ? " (no GPU or no driver; deviceInfo().cudaStatus says why)" : "");
  size_t cap = sizeClass(bytes);
  std::lock_guard<std::mutex> lock(cacheMutex());
  DeviceCache& c = cacheOf(dev);
  Pool* pool = c.capturing ? &pools().at(c.capturing) : nullptr;
  if (pool) {
    auto pit = pool->free.find(cap);
    if (pit != pool->free.end()) {
      void* p = pit->second;
      pool->free.erase(pit);
      c.stats.graphBytes -= int64_t(cap);
      c.stats.hits++;
      *capacity = cap;
#ifdef MESHTRAIN_CUDA_EMU
      // All of it: earlier nodes of the graph wrote this block at another size, and replay them.
      emu::blockInUse(p, cap);
#endif
      return p;
    }
  }
  if (void* p = c.free.take(cap)) {
    c.stats.cachedBytes -= int64_t(cap);
    c.stats.hits++;
    *capacity = cap;
    if (pool) {
      // A cached block joins the pool: eager work queued before the capture is done with it
      // before any replay starts (one stream), and the pool keeps it from eager work after.
      joinPool(p, c.capturing);
    }
#ifdef MESHTRAIN_CUDA_EMU
    emu::blockInUse(p, pool ? cap : bytes);  // the emulated device guards the tail past `bytes`
#endif
    return p;
  }
  c.stats.misses++;
  MT_CENSUS_CALL("malloc", "cudaMalloc (cache miss)", cap);
  cudaUseDevice(dev);
  void* p = nullptr;
  cudaError_t err = cudaMalloc(&p, cap);
  // The cache may hold what is missing: give it back and try once more (not during a graph's
  // capture, which cannot wait for the device: the error below says so).
  if (err == cudaErrorMemoryAllocation && !pool) {
    cudaGetLastError();
    countHostSync(dev);
    cudaCheck(cudaStreamSynchronize(computeStream(dev)), "synchronizing before emptying the cache");
    releaseAll(dev, c);
    err = cudaMalloc(&p, cap);
  }
  if (err != cudaSuccess) {
    size_t freeB = 0, totalB = 0;
    cudaGetLastError();
    cudaMemGetInfo(&freeB, &totalB);
    throw Error(cat("cuda:", dev, ": out of memory allocating ", bytes, " bytes (", cudaGetErrorString(err), "); ",
                    freeB, " of ", totalB, " bytes free, ", c.stats.reservedBytes, " reserved by meshtrain",
                    pool ? " (during a CUDA graph capture: the cache was not emptied; empty it before capturing)" : ""));
  }
  c.stats.reservedBytes += int64_t(cap);
  *capacity = cap;
  if (pool) joinPool(p, c.capturing);
#ifdef MESHTRAIN_CUDA_EMU
  emu::blockInUse(p, pool ? cap : bytes);
#endif
  return p;
}

void cudaFreeBlock(int dev, void* ptr, size_t capacity) {
  std::lock_guard<std::mutex> lock(cacheMutex());
  DeviceCache& c = cacheOf(dev);
  // No graph pools (eager training): nothing to look up.
  auto owner = blockPool().empty() ? blockPool().end() : blockPool().find(ptr);
  if (owner == blockPool().end() && c.capturing) {
    // Allocated before the capture, used by it: the replays still write it.
    owner = joinPool(ptr, c.capturing);
  }
  if (owner != blockPool().end()) {
    Pool& pool = pools().at(owner->second);
    if (!pool.released) {
      pool.free.emplace(capacity, ptr);  // not poisoned: the graph's replays write it
      c.stats.graphBytes += int64_t(capacity);
      return;
    }
    if (--pool.owned == 0) pools().erase(owner->second);
    blockPool().erase(owner);
  }
  c.free.put(capacity, ptr);
#ifdef MESHTRAIN_CUDA_EMU
  emu::blockCached(ptr);  // poisoned while free: a later write to it is reported
#endif
  c.stats.cachedBytes += int64_t(capacity);
}

void cudaPoolCaptureBegin(int dev, int64_t pool) {
  std::lock_guard<std::mutex> lock(cacheMutex());
  DeviceCache& c = cacheOf(dev);
  MT_CHECK(c.capturing == 0, "cuda:", dev, ": a CUDA graph is already being captured there");
  MT_CHECK(pool > 0 && !pools().count(pool), "cudaPoolCaptureBegin: pool ", pool, " is taken");
  pools()[pool].dev = dev;
  c.capturing = pool;
}

void cudaPoolCaptureEnd(int dev) {
  std::lock_guard<std::mutex> lock(cacheMutex());
  cacheOf(dev).capturing = 0;
}

void cudaPoolRelease(int64_t id) {
  std::lock_guard<std::mutex> lock(cacheMutex());
  auto it = pools().find(id);
  if (it == pools().end() || it->second.released) return;
  Pool& pool = it->second;
  DeviceCache& c = cacheOf(pool.dev);
  if (c.capturing == id) c.capturing = 0;
  pool.released = true;
  for (auto& [cap, p] : pool.free) {
    blockPool().erase(p);
    pool.owned--;
    c.stats.graphBytes -= int64_t(cap);
    c.stats.cachedBytes += int64_t(cap);
    c.free.put(cap, p);
#ifdef MESHTRAIN_CUDA_EMU
    emu::blockCached(p);
#endif
  }
  pool.free.clear();
  if (pool.owned == 0) pools().erase(it);
}

void cudaZeroBytes(int dev, void* ptr, size_t n) {
  cudaUseDevice(dev);
  MT_CENSUS_CALL("memset", "cudaMemsetAsync", n);
  cudaCheck(cudaMemsetAsync(ptr, 0, n, computeStream(dev)), "cudaMemsetAsync");
  MT_CENSUS_DONE(computeStream(dev));
}

void cudaCopyToHost(int dev, void* dst, const void* src, size_t n) {
  cudaUseDevice(dev);
  cudaStream_t s = computeStream(dev);
  countHostSync(dev);  // first: during a graph's capture it throws before anything is queued
  MT_CENSUS_CALL("memcpy", "device to host (synchronizes)", n);
  cudaCheck(cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToHost, s), "copying device to host");
  MT_CENSUS_DONE(s);
  cudaCheck(cudaStreamSynchronize(s), "copying device to host (an earlier kernel may have failed)");
}

void cudaCopyFromHost(int dev, void* dst, const void* src, size_t n) {
  cudaUseDevice(dev);
  cudaStream_t s = computeStream(dev);
  // The host buffer may be a JS array freed right after: wait until it was read. Counted first:
  // during a graph's capture it throws before anything is queued.
  countHostSync(dev);
  MT_CENSUS_CALL("memcpy", "host to device (synchronizes)", n);
  cudaCheck(cudaMemcpyAsync(dst, src, n, cudaMemcpyHostToDevice, s), "copying host to device");
  MT_CENSUS_DONE(s);
  cudaCheck(cudaStreamSynchronize(s), "copying host to device");
}

void cudaCopyDevice(int dstDev, void* dst, int srcDev, const void* src, size_t n) {
  cudaUseDevice(dstDev);
  cudaStream_t s = computeStream(dstDev);
  if (srcDev == dstDev) {
    MT_CENSUS_CALL("memcpy", "device to device", n);
    cudaCheck(cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToDevice, s), "copying on the device");
    MT_CENSUS_DONE(s);
    return;
  }
  // The source's pending kernels must finish before the peer copy reads it.
  countHostSync(srcDev);
  cudaCheck(cudaStreamSynchronize(computeStream(srcDev)), "waiting for the source device");
  cudaUseDevice(dstDev);
  MT_CENSUS_CALL("memcpy", "peer (synchronizes the source)", n);
  cudaCheck(cudaMemcpyPeerAsync(dst, dstDev, src, srcDev, n, s), "copying between devices");
  MT_CENSUS_DONE(s);
  // The source block may be freed next and reused by the source's compute stream: that stream
  // must not run ahead of the copy still reading it.
  streamWaitStream(dstDev, computeStream(srcDev), s);
}

void cudaSynchronizeDevice(int dev) {
  MT_CENSUS_CALL("sync", "cudaSynchronize", 0);
  cudaUseDevice(dev);
  countHostSync(dev);
  cudaCheck(cudaStreamSynchronize(computeStream(dev)), "synchronizing the compute stream (an earlier kernel failed)");
  cudaCheck(cudaStreamSynchronize(commStream(dev)), "synchronizing the communication stream");
}

DeviceCacheStats cudaCacheStats(int dev) {
  std::lock_guard<std::mutex> lock(cacheMutex());
  return cacheOf(dev).stats;
}

void cudaEmptyCache(int dev) {
  if (dev >= cudaDeviceCountCached()) return;
  countHostSync(dev);
  cudaCheck(cudaStreamSynchronize(computeStream(dev)), "synchronizing before emptying the cache");
  std::lock_guard<std::mutex> lock(cacheMutex());
  releaseAll(dev, cacheOf(dev));
}

}  // namespace mt
#endif
