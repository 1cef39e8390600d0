// lossScalerUpdate on the device: one thread applies fp16 dynamic loss scaling's update to the
// scaler's f64 state from a step decision's skip (the rule: tensor/loss_scaler_rule.h; the CPU
// reference: native/cpu/loss_scaler.cc), so the next backward's scale needs no host read.
#include "cuda/common.cuh"
#include "cuda/kernels.h"
#include "cuda/runtime.h"
#include "tensor/loss_scaler_rule.h"

namespace mt {
namespace {

__global__ void lossScalerUpdateKernel(double* state, const double* decision, LossScalerOptions opts) {
  lossScalerUpdate(state, *decision, opts);
}

}  // namespace

void cudaLossScalerUpdate(int dev, double* state, const double* decision, const LossScalerOptions& opts) {
  cudaUseDevice(dev);
  MT_LAUNCH(lossScalerUpdateKernel, 1u, 1u, 0, computeStream(dev), state, decision, opts);
  cu::checkLaunch("lossScalerUpdate");
}

}  // namespace mt
