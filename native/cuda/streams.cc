// Per-device streams and the events that order them. CUDA builds only.
#ifdef MESHTRAIN_CUDA
#include <array>
#include <atomic>
#include <mutex>
#include <vector>
#include "cuda/host_sync.h"
#include "cuda/runtime.h"
#include "tensor/storage.h"

#ifdef MESHTRAIN_CUDA_EMU
namespace mt::emu {
int currentDevice();  // the emulated runtime's current device of this thread (emu/runtime.cc), uncounted
}
#endif

namespace mt {
namespace {

// Atomic so the hot path (every launch asks for its stream) reads without the mutex; the mutex
// only guards creation.
struct DeviceStreams {
  std::atomic<cudaStream_t> compute{nullptr};
  std::atomic<cudaStream_t> comm{nullptr};
};

std::mutex& streamsMutex() {
  static std::mutex m;
  return m;
}
std::array<DeviceStreams, kMaxCudaDevices>& streams() {
  static std::array<DeviceStreams, kMaxCudaDevices> s;
  return s;
}

std::atomic<cudaStream_t>& slot(int dev, bool comm) {
  MT_CHECK(dev >= 0 && dev < kMaxCudaDevices, "cuda:", dev, " is out of range (at most ", kMaxCudaDevices, " devices)");
  DeviceStreams& d = streams()[size_t(dev)];
  return comm ? d.comm : d.compute;
}

cudaStream_t getStream(int dev, bool comm) {
  std::atomic<cudaStream_t>& a = slot(dev, comm);
  if (cudaStream_t s = a.load(std::memory_order_acquire)) return s;
  std::lock_guard<std::mutex> lock(streamsMutex());
  cudaStream_t s = a.load(std::memory_order_relaxed);
  if (!s) {
    cudaUseDevice(dev);
    cudaCheck(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), comm ? "creating the communication stream" : "creating the compute stream");
    a.store(s, std::memory_order_release);
  }
  return s;
}

// The device cudaUseDevice last made current on this thread (-1: not known). The current device
// is per thread, so this copy saves the cudaGetDevice every op would make; code that calls
// cudaSetDevice itself calls cudaForgetCurrentDevice.
thread_local int tCurrentDevice = -1;

// One reusable event per stream that others wait on: cudaStreamWaitEvent waits for the record
// made before it, and a later record of the same event does not change that wait (CUDA runtime
// API, cudaStreamWaitEvent), so nothing needs a fresh event per wait.
struct WaitEvent {
  cudaStream_t on;
  cudaEvent_t event;
};
std::mutex& waitEventsMutex() {
  static std::mutex m;
  return m;
}
std::vector<WaitEvent>& waitEvents() {
  static std::vector<WaitEvent> v;  // a few entries: two streams per device
  return v;
}

}  // namespace

void cudaUseDevice(int dev) {
  if (dev == tCurrentDevice) {
#ifdef MESHTRAIN_CUDA_EMU
    // The emulated runtime knows the truth without a counted call: a stale copy fails the tests.
    MT_CHECK(emu::currentDevice() == dev, "cudaUseDevice: the per-thread copy says cuda:", dev, " but cuda:", emu::currentDevice(),
             " is current (something called cudaSetDevice without cudaForgetCurrentDevice)");
#endif
    return;
  }
  int cur = -1;
  cudaCheck(cudaGetDevice(&cur), "cudaGetDevice");
  if (cur != dev) cudaCheck(cudaSetDevice(dev), cat("cudaSetDevice(", dev, ")").c_str());
  tCurrentDevice = dev;
}

void cudaForgetCurrentDevice() { tCurrentDevice = -1; }

cudaStream_t computeStream(int dev) { return getStream(dev, false); }
cudaStream_t commStream(int dev) { return getStream(dev, true); }

void streamWaitStream(int dev, cudaStream_t waiter, cudaStream_t on) {
  cudaUseDevice(dev);
  // Record and wait under the lock: another thread's record between them would only make the
  // wait longer, but one order is easier to reason about.
  std::lock_guard<std::mutex> lock(waitEventsMutex());
  cudaEvent_t ev = nullptr;
  for (const WaitEvent& w : waitEvents())
    if (w.on == on) ev = w.event;
  if (!ev) {
    // Made on the current device (dev): an event must be recorded on a stream of its own device.
    cudaCheck(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming), "streamWaitStream: cudaEventCreateWithFlags");
    waitEvents().push_back({on, ev});
  }
  cudaCheck(cudaEventRecord(ev, on), "streamWaitStream: cudaEventRecord");
  cudaCheck(cudaStreamWaitEvent(waiter, ev, 0), "streamWaitStream: cudaStreamWaitEvent");
}

void cudaSyncCompute(int dev, const char* what) {
  countHostSync(dev);
  cudaCheck(cudaStreamSynchronize(computeStream(dev)), what);
}

}  // namespace mt
#endif
