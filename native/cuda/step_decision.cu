// stepDecision on the device: one thread turns the gradients' squared sums into the step's
// {skip, gradScale, norm} (the rule: tensor/step_decision.h; the CPU reference:
// native/cpu/step_decision.cc), which the optimizer launches then read, so a step reads nothing back.
#include "cuda/common.cuh"
#include "cuda/kernels.h"
#include "cuda/runtime.h"
#include "tensor/step_decision.h"

namespace mt {
namespace {

__global__ void stepDecisionKernel(const double* global, const double* local, double unscale, const double* unscalePtr,
                                   double maxNorm, bool check, double* out) {
  const StepDecision d = stepDecision(*global, *local, unscalePtr ? *unscalePtr : unscale, maxNorm, check);
  out[0] = d.skip;
  out[1] = d.gradScale;
  out[2] = d.norm;
}

}  // namespace

void cudaStepDecision(int dev, const double* global, const double* local, double unscale, const double* unscalePtr,
                      double maxNorm, bool check, double* out) {
  cudaUseDevice(dev);
  MT_LAUNCH(stepDecisionKernel, 1u, 1u, 0, computeStream(dev), global, local, unscale, unscalePtr, maxNorm, check, out);
  cu::checkLaunch("stepDecision");
}

}  // namespace mt
