// The host-wait counters (host_sync.h). Atomic: the NCCL watchdog and pinned staging may wait
// from other threads.
#ifdef MESHTRAIN_CUDA
#include "cuda/host_sync.h"
#include <array>
#include <atomic>
#include "tensor/storage.h"

namespace mt {
namespace {

std::array<std::atomic<int64_t>, kMaxCudaDevices>& counters() {
  static std::array<std::atomic<int64_t>, kMaxCudaDevices> c{};
  return c;
}

}  // namespace

void countHostSync(int dev) {
  if (dev >= 0 && dev < kMaxCudaDevices) counters()[size_t(dev)].fetch_add(1, std::memory_order_relaxed);
}

int64_t hostSyncCount(int dev) {
  if (dev < 0 || dev >= kMaxCudaDevices) return 0;
  return counters()[size_t(dev)].load(std::memory_order_relaxed);
}

}  // namespace mt
#endif
