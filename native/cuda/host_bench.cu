// The host-cost loops of host_bench.h: one empty kernel for the launch floor, then plain loops
// over single runtime calls, timed on the host's steady clock.
#include "cuda/host_bench.h"
#ifdef MESHTRAIN_CUDA
#include <chrono>
#include "cuda/common.cuh"
#include "cuda/host_sync.h"
#include "cuda/runtime.h"
#include "util/check.h"

namespace mt {
namespace {

// A pointer parameter (passed null) like real kernels: the emulator's launch checks pointer arguments.
__global__ void emptyKernel(const int*) {}

struct Named {
  const char* name;
  HostLoop loop;
};
constexpr Named kLoops[] = {
    {"launch", HostLoop::Launch},
    {"launchChecked", HostLoop::LaunchChecked},
    {"eventRecord", HostLoop::EventRecord},
    {"streamWaitEvent", HostLoop::StreamWaitEvent},
    {"streamWaitStream", HostLoop::StreamWaitStream},
    {"eventCreateDestroy", HostLoop::EventCreateDestroy},
    {"funcSetAttribute", HostLoop::FuncSetAttribute},
    {"getDevice", HostLoop::GetDevice},
    {"useDevice", HostLoop::UseDevice},
    {"getLastError", HostLoop::GetLastError},
    {"streamQuery", HostLoop::StreamQuery},
};

// The loop body, `n` times; events made before the clock starts.
void runLoop(HostLoop loop, int64_t n, int dev, cudaStream_t s, cudaEvent_t ev) {
  switch (loop) {
    case HostLoop::Launch:
      for (int64_t i = 0; i < n; i++) MT_LAUNCH(emptyKernel, 1, 1, 0, s, static_cast<const int*>(nullptr));
      break;
    case HostLoop::LaunchChecked:
      for (int64_t i = 0; i < n; i++) {
        MT_LAUNCH(emptyKernel, 1, 1, 0, s, static_cast<const int*>(nullptr));
        cu::checkLaunch("hostLoop emptyKernel");
      }
      break;
    case HostLoop::EventRecord:
      for (int64_t i = 0; i < n; i++) cudaCheck(cudaEventRecord(ev, s), "hostLoop: cudaEventRecord");
      break;
    case HostLoop::StreamWaitEvent:
      for (int64_t i = 0; i < n; i++) cudaCheck(cudaStreamWaitEvent(s, ev, 0), "hostLoop: cudaStreamWaitEvent");
      break;
    case HostLoop::StreamWaitStream: {
      cudaStream_t comm = commStream(dev);
      for (int64_t i = 0; i < n; i++) streamWaitStream(dev, s, comm);
      break;
    }
    case HostLoop::EventCreateDestroy:
      for (int64_t i = 0; i < n; i++) {
        cudaEvent_t e = nullptr;
        cudaCheck(cudaEventCreateWithFlags(&e, cudaEventDisableTiming), "hostLoop: cudaEventCreateWithFlags");
        cudaCheck(cudaEventDestroy(e), "hostLoop: cudaEventDestroy");
      }
      break;
    case HostLoop::FuncSetAttribute:
      for (int64_t i = 0; i < n; i++)
        cudaCheck(cudaFuncSetAttribute(reinterpret_cast<const void*>(emptyKernel), cudaFuncAttributeMaxDynamicSharedMemorySize, 0),
                  "hostLoop: cudaFuncSetAttribute");
      break;
    case HostLoop::GetDevice:
      for (int64_t i = 0; i < n; i++) {
        int d = -1;
        cudaCheck(cudaGetDevice(&d), "hostLoop: cudaGetDevice");
      }
      break;
    case HostLoop::UseDevice:
      for (int64_t i = 0; i < n; i++) cudaUseDevice(dev);
      break;
    case HostLoop::GetLastError:
      for (int64_t i = 0; i < n; i++) cudaCheck(cudaGetLastError(), "hostLoop: cudaGetLastError");
      break;
    case HostLoop::StreamQuery:
      for (int64_t i = 0; i < n; i++) {
        cudaError_t e = cudaStreamQuery(s);
        if (e == cudaErrorNotReady) cudaGetLastError();  // not an error: the stream is busy
        else cudaCheck(e, "hostLoop: cudaStreamQuery");
      }
      break;
  }
}

}  // namespace

HostLoop hostLoopByName(const std::string& name) {
  std::string known;
  for (const Named& l : kLoops) {
    if (name == l.name) return l.loop;
    known += (known.empty() ? "" : ", ") + std::string(l.name);
  }
  throw Error(cat("hostLoop: unknown loop '", name, "' (known: ", known, ")"));
}

double cudaHostLoop(int dev, HostLoop loop, int64_t n) {
  MT_CHECK(n >= 1, "hostLoop: the call count must be >= 1, got ", n);
  cudaUseDevice(dev);
  cudaStream_t s = computeStream(dev);
  // Only the event loops get an event (made and recorded outside the clock): the other loops' runtime calls are theirs alone.
  cudaEvent_t ev = nullptr;
  if (loop == HostLoop::EventRecord || loop == HostLoop::StreamWaitEvent) {
    cudaCheck(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming), "hostLoop: cudaEventCreateWithFlags");
    cudaCheck(cudaEventRecord(ev, s), "hostLoop: cudaEventRecord");
  }
  double secs = 0;
  try {
    countHostSync(dev);
    cudaCheck(cudaStreamSynchronize(s), "hostLoop: cudaStreamSynchronize (before)");
    const auto t0 = std::chrono::steady_clock::now();
    runLoop(loop, n, dev, s, ev);
    secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    countHostSync(dev);
    cudaCheck(cudaStreamSynchronize(s), "hostLoop: cudaStreamSynchronize (after)");
  } catch (...) {
    if (ev) cudaEventDestroy(ev);
    throw;
  }
  if (ev) cudaCheck(cudaEventDestroy(ev), "hostLoop: cudaEventDestroy");
  return secs;
}

}  // namespace mt
#endif
