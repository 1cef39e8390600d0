// The pinned host pool and the staging copies (pinned_pool.h). Without CUDA only the plain host
// case of stageCopy exists (there are no device storages to stage).
#include "cuda/pinned_pool.h"
#include <cstring>
#include <map>
#include <mutex>
#include "util/check.h"
#ifdef MESHTRAIN_CUDA
#include "cuda/census.h"
#include "cuda/device_memory.h"
#include "cuda/host_sync.h"
#include "cuda/runtime.h"
#endif

namespace mt {

#ifdef MESHTRAIN_CUDA
namespace {

// What the pool knows of one block, handed out or cached. `pending`: a host-to-device copy
// reading it was queued (recorded in `lastRead`), so it must finish before the block is reused.
struct BlockInfo {
  size_t capacity = 0;
  cudaEvent_t lastRead = nullptr;
  int eventDevice = -1;
  bool pending = false;
};

struct Pool {
  std::mutex mu;
  std::map<void*, BlockInfo> blocks;        // every block the pool owns
  std::multimap<size_t, void*> cached;      // free blocks by capacity
  PinnedPoolStats stats;
};

// Never destroyed: storages may still be freed while the process exits.
Pool& pool() {
  static Pool* p = new Pool;
  return *p;
}

// Small blocks in powers of two (collective buckets of similar sizes share them), large ones in
// whole MiB (offloaded partitions: no 2x waste).
size_t roundUp(size_t bytes) {
  constexpr size_t kMiB = size_t(1) << 20;
  if (bytes > kMiB) return (bytes + kMiB - 1) / kMiB * kMiB;
  size_t c = 4096;
  while (c < bytes) c <<= 1;
  return c;
}

// Called by freeStorage with the storage table locked: touches only the pool.
void releasePinned(void* ctx, void* ptr) {
  Pool& p = *static_cast<Pool*>(ctx);
  std::lock_guard<std::mutex> lock(p.mu);
  auto it = p.blocks.find(ptr);
  if (it == p.blocks.end()) return;
  p.cached.emplace(it->second.capacity, ptr);
  p.stats.cachedBytes += int64_t(it->second.capacity);
}

// A cached block of at least `bytes` (at most twice as big), or null; waits for its last reader.
void* takeCached(Pool& p, size_t bytes, size_t* capacity) {
  std::lock_guard<std::mutex> lock(p.mu);
  auto it = p.cached.lower_bound(bytes);
  if (it == p.cached.end() || it->first > 2 * bytes + 4096) return nullptr;
  void* ptr = it->second;
  *capacity = it->first;
  p.cached.erase(it);
  p.stats.cachedBytes -= int64_t(*capacity);
  p.stats.hits++;
  BlockInfo& b = p.blocks[ptr];
  if (b.pending) {
    countHostSync(b.eventDevice);
    cudaCheck(cudaEventSynchronize(b.lastRead), "pinned pool: waiting for the copy that last read a cached block");
    b.pending = false;
  }
  return ptr;
}

bool isPinned(int64_t id) { return storageAt(id).release == &releasePinned; }

// Records that a queued copy on `stream` of `dev` reads (or writes) pinned block `ptr`.
void markRead(void* ptr, int dev, cudaStream_t stream) {
  Pool& p = pool();
  std::lock_guard<std::mutex> lock(p.mu);
  auto it = p.blocks.find(ptr);
  if (it == p.blocks.end()) return;
  BlockInfo& b = it->second;
  if (b.lastRead && b.eventDevice != dev) {
    countHostSync(b.eventDevice);
    cudaCheck(cudaEventSynchronize(b.lastRead), "pinned pool: waiting for a block's copy on another device");
    cudaCheck(cudaEventDestroy(b.lastRead), "pinned pool: cudaEventDestroy");
    b.lastRead = nullptr;
  }
  if (!b.lastRead) {
    cudaCheck(cudaEventCreateWithFlags(&b.lastRead, cudaEventDisableTiming), "pinned pool: cudaEventCreateWithFlags");
    b.eventDevice = dev;
  }
  cudaCheck(cudaEventRecord(b.lastRead, stream), "pinned pool: cudaEventRecord");
  b.pending = true;
}

}  // namespace

int64_t pinnedAlloc(size_t bytes, Tag tag, int accountDevice, bool zero) {
  MT_CHECK(accountDevice == 0 || accountDevice == kCpuOffloadPool, "pinnedAlloc: host accounting device ", accountDevice,
           " (expected 0 for 'cpu' or ", kCpuOffloadPool, " for 'cpu-offload')");
  if (cudaDeviceCountCached() == 0) return -1;
  Pool& p = pool();
  size_t want = roundUp(bytes == 0 ? 1 : bytes), capacity = 0;
  void* ptr = takeCached(p, want, &capacity);
  if (!ptr) {
    // Portable: pinned for every device's copies, not only the current one's.
    if (cudaHostAlloc(&ptr, want, cudaHostAllocPortable) != cudaSuccess) {
      cudaGetLastError();  // out of pinnable memory is not an error here: the caller falls back
      return -1;
    }
    capacity = want;
    std::lock_guard<std::mutex> lock(p.mu);
    p.blocks[ptr].capacity = capacity;
    p.stats.reservedBytes += int64_t(capacity);
    p.stats.misses++;
  }
  if (zero) std::memset(ptr, 0, bytes);
  return adoptStorage(ptr, bytes, tag, accountDevice, &releasePinned, &p);
}

PinnedPoolStats pinnedPoolStats() {
  Pool& p = pool();
  std::lock_guard<std::mutex> lock(p.mu);
  return p.stats;
}

void pinnedEmptyCache() {
  Pool& p = pool();
  std::lock_guard<std::mutex> lock(p.mu);
  for (auto& [capacity, ptr] : p.cached) {
    BlockInfo& b = p.blocks[ptr];
    if (b.lastRead) {
      countHostSync(b.eventDevice);
      cudaCheck(cudaEventSynchronize(b.lastRead), "pinnedEmptyCache: waiting for a block's last copy");
      cudaCheck(cudaEventDestroy(b.lastRead), "pinnedEmptyCache: cudaEventDestroy");
    }
    cudaCheck(cudaFreeHost(ptr), "pinnedEmptyCache: cudaFreeHost");
    p.stats.reservedBytes -= int64_t(capacity);
    p.blocks.erase(ptr);
  }
  p.cached.clear();
  p.stats.cachedBytes = 0;
}

void pinnedGuard(int64_t id, int dev) {
  if (isPinned(id)) markRead(storageAt(id).ptr, dev, computeStream(dev));
}

void stageCopy(int64_t srcId, int64_t srcByteOff, int64_t dstId, int64_t dstByteOff, int64_t bytes) {
  MT_CHECK(bytes >= 0, "stageCopy: negative length ", bytes);
  const uint8_t* src = anyDevicePtr<uint8_t>(srcId, srcByteOff, bytes);
  uint8_t* dst = anyDevicePtr<uint8_t>(dstId, dstByteOff, bytes);
  if (bytes == 0) return;
  int sd = storageAt(srcId).device, dd = storageAt(dstId).device;
  bool toHost = isCudaCode(sd);
  if (!toHost && !isCudaCode(dd)) {  // host to host: forced staging of CPU tensors (MESHTRAIN_STAGE_HOST)
    std::memcpy(dst, src, size_t(bytes));
    return;
  }
  MT_CHECK(!(toHost && isCudaCode(dd)), "stageCopy: storages ", srcId, " and ", dstId, " are both on a device; stage between a device and the host");
  int dev = (toHost ? sd : dd) - 1;
  cudaUseDevice(dev);
  cudaStream_t comm = commStream(dev), compute = computeStream(dev);
  // Kernels queued before produced (or still read) the device bytes: the copy starts after them.
  streamWaitStream(dev, comm, compute);
  MT_CENSUS_CALL("memcpy", toHost ? "stage device to host (synchronizes)" : "stage host to device", bytes);
  if (toHost) {
    cudaCheck(cudaMemcpyAsync(dst, src, size_t(bytes), cudaMemcpyDeviceToHost, comm), "stageCopy: cudaMemcpyAsync device to host");
    countHostSync(dev);
    cudaCheck(cudaStreamSynchronize(comm), "stageCopy: device to host (an earlier kernel may have failed)");
    return;
  }
  cudaCheck(cudaMemcpyAsync(dst, src, size_t(bytes), cudaMemcpyHostToDevice, comm), "stageCopy: cudaMemcpyAsync host to device");
  // Later kernels read the copied bytes; the host need not wait. A pageable source is consumed
  // before cudaMemcpyAsync returns; a pinned one is guarded by its block's event.
  streamWaitStream(dev, compute, comm);
  if (isPinned(srcId)) markRead(storageAt(srcId).ptr, dev, comm);
}

#else  // no CUDA: no pinned memory, and every storage is on the host

int64_t pinnedAlloc(size_t, Tag, int, bool) { return -1; }
PinnedPoolStats pinnedPoolStats() { return {}; }
void pinnedEmptyCache() {}
void pinnedGuard(int64_t, int) {}

void stageCopy(int64_t srcId, int64_t srcByteOff, int64_t dstId, int64_t dstByteOff, int64_t bytes) {
  MT_CHECK(bytes >= 0, "stageCopy: negative length ", bytes);
  const uint8_t* src = anyDevicePtr<uint8_t>(srcId, srcByteOff, bytes);
  uint8_t* dst = anyDevicePtr<uint8_t>(dstId, dstByteOff, bytes);
  if (bytes > 0) std::memcpy(dst, src, size_t(bytes));
}

#endif

}  // namespace mt
