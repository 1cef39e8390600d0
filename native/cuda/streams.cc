// Per-device streams and the events that order them. CUDA builds only.
#ifdef MESHTRAIN_CUDA
#include <array>
#include <mutex>
#include "cuda/host_sync.h"
#include "cuda/runtime.h"
#include "tensor/storage.h"

namespace mt {
namespace {

struct DeviceStreams {
  cudaStream_t compute = nullptr;
  cudaStream_t comm = nullptr;
};

std::mutex& streamsMutex() {
  static std::mutex m;
  return m;
}
std::array<DeviceStreams, kMaxCudaDevices>& streams() {
  static std::array<DeviceStreams, kMaxCudaDevices> s;
  return s;
}

cudaStream_t& slot(int dev, bool comm) {
  MT_CHECK(dev >= 0 && dev < kMaxCudaDevices, "cuda:", dev, " is out of range (at most ", kMaxCudaDevices, " devices)");
  DeviceStreams& d = streams()[size_t(dev)];
  return comm ? d.comm : d.compute;
}

cudaStream_t getStream(int dev, bool comm) {
  std::lock_guard<std::mutex> lock(streamsMutex());
  cudaStream_t& s = slot(dev, comm);
  if (!s) {
    cudaUseDevice(dev);
    cudaCheck(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), comm ? "creating the communication stream" : "creating the compute stream");
  }
  return s;
}

}  // namespace

void cudaUseDevice(int dev) {
  int cur = -1;
  cudaCheck(cudaGetDevice(&cur), "cudaGetDevice");
  if (cur != dev) cudaCheck(cudaSetDevice(dev), cat("cudaSetDevice(", dev, ")").c_str());
}

cudaStream_t computeStream(int dev) { return getStream(dev, false); }
cudaStream_t commStream(int dev) { return getStream(dev, true); }

void streamWaitStream(int dev, cudaStream_t waiter, cudaStream_t on) {
  cudaUseDevice(dev);
  cudaEvent_t ev;
  cudaCheck(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming), "cudaEventCreate");
  cudaCheck(cudaEventRecord(ev, on), "cudaEventRecord");
  cudaCheck(cudaStreamWaitEvent(waiter, ev, 0), "cudaStreamWaitEvent");
  cudaCheck(cudaEventDestroy(ev), "cudaEventDestroy");  // destroyed once the wait is satisfied
}

void cudaSyncCompute(int dev, const char* what) {
  countHostSync(dev);
  cudaCheck(cudaStreamSynchronize(computeStream(dev)), what);
}

}  // namespace mt
#endif
