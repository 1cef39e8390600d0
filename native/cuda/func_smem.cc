// cudaAllowDynamicSmem (func_smem.h): what was allowed, per device and kernel. CUDA builds only.
#ifdef MESHTRAIN_CUDA
#include "cuda/func_smem.h"

#include <map>
#include <mutex>
#include <utility>
#include "cuda/runtime.h"

namespace mt {

void cudaAllowDynamicSmem(int dev, const void* kernel, size_t bytes, const char* name) {
  static std::mutex mu;
  static std::map<std::pair<int, const void*>, size_t> allowed;
  std::lock_guard<std::mutex> lock(mu);
  auto it = allowed.find({dev, kernel});
  if (it != allowed.end() && it->second >= bytes) return;
  cudaUseDevice(dev);
  MT_CHECK(bytes <= size_t(INT32_MAX), "cudaFuncSetAttribute(", name, "): ", bytes, " bytes of shared memory");
  cudaCheck(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)),
            cat("cudaFuncSetAttribute(", name, ", MaxDynamicSharedMemorySize, ", bytes, ") on cuda:", dev).c_str());
  allowed[{dev, kernel}] = bytes;  // only after it succeeded: a failure is asked again next time
}

}  // namespace mt
#endif
