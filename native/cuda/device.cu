#include <cuda_runtime.h>
#include "cuda/device.h"

namespace mt {

int cudaDeviceCountOrZero(std::string* why) {
  int n = 0;
  cudaError_t err = cudaGetDeviceCount(&n);
  if (err != cudaSuccess) {
    *why = std::string("no CUDA: ") + cudaGetErrorString(err);
    cudaGetLastError();  // clear the sticky error so later probes start clean
    return 0;
  }
  *why = n > 0 ? "ok" : "no CUDA device";
  return n;
}

}  // namespace mt
