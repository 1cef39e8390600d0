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

thread_local int tCapturing = -1;

}  // namespace

void setCapturingDevice(int dev) { tCapturing = dev; }

void countHostSync(int dev) {
  if (dev == tCapturing && dev >= 0)
    throw Error(cat("cuda:", dev,
                    ": the host would wait for the device (a value read, a copy between host and device, or a "
                    "synchronization) while a CUDA graph is being captured there; a graph replays device work only, so "
                    "read values and copy to or from the host outside the captured function"));
  if (dev >= 0 && dev < kMaxCudaDevices) counters()[size_t(dev)].fetch_add(1, std::memory_order_relaxed);
}

int64_t hostSyncCount(int dev) {
  if (dev < 0 || dev >= kMaxCudaDevices) return 0;
  return counters()[size_t(dev)].load(std::memory_order_relaxed);
}

}  // namespace mt
#endif
