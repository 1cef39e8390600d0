// arange on the device: element i = start + i * step in the tensor's dtype, so a device arange
// (GPT's positions, every forward) needs no host copy, which would wait for the queue to drain.
// Reference: src/ops/create.ts arange (host values rounded to the dtype, as st() rounds here).
#include "cuda/common.cuh"
#include "cuda/runtime.h"

namespace mt {
namespace {

template <typename T>
__global__ void arangeKernel(T* p, int64_t n, double start, double step) {
  MT_CU_LOOP(i, n) cu::st(p + i, start + double(i) * step);
}

}  // namespace

void cudaArange(int dev, int dtype, void* p, int64_t n, double start, double step) {
  if (n == 0) return;
  cudaUseDevice(dev);
  cudaStream_t s = computeStream(dev);
  MT_CU_ALL(dtype, "arange", MT_LAUNCH(arangeKernel<T>, cu::blocksFor(n), cu::kThreads, 0, s, static_cast<T*>(p), n, start, step));
  cu::checkLaunch("arange");
}

}  // namespace mt
