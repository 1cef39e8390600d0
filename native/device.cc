// What this build can run on: thread count, oneDNN version, and CUDA when compiled in.
#include <omp.h>
#include <oneapi/dnnl/dnnl.hpp>
#include "util/args.h"
#ifdef MESHTRAIN_CUDA
#include "cuda/device.h"
#endif

namespace mt {
namespace {

Napi::Value DeviceInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto o = Napi::Object::New(env);
  o.Set("threads", omp_get_max_threads());
  const dnnl_version_t* v = dnnl_version();
  o.Set("onednn", cat(v->major, ".", v->minor, ".", v->patch));
#ifdef MESHTRAIN_CUDA
  o.Set("cudaCompiled", true);
  std::string why;
  o.Set("cudaDevices", cudaDeviceCountOrZero(&why));
  o.Set("cudaStatus", why);
#else
  o.Set("cudaCompiled", false);
  o.Set("cudaDevices", 0);
  o.Set("cudaStatus", "built without CUDA");
#endif
  return o;
}

Napi::Value SetThreads(const Napi::CallbackInfo& info) {
  int64_t n = argInt(info, 0);
  MT_CHECK(n >= 1, "setNumThreads: need at least 1 thread, got ", n);
  omp_set_num_threads(int(n));
  return info.Env().Undefined();
}

}  // namespace

void registerDevice(Napi::Env env, Napi::Object exports) {
  MT_EXPORT(exports, "deviceInfo", DeviceInfo);
  MT_EXPORT(exports, "setNumThreads", SetThreads);
}

}  // namespace mt
