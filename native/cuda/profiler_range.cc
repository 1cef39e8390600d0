// cudaProfilerRange('start' | 'stop'): cudaProfilerStart/Stop, so an external profiler started
// with profiling off (ncu --profile-from-start off, scripts/gpu_check.sh) collects only the
// kernels queued in between: one training step after warm-up. Returns true where the call reached
// the CUDA runtime, false on the emulated device (no profiler to tell). CUDA builds only.
#ifdef MESHTRAIN_CUDA
#include "cuda/runtime.h"
#ifndef MESHTRAIN_CUDA_EMU
#include <cuda_profiler_api.h>
#endif
#include "util/args.h"

namespace mt {
namespace {

Napi::Value ProfilerRange(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  MT_CHECK(info.Length() == 1 && info[0].IsString(), "cudaProfilerRange: expects 'start' or 'stop'");
  const std::string cmd = info[0].As<Napi::String>().Utf8Value();
  MT_CHECK(cmd == "start" || cmd == "stop", "cudaProfilerRange: unknown command '", cmd, "' (expects 'start' or 'stop')");
#ifdef MESHTRAIN_CUDA_EMU
  return Napi::Boolean::New(env, false);
#else
  if (cmd == "start") cudaCheck(cudaProfilerStart(), "cudaProfilerStart");
  else cudaCheck(cudaProfilerStop(), "cudaProfilerStop");
  return Napi::Boolean::New(env, true);
#endif
}

}  // namespace

void registerCudaProfiler(Napi::Object exports) { MT_EXPORT(exports, "cudaProfilerRange", ProfilerRange); }

}  // namespace mt
#endif
