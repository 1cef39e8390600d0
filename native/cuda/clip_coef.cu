// clipCoefficient on the device: the clipping coefficient computed from the accumulated norm sum by
// one thread (the rule: tensor/clip_coef.h; the CPU reference: native/cpu/clip_coef.cc), so a
// clipped step reads nothing back and can be captured in a CUDA graph.
#include "cuda/common.cuh"
#include "cuda/kernels.h"
#include "cuda/runtime.h"
#include "tensor/clip_coef.h"

namespace mt {
namespace {

__global__ void clipCoefficientKernel(double* slot, bool squares, double maxNorm) {
  const ClipCoef r = clipCoefficient(slot[0], squares, maxNorm);
  slot[0] = r.norm;
  slot[1] = r.coef;
}

}  // namespace

void cudaClipCoefficient(int dev, double* slot, bool squares, double maxNorm) {
  cudaUseDevice(dev);
  MT_LAUNCH(clipCoefficientKernel, 1u, 1u, 0, computeStream(dev), slot, squares, maxNorm);
  cu::checkLaunch("clipCoefficient");
}

}  // namespace mt
