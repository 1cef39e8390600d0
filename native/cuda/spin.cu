// cudaSpin (see spin.h): one thread reads the device's nanosecond timer until the time is up.
#include "cuda/spin.h"
#if defined(MESHTRAIN_CUDA) && !defined(MESHTRAIN_CUDA_EMU)
#include "cuda/common.cuh"
#include "cuda/runtime.h"

namespace mt {
namespace {

__device__ __forceinline__ unsigned long long globalNs() {
  unsigned long long t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}

__global__ void spinFor(unsigned long long ns) {
  const unsigned long long t0 = globalNs();
  while (globalNs() - t0 < ns) __nanosleep(1000);
}

}  // namespace

void cudaSpin(int dev, double microseconds) {
  if (!(microseconds > 0)) return;
  cudaUseDevice(dev);
  cudaStream_t s = computeStream(dev);
  MT_LAUNCH(spinFor, 1, 1, 0, s, static_cast<unsigned long long>(microseconds * 1000.0));
  cu::checkLaunch("cudaSpin");
}

}  // namespace mt
#endif
