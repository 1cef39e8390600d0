// Device-side timing for the benchmarks: a pair of CUDA events per device recorded on its compute
// stream, so a benchmark measures the GPU's time for the work it queued between start and stop,
// not the host's. CUDA builds only.
#ifdef MESHTRAIN_CUDA
#include "cuda/host_sync.h"
#include "cuda/runtime.h"
#include "cuda/device_memory.h"
#include "tensor/storage.h"
#include "util/args.h"

namespace mt {
namespace {

constexpr int kMaxDevices = 8;
cudaEvent_t startEvent[kMaxDevices] = {};
cudaEvent_t stopEvent[kMaxDevices] = {};
bool started[kMaxDevices] = {};

int deviceArg(const Napi::CallbackInfo& info, const char* op) {
  int64_t dev = argInt(info, 0);
  MT_CHECK(dev >= 0 && dev < kMaxDevices && dev < cudaDeviceCountCached(), op, ": no device cuda:", dev);
  return int(dev);
}

// cudaTimerStart(dev): records the start event on dev's compute stream (after the work queued so far).
Napi::Value TimerStart(const Napi::CallbackInfo& info) {
  const int dev = deviceArg(info, "cudaTimerStart");
  cudaUseDevice(dev);
  if (!startEvent[dev]) {
    cudaCheck(cudaEventCreate(&startEvent[dev]), "cudaTimerStart: cudaEventCreate");
    cudaCheck(cudaEventCreate(&stopEvent[dev]), "cudaTimerStart: cudaEventCreate");
  }
  cudaCheck(cudaEventRecord(startEvent[dev], computeStream(dev)), "cudaTimerStart: cudaEventRecord");
  started[dev] = true;
  return info.Env().Undefined();
}

// cudaTimerStop(dev) -> seconds between the start event and the end of the work queued since,
// as the device measured it; waits for that work.
Napi::Value TimerStop(const Napi::CallbackInfo& info) {
  const int dev = deviceArg(info, "cudaTimerStop");
  MT_CHECK(started[dev], "cudaTimerStop: cudaTimerStart(", dev, ") was not called first");
  started[dev] = false;
  cudaUseDevice(dev);
  cudaCheck(cudaEventRecord(stopEvent[dev], computeStream(dev)), "cudaTimerStop: cudaEventRecord");
  countHostSync(dev);
  cudaCheck(cudaEventSynchronize(stopEvent[dev]), "cudaTimerStop: cudaEventSynchronize");
  float ms = 0;
  cudaCheck(cudaEventElapsedTime(&ms, startEvent[dev], stopEvent[dev]), "cudaTimerStop: cudaEventElapsedTime");
  return Napi::Number::New(info.Env(), double(ms) / 1000.0);
}

}  // namespace

void registerBenchEvents(Napi::Object exports) {
  MT_EXPORT(exports, "cudaTimerStart", TimerStart);
  MT_EXPORT(exports, "cudaTimerStop", TimerStop);
}

}  // namespace mt
#endif
